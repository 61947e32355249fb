"""What a result records about the machine: CPUs available, load, threads, contention."""

from __future__ import annotations

from pathlib import Path

from workbench.backends.cpus import Contention
from workbench.machine import environment


def test_the_environment_records_the_cpus_really_available(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/stat").write_text("cpu  1 0 0 1\ncpu0 1 0 0 1\ncpu1 1 0 0 1\n")
    (tmp_path / "proc/loadavg").write_text("3.80 2.00 1.00 4/100 7\n")
    (tmp_path / "proc/self/cgroup").write_text("0::/pod\n")
    (tmp_path / "sys/fs/cgroup/pod").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/pod/cpu.max").write_text("100000 100000\n")
    busy = Contention(cpus=1, logical=2, others_cpus=0.9, load=3.8)
    env = environment(threads=2, root=str(tmp_path), contention=busy)
    assert env["cpus"]["quota_cpus"] == 1.0 and env["cpus"]["available"] == 1
    assert env["cores"] == 1 and env["load"] == [3.8, 2.0, 1.0] and env["threads"] == 2
    assert env["contention"]["reasons"] == ["other work took 0.9 of 1 CPUs", "load 3.8 on 2 CPUs"]
    assert env["contention"]["others_cpus"] == 0.9
