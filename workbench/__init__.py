"""workbench: a notebook-native profiling workbench for ML inference.

The public API is imported lazily so that ``import workbench`` stays fast: torch,
onnxruntime, numba and panel load only when a function that needs them is called.

Example:
    >>> import workbench as wb
    >>> m = wb.samples.load("digits-cnn")
    >>> p = wb.profile(m, backend="onnxruntime", device="cpu", batch_size=32)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (or "module" for a submodule namespace)
_EXPORTS: dict[str, str] = {
    "Model": "workbench.model:Model",
    "TensorSpec": "workbench.model:TensorSpec",
    "Layer": "workbench.model:Layer",
    "load": "workbench.loaders:load",
    "samples": "workbench.loaders.samples",
    "devices": "workbench.cluster:devices",  # this machine's, or a Dask cluster's workers'
    "backend": "workbench.backends.base:get_backend",
    "backend_names": "workbench.backends.base:backend_names",
    "register_backend": "workbench.backends.base:register",
    "Measurement": "workbench.profiling.timer:Measurement",
    "Timer": "workbench.profiling.timer:Timer",
    "Profile": "workbench.profiling.profile:Profile",
    "profile": "workbench.profiling.run:profile",
    "TimingOptions": "workbench.profiling.measure:TimingOptions",
    "compare": "workbench.profiling.compare:compare",
    "generate_profile": "workbench.profiling.generate:generate_profile",
    "GenerationProfile": "workbench.profiling.generate:GenerationProfile",
    "genai_build": "workbench.loaders.genai:genai_build",  # onnxruntime-genai's builder, offline
    "load_genai": "workbench.loaders.genai:load_genai",  # an onnxruntime-genai model folder
    "load_optimum": "workbench.loaders.optimum:load_optimum",  # an optimum ONNX decoder folder
    "lm_quantize": "workbench.optimize.lm_quantize:lm_quantize",  # int4/int8/bf16 LM variants
    "lm_methods": "workbench.optimize.lm_quantize:lm_methods",
    "LMVariant": "workbench.optimize.lm_quantize:LMVariant",
    "lm_sensitivity": "workbench.optimize.lm_sensitivity:lm_sensitivity",  # KL per layer alone
    "lm_mixed_plan": "workbench.optimize.lm_sensitivity:lm_mixed_plan",  # under a KL budget
    "lm_layers": "workbench.optimize.lm_sensitivity:lm_layers",
    "LMSensitivity": "workbench.optimize.lm_sensitivity:LMSensitivity",
    "LMMixedPlan": "workbench.optimize.lm_sensitivity:LMMixedPlan",
    "lm_accuracy": "workbench.evaluation.lm_accuracy:lm_accuracy",  # KL, top-1, Δ perplexity
    "LMAccuracy": "workbench.evaluation.lm_accuracy:LMAccuracy",
    "lm_tradeoff": "workbench.evaluation.lm_accuracy:lm_tradeoff",  # tokens/s vs KL, Pareto
    "lm_sweep": "workbench.evaluation.lm_sweep:lm_sweep",  # the same, measured and stored
    "why_not_faster": "workbench.evaluation.lm_why:why_not_faster",  # per phase and layer
    "compare_runtimes": "workbench.cluster:compare_runtimes",  # here, or on a Dask worker
    "Runtime": "workbench.profiling.compare_runtimes:Runtime",
    "compare_backends": "workbench.evaluation.compare_backends:compare_backends",
    "BackendComparison": "workbench.evaluation.compare_backends:BackendComparison",
    "machine_ceilings": "workbench.profiling.cost:machine_ceilings",
    "cache_sweep": "workbench.profiling.cache_sweep:cache_sweep",  # embedding lookups x caches
    "CacheSweep": "workbench.profiling.cache_sweep:CacheSweep",
    "Transform": "workbench.optimize.base:Transform",
    "transform": "workbench.optimize.base:transform",
    "register_transform": "workbench.optimize.base:register",
    "quantize": "workbench.optimize.quantize:quantize",
    "prune": "workbench.optimize.prune:prune",
    "sensitivity": "workbench.optimize.sensitivity:sensitivity",
    "suggest": "workbench.optimize.sensitivity:suggest",
    "Dataset": "workbench.data:Dataset",
    "evaluate": "workbench.evaluation.metrics:evaluate",
    "sweep": "workbench.cluster:sweep",  # in process, or on a Dask cluster with cluster=
    "TradeoffTable": "workbench.evaluation.sweep:TradeoffTable",
    "runs": "workbench.store:runs",
    "scenario": "workbench.scenarios:scenario",
    "slo": "workbench.scenarios:slo",
    "batch_sweep": "workbench.scenarios:batch_sweep",
    "ScenarioResult": "workbench.scenarios:ScenarioResult",
    "SloResult": "workbench.scenarios:SloResult",
    "lm_load": "workbench.scenarios.lm_load:lm_load",
    "lm_slo": "workbench.scenarios.lm_load:lm_slo",
    "LmLoadResult": "workbench.scenarios.lm_load:LmLoadResult",
    "LmSloResult": "workbench.scenarios.lm_load:LmSloResult",
    "plan": "workbench.planning:plan",  # fleet size and 1-/3-year cost from measured SLO rates
    "import_results": "workbench.planning.records:import_results",  # measured elsewhere
    "records": "workbench.planning.records:records",  # every record, saying where measured
    "place": "workbench.planning.placement:place",  # split a model's layers over 2 processors
    "dashboard": "workbench.dashboards:dashboard",
    "report": "workbench.reports:report",  # one self-contained HTML file
    "WorkbenchError": "workbench.errors:WorkbenchError",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        # not a user error: a module's __getattr__ answers a missing name with an
        # AttributeError (hasattr, getattr with a default and star imports rely on it)
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def _report_html(obj: Any, path: Any = None) -> str:
    """``to_html`` of the result objects: the report module, imported on first use."""
    from workbench.reports import report_html

    return str(report_html(obj, path))


# the figure in each result's notebook view, drawn by workbench.viz.reprs: registered
# by name, so neither plotly nor viz loads at ``import workbench``
_REPR_FIGURES: dict[str, str] = {
    "workbench.profiling.profile:Profile": "profile_svg",
    "workbench.profiling.timer:Measurement": "measurement_svg",
    "workbench.profiling.compare:Comparison": "comparison_svg",
    "workbench.profiling.generate:GenerationProfile": "generation_svg",
    "workbench.profiling.compare_runtimes:RuntimeComparison": "runtime_comparison_svg",
    "workbench.evaluation.compare_backends:BackendComparison": "backend_comparison_svg",
    "workbench.evaluation.sweep:TradeoffTable": "tradeoff_svg",
    "workbench.optimize.sensitivity:SensitivityReport": "sensitivity_svg",
}


def _wire() -> None:
    # the result classes cannot import the report or the figures (they sit above them):
    # both are injected from here
    from workbench.numerics import register_reference
    from workbench.profiling.html_export import register_renderer
    from workbench.profiling.results import register_figure

    # the tree loaders check conversions on ONNX Runtime, a layer above them
    register_reference("workbench.backends.onnxruntime.plain:run_plain")
    register_renderer(_report_html)
    for result_class, function in _REPR_FIGURES.items():
        register_figure(result_class, f"workbench.viz.reprs:{function}")


_wire()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench``: the ``%wbprofile`` and ``%wbdevices`` magics."""
    from workbench.dashboards.magics import load_ipython_extension as load

    load(ipython)
