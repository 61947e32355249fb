"""`profile`: measure a model on one backend and device."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workbench.argtypes import MAX_REPEATS, check_input_bytes, whole
from workbench.argtypes import batch_size as checked_batch
from workbench.backends.base import Inputs, Session
from workbench.errors import InputError
from workbench.model import Model
from workbench.profiling.layers import LayerReport
from workbench.profiling.measure import (
    TimingOptions,
    compiled,
    first_inference_ms,
    measure,
    timing_of,
)
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.progress import CancelToken, ProgressCallback, phase_bar, say_interrupted


def profile(
    model: Model | Any,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_size: int = 1,
    *,
    inputs: Inputs | None = None,
    layers: bool = True,
    layer_repeats: int = 20,
    layer_view: str = "leaves",
    layer_method: str | None = None,
    group_timing: bool = True,
    budget_s: float = 2.0,
    warmup: int = 3,
    options: dict[str, Any] | None = None,
    attempts: int = 1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timing: TimingOptions | None = None,
) -> Profile:
    """Profile ``model`` end to end and, by default, per layer.

    End-to-end latency comes from its own uninstrumented pass (warm-up, adaptive
    repeats, GC paused, device synchronised); the per-layer pass runs afterwards with
    the backend's instrumentation. Neither changes ``model``.

    Cold start is kept apart from the steady state: ``load_s`` (loading the file, when
    given one), ``compile_s`` (the backend's ``compile``: conversion, graph optimisation,
    engine build; the runtime's one-off start in the process, `start_of`, is not in it)
    and ``first_inference_ms`` (the first run, with its lazy allocations
    and JIT) are measured once and excluded from ``latency``.

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        backend: backend name (see `workbench.devices()`).
        device: device name, e.g. ``"cpu"`` or ``"cuda:0"``.
        batch_size: batch size of the generated inputs, or of the samples taken from a
            dataset given as ``inputs`` (arrays given as ``inputs`` set their own).
        inputs: real inputs to time with instead of generated ones: arrays (by input
            name, in input order, or one array), or a `Dataset` / iterable of
            ``(inputs, labels)`` batches, whose first ``batch_size`` samples are timed.
        layers: also profile per layer (fills `Profile.layers` and `Profile.memory`).
        layer_repeats: instrumented runs for the per-layer statistics.
        layer_view: ``"leaves"`` (leaf modules plus containers' own code) or
            ``"containers"`` (every module, inclusive times); torch models.
        layer_method: another per-layer timing method, e.g. ``"torch.profiler"`` (with
            per-layer memory); the session's ``layer_methods()`` lists them.
        group_timing: with ``layers``, time each group of trees of a tree ensemble alone
            where the runtime can run part of one (ONNX Runtime, Numba: a compile per
            group and 0.25 s of repeats a tree layer); False leaves them attributed only.
        budget_s: time budget of the end-to-end measurement, in seconds.
        warmup: minimum warm-up calls.
        options: backend options for ``compile`` (e.g. ``{"threads": 2}``); process-wide
            ones (torch's threads) apply during this call only and are restored after.
            Without ``threads``, each runtime sizes its threads to the CPUs free here.
        attempts: measure end to end up to this many times while the result is noisy
            (its spread, or a contended machine: `Measurement.noise_reasons`); the first
            clean one, else the least noisy, is kept and says how often it was measured.
        progress: ``progress(fraction, message)`` callback (with ``layers``, replaces the
            tqdm bar).
        cancel: a `CancelToken` checked between phases. Interrupted (Ctrl+C, a kernel
            interrupt) during the per-layer pass, the end-to-end profile is returned
            without layers, and a line says so.
        timing: ``budget_s``, ``warmup`` and ``attempts`` as one `TimingOptions` (shared
            with `sweep`, `scenario`, `slo`); its fields set win over the keywords left
            at their defaults.

    Returns:
        A `Profile`.

    Raises:
        UnknownBackendError, BackendOptionError, DeviceUnavailableError,
        UnsupportedModelError, InputError (ParameterError: a setting given both as a
        keyword and in ``timing``).

    Example:
        >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", "cpu", batch_size=32)
        >>> p.latency.median
    """
    from workbench.machine import environment

    batch_size = checked_batch(batch_size)
    timing = timing_of(profile, timing, budget_s=budget_s, warmup=warmup, attempts=attempts)
    layer_repeats = whole("layer_repeats", layer_repeats, maximum=MAX_REPEATS)
    model, timed = _subject(model, inputs, batch_size)  # all read from the model, once
    label = f"{timed.name} {backend}/{device} bs={timed.batch_size}"
    with _reporting(progress, cancel, f"profile {timed.name}" if layers else None) as step:
        step(0.0, f"compiling on {backend}/{device}")
        with compiled(model, backend, device, options) as run:
            step(0.1, "timing end to end")
            runner = run.session.runner(timed.staged)
            first_ms = first_inference_ms(runner)
            latency = measure(runner, timing, device=device, label=label, threads=run.threads)
            # read while the session's settings hold (torch's threads), as timed
            env, said = environment(threads=run.threads), getattr(run.session, "notes", ())
            found = None
            if layers:
                step(0.6, "timing each layer")
                found = _layer_pass(
                    run.session, timed.staged, latency, layer_repeats, layer_view, layer_method,
                    group_timing,
                )  # fmt: skip
            step(1.0, "done")
    return _assemble(
        timed, backend, device, latency, found, env, said,
        options=dict(options or {}), compile_s=run.compile_s, first_inference_ms=first_ms,
    )  # fmt: skip


@dataclass(frozen=True)
class _Subject:
    """What the profile records of the timed model, read once: its name, recipe and
    fingerprint, the staged inputs of one call and their batch, and the seconds loading
    took (None: it was given loaded)."""

    name: str
    recipe: dict[str, Any] | None
    fingerprint: str
    staged: dict[str, Any]
    batch_size: int
    load_s: float | None


def _subject(source: Model | Any, inputs: Inputs | None, batch_size: int) -> tuple[Model, _Subject]:
    """Load ``source`` and read from it all the later steps need, in one pass (so the
    model goes on to the backend with nothing left to ask of it).

    Raises:
        InputError: symbolic dimensions beyond the batch without ``inputs``, a fixed
            batch other than ``batch_size``, or inputs that do not fit the model.
    """
    from workbench.data import timing_inputs
    from workbench.loaders import load

    started = time.perf_counter()
    model = load(source)
    # load time only when this call loaded the model (a given Model was loaded before)
    load_s = None if isinstance(source, Model) else time.perf_counter() - started
    if inputs is not None:
        staged = timing_inputs(model, inputs, batch_size)
        batch_size = int(next(iter(staged.values())).shape[0]) if staged else batch_size
    else:
        check_input_bytes(model, batch_size)  # before anything is allocated
        if unsized := [f"{spec.name} {list(spec.shape)}" for spec in model.unsized_inputs()]:
            raise InputError(
                f"{model.name} has symbolic dimensions beyond the batch in "
                f"{', '.join(unsized)}; pass inputs= with arrays of the shapes you want "
                "timed, e.g. inputs=m.example_inputs(8, sizes={'seq': 128})"
            )
        staged = model.example_inputs(batch_size)
        # a fixed-batch model's inputs keep their own batch: time only what is asked for
        fixed = {n: a.shape[0] for n, a in staged.items() if a.ndim and a.shape[0] != batch_size}
        if fixed:
            raise InputError(
                f"{model.name} runs only batch {next(iter(fixed.values()))} (input shapes are "
                f"fixed: {fixed}), not {batch_size}; use that batch size or re-export it "
                "with a dynamic batch dimension"
            )
    facts = _Subject(model.name, model.recipe, model.fingerprint(), staged, batch_size, load_s)
    return model, facts


@contextlib.contextmanager
def _reporting(
    progress: ProgressCallback | None, cancel: CancelToken | None, bar: str | None
) -> Iterator[ProgressCallback]:
    """A ``step(fraction, message)`` that checks ``cancel`` and reports progress; without
    a ``progress`` callback, a tqdm bar named ``bar`` when given (a per-layer profile
    takes a while), closed on the way out."""
    close: Callable[[], None] | None = None
    if bar is not None and progress is None:
        progress, close = phase_bar(bar)

    def step(fraction: float, message: str) -> None:
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(fraction, message)

    try:
        yield step
    finally:
        if close is not None:
            close()


def _layer_pass(
    session: Session,
    staged: dict[str, Any],
    latency: Measurement,
    repeats: int,
    view: str,
    method: str | None,
    group_timing: bool = True,
) -> LayerReport:
    """The per-layer pass; interrupted (Ctrl+C, a kernel interrupt), what it had found,
    with a note that says the end-to-end measurement is kept."""
    from workbench.profiling.layers import LayersInterrupted, profile_layers

    try:
        return profile_layers(
            session, staged, latency.median, repeats, view=view, method=method,
            group_timing=group_timing,
        )  # fmt: skip
    except KeyboardInterrupt as exc:
        found = exc.found if isinstance(exc, LayersInterrupted) else LayerReport()
        kept = "the end-to-end measurement is returned"
        kept += ", without layers" if found.layers.empty else ", with its layers"
        return found.with_note(say_interrupted("per-layer profile", kept))


def _assemble(
    timed: _Subject,
    backend: str,
    device: str,
    latency: Measurement,
    found: LayerReport | None,
    environment: dict[str, Any],
    session_notes: Iterable[str],
    **measured: Any,
) -> Profile:
    """The `Profile`, built once from what each step measured."""
    found = found or LayerReport()
    if found.ceilings is not None:
        environment = {**environment, "machine_ceilings": found.ceilings}
    # what the session itself reports (torch-compile's recompilations), then the verdict
    # in words, where every reader sees notes, then the per-layer pass's
    verdict = [latency.verdict] if latency.noisy else []
    return Profile(
        model=timed.name,
        backend=backend,
        device=device,
        batch_size=timed.batch_size,
        latency=latency,
        layers=found.layers,
        memory=found.memory,
        environment=environment,
        recipe=timed.recipe,
        model_fingerprint=timed.fingerprint,
        notes=(*session_notes, *verdict, *found.notes),
        layer_method=found.method,
        load_s=timed.load_s,
        **measured,
    )
