"""Tree ensembles in: scikit-learn, XGBoost and LightGBM models as ONNX-ML `Model` objects.

A tree model becomes an ordinary ONNX `Model` (``ai.onnx.ml`` ``TreeEnsemble*`` nodes)
so that every path built for forward models (profile, compare, store, sweeps, the
dashboard) works on it unchanged. Conversion goes through skl2onnx (scikit-learn) and
onnxmltools (XGBoost, LightGBM); the converter versions are recorded in
``model.metadata["trees"]``, and the converted graph's outputs are checked against the
library's own predict on the given data (or on rows drawn around the trees' own
thresholds) before the model is returned. The library object stays in
``model.metadata["native"]`` for the ``native`` backend.

Nodes are labelled with the stage they belong to (`STAGES`): ``preprocess`` (what feeds
the trees, e.g. a pipeline's scaler), ``ensemble`` (the ``TreeEnsemble*`` nodes) and
``post-transform`` (what follows them). A ZipMap (a list of dicts, which no tensor
runtime returns) is removed so the probabilities come out as a tensor.

Files that run no code load without trust: XGBoost ``.json`` / ``.ubj``, LightGBM
text models, and skops files (``.skops``) whose every type is on `SKOPS_TRUSTED` or on
skops's own audited list. Pickles (``.pkl``, ``.joblib``) run their author's code and load
only with ``trust=True`` (see `workbench.loaders.trust`), as does a skops file naming any
other type.

Example:
    >>> clf = RandomForestClassifier(20, max_depth=4).fit(x, y)
    >>> m = wb.load(clf, example_inputs=x[:256])
    >>> m.metadata["trees"]["converter"]
    {'skl2onnx': '1.20.0', 'onnx': '1.23.2'}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.tree_graph import TREE_OPS, TreeArrays
from workbench.loaders.trust import MAX_MODEL_BYTES, OPT_IN, open_zip, refuse_code
from workbench.model import Model, set_layer_name, to_numpy

if TYPE_CHECKING:
    import onnx

Task = Literal["classifier", "regressor", "anomaly"]

#: canonical layers of a tree model, in execution order
STAGES = ("preprocess", "ensemble", "post-transform")
#: the converted model's single input
INPUT = "input"
#: libraries whose objects `from_estimator` takes (the root of the object's module)
LIBRARIES = ("sklearn", "xgboost", "lightgbm")
#: file suffixes `load_tree_file` reads
TREE_SUFFIXES = frozenset({".json", ".ubj", ".txt", ".lgb", ".skops", ".pkl", ".pickle", ".joblib"})
_PICKLES = frozenset({".pkl", ".pickle", ".joblib"})
#: types a skops file may need beyond those skops itself trusts (scikit-learn estimators,
#: numpy arrays, builtin containers): the tree libraries' own model types, whose state is
#: data (node arrays, a booster's serialised model) and which run no code of the file's
#: author when restored. Any other type (a function, a class of the author's) needs trust.
SKOPS_TRUSTED = frozenset(
    {
        "collections.OrderedDict",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRFClassifier",
        "xgboost.sklearn.XGBRFRegressor",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
    }
)
#: oldest LightGBM whose model-file parser may read an untrusted file (CVE-2024-43598:
#: a crafted model file ran code in lightgbm up to 4.5.0)
SAFE_LIGHTGBM = (4, 6)
#: rows drawn around the trees' thresholds when no data is given for the check
PROBE_ROWS = 512
# default-domain opset each converter writes (onnxmltools' tree converters stop at 15)
_SKL2ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
_ONNXMLTOOLS_OPSET = 15
_INSTALL = "pip install 'inference-workbench[trees]'"


@dataclass(frozen=True)
class Native:
    """A tree library's model and how to call its own predict like the ONNX graph.

    Attributes:
        library: ``"sklearn"``, ``"xgboost"`` or ``"lightgbm"``.
        estimator: the library object (never changed).
        task: ``"classifier"``, ``"regressor"`` or ``"anomaly"`` (an outlier detector).
        n_features: number of input columns.
        predict: ``predict(x)`` on a float32 ``(N, n_features)`` array -> the outputs in
            the converted graph's order (label and probabilities; a prediction; label
            and score), each a numpy array.
    """

    library: str
    estimator: Any
    task: Task
    n_features: int
    predict: Callable[[np.ndarray], list[np.ndarray]]


def is_tree_object(obj: Any) -> bool:
    """Whether ``obj`` comes from scikit-learn, XGBoost or LightGBM (by its module)."""
    return type(obj).__module__.split(".")[0] in LIBRARIES


def from_estimator(
    estimator: Any, *, data: Any = None, name: str | None = None, check: bool = True
) -> Model:
    """Convert a fitted tree model to an ONNX `Model`, checked against its own predict.

    Args:
        estimator: a fitted scikit-learn estimator or pipeline, an XGBoost or LightGBM
            booster or sklearn-style wrapper. It is never changed.
        data: feature rows ``(N, n_features)`` to check the conversion on (a few hundred
            rows are plenty); None draws `PROBE_ROWS` rows around the trees' thresholds.
        name: display name (default: the estimator's class name).
        check: compare the converted graph with the library's predict (default True).

    Returns:
        An ONNX `Model` with input ``input`` float32 ``(batch, n_features)``; its
        ``metadata["trees"]`` holds the library, estimator, task, converter versions and
        the check's largest difference, and ``metadata["native"]`` the `Native` adapter.

    Raises:
        ModelLoadError: the trees extra is missing, the model is not fitted, the
            converter refuses it (its message is quoted), or the converted graph
            disagrees with the library (the line gives the largest difference).

    Example:
        >>> m = wb.load(xgb.XGBClassifier(n_estimators=20).fit(x, y), example_inputs=x)
    """
    native = native_of(estimator)
    proto, versions = _convert(native)
    proto = _tidy(proto)
    from workbench.loaders.onnx import load_onnx

    model = load_onnx(proto.SerializeToString(), name=name or type(estimator).__name__)
    model.source = f"{native.library}:{type(estimator).__name__}"
    facts: dict[str, Any] = {
        "library": native.library,
        "library_version": str(_import(native.library).__version__),
        "estimator": type(estimator).__name__,
        "task": native.task,
        "n_features": native.n_features,
        "converter": versions,
    }
    if check:
        rows = _rows(data, native.n_features) if data is not None else probe_rows(model)
        facts["check"] = check_against_native(model, native, rows)
    model.metadata["trees"] = facts
    model.metadata["native"] = native
    return model


def load_tree_file(
    path: Path,
    *,
    data: Any = None,
    name: str | None = None,
    trust: bool = False,
    max_bytes: int | None = MAX_MODEL_BYTES,
) -> Model:
    """Load an XGBoost (``.json``, ``.ubj``), LightGBM (text), skops or pickled tree model.

    Args:
        path: the model file.
        data: feature rows to check the conversion on (see `from_estimator`).
        name: display name (default: the file's stem).
        trust: allow pickles (``.pkl``, ``.pickle``, ``.joblib``), which run code, and
            skops files naming types outside `SKOPS_TRUSTED`.
        max_bytes: most bytes a skops archive's entries may expand to (None: no limit).

    Returns:
        An ONNX `Model` (see `from_estimator`), with ``source`` the path.

    Raises:
        UnsafeModelError: a pickle, or a skops file needing untrusted types, without
            ``trust=True``.
        ModelLoadError: the file is not a model of the library its suffix names.

    Example:
        >>> m = wb.load("forest.skops")   # sklearn's trees: no trust needed
    """
    suffix = path.suffix.lower()
    if suffix == ".skops":
        estimator = _load_skops(path, trust, max_bytes)
    elif suffix in _PICKLES:
        if not trust:
            raise refuse_code(path, "is a pickle")
        import joblib

        estimator = joblib.load(path)
    elif suffix in (".json", ".ubj"):
        xgb = _import("xgboost")
        try:
            estimator = xgb.Booster(model_file=str(path))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(
                f"{path} is not an XGBoost model file: {_first_line(exc)}"
            ) from exc
    else:
        lgb = _import("lightgbm")
        if not path.read_bytes()[:64].lstrip().startswith(b"tree"):
            raise ModelLoadError(
                f"{path} is not a LightGBM text model (it should start with 'tree'); "
                "save one with booster.save_model(path)"
            )
        if not trust:
            _check_lightgbm(path)
        estimator = lgb.Booster(model_file=str(path))
    model = from_estimator(estimator, data=data, name=name or path.stem)
    model.source = str(path)
    return model


def _load_skops(path: Path, trust: bool, max_bytes: int | None) -> Any:
    """The object in a skops file, restored only from types workbench trusts (or ``trust``).

    skops reads the archive's schema without creating anything; the types it would need
    beyond its own audited list are checked before any object is built.
    """
    import io

    sio = _import("skops.io")
    data = path.read_bytes()
    open_zip(data, str(path), max_bytes, untrusted=not trust).close()  # bounded before skops
    try:
        needed = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises anything on a damaged archive or schema
        raise ModelLoadError(f"{path} is not a readable skops file: {_first_line(exc)}") from exc
    refused = sorted(set(needed) - SKOPS_TRUSTED)
    if not trust and any(t.startswith("lightgbm.") for t in needed):
        _check_lightgbm(path)  # a booster is restored by LightGBM's model-file parser
    if refused and not trust:
        shown = ", ".join(t[:80] for t in refused[:6]) + (" …" if len(refused) > 6 else "")
        raise UnsafeModelError(
            f"{path} is a skops file that needs types workbench does not trust ({shown}); "
            f"restoring them could run code; {OPT_IN}"
        )
    try:
        return sio.load(io.BytesIO(data), trusted=list(needed))
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable skops file: {_first_line(exc)}") from exc


def native_of(estimator: Any) -> Native:
    """The `Native` adapter of a fitted tree model.

    Raises:
        ModelLoadError: not a model of a known library, or not fitted.
    """
    library = type(estimator).__module__.split(".")[0]
    if library == "xgboost":
        return _xgboost(estimator)
    if library == "lightgbm":
        return _lightgbm(estimator)
    if library == "sklearn":
        return _sklearn(estimator)
    raise ModelLoadError(
        f"cannot load a {type(estimator).__name__} as a tree model: pass a scikit-learn, "
        "XGBoost or LightGBM model"
    )


def check_against_native(model: Model, native: Native, rows: np.ndarray) -> dict[str, Any]:
    """Compare the ONNX graph (run by ONNX Runtime) with the library on ``rows``.

    Float outputs must agree within the float32 model tolerance; labels are not compared
    on their own (they follow from the scores, and flip only where a score is a tie).

    Returns:
        ``{"rows": N, "max_abs_diff": d}`` (plain data, for the model's metadata).

    Raises:
        ModelLoadError: one line naming the output, the largest difference and its row.
    """
    from workbench.tolerances import tolerance

    ours = run_onnx(model, rows)
    theirs = native.predict(rows)
    tol = tolerance("float32", "model")
    worst = 0.0
    for spec, got, want in zip(model.outputs, ours, theirs, strict=True):
        if not np.issubdtype(got.dtype, np.floating):
            continue
        got64 = got.astype(np.float64).reshape(len(rows), -1)
        want64 = np.asarray(want, dtype=np.float64).reshape(len(rows), -1)
        diff = np.abs(got64 - want64)
        worst = max(worst, float(diff.max(initial=0.0)))
        bad = diff > tol.atol + tol.rtol * np.abs(want64)
        if bad.any():
            row = int(np.argwhere(bad)[np.argmax(diff[bad])][0])
            raise ModelLoadError(
                f"the ONNX conversion of {model.name!r} disagrees with {native.library}'s own "
                f"predict on output {spec.name!r}: largest difference {diff.max():.3g} at row "
                f"{row} of {len(rows)} (tolerance {tol.atol} + {tol.rtol}x); the converter "
                "may not support an option of this model; pass check=False to load it anyway"
            )
    return {"rows": len(rows), "max_abs_diff": worst}


def run_onnx(model: Model, rows: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs on ``rows`` through ONNX Runtime (the reference runtime).

    ONNX Runtime is asked through `workbench.numerics`, which the package root wires to
    the backend package: loaders sit below backends.
    """
    from workbench.numerics import reference_outputs

    return [np.asarray(out) for out in reference_outputs(model.onnx_bytes, {INPUT: rows})]


def probe_rows(model: Model, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows whose features fall on both sides of the trees' thresholds, for checks.

    Each feature is drawn uniformly between its smallest and largest threshold, widened
    on each side by a tenth of that span plus a twentieth of the thresholds' magnitude, so
    every branch of every split can be taken. The widening also keeps a feature with one
    threshold from being drawn onto that threshold's float32 rounding, where a library
    comparing in float64 (LightGBM) and the float32 graph legitimately part ways.
    Features no tree splits on are 0.

    Returns:
        float32 ``(rows, n_features)``.
    """
    n_features = int(model.inputs[0].shape[1])
    low = np.full(n_features, np.inf)
    high = np.full(n_features, -np.inf)
    for trees in ensembles(model.to_onnx().proto):  # type: ignore[arg-type]
        split = trees.feature >= 0
        np.minimum.at(low, trees.feature[split], trees.threshold[split])
        np.maximum.at(high, trees.feature[split], trees.threshold[split])
    used = np.isfinite(low)
    low, high = np.where(used, low, 0.0), np.where(used, high, 0.0)
    margin = 0.1 * (high - low) + 0.05 * np.maximum(np.abs(low), np.abs(high)) + 1e-3 * used
    rng = np.random.default_rng(seed)
    return rng.uniform(low - margin, high + margin, (rows, n_features)).astype(np.float32)


def to_opset5(model: Model) -> Model:
    """``model`` with each legacy ``TreeEnsembleRegressor`` as an opset-5 ``TreeEnsemble``.

    A new `Model` (the given one is not changed); see `tree_graph.opset5_node` for which
    regressors the newer op can hold.

    Raises:
        UnsupportedModelError: a classifier, or trees the newer op cannot hold.
    """
    import onnx

    from workbench.errors import UnsupportedModelError
    from workbench.loaders.onnx import load_onnx
    from workbench.loaders.tree_graph import opset5_node

    proto = onnx.ModelProto.FromString(model.onnx_bytes)
    for i, node in enumerate(proto.graph.node):
        if node.op_type == "TreeEnsembleClassifier":
            raise UnsupportedModelError(
                "the opset-5 TreeEnsemble op has no class labels: only regressors move to it"
            )
        if node.op_type == "TreeEnsembleRegressor":
            new = opset5_node(ensemble_of(node), node.name, list(node.input), list(node.output))
            new.metadata_props.extend(node.metadata_props)
            proto.graph.node[i].CopyFrom(new)
    for entry in proto.opset_import:
        if entry.domain == "ai.onnx.ml":
            entry.version = 5
    proto.ir_version = max(proto.ir_version, 10)  # ml opset 5 needs IR 10
    new_model = load_onnx(proto.SerializeToString(), name=model.name)
    new_model.source, new_model.metadata = model.source, dict(model.metadata)
    new_model.metadata.pop("native", None)
    return new_model


def ensembles(proto: onnx.ModelProto) -> Iterator[TreeArrays]:
    """Every tree-ensemble node of ``proto``'s main graph, in graph order."""
    for node in proto.graph.node:
        if node.op_type in TREE_OPS and node.domain == "ai.onnx.ml":
            yield ensemble_of(node)


def ensemble_of(node: onnx.NodeProto | Any) -> TreeArrays:
    """The `TreeArrays` of one ensemble node (an ``onnx.NodeProto``).

    Raises:
        UnsupportedModelError: string class labels, set-membership splits or a node id
            that no tree lists (a malformed graph).
    """
    from workbench.loaders.onnx import node_attributes
    from workbench.loaders.tree_graph import ensemble_from_attrs

    return ensemble_from_attrs(node.op_type, node_attributes(node))


def stage_of(proto: onnx.ModelProto) -> dict[str, str]:
    """The stage (`STAGES`) of every node of a tree graph, by node name.

    Nodes that feed a tree node are ``preprocess``, tree nodes ``ensemble``, and the
    rest ``post-transform``.
    """
    nodes = list(proto.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    feeding: set[str] = set()
    stack = [i for node in nodes if node.op_type in TREE_OPS for i in node.input]
    while stack:
        value = stack.pop()
        node = producer.get(value)
        if node is not None and node.name not in feeding:
            feeding.add(node.name)
            stack.extend(node.input)
    stages = {}
    for node in nodes:
        if node.op_type in TREE_OPS:
            stages[node.name] = "ensemble"
        else:
            stages[node.name] = "preprocess" if node.name in feeding else "post-transform"
    return stages


# ---- per library -------------------------------------------------------------------
def _sklearn(estimator: Any) -> Native:
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError) as exc:
        raise ModelLoadError(
            f"{type(estimator).__name__} is not fitted: call fit before loading it"
        ) from exc
    n = int(getattr(estimator, "n_features_in_", 0))
    if is_classifier(estimator):
        return Native("sklearn", estimator, "classifier", n, _classify(estimator))
    if is_outlier_detector(estimator):

        def anomaly(x: np.ndarray) -> list[np.ndarray]:
            return [estimator.predict(x), estimator.decision_function(x)]

        return Native("sklearn", estimator, "anomaly", n, anomaly)
    if is_regressor(estimator):
        return Native("sklearn", estimator, "regressor", n, lambda x: [estimator.predict(x)])
    raise ModelLoadError(
        f"{type(estimator).__name__} is neither a classifier, a regressor nor an outlier "
        "detector; workbench loads tree models of those three kinds"
    )


def _classify(estimator: Any) -> Callable[[np.ndarray], list[np.ndarray]]:
    def predict(x: np.ndarray) -> list[np.ndarray]:
        proba = np.asarray(estimator.predict_proba(x))
        return [np.asarray(estimator.classes_)[proba.argmax(axis=1)], proba]

    return predict


def _xgboost(estimator: Any) -> Native:
    xgb = _import("xgboost")
    if isinstance(estimator, xgb.XGBModel):
        try:
            booster = estimator.get_booster()
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"{type(estimator).__name__} is not fitted: {exc}") from exc
        if isinstance(estimator, xgb.XGBClassifier):
            return Native("xgboost", estimator, "classifier", booster.num_features(),
                          _classify(estimator))  # fmt: skip
        return Native(
            "xgboost", estimator, "regressor", booster.num_features(),
            lambda x: [estimator.predict(x)],
        )  # fmt: skip
    config = json.loads(estimator.save_config())
    objective = str(config["learner"]["objective"]["name"])
    n = estimator.num_features()

    def predict(x: np.ndarray) -> list[np.ndarray]:
        return [estimator.inplace_predict(x)]

    if objective.startswith(("binary:", "multi:")):
        return Native("xgboost", estimator, "classifier", n, _probabilities(predict))
    return Native("xgboost", estimator, "regressor", n, predict)


def _lightgbm(estimator: Any) -> Native:
    lgb = _import("lightgbm")
    if isinstance(estimator, lgb.LGBMModel):
        if not getattr(estimator, "fitted_", False):
            raise ModelLoadError(f"{type(estimator).__name__} is not fitted: call fit first")
        n = int(estimator.n_features_in_)
        if isinstance(estimator, lgb.LGBMClassifier):
            return Native("lightgbm", estimator, "classifier", n, _classify(estimator))
        return Native("lightgbm", estimator, "regressor", n, lambda x: [estimator.predict(x)])
    objective = str(estimator.dump_model(num_iteration=1).get("objective", ""))
    n = estimator.num_feature()

    def predict(x: np.ndarray) -> list[np.ndarray]:
        return [estimator.predict(x)]

    if objective.startswith(("binary", "multiclass", "multiclassova")):
        return Native("lightgbm", estimator, "classifier", n, _probabilities(predict))
    return Native("lightgbm", estimator, "regressor", n, predict)


def _probabilities(
    predict: Callable[[np.ndarray], list[np.ndarray]],
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A booster's probabilities (one column for binary) as label and ``(N, C)``."""

    def classify(x: np.ndarray) -> list[np.ndarray]:
        (p,) = predict(x)
        proba = np.stack([1 - p, p], axis=1) if p.ndim == 1 else p
        return [proba.argmax(axis=1).astype(np.int64), proba]

    return classify


def _convert(native: Native) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Convert with the library's converter; the versions used are returned with it."""
    n = native.n_features
    try:
        if native.library == "sklearn":
            skl2onnx = _import("skl2onnx")
            proto = skl2onnx.to_onnx(
                native.estimator,
                initial_types=[(INPUT, skl2onnx.common.data_types.FloatTensorType([None, n]))],
                target_opset=_SKL2ONNX_OPSET,
                options={"zipmap": False} if native.task == "classifier" else None,
            )
            versions = {"skl2onnx": skl2onnx.__version__}
        else:
            onnxmltools = _import("onnxmltools")
            from onnxmltools.convert.common.data_types import FloatTensorType

            convert = getattr(onnxmltools, f"convert_{native.library}")
            kwargs = {"zipmap": False} if native.library == "lightgbm" else {}
            proto = convert(
                native.estimator,
                # the converters' default graph name is a random uuid: the model's
                # fingerprint (treelite's library cache key) must not change by process
                name=type(native.estimator).__name__,
                initial_types=[(INPUT, FloatTensorType([None, n]))],
                target_opset=_ONNXMLTOOLS_OPSET,
                **kwargs,
            )
            versions = {"onnxmltools": onnxmltools.__version__}
    except ModelLoadError:
        raise
    except Exception as exc:  # converters raise anything; the user needs their message
        raise ModelLoadError(
            f"cannot convert {type(native.estimator).__name__} to ONNX: {_first_line(exc)}"
        ) from exc
    import onnx

    return proto, {**versions, "onnx": onnx.__version__}


def _tidy(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop a trailing ZipMap (its input becomes the output) and label stages, on a copy."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        source, target = node.input[0], node.output[0]
        graph.node.remove(node)
        for i, out in enumerate(graph.output):
            if out.name == target:
                graph.output.remove(out)
                graph.output.insert(
                    i, helper.make_tensor_value_info(source, TensorProto.FLOAT, [None, None])
                )
    for out in graph.output:  # converters write wrong sizes (ORT warns); inference redoes them
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            dim.dim_param = "batch" if i == 0 else f"d{i}"
    for i, node in enumerate(graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    stages = stage_of(proto)
    for node in graph.node:
        set_layer_name(node, stages[node.name])
    return proto


def _rows(data: Any, n_features: int) -> np.ndarray:
    rows = to_numpy(getattr(data, "values", data))
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ModelLoadError(
            f"data to check the conversion on should be (rows, {n_features}), got shape "
            f"{list(rows.shape)}"
        )
    return np.ascontiguousarray(rows, dtype=np.float32)


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(f"{module} is not installed ({exc}); {_INSTALL}") from exc


def _check_lightgbm(path: Path) -> None:
    """Refuse an untrusted LightGBM model where the installed parser can run code from it."""
    lgb = _import("lightgbm")
    if _version(lgb.__version__) < SAFE_LIGHTGBM:
        raise UnsafeModelError(
            f"{path} holds a LightGBM model and lightgbm {lgb.__version__} can run code from "
            f"a crafted model (CVE-2024-43598, fixed in 4.6.0): pip install 'lightgbm>=4.6', "
            f"or {OPT_IN}"
        )


def _version(text: str) -> tuple[int, ...]:
    """A release's leading numbers: ``"4.6.0"`` -> ``(4, 6, 0)``, ``"4.6rc1"`` -> ``(4,)``."""
    numbers = []
    for part in text.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
