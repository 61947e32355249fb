"""The one measuring lifecycle: compile, settings, cold start, timing options; and the
`Profile` it ends in, built once and frozen."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import workbench as wb
from workbench.backends import base as backends_base
from workbench.errors import ParameterError
from workbench.profiling import cost
from workbench.profiling.measure import TimingOptions, compiled, timing_of
from workbench.profiling.memory import ProfileMemory
from workbench.profiling.run import profile
from workbench.testing import FakeBackend, toy_mlp
from workbench.testing.fake_backend import FakeSession

EVENTS: list[str] = []


class _RecordingSession(FakeSession):
    threads = 2

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        EVENTS.append("settings on")
        try:
            yield
        finally:
            EVENTS.append("settings off")

    def close(self) -> None:
        EVENTS.append("closed")


class _RecordingBackend(FakeBackend):
    def compile(self, model: Any, device: str = "cpu", **options: Any) -> FakeSession:
        EVENTS.append(f"compiled {sorted(options)}")
        return _RecordingSession(model, device, self.layer_ms)


@pytest.fixture(autouse=True)
def _backends(monkeypatch: pytest.MonkeyPatch) -> None:
    EVENTS.clear()
    for name, factory in (("fake", FakeBackend), ("recording", _RecordingBackend)):
        monkeypatch.setitem(backends_base._FACTORIES, name, factory)
        monkeypatch.delitem(backends_base._INSTANCES, name, raising=False)


def test_compiled_holds_the_settings_while_inside_and_closes_even_on_failure() -> None:
    with compiled(toy_mlp(), "recording", "cpu", {"threads": 2}) as run:
        EVENTS.append("inside")
        assert run.compile_s >= 0 and run.threads == 2
    assert EVENTS == ["compiled ['threads']", "settings on", "inside", "settings off", "closed"]
    EVENTS.clear()
    with pytest.raises(RuntimeError), compiled(toy_mlp(), "recording", "cpu"):
        raise RuntimeError("a failed run")
    assert EVENTS[-2:] == ["settings off", "closed"]


def test_a_profile_measures_inside_the_session_settings() -> None:
    p = wb.profile(toy_mlp(), "recording", batch_size=2, layers=False, budget_s=0.01)
    assert EVENTS == ["compiled []", "settings on", "settings off", "closed"]
    assert p.compile_s is not None and p.first_inference_ms is not None
    assert p.environment["threads"] == 2


def test_timing_options_stand_for_the_keywords_and_are_refused_twice() -> None:
    given = {"budget_s": 2.0, "warmup": 3, "attempts": 1}  # profile's defaults
    chosen = timing_of(profile, TimingOptions(budget_s=0.5, attempts=2), **given)
    assert chosen == TimingOptions(budget_s=0.5, warmup=3, attempts=2)
    assert timing_of(profile, None, **given) == TimingOptions(budget_s=2.0, warmup=3, attempts=1)
    # a field the call does not take is not read (a scenario has no budget)
    assert timing_of(wb.scenario, TimingOptions(budget_s=0.5), warmup=10).budget_s is None
    with pytest.raises(ParameterError, match="budget_s is given twice"):
        timing_of(profile, TimingOptions(budget_s=0.5), **{**given, "budget_s": 1.0})
    with pytest.raises(ParameterError, match="budget_s"):
        timing_of(profile, TimingOptions(budget_s=0.0), **given)
    with pytest.raises(ParameterError, match="warmup"):
        TimingOptions(warmup=-1).checked()


def test_a_profile_takes_its_timing_as_one_value() -> None:
    quick = TimingOptions(budget_s=0.01, warmup=5)
    p = wb.profile(toy_mlp(), "fake", batch_size=2, layers=False, timing=quick)
    assert len(p.latency.warmup_ms) >= 5 and p.latency.n >= 10
    with pytest.raises(ParameterError, match="warmup is given twice"):
        wb.profile(toy_mlp(), "fake", layers=False, warmup=1, timing=quick)


def test_a_profile_is_frozen_and_its_memory_is_a_record_with_the_same_json(monkeypatch) -> None:
    # the roofline's ceilings (seconds of measuring) are not what is tested here
    monkeypatch.setattr(cost, "roofline", lambda layers, device: cost.Roofline(layers))
    p = wb.profile(toy_mlp(), "fake", batch_size=2, budget_s=0.01, layer_repeats=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.notes = ()  # type: ignore[misc]
    assert isinstance(p.memory, ProfileMemory) and p.memory.process_rss_bytes
    stored = json.loads(p.to_json())["memory"]
    assert stored["process_rss_bytes"] == p.memory.process_rss_bytes
    assert all(value is not None for value in stored.values())  # unmeasured: left out
    assert stored == p.memory.to_dict()
    # a field this version does not know is kept as read; JSON round trips unchanged
    data = json.loads(p.to_json())
    data["memory"]["future_bytes"] = 7
    again = wb.Profile.from_json(json.dumps(data))
    assert again.memory.extra == {"future_bytes": 7}
    assert json.loads(again.to_json())["memory"] == data["memory"]


def test_an_interrupt_after_the_layer_table_keeps_the_table(monkeypatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cost, "layer_costs", interrupted)
    p = wb.profile(toy_mlp(), "fake", batch_size=2, budget_s=0.01, layer_repeats=2)
    assert not p.layers.empty and p.memory.process_rss_bytes  # what the pass had found
    assert p.notes[-1].endswith("the end-to-end measurement is returned, with its layers")


def test_profile_is_a_short_composition_of_named_steps() -> None:
    source = inspect.getsource(profile)
    docstring = inspect.getdoc(profile) or ""
    assert len(source.splitlines()) - len(docstring.splitlines()) < 60


def test_the_model_is_handed_to_each_profiling_room_once(monkeypatch) -> None:
    """wb.profile's data path: each room of profiling gets the model once and hands data
    on (a room it returns to is a step that asks the model again for what it was told)."""
    monkeypatch.setattr(cost, "roofline", lambda layers, device: cost.Roofline(layers))
    model, rooms = toy_mlp(), []

    def follow(frame: Any, event: str, arg: Any) -> None:
        room = frame.f_globals.get("__name__", "")
        if event != "call" or not room.startswith("workbench."):
            return
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if any(frame.f_locals.get(name) is model for name in names) and rooms[-1:] != [room]:
            rooms.append(room)

    sys.setprofile(follow)
    try:
        wb.profile(model, "fake", batch_size=2, budget_s=0.01, layer_repeats=2)
    finally:
        sys.setprofile(None)
    profiling = [room for room in rooms if room.startswith("workbench.profiling.")]
    assert profiling[:2] == ["workbench.profiling.run", "workbench.profiling.measure"], rooms
    assert len(profiling) == len(set(profiling)), rooms
