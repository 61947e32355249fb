"""The one style of every figure: template, palettes, fonts and the colour of each thing drawn.

The plotly figures (through `LAYOUT` and its template) and the inline SVG figures of the
notebook views (`workbench.viz.inline`) take their palette, ink and font from here, and
the plotly ones their axis formats (`log_axis`, `zero_aligned_ranges`) and the figure
that says what is missing (`empty_figure`); numbers on every label are written by
`workbench.units`. Plotly is imported only when a plotly figure is built, so the inline
figures draw without it.

A thing keeps its colour in every figure of a session: an op type (`op_type_color`, by
its canonical ONNX name, so torch's ``Conv2d`` and ONNX Runtime's ``Conv`` are one
colour), a precision or technique (`precision_color`), and a run (`run_color`, by the
run's id: one profile is one colour in the layer comparison, the latency distribution and
the op-type breakdown alike).

Example:
    >>> from workbench.viz.style import op_type_color, run_color
    >>> op_type_color("Conv2d") == op_type_color("Conv")
    True
"""

from __future__ import annotations

import colorsys
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.profiling.table import UNATTRIBUTED

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "FONT_FAMILY",
    "INK",
    "LAYOUT",
    "MUTED",
    "OP_TYPE_ALIASES",
    "OP_TYPE_COLORS",
    "PALETTE",
    "PRECISION_COLORS",
    "QUALITATIVE",
    "RUN_PALETTE",
    "canonical_op_type",
    "empty_figure",
    "log_axis",
    "op_type_color",
    "precision_color",
    "precision_of",
    "run_color",
    "zero_aligned_ranges",
]

# A fixed qualitative palette: readable on white and in print. Keys get colours in
# first-seen order (`workbench.viz.inline.colors_for`), so one figure never repeats a
# colour before all are used.
PALETTE = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B",
    "#B279A2", "#FF9DA6", "#9D755D", "#79706E",
)  # fmt: skip
#: the colour of text and marks (plotly's default ink), and of axes, ticks and notes
INK = "#2A3F5F"
MUTED = "#8A8A8A"
FONT_FAMILY = "Helvetica, Arial, sans-serif"

# One palette for op types. Aliases (torch's module names) map to the ONNX op type, every
# canonical op type has its own colour: fixed ones for the common types, then colours
# handed out in first-seen order from a generated sequence that skips every colour in
# use, so two op types never share one (a hash into a short list did: Shape and
# BatchNormalization collided).
QUALITATIVE = (*PALETTE, "#1F77B4", "#BCBD22")  # the palette, then two more
#: torch module types -> the ONNX op type they export to: one vocabulary for colouring
OP_TYPE_ALIASES: dict[str, str] = {
    "Conv1d": "Conv",
    "Conv2d": "Conv",
    "Conv3d": "Conv",
    "ConvTranspose1d": "ConvTranspose",
    "ConvTranspose2d": "ConvTranspose",
    "Linear": "Gemm",
    "BatchNorm1d": "BatchNormalization",
    "BatchNorm2d": "BatchNormalization",
    "BatchNorm3d": "BatchNormalization",
    "LayerNorm": "LayerNormalization",
    "GroupNorm": "GroupNormalization",
    "ReLU": "Relu",
    "ReLU6": "Clip",
    "LeakyReLU": "LeakyRelu",
    "GELU": "Gelu",
    "SiLU": "Sigmoid",
    "Hardswish": "HardSwish",
    "Hardsigmoid": "HardSigmoid",
    "Tanh": "Tanh",
    "Softmax": "Softmax",
    "MaxPool1d": "MaxPool",
    "MaxPool2d": "MaxPool",
    "AvgPool2d": "AveragePool",
    "AdaptiveAvgPool2d": "GlobalAveragePool",
    "Flatten": "Reshape",
    "Dropout": "Identity",
    "Identity": "Identity",
    "Embedding": "Gather",
    "MultiheadAttention": "MultiheadAttention",
}


def canonical_op_type(op_type: Any) -> str:
    """The op type's name in one vocabulary for every runtime (ONNX's): torch's
    ``Conv2d`` is ``Conv``, ``Linear`` is ``Gemm``; ONNX names stay as they are. Figures
    colour and group by it and keep the original name in their hover text.

    Example:
        >>> canonical_op_type("Conv2d"), canonical_op_type("Conv")
        ('Conv', 'Conv')
    """
    text = "" if op_type is None or op_type != op_type else str(op_type)  # NaN: unknown
    return OP_TYPE_ALIASES.get(text, text)


OP_TYPE_COLORS: dict[str, str] = {
    "Conv": "#4C78A8",
    "Gemm": "#F58518",
    "MatMul": "#E45756",
    "BatchNormalization": "#72B7B2",
    "Relu": "#54A24B",
    "Add": "#EECA3B",
    "MultiheadAttention": "#B279A2",
    "LayerNormalization": "#FF9DA6",
    "MaxPool": "#9D755D",
    "Reshape": "#BCBD22",
    "Shape": "#8C6D31",
    "QLinearConv": "#2E5A88",
    "ConvInteger": "#17BECF",
    "QLinearMatMul": "#B23A3A",
    "MatMulInteger": "#D62728",
    "Softmax": "#9467BD",
    "ReorderOutput": "#7F7F7F",
    "(other)": "#C7C7C7",
    UNATTRIBUTED: "#BBBBBB",
}
_assigned: dict[str, str] = {}
_assign_lock = threading.Lock()
# One palette for precisions, shared by trade-off plots and badges.
PRECISION_COLORS: dict[str, str] = {
    "fp32": "#4C78A8",
    "fp16": "#54A24B",
    "bf16": "#72B7B2",
    "int8": "#E45756",
    "int8-dynamic": "#E45756",
    "int8-static": "#F58518",
    "int8-weight": "#9D755D",
    "int4": "#8C6D31",
    "sparse": "#B279A2",
    "other": "#79706E",
    "estimate": "#C7C7C7",
}
WARMUP_COLOR = "#BBBBBB"
# A small template of our own: as readable as plotly_white, but applying it costs ~1 ms
# instead of ~15 ms (plotly deep-copies a template on every figure), which keeps a
# dashboard update from the cache well under its 300 ms.
_AXIS = {"gridcolor": "#EBEBEB", "linecolor": "#BBBBBB", "zerolinecolor": "#CCCCCC",
         "automargin": True}  # fmt: skip


class _Layout(Mapping[str, Any]):
    """The layout every plotly figure starts from: ``fig.update_layout(**LAYOUT)``.

    Its template is built when a plotly figure first reads it: the inline figures import
    this module for its colours and must not load plotly.
    """

    def __init__(self) -> None:
        self._layout: dict[str, Any] | None = None

    def _built(self) -> dict[str, Any]:
        if self._layout is None:
            import plotly.graph_objects as go

            template = go.layout.Template(
                layout={
                    "font": {"family": FONT_FAMILY, "size": 12, "color": INK},
                    "paper_bgcolor": "white",
                    "plot_bgcolor": "white",
                    "colorway": list(QUALITATIVE),
                    "xaxis": _AXIS,
                    "yaxis": _AXIS,
                    "hoverlabel": {"align": "left"},
                    "title": {"x": 0.02, "font": {"size": 15}},
                }
            )
            self._layout = {"template": template, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}
        return self._layout

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


LAYOUT: Mapping[str, Any] = _Layout()


def op_type_color(op_type: str) -> str:
    """The colour of ``op_type``, never shared with another op type in this process.

    Common op types have fixed colours; torch names share their ONNX op type's colour
    (``Conv2d`` is ``Conv``); any other op type gets the next unused colour of a
    generated sequence the first time it is drawn, and keeps it.

    Example:
        >>> viz.op_type_color("Conv")
        '#4C78A8'
    """
    name = canonical_op_type(op_type)
    if name in OP_TYPE_COLORS:
        return OP_TYPE_COLORS[name]
    with _assign_lock:
        if name not in _assigned:
            used = {*OP_TYPE_COLORS.values(), *_assigned.values()}
            _assigned[name] = next(c for c in _generated_colors() if c not in used)
        return _assigned[name]


def _generated_colors() -> Any:
    """An endless sequence of distinct colours: golden-angle hues over three lightnesses."""
    n = 0
    while True:
        hue = (n * 0.381966 + 0.07) % 1.0
        lightness = (0.45, 0.6, 0.35)[(n // 3) % 3]
        saturation = (0.65, 0.5)[n % 2]
        r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
        yield f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"
        n += 1


def precision_color(precision: str) -> str:
    """The colour of a precision (``fp32``, ``fp16``, ``bf16``, ``int8``, ``sparse``).

    Example:
        >>> viz.precision_color("int8")
        '#E45756'
    """
    return PRECISION_COLORS.get(precision, PRECISION_COLORS["other"])


#: colours of runs, handed out in first-seen order (then generated ones)
RUN_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2", "#72B7B2", "#9D755D",
               "#EECA3B", "#FF9DA6", "#79706E")  # fmt: skip
_runs: dict[str, str] = {}
_runs_lock = threading.Lock()


def run_color(run: Any) -> str:
    """The colour of one run (a `Profile` or its run id) in every figure of this process:
    the first run drawn gets the first colour, the next run the next, and each keeps its
    colour wherever it is drawn again.

    Example:
        >>> run_color(p) == run_color(p.run_id)
        True
    """
    key = str(getattr(run, "run_id", run))
    with _runs_lock:
        if key not in _runs:
            used = set(_runs.values())
            free = [c for c in RUN_PALETTE if c not in used]
            _runs[key] = free[0] if free else next(c for c in _generated_colors() if c not in used)
        return _runs[key]


# ---- axes and the empty figure, shared by every plotly figure ----------------------------
def precision_of(recipe: Mapping[str, Any] | None) -> str:
    """A display precision for a model recipe: ``fp32`` (none), ``int8``, ``fp16``, ``sparse``…

    Example:
        >>> viz.precision_of(wb.quantize(m, "int8-dynamic").recipe)
        'int8'
    """
    if not recipe:
        return "fp32"
    text = " ".join(str(v) for v in recipe.values()).lower() + " " + str(recipe.get("name", ""))
    for key in ("int8", "fp16", "bf16"):
        if key in text:
            return key
    return "sparse" if "prune" in text else "other"


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says what is missing (and how to get it) in its middle.

    Example:
        >>> viz.empty_figure("No profile yet: run wb.profile(m).")
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font_size=14
    )
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **LAYOUT)
    return fig


def corner_note(
    fig: go.Figure, text: str, name: str, *, size: int, color: str, **extra: Any
) -> None:
    """A small note just above the plot's top-right corner (what a figure leaves out)."""
    fig.add_annotation(
        text=text,
        showarrow=False,
        x=1.0,
        y=1.0,
        xref="paper",
        yref="paper",
        xanchor="right",
        yanchor="bottom",
        font={"size": size, "color": color},
        name=name,
        **extra,
    )


_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def log_axis_vline(fig: go.Figure, x: float, text: str) -> None:
    """A dashed vertical line at ``x`` on a log x axis, labelled at its top.

    An annotation on a log axis takes the log of its position while a shape takes the
    value, so plotly's ``add_vline(annotation_text=...)`` puts the label at ``10**x`` and
    stretches the axis out to there; the label is placed at ``log10(x)`` instead.
    """
    fig.add_vline(x=x, line_dash="dash")
    fig.add_annotation(
        x=math.log10(x), y=1, yref="paper", text=text, showarrow=False,
        xanchor="left", yanchor="bottom",
    )  # fmt: skip


def _si(value: float) -> str:
    """``value`` with an SI prefix: 2e9 -> ``2G``, 0.5 -> ``0.5``."""
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:g}{prefix}"
    return f"{value:g}"


def log_axis(values: Sequence[float], unit: str, **axis: Any) -> dict[str, Any]:
    """A log axis whose ticks read 1, 2, 5, 10, 20… with ``unit`` (powers of ten alone
    when the values span more than three decades), instead of plotly's bare minor digits.

    Args:
        values: the values drawn on the axis (non-positive ones are ignored).
        unit: appended to each tick label (``"ms"``; SI prefixes for large numbers).
        **axis: other axis properties (``title``…).

    Example:
        >>> viz.log_axis([0.4, 12.0], "ms")["ticktext"][:3]
        ['0.2 ms', '0.5 ms', '1 ms']
    """
    positive = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if not positive:
        return {"type": "log", **axis}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    steps = (1.0,) if high - low > 3 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0**e for e in range(low, high + 1) for m in steps]
    # one tick below and above the data keeps the labels framing it
    below = [t for t in ticks if t <= min(positive)][-1:]
    above = [t for t in ticks if t >= max(positive)][:1]
    ticks = [*below, *[t for t in ticks if min(positive) < t < max(positive)], *above]
    suffix = f" {unit}" if unit else ""
    return {
        "type": "log",
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [f"{_si(float(f'{t:.3g}'))}{suffix}" for t in ticks],
        **axis,
    }


def zero_aligned_ranges(
    left: Sequence[float], right: Sequence[float], pad: float = 0.1
) -> tuple[list[float], list[float]]:
    """Ranges for two y axes that put zero at the same height, each covering its values
    (and zero) with a ``pad`` margin.

    Example:
        >>> zero_aligned_ranges([-1.0, 3.0], [10.0, 20.0])[1][0] < 0
        True
    """

    def extent(values: Sequence[float]) -> tuple[float, float]:
        finite = [float(v) for v in values if v is not None and np.isfinite(v)]
        low, high = min([0.0, *finite]), max([0.0, *finite])
        if low == high:
            high = 1.0
        return -low * (1 + pad), high * (1 + pad)

    axes = [extent(left), extent(right)]
    # the same below-to-above ratio on both: the larger one, stretching the other's ends
    ratio = max((neg / pos for neg, pos in axes if pos > 0), default=1.0)
    if ratio == 0 and any(pos == 0 for _, pos in axes):
        ratio = 1.0  # one axis all below zero, the other all above: zero in the middle
    ranges = [[-(neg if pos == 0 else ratio * pos), neg / ratio if pos == 0 else pos]
              for neg, pos in axes]  # fmt: skip
    return ranges[0], ranges[1]
