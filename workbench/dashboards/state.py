"""The dashboard's one state: what is picked, what was measured, what is selected.

`AppState` is a plain `param.Parameterized` (no UI library), so tests drive it by
setting parameters and read the results back. Every page watches it; moving a picker
re-profiles on the session's worker thread, or shows the cached result at once when
that combination was measured before.
"""

from __future__ import annotations

from typing import Any

import param

from workbench.dashboards import actions
from workbench.dashboards.cache import RESULTS
from workbench.dashboards.jobs import Jobs
from workbench.model import Model
from workbench.profiling.profile import Profile

#: profiles a session keeps for Compare (older ones stay in the results store)
MAX_HISTORY = 50


def _backends() -> dict[str, list[str]]:
    """Backends with at least one device here -> their devices."""
    from workbench.backends.base import backend_names, get_backend

    available = {}
    for name in backend_names():
        try:
            devices = list(get_backend(name).devices())
        except Exception:  # a broken plugin must not take the dashboard down
            continue
        if devices:
            available[name] = devices
    return available


class AppState(param.Parameterized):
    """Pickers, measured profiles and the shared selection of one dashboard session.

    Example:
        >>> state = AppState(model="digits-mlp")
        >>> state.batch_size = 16         # profiles on the worker thread
        >>> state.jobs.wait(); state.current.latency.median
    """

    model_name = param.Selector(default=None, objects=[], doc="model: a sample or an upload")
    backend = param.Selector(default="onnxruntime", objects=["onnxruntime"], doc="backend")
    device = param.Selector(default="cpu", objects=["cpu"], doc="device of the backend")
    batch_size = param.Integer(default=8, bounds=(1, 4096), doc="batch size profiled")
    per_layer = param.Boolean(default=True, doc="also profile each layer")
    auto = param.Boolean(default=True, doc="profile as soon as a picker changes")
    current = param.ClassSelector(class_=Profile, default=None, doc="profile of the pickers")
    history = param.List(default=[], item_type=Profile, doc="profiles of this session")
    shown = param.List(default=[], doc="run ids shown on the Compare page")
    baseline = param.String(default=None, allow_None=True, doc="run id of the pinned baseline")
    selected_layer = param.String(default=None, allow_None=True, doc="the layer selected")
    color_by = param.Selector(default="op_type", objects=["op_type", "block"], doc="bar colours")
    order = param.Selector(default="time", objects=["time", "graph"], doc="layer order")

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        store: Any = None,
        jobs: Jobs | None = None,
        budget_s: float = 0.5,
        start: bool = True,
        **params: Any,
    ) -> None:
        self.jobs = jobs or Jobs()
        self.store = store
        self.budget_s = budget_s
        self.models: dict[str, Model] = {}
        self._backends = _backends()
        super().__init__(**params)
        self.param.backend.objects = sorted(self._backends) or ["onnxruntime"]
        self._set_devices()
        names = actions.sample_names()
        self.param.model_name.objects = names
        if isinstance(model, Model):
            self.add_model(model, select=False)
        name = model.name if isinstance(model, Model) else model
        self.model_name = name or ("digits-cnn" if "digits-cnn" in names else names[0])
        self.param.watch(self._set_devices, "backend")
        self.param.watch(
            self._pickers_changed, ["model_name", "backend", "device", "batch_size", "per_layer"]
        )
        if self.auto and start:
            self.request_profile()

    # ---- models -------------------------------------------------------------------------
    def add_model(self, model: Model, *, key: str | None = None, select: bool = True) -> str:
        """Offer ``model`` in the model picker under ``key`` (default its name); select it."""
        name = key or model.name
        self.models[name] = model
        objects = list(self.param.model_name.objects)
        if name not in objects:
            self.param.model_name.objects = [*objects, name]
        if select:
            self.model_name = name
        return name

    def model(self) -> Model:
        """The picked model (a sample is loaded on first use)."""
        if self.model_name in self.models:
            return self.models[self.model_name]
        return actions.load_sample(self.model_name)

    # ---- profiling ----------------------------------------------------------------------
    def _set_devices(self, *_: Any) -> None:
        devices = self._backends.get(self.backend, ["cpu"])
        self.param.device.objects = devices
        if self.device not in devices:
            self.device = devices[0]

    def _pickers_changed(self, *_: Any) -> None:
        if self.auto:
            self.request_profile()

    def request_profile(self) -> None:
        """Show the pickers' profile: from the cache before returning, else measured off-thread."""
        model = self.model()
        args = (model, self.backend, self.device, self.batch_size)
        cached = RESULTS.get(actions.profile_key(*args, self.per_layer))
        if cached is not None:
            self.jobs.cancel()  # a job still measuring an older pick is stale now
            self.show(cached)
            return
        self.jobs.submit(
            f"profiling {model.name} on {self.backend}/{self.device}, batch {self.batch_size}",
            lambda progress, cancel: actions.measure_profile(
                *args,
                layers=self.per_layer,
                budget_s=self.budget_s,
                store=self.store,
                progress=progress,
                cancel=cancel,
            ),
            self.show,
        )

    def show(self, profile: Profile) -> None:
        """Make ``profile`` the current one and remember it in the session's history."""
        if all(p.run_id != profile.run_id for p in self.history):
            # bounded, so a long session cannot grow without limit (the store keeps all)
            self.history = [*self.history, profile][-MAX_HISTORY:]
        self.current = profile

    def profile_by_id(self, run_id: str) -> Profile | None:
        """A profile of this session's history by run id."""
        return next((p for p in self.history if p.run_id == run_id), None)
