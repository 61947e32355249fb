"""The torch profiler's native start/stop lines stay off the terminal; nothing else is lost."""

from __future__ import annotations

import os
import threading

import pytest

import workbench as wb
from workbench.backends.torch.trace import quiet_profiler
from workbench.testing import toy_cnn


def test_profiler_chatter_is_dropped_and_other_lines_pass(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with quiet_profiler():
        os.write(2, b"USDT:2026-12-06 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"[W] External init callback must run in same thread as registerClient\n")
        os.write(2, b"a line of the user's own\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a line of the user's own\nafter\n"


def test_threads_profiling_at_once_restore_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    inside, leave = threading.Barrier(3), threading.Event()

    def profiling(n: int) -> None:
        with quiet_profiler():
            os.write(2, f"USDT: {n} profiler_start\nthread {n}\n".encode())
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=profiling, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    inside.wait()
    leave.set()
    for thread in threads:
        thread.join()
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "USDT" not in err and sorted(err.splitlines()) == ["after", "thread 1", "thread 2"]


@pytest.mark.parametrize("method", [None, "torch.profiler"], ids=["memory", "layers"])
def test_a_torch_profile_prints_no_profiler_lines(capfd, method) -> None:
    wb.profile(toy_cnn(), "torch", budget_s=0.05, layer_repeats=2, layer_method=method)
    err = capfd.readouterr().err
    assert "USDT:" not in err and "profiler_start" not in err


def test_freeing_a_tensor_made_before_the_profiler_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The allocator warns when a block it never saw allocated is freed while memory is
    profiled (garbage from before a profile collected inside it); no number depends on it."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    before = [torch.ones(4096) for _ in range(4)]
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        before.clear()
    err = capfd.readouterr().err
    assert "allocated before the profiling started" not in err
