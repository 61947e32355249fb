"""The CPUs really available and how contended they are, read from fake /proc and /sys trees."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workbench.backends import cpus
from workbench.backends.cpus import Contention, CpuBudget


def proc_tree(
    root: Path,
    per_cpu: dict[int, tuple[int, int, int]],
    *,
    own: int = 0,
    load: str = "0.10 0.20 0.30 1/100 42",
) -> Path:
    """A fake /proc: ``per_cpu`` maps a CPU to (busy, idle, steal) ticks since boot."""
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for cpu, (busy, idle, steal) in per_cpu.items():
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 {steal} 0 0")
    (root / "proc/stat").write_text("\n".join(lines) + "\n")
    (root / "proc/loadavg").write_text(load + "\n")
    stat = "42 (python (x) y) R " + " ".join(["0"] * 10) + f" {own} 0 0 0"
    (root / "proc/self/stat").write_text(stat)
    return root


def cgroup_v2(root: Path, cpu_max: str, path: str = "/user.slice/pod") -> None:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text(f"0::{path}\n")
    folder = root / "sys/fs/cgroup" / path.strip("/")
    folder.mkdir(parents=True)
    (folder / "cpu.max").write_text(cpu_max + "\n")
    (root / "sys/fs/cgroup/cpu.max").write_text("max 100000\n")


def test_cgroup_v2_quota_caps_the_affinity(tmp_path: Path) -> None:
    proc_tree(tmp_path, {i: (0, 0, 0) for i in range(64)})
    cgroup_v2(tmp_path, "150000 100000")
    budget = cpus.cpu_budget(tmp_path, affinity=range(64))
    assert budget == CpuBudget(affinity=64, quota_cpus=1.5, logical=64)
    assert budget.available == 2
    assert budget.text() == "2 CPUs (cgroup quota 1.5 of 64)"


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    proc_tree(tmp_path, {0: (0, 0, 0), 1: (0, 0, 0)})
    cgroup_v2(tmp_path, "max 100000")
    assert cpus.cpu_budget(tmp_path, affinity={0, 1}).quota_cpus is None


def test_cgroup_v1_quota_and_a_parent_tighter_than_the_child(tmp_path: Path) -> None:
    proc_tree(tmp_path, {i: (0, 0, 0) for i in range(8)})
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/x\n3:cpu,cpuacct:/kube/pod1\n")
    mount = tmp_path / "sys/fs/cgroup/cpu,cpuacct"
    (mount / "kube/pod1").mkdir(parents=True)
    for folder, quota in ((mount, "-1"), (mount / "kube", "100000"), (mount / "kube/pod1", "-1")):
        (folder / "cpu.cfs_quota_us").write_text(quota)
        (folder / "cpu.cfs_period_us").write_text("100000")
    budget = cpus.cpu_budget(tmp_path, affinity=range(8))
    assert (budget.quota_cpus, budget.available) == (1.0, 1)


def test_affinity_alone_limits_without_a_cgroup(tmp_path: Path) -> None:
    proc_tree(tmp_path, {i: (0, 0, 0) for i in range(16)})
    budget = cpus.cpu_budget(tmp_path, affinity={3, 4})
    assert (budget.available, budget.logical) == (2, 16)
    assert budget.text() == "2 CPUs (affinity 2 of 16)"


def test_a_busy_neighbour_per_core_is_seen_and_named(tmp_path: Path) -> None:
    before = cpus.read_sample(proc_tree(tmp_path / "a", {0: (0, 0, 0), 1: (0, 0, 0)}), {0, 1})
    # one second later: both CPUs fully busy, 60 of those ticks ours; load 3.8
    after = cpus.read_sample(
        proc_tree(tmp_path / "b", {0: (100, 0, 0), 1: (100, 0, 0)}, own=60, load="3.8 2 1 5/9 1"),
        {0, 1},
    )
    budget = CpuBudget(affinity=2, quota_cpus=None, logical=2)
    seen = cpus.contention_between(before, after, budget, threads=2)
    assert seen.others_cpus == pytest.approx(1.4)
    assert seen.window_s == pytest.approx(1.0)
    assert seen.reasons == ("other work took 1.4 of 2 CPUs", "load 3.8 on 2 CPUs")


def test_a_quiet_machine_has_no_reasons(tmp_path: Path) -> None:
    before = cpus.read_sample(proc_tree(tmp_path / "a", {0: (0, 0, 0), 1: (0, 0, 0)}), {0, 1})
    after = cpus.read_sample(proc_tree(tmp_path / "b", {0: (95, 5, 0), 1: (2, 98, 0)}, own=95))
    seen = cpus.contention_between(before, after, CpuBudget(2, None, 2), threads=1)
    assert seen.others_cpus == pytest.approx(0.02)
    assert not seen.contended
    # a runtime's own 2 threads on 2 CPUs, plus a little, is a quiet machine at work
    assert Contention(cpus=2, logical=2, others_cpus=0.1, load=2.6, threads=2).reasons == ()


def test_steal_oversubscription_and_throttling_are_reasons(tmp_path: Path) -> None:
    before = cpus.read_sample(proc_tree(tmp_path / "a", {0: (0, 0, 0)}), {0})
    after = cpus.read_sample(proc_tree(tmp_path / "b", {0: (80, 10, 10)}, own=80), {0})
    seen = cpus.contention_between(before, after, CpuBudget(1, None, 1), threads=4)
    assert seen.steal == pytest.approx(0.10)
    assert seen.reasons == ("CPU steal 10%", "4 threads on 1 CPUs (oversubscribed)")
    throttled = Contention(cpus=2, logical=2, throttled_share=0.3)
    assert throttled.reasons == ("cgroup quota throttled 30% of the run",)


def test_other_cpus_of_a_big_host_do_not_count_against_a_quota(tmp_path: Path) -> None:
    """64 CPUs, quota 2: 40 CPUs busy elsewhere leave our 2 free; 63 busy take one."""
    idle = {i: (0, 0, 0) for i in range(64)}
    before = cpus.read_sample(proc_tree(tmp_path / "a", idle), range(64))
    budget = CpuBudget(64, 2.0, 64)
    busy40 = {i: (100 if i < 40 else 0, 0 if i < 40 else 100, 0) for i in range(64)}
    after = cpus.read_sample(proc_tree(tmp_path / "b", busy40), range(64))
    assert cpus.contention_between(before, after, budget).others_cpus == 0
    busy63 = {i: (100 if i < 63 else 0, 0 if i < 63 else 100, 0) for i in range(64)}
    after = cpus.read_sample(proc_tree(tmp_path / "c", busy63), range(64))
    assert cpus.contention_between(before, after, budget).others_cpus == pytest.approx(1.0)


def test_too_short_a_window_tells_nothing_about_other_work(tmp_path: Path) -> None:
    before = cpus.read_sample(proc_tree(tmp_path / "a", {0: (0, 0, 0), 1: (0, 0, 0)}), {0, 1})
    after = cpus.read_sample(proc_tree(tmp_path / "b", {0: (2, 0, 0), 1: (2, 0, 0)}), {0, 1})
    seen = cpus.contention_between(before, after, CpuBudget(2, None, 2))
    assert math.isnan(seen.others_cpus) and not seen.contended


def test_free_cpus_subtracts_what_others_use(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cpus, "_held", {})
    now = [0.0]
    idle = {0: (0, 0, 0), 1: (0, 0, 0)}

    def watch(tree: dict[int, tuple[int, int, int]]):
        def sleep(seconds: float) -> None:  # time passes; meanwhile the CPUs did this
            now[0] += seconds
            proc_tree(tmp_path, tree)

        return {"affinity": {0, 1}, "sleep": sleep, "clock": lambda: now[0]}

    proc_tree(tmp_path, idle)
    # one busy neighbour per core: never 0, the run still needs a thread
    assert cpus.free_cpus(tmp_path, **watch({0: (10, 0, 0), 1: (10, 0, 0)})) == 1
    now[0] += 60  # the last reading is stale: a new window is watched
    proc_tree(tmp_path, idle)
    assert cpus.free_cpus(tmp_path, **watch({0: (10, 0, 0), 1: (0, 10, 0)})) == 1
    now[0] += 60
    proc_tree(tmp_path, idle)
    # no tick seen: the whole budget
    assert cpus.free_cpus(tmp_path, **watch(idle)) == 2


def test_a_recent_reading_opens_the_window_without_waiting(tmp_path: Path, monkeypatch) -> None:
    """A fresh process reads the counters on import; compiling a second later waits for
    nothing, the window since then tells who was busy."""
    monkeypatch.setattr(cpus, "_held", {})
    now = [0.0]

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    proc_tree(tmp_path, {0: (0, 0, 0), 1: (0, 0, 0)})
    cpus._held[(str(tmp_path), (0, 1))] = (0.0, cpus.read_sample(tmp_path, {0, 1}))
    now[0] = 1.0
    proc_tree(tmp_path, {0: (100, 0, 0), 1: (100, 0, 0)})
    free = cpus.free_cpus(tmp_path, affinity={0, 1}, sleep=no_sleep, clock=lambda: now[0])
    assert free == 1


def test_default_threads_never_raises_the_runtimes_own_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "free_cpus", lambda root: 2)
    monkeypatch.setattr(cpus, "_reused", {})
    assert cpus.default_threads(1, tmp_path) == 1
    assert cpus.default_threads(8, tmp_path) == 2
    assert cpus.default_threads(None, tmp_path) == 2


def test_contention_round_trips_through_json_data() -> None:
    seen = Contention(cpus=2, logical=2, others_cpus=1.5, load=3.8, threads=2, window_s=1.0)
    data = seen.to_dict()
    assert data["load_before"] is None  # nan as JSON null
    assert Contention.from_dict(data).to_dict() == data
    assert Contention.from_dict(data) == seen  # nan (not measured) equals itself
    assert Contention.from_dict(data).reasons == seen.reasons
