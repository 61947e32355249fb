"""`profile`: measure a model on one backend and device."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workbench.argtypes import MAX_REPEATS, check_input_bytes, seconds, whole
from workbench.argtypes import batch_size as checked_batch
from workbench.backends.base import Inputs, get_backend, settings_of
from workbench.backends.cpus import default_threads
from workbench.errors import InputError
from workbench.model import Model
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Timer, remeasure
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
    budget_s: float = 2.0,
    warmup: int = 3,
    options: dict[str, Any] | None = None,
    attempts: int = 1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Profile:
    """Profile ``model`` end to end and, by default, per layer.

    End-to-end latency comes from its own uninstrumented pass (warm-up, adaptive
    repeats, GC paused, device synchronised); the per-layer pass runs afterwards with
    the backend's instrumentation. Neither changes ``model``.

    Cold start is kept apart from the steady state: ``load_s`` (loading the file, when
    given one), ``compile_s`` (the backend's ``compile``: conversion, graph optimisation,
    engine build) and ``first_inference_ms`` (the first run, with its lazy allocations
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

    Returns:
        A `Profile`.

    Raises:
        UnknownBackendError, BackendOptionError, DeviceUnavailableError,
        UnsupportedModelError, InputError.

    Example:
        >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", "cpu", batch_size=32)
        >>> p.latency.median
    """
    from workbench.data import timing_inputs
    from workbench.loaders import load
    from workbench.machine import environment

    batch_size = checked_batch(batch_size)
    budget_s = seconds("budget_s", budget_s)
    layer_repeats = whole("layer_repeats", layer_repeats, maximum=MAX_REPEATS)
    warmup = whole("warmup", warmup, minimum=0, maximum=MAX_REPEATS)
    given = isinstance(model, Model)
    started = time.perf_counter()
    model = load(model)
    # load time only when this call loaded the model (a given Model was loaded before)
    load_s = None if given else time.perf_counter() - started
    if inputs is not None:
        staged = timing_inputs(model, inputs, batch_size)
        batch_size = int(next(iter(staged.values())).shape[0]) if staged else batch_size
    else:
        unsized = [f"{spec.name} {list(spec.shape)}" for spec in model.unsized_inputs()]
        if unsized:
            raise InputError(
                f"{model.name} has symbolic dimensions beyond the batch in {', '.join(unsized)}; "
                "pass inputs= with arrays of the shapes you want timed, e.g. "
                "inputs=m.example_inputs(8, sizes={'seq': 128})"
            )
        check_input_bytes(model, batch_size)
        staged = model.example_inputs(batch_size)
        # a fixed-batch model's inputs keep their own batch: time only what is asked for
        fixed = {n: a.shape[0] for n, a in staged.items() if a.ndim and a.shape[0] != batch_size}
        if fixed:
            raise InputError(
                f"{model.name} runs only batch {next(iter(fixed.values()))} (input shapes are "
                f"fixed: {fixed}), not {batch_size}; use that batch size or re-export it "
                "with a dynamic batch dimension"
            )

    def step(fraction: float, message: str) -> None:
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(fraction, message)

    # a per-layer profile takes a while: show a bar unless the caller reports progress
    close_bar: Callable[[], None] | None = None
    if layers and progress is None:
        progress, close_bar = phase_bar(f"profile {model.name}")
    try:
        step(0.0, f"compiling on {backend}/{device}")
        default_threads()  # the CPUs free are looked at before the compile is timed
        started = time.perf_counter()
        session = get_backend(backend).compile(model, device, **(options or {}))
        compile_s = time.perf_counter() - started
        # the session's process-wide settings (torch's threads) hold for the measurement only
        with settings_of(session):
            try:
                step(0.1, "timing end to end")
                label = f"{model.name} {backend}/{device} bs={batch_size}"
                runner = session.runner(staged)
                started = time.perf_counter()
                runner()  # the first inference: lazy allocation, JIT, caches cold
                first_inference_ms = (time.perf_counter() - started) * 1e3
                threads = getattr(session, "threads", None)
                latency = remeasure(
                    Timer(
                        runner,
                        warmup=warmup,
                        budget_s=budget_s,
                        device=device,
                        label=label,
                        threads=threads if device == "cpu" else None,
                    ).measure,
                    attempts,
                )
                result = Profile(
                    model=model.name,
                    backend=backend,
                    device=device,
                    batch_size=batch_size,
                    latency=latency,
                    environment=environment(threads=threads),
                    recipe=model.recipe,
                    model_fingerprint=model.fingerprint(),
                    options=dict(options or {}),
                    load_s=load_s,
                    compile_s=compile_s,
                    first_inference_ms=first_inference_ms,
                )
                # what the session itself reports (torch-compile's recompilations)
                result.notes.extend(getattr(session, "notes", ()))
                if latency.noisy:  # the verdict in words, where every reader sees notes
                    result.notes.append(latency.verdict)
                if layers:
                    from workbench.profiling.layers import profile_layers

                    step(0.6, "timing each layer")
                    try:
                        profile_layers(
                            result,
                            session,
                            staged,
                            repeats=layer_repeats,
                            view=layer_view,
                            method=layer_method,
                        )
                    except KeyboardInterrupt:  # Ctrl+C or a kernel interrupt: keep end to end
                        kept = "the end-to-end measurement is returned"
                        kept += ", without layers" if result.layers.empty else ", with its layers"
                        result.notes.append(say_interrupted("per-layer profile", kept))
                step(1.0, "done")
                return result
            finally:
                session.close()
    finally:
        if close_bar is not None:
            close_bar()
