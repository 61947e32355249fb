"""`evaluate`: a model's quality on real data, on any backend; built-in and own metrics.

A metric maps all outputs and labels of a dataset to one number and declares its
direction (accuracy: higher is better; MSE: lower is better), which sweeps use to find
the Pareto front. Built-ins: ``accuracy``, ``top{k}`` (``top5``), ``mse``, ``mae``, and the tabular
``roc_auc``, ``log_loss``, ``log_loss_logit`` (of a binary logit), ``rmse``, ``f1`` (of
predicted 0/1 labels) and the retrieval
``recall@{k}`` (``recall@10``);
any callable ``fn(outputs, labels) -> float`` works too (set ``fn.higher_is_better =
False`` for an error metric, or wrap it in `Metric`).

A model with several outputs (a converted classifier's ``label`` and ``probabilities``,
an anomaly detector's ``label`` and ``scores``) is scored on one of them: the one named
by ``output=``, else the first, in order of preference (a probabilities, logits or
scores name, a float type, the model's order), that the metric fits. A built-in metric
refuses an output whose shape and type it does not fit, in one line, rather than return
a number computed on the wrong thing (an argmax over a vector of predicted labels).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import InputError, WorkbenchError
from workbench.evaluation.metric_type import Metric
from workbench.evaluation.ranking import recall_at_k
from workbench.evaluation.tabular import f1, log_loss, log_loss_logit, rmse, roc_auc
from workbench.model import to_numpy
from workbench.profiling.results import dump_json, load_json
from workbench.progress import CancelToken, ProgressCallback, track


def _classes(labels: np.ndarray) -> np.ndarray:
    # one-hot or probability labels become class indices
    return labels.argmax(-1) if labels.ndim > 1 else labels


def _is_labels(outputs: np.ndarray) -> bool:
    """Predicted class labels: integers, one per sample (``(N,)`` or ``(N, 1)``)."""
    integer = outputs.dtype.kind in "iub"
    return integer and (outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest-scoring class is the label (in [0, 1]).

    ``outputs`` are class scores (``(N, classes)``, probabilities or logits), or the
    predicted labels themselves (integers, ``(N,)`` or ``(N, 1)``).
    """
    predicted = outputs.reshape(-1) if _is_labels(outputs) else outputs.argmax(-1)
    return float((predicted == _classes(labels)).mean())


def _class_scores_misfit(outputs: np.ndarray) -> str:
    if outputs.dtype.kind != "f":
        return f"it needs class scores (floats), not {outputs.dtype} values"
    if outputs.ndim < 2 or outputs.shape[-1] < 2:
        return (
            "it needs class scores, one column per class (N, classes), not "
            f"{outputs.shape[-1] if outputs.ndim else 1} value(s) per sample"
        )
    return ""


def _accuracy_misfit(outputs: np.ndarray) -> str:
    return "" if _is_labels(outputs) else _class_scores_misfit(outputs)


def _values_misfit(outputs: np.ndarray) -> str:
    kind = outputs.dtype.kind
    return "" if kind == "f" else f"it compares float values, not {outputs.dtype} ones"


def top_k(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """Fraction of samples whose label is among the ``k`` highest-scoring classes."""

    def score(outputs: np.ndarray, labels: np.ndarray) -> float:
        best = np.argpartition(-outputs, min(k, outputs.shape[-1]) - 1, axis=-1)[..., :k]
        return float((best == _classes(labels)[..., None]).any(-1).mean())

    return score


def mse(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error between outputs and float labels of the same shape."""
    return float(np.mean((outputs.astype(np.float64) - labels.reshape(outputs.shape)) ** 2))


def mae(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean absolute error between outputs and float labels of the same shape."""
    return float(np.mean(np.abs(outputs.astype(np.float64) - labels.reshape(outputs.shape))))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, True, 100.0, _accuracy_misfit),
    "mse": Metric("mse", mse, False, misfit=_values_misfit),
    "mae": Metric("mae", mae, False, misfit=_values_misfit),
    "roc_auc": roc_auc,
    "log_loss": log_loss,
    "log_loss_logit": log_loss_logit,
    "rmse": rmse,
    "f1": f1,
}


def get_metric(metric: str | Metric | Callable[..., float]) -> Metric:
    """A `Metric` from a name (``"accuracy"``, ``"top5"``, ``"mse"``), a Metric or a callable.

    Raises:
        WorkbenchError: unknown metric name.
    """
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        name = getattr(metric, "__name__", "metric")
        return Metric(name, metric, bool(getattr(metric, "higher_is_better", True)))
    found = re.fullmatch(r"top-?(\d+)", str(metric).lower())
    if found:
        k = int(found.group(1))
        return Metric(f"top{k}", top_k(k), True, 100.0, _class_scores_misfit)
    found = re.fullmatch(r"recall@(\d+)", str(metric).lower())
    if found and int(found.group(1)) > 0:
        return recall_at_k(int(found.group(1)))
    if metric in METRICS:
        return METRICS[metric]
    raise WorkbenchError(
        f"unknown metric {metric!r}; built-in metrics: {sorted(METRICS)}, top<k> "
        "(e.g. top5) and recall@<k> (recall@10), or pass a callable fn(outputs, labels) -> float"
    )


@dataclass(frozen=True)
class Evaluation:
    """A metric's value for one model on one backend and device.

    Attributes:
        metric: metric name.
        value: its value over the whole dataset.
        higher_is_better: the metric's direction.
        model: model name.
        recipe: the model's recipe label (``"baseline"`` for a loaded model).
        backend: backend name.
        device: device string.
        num_samples: samples evaluated.
        dataset: dataset name, when known.
        seconds: wall time of the evaluation, in seconds (not a latency measurement).
        output: the name of the model output that was scored.
    """

    metric: str
    value: float
    higher_is_better: bool
    model: str
    recipe: str
    backend: str
    device: str
    num_samples: int
    dataset: str = ""
    seconds: float = 0.0
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The evaluation as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Evaluation:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls(**load_json(text_or_path, "an evaluation"))

    def __repr__(self) -> str:
        return (
            f"Evaluation({self.metric}={self._value_text()} for {self.model}[{self.recipe}] on "
            f"{self.backend}/{self.device}, {self.num_samples:,} samples)"
        )

    def _value_text(self) -> str:
        return metric_text(self.metric, self.value)

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import summary_html
        from workbench.units import format_seconds

        facts = [
            (self.metric, self._value_text()),
            ("model", f"{self.model} [{self.recipe}]"),
            ("on", f"{self.backend}/{self.device}"),
            *([("output", self.output)] if self.output else []),
            ("samples", f"{self.num_samples:,}" + (f" of {self.dataset}" if self.dataset else "")),
            ("took", format_seconds(self.seconds)),
        ]
        return summary_html(f"Evaluation: {self.metric}", facts)


def metric_text(metric: str, value: Any) -> str:
    """A metric's value as text: a percentage for fractions (accuracy), else 3 figures.

    Example:
        >>> metric_text("accuracy", 0.486653)
        '48.7%'
    """
    from workbench.units import format_number, format_share

    known = METRICS.get(metric)
    return (format_share if known and known.points == 100 else format_number)(value)


def evaluate(
    model: Any,
    data: Any,
    backend: str | None = None,
    device: str = "cpu",
    metric: str | Metric | Callable[..., float] = "accuracy",
    *,
    output: str | int | None = None,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    bar: bool = True,
) -> Evaluation:
    """Run ``model`` over ``data`` on a backend and score one of its outputs.

    Never changes ``model``; the backend synchronises the device after each batch.

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        data: a `Dataset` or any iterable of ``(inputs, labels)`` batches (numpy or torch).
        backend: backend name; default ``"torch"`` for torch models, else ``"onnxruntime"``.
        device: device string.
        metric: ``"accuracy"``, ``"top5"``, ``"mse"``, ``"mae"``, a `Metric` or a callable.
        output: the output to score, by name (``"probabilities"``, ``"logits"``) or
            index; default the first the metric fits, preferring probabilities, logits
            or scores over predicted labels (see `pick_output`).
        options: backend options for ``compile`` (e.g. ``{"threads": 1}``).
        progress: ``progress(fraction, message)`` callback (replaces the tqdm bar).
        cancel: a `CancelToken` checked between batches.
        bar: show a tqdm bar when no callback is given.

    Returns:
        An `Evaluation`.

    Raises:
        UnsupportedModelError: the backend cannot run this model (e.g. torch on an ONNX
            model); DeviceUnavailableError; InputError for data that does not fit the
            model, an unknown ``output``, or a metric that does not fit the output
            (accuracy on one float per sample); CancelledError.

    Example:
        >>> wb.evaluate(m, wb.samples.dataset("digits"), backend="onnxruntime").value
        0.993
    """
    from workbench.backends.base import get_backend
    from workbench.loaders import load

    model = load(model)
    scorer = get_metric(metric)
    backend = backend or ("torch" if model.framework == "torch" else "onnxruntime")
    start = time.perf_counter()
    session = get_backend(backend).compile(model, device, **(options or {}))
    outputs, labels = [], []
    chosen: tuple[int, str] | None = None
    try:
        total = len(data) if hasattr(data, "__len__") else None
        batches = track(
            data, total=total, description="evaluate", progress=progress, cancel=cancel, bar=bar
        )
        for inputs, target in batches:
            feeds = inputs if isinstance(inputs, dict) else _tupled(inputs)
            ran = session.run(feeds)
            if chosen is None:
                chosen = pick_output(output_names(model, len(ran)), ran, scorer, output)
            outputs.append(ran[chosen[0]])
            labels.append(np.atleast_1d(to_numpy(target)))
    finally:
        session.close()
    if not outputs or chosen is None:
        raise InputError("the evaluation data holds no batches")
    value = scorer(np.concatenate(outputs), np.concatenate(labels))
    return Evaluation(
        metric=scorer.name,
        value=value,
        higher_is_better=scorer.higher_is_better,
        model=model.name,
        recipe=model.recipe_name,
        backend=backend,
        device=device,
        num_samples=sum(len(y) for y in labels),
        dataset=str(getattr(data, "name", "")),
        seconds=time.perf_counter() - start,
        output=chosen[1],
    )


#: output names that hold class scores or anomaly scores, not predicted labels
_SCORE_NAMES = ("prob", "logit", "score")


def output_names(model: Any, count: int) -> list[str]:
    """The names of ``count`` outputs a session returned for ``model``: its output specs'
    names when they match in number, else ``output_0``, ``output_1`` ..."""
    names = [spec.name for spec in model.outputs]
    return names if len(names) == count else [f"output_{i}" for i in range(count)]


def pick_output(
    names: list[str],
    outputs: list[np.ndarray],
    scorer: Metric,
    output: str | int | None = None,
) -> tuple[int, str]:
    """Which of a model's outputs ``scorer`` scores: its index and name.

    Named (or indexed) by ``output``, that one, if the metric fits it. Otherwise the
    first the metric fits, in order of preference: a name holding ``prob``, ``logit``
    or ``score``, then float outputs, then the model's order, so a converted
    classifier's ``probabilities`` wins over its ``label`` and an anomaly detector's
    ``scores`` over its ``label``.

    Args:
        names: the outputs' names, in the order the session returns them.
        outputs: one batch of outputs (their shapes and dtypes are checked).
        scorer: the metric.
        output: a name or an index, or None to choose.

    Raises:
        InputError: an unknown name or index, or no output (or not the named one) the
            metric fits; the message lists every output with its shape and dtype.
    """
    described = ", ".join(_described(n, o) for n, o in zip(names, outputs, strict=True))
    if output is not None:
        index = _output_index(names, output)
        if index is None:
            raise InputError(f"the model has no output {output!r}; its outputs: {described}")
        reason = scorer.why_not(np.asarray(outputs[index]))
        if reason:
            raise InputError(
                f"{scorer.name} does not fit output {_described(names[index], outputs[index])}: "
                f"{reason}; the model's outputs: {described}"
            )
        return index, names[index]
    order = sorted(range(len(outputs)), key=lambda i: _preference(names[i], outputs[i], i))
    reasons = []
    for index in order:
        reason = scorer.why_not(np.asarray(outputs[index]))
        if not reason:
            return index, names[index]
        reasons.append(f"{names[index]}: {reason}")
    raise InputError(
        f"{scorer.name} fits none of the model's outputs ({'; '.join(reasons)}); "
        "pick another metric, or a callable metric with output="
    )


def _output_index(names: list[str], output: str | int) -> int | None:
    if isinstance(output, int) and not isinstance(output, bool):
        return output % len(names) if -len(names) <= output < len(names) else None
    return names.index(output) if output in names else None


def _described(name: str, output: Any) -> str:
    return f"{name!r} {list(np.shape(output))} {np.asarray(output).dtype}"


def _preference(name: str, output: Any, index: int) -> tuple[int, int, int]:
    scores = any(hint in name.lower() for hint in _SCORE_NAMES)
    return (0 if scores else 1, 0 if np.asarray(output).dtype.kind == "f" else 1, index)


def _tupled(inputs: Any) -> Any:
    if isinstance(inputs, list):
        return tuple(inputs)
    if isinstance(inputs, tuple):
        return inputs
    return (inputs,)
