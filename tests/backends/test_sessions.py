"""What profiling needs from a session: per-layer methods and settings that do not leak."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.backends.base import LayerTiming, Session, layer_methods_of, settings_of
from workbench.testing import FakeBackend, toy_cnn

#: backend -> the per-layer methods its session offers
LAYER_METHODS = {
    "torch": ["default", "torch.profiler"],
    "onnxruntime": ["default"],
    "numba": ["default"],
}


@pytest.mark.parametrize("name", LAYER_METHODS, ids=list(LAYER_METHODS))
def test_layer_methods_name_the_ways_a_session_times_its_layers(name: str) -> None:
    model = toy_cnn()
    session = wb.backend(name).compile(model, "cpu")
    try:
        assert isinstance(session, Session)
        methods = session.layer_methods()
        assert list(methods) == LAYER_METHODS[name]
        assert methods["default"] == session.run_layers
        inputs = model.example_inputs(2)
        for method in methods.values():
            timings = method(inputs, 2)
            assert timings and all(isinstance(t, LayerTiming) for t in timings)
            assert all(len(t.samples_ms) == 2 for t in timings if t.samples_ms)
    finally:
        session.close()


def test_a_session_without_layer_methods_still_offers_run_layers() -> None:
    class OldPluginSession:  # written before Session.layer_methods and settings existed
        def run_layers(self, inputs: object, repeats: int = 10) -> list[LayerTiming]:
            return [LayerTiming("fc", "Gemm", (1.0,) * repeats)]

    old = OldPluginSession()
    assert list(layer_methods_of(old)) == ["default"]
    assert layer_methods_of(old)["default"]({}, 3)[0].samples_ms == (1.0, 1.0, 1.0)
    assert layer_methods_of(object()) == {}
    with settings_of(old):
        pass
    fake = FakeBackend().compile(toy_cnn(), "cpu")
    assert isinstance(fake, Session) and list(fake.layer_methods()) == ["default"]


def _other_thread_count() -> tuple[int, int]:
    import torch

    before = torch.get_num_threads()
    return before, 1 if before != 1 else 2


def _thread_recorder() -> tuple[wb.Model, list[int]]:
    """A model whose forward pass records the thread count it ran with."""
    import torch

    seen: list[int] = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return self.fc(x)

    model = wb.load(Recorder(), example_inputs=(torch.rand(2, 4),))
    seen.clear()  # loading traced the module once
    return model, seen


def test_torch_threads_hold_only_inside_settings() -> None:
    import torch

    before, wanted = _other_thread_count()
    model, seen = _thread_recorder()
    session = wb.backend("torch").compile(model, "cpu", threads=wanted)
    assert torch.get_num_threads() == before  # compiling changes nothing process-wide
    with session.settings():
        assert torch.get_num_threads() == wanted
        with session.settings():  # nested: still applied, not restored early
            assert torch.get_num_threads() == wanted
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before
    inputs = model.example_inputs(2)
    session.run(inputs)
    session.runner(inputs)()  # outside settings(): applies and restores around the call
    with session.settings():
        session.runner(inputs)()
    assert seen == [wanted] * 3
    assert torch.get_num_threads() == before


def test_torch_thread_count_is_restored_after_profiling() -> None:
    import torch

    before, wanted = _other_thread_count()
    model = toy_cnn()
    p = wb.profile(
        model, "torch", batch_size=2, layers=False, budget_s=0.05, options={"threads": wanted}
    )
    assert torch.get_num_threads() == before
    assert p.environment["torch_threads"] == wanted  # the measurement ran with them
    session = wb.backend("torch").compile(model, "cpu", threads=wanted)
    for method in session.layer_methods().values():
        method(model.example_inputs(2), 2)
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["onnxruntime", "numba"])
def test_a_runtime_starts_once_per_process_apart_from_the_compile(name: str) -> None:
    from workbench.backends.base import start_of
    from workbench.profiling.measure import compiled

    backend = wb.backend(name)
    assert start_of(backend) >= 0.0
    assert start_of(backend) == 0.0  # started: nothing left to pay
    with compiled(toy_cnn(), name, "cpu") as run:
        assert run.startup_s == 0.0 and run.compile_s > 0


def test_a_backend_without_a_start_costs_nothing_to_start() -> None:
    from workbench.backends.base import once, start_of

    assert start_of(FakeBackend()) == 0.0
    calls: list[int] = []
    start = once(lambda: calls.append(1))
    assert start() > 0.0 and start() == 0.0 and calls == [1]
