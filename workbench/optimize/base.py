"""Transforms: config dataclasses, their registry, and their JSON form.

A transform is a frozen dataclass (torchao style) whose fields are its settings and
whose `Transform.apply` builds a NEW `Model`; it never changes the one it is given.
Configs register under the short names users type (``"int8-static"``) with `register`;
plugins add theirs through the ``workbench.transforms`` entry-point group, loaded
lazily the first time an unknown name is looked up.

`transform` (``wb.transform``) is the one entry point; ``wb.quantize`` and ``wb.prune``
are aliases of it. The derived model's ``recipe`` is `config_to_dict` of the config;
when the input model was itself derived, the recipe also lists the earlier steps'
recipes under ``"chain"`` (oldest first), so a pruned-then-quantized model remembers
the pruning. `chain_from_dict` reads the configs back, and ``wb.transform(base, recipe)``
rebuilds the variant. A recipe written under an older config ``version`` is upgraded
through the config's ``migrations`` table, or refused with a message saying what to do.
A field renamed keeps its old keyword for one release (``renamed``), with a
`DeprecationWarning` naming the new one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

from workbench.errors import TransformError
from workbench.model import RECIPE_CHAIN

if TYPE_CHECKING:
    from workbench.model import Model

#: version of the recipe format written by `config_to_dict`
RECIPE_FORMAT = 1

#: turns a config's field values of version v into those of version v + 1
Migration: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]

#: what names a transform: a config, its registry name, or a recipe dict
ConfigSpec: TypeAlias = "Transform | str | Mapping[str, Any]"

T = TypeVar("T", bound="type[Transform]")

_REGISTRY: dict[str, type[Transform]] = {}
_BUILTIN_MODULES = (
    "workbench.optimize.quantize",
    "workbench.optimize.prune",
    "workbench.optimize.trees",
    "workbench.optimize.tree_tensors",
    "workbench.optimize.embeddings",
)
_builtins_loaded = False
_entry_points_loaded = False


@dataclasses.dataclass(frozen=True)
class Transform:
    """Base of every transform config: settings as fields, ``apply`` builds a new model.

    Subclasses are frozen dataclasses registered with `register`; they set the class
    attributes ``name`` (registry key) and ``version`` (bumped when field meanings
    change, with an entry in ``migrations`` that upgrades the previous version's field
    values) and implement `apply`. Layer lists (``exclude``) hold canonical layer names.

    Example:
        >>> @register("my-transform")
        ... @dataclasses.dataclass(frozen=True)
        ... class MyTransform(Transform):
        ...     strength: float = 1.0
        ...     def apply(self, model, data=None):
        ...         return model.derive(recipe=config_to_dict(self))
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    #: ``{v: upgrade}``: ``upgrade`` turns the field values of a version-v recipe into
    #: those of version v + 1; a stored recipe older than the chain of upgrades is refused
    migrations: ClassVar[Mapping[int, Migration]] = {}
    #: ``{old keyword: field}``: fields renamed; the old keyword still works (a
    #: DeprecationWarning names the new one) until the next release drops it
    renamed: ClassVar[Mapping[str, str]] = {}

    def label(self) -> str:
        """A short display label such as ``"int8-static(entropy)"``."""
        return self.name

    def apply(self, model: Model, data: Any = None) -> Model:
        """Build the transformed model; never changes ``model``.

        Args:
            model: the model to transform.
            data: a `Dataset` (or iterable of ``(inputs, labels)`` batches) for
                transforms that calibrate or fine-tune; ignored by the others.

        Returns:
            A new `Model` whose ``recipe`` is this config and whose ``parent`` is ``model``.
            `transform` (not this method) adds the earlier steps of a derived ``model``
            to the recipe, so call ``wb.transform`` rather than ``apply`` directly.

        Raises:
            TransformError: the config's class does not define ``apply``.
        """
        raise TransformError(
            f"{type(self).__name__} does not implement apply; a transform config defines "
            "apply(model, data=None) returning a new Model"
        )

    def with_exclude(self, layers: tuple[str, ...] | list[str]) -> Transform:
        """A copy of this config with ``exclude`` set (configs without it raise)."""
        if not any(f.name == "exclude" for f in dataclasses.fields(self)):
            raise TransformError(f"{self.name} has no per-layer exclude list")
        return dataclasses.replace(self, exclude=tuple(layers))  # type: ignore[call-arg]


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a `Transform` config under ``name``.

    Example:
        >>> @register("int8-dynamic")
        ... @dataclasses.dataclass(frozen=True)
        ... class Int8Dynamic(Transform): ...
    """

    def decorate(cls: T) -> T:
        cls.name = name
        _REGISTRY[name] = cls
        if cls.renamed:
            _keep_old_keywords(cls)
        return cls

    return decorate


def _keep_old_keywords(cls: type[Transform]) -> None:
    """Let ``cls(old=...)`` and ``config.old`` work for one more release, with a warning."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Transform, *args: Any, **fields: Any) -> None:
        init(self, *args, **_renamed_fields(cls, fields))

    cls.__init__ = __init__  # type: ignore[method-assign, assignment]
    for old, new in cls.renamed.items():

        def read(self: Transform, old: str = old, new: str = new) -> Any:
            _warn_renamed(type(self).__name__, old, new)
            return getattr(self, new)

        setattr(cls, old, property(read, doc=f"Deprecated name of ``{new}``."))


def _renamed_fields(cls: type[Transform], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with renamed keywords under their new names (warning once per keyword)."""
    for old, new in cls.renamed.items():
        if old not in fields:
            continue
        if new in fields:
            raise TransformError(f"{cls.__name__} got both {old}= and {new}=; give {new}= only")
        _warn_renamed(cls.__name__, old, new)
        fields = {(new if k == old else k): v for k, v in fields.items()}
    return fields


def _warn_renamed(owner: str, old: str, new: str) -> None:
    # point the warning at the user's line, however deep in workbench it was noticed
    package = str(Path(__file__).parents[1]) + os.sep  # as this module's own frames name it
    frame, level = inspect.currentframe(), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"{owner}: {old}= is now {new}=; {old}= stops working in the next release",
        DeprecationWarning,
        stacklevel=level,
    )


def field_added(name: str, old_value: Any) -> Migration:
    """A migration for a field new in the next version of a config.

    Args:
        name: the new field.
        old_value: the value that reproduces what recipes without the field were built
            with (not necessarily the new default).

    Example:
        >>> migrations = {1: field_added("fold_batchnorm", False)}
    """

    def upgrade(fields: dict[str, Any]) -> dict[str, Any]:
        return {name: old_value, **fields}

    return upgrade


def field_renamed(old: str, new: str) -> Migration:
    """A migration for a field renamed in the next version of a config (same meaning).

    Example:
        >>> migrations = {2: field_renamed("calibration", "method")}
    """

    def upgrade(fields: dict[str, Any]) -> dict[str, Any]:
        return {(new if k == old else k): v for k, v in fields.items()}

    return upgrade


def transform_names() -> list[str]:
    """Registry names of every known transform (built-ins and plugins)."""
    _load_all()
    return sorted(_REGISTRY)


def get_transform(name: str) -> type[Transform]:
    """The config class registered under ``name``.

    Raises:
        TransformError: unknown name; the message lists the known ones.
    """
    if name not in _REGISTRY:
        _load_all()
    if name not in _REGISTRY:
        raise TransformError(
            f"unknown transform {name!r}; known transforms: {', '.join(transform_names())}"
        )
    return _REGISTRY[name]


def make_config(config_or_name: ConfigSpec, **fields: Any) -> Transform:
    """A config from an instance, a registry name plus field values, or a recipe dict.

    Args:
        config_or_name: a `Transform`, a name such as ``"int8-static"``, or a
            single-step dict from `config_to_dict`.
        **fields: field values overriding those of the config or the defaults.

    Raises:
        TransformError: unknown name or field, or a chained recipe (use `chain_from_dict`).
    """
    if isinstance(config_or_name, Mapping):
        config_or_name = config_from_dict(config_or_name)
    if isinstance(config_or_name, Transform):
        return _replace(config_or_name, fields) if fields else config_or_name
    cls = get_transform(str(config_or_name))
    return _build(cls, fields)


def transform(
    model: Any,
    config_or_name: ConfigSpec | Sequence[ConfigSpec],
    data: Any = None,
    **fields: Any,
) -> Model:
    """Apply a transform (or a chain of them) to a model; returns a new `Model`.

    ``wb.quantize`` and ``wb.prune`` are aliases of this function. Keyword ``fields``
    always override the config's own values. Data goes in ``data``, never in a field:
    ``calibration=<a dataset>`` is refused with a message pointing at ``data=``
    (`Int8Static`'s method is ``method=``; ``calibration="minmax"`` is its old name).

    Args:
        model: a `Model` or anything `workbench.load` accepts. Never changed.
        config_or_name: a `Transform` config, its registry name, a recipe dict (a stored
            ``model.recipe``, chained or not), or a list of those applied in order.
        data: calibration or fine-tuning data (a `Dataset` or an iterable of
            ``(inputs, labels)`` batches) for the transforms that use it; a sample
            model's training split is used when omitted.
        **fields: config fields (e.g. ``sparsity=0.3``) overriding the config's.

    Returns:
        The transformed `Model`, with ``parent`` the input model and ``recipe`` the
        config, plus ``"chain"``: the recipes of the earlier steps when the input was
        itself derived (see `chain_from_dict`).

    Raises:
        TransformError: unknown transform or field, data passed as a field, fields
            given with a chain, or the transform cannot handle the model.

    Example:
        >>> q = wb.transform(wb.prune(m, sparsity=0.5), "int8-dynamic")
        >>> q.recipe_name
        'prune-magnitude(50%) → int8-dynamic'
        >>> same = wb.transform(m, q.recipe)  # rebuilds the variant from its recipe
    """
    from workbench.loaders import load

    _check_data_fields(fields)
    result = load(model)
    for config in _steps(config_or_name, fields):
        result = _chained(result, config.apply(result, data))
    return result


def config_to_dict(config: Transform, **extra: Any) -> dict[str, Any]:
    """The JSON-ready recipe of a config: name, version, label and field values.

    Args:
        config: the config.
        **extra: facts the transform adds (e.g. ``notes`` on skipped layers).

    Returns:
        ``{"name", "version", "format", "label", "config": {field: value}, **extra}``
        with tuples as lists.
    """
    values = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    recipe = {
        "name": config.name,
        "version": config.version,
        "format": RECIPE_FORMAT,
        "label": config.label(),
        "config": values,
    }
    recipe.update(extra)
    return recipe


def config_from_dict(recipe: Mapping[str, Any]) -> Transform:
    """Rebuild a config from `config_to_dict`'s output (or a stored one-step recipe).

    A recipe of an older config version is upgraded through the config's
    ``migrations``.

    Raises:
        TransformError: unknown transform name, a newer version or format than this
            workbench knows, an older version without a migration, unknown fields, or a
            chained recipe (use `chain_from_dict`).
    """
    if not isinstance(recipe, Mapping):
        raise TransformError(f"a recipe is a dict with a 'name', got {type(recipe).__name__}")
    if "name" not in recipe:
        raise TransformError(f"a recipe needs a 'name', got keys {sorted(map(str, recipe))}")
    if not isinstance(recipe["name"], str):
        raise TransformError(f"a recipe's 'name' is a transform name, got {recipe['name']!r}")
    if recipe.get(RECIPE_CHAIN):
        raise TransformError(
            f"recipe {recipe.get('label', recipe['name'])!r} is a chain of "
            f"{len(recipe[RECIPE_CHAIN]) + 1} steps; read it with chain_from_dict, or "
            "rebuild the variant with wb.transform(model, recipe)"
        )
    if _recipe_int(recipe, "format", RECIPE_FORMAT) > RECIPE_FORMAT:
        raise TransformError(
            f"recipe {recipe['name']!r} has format {recipe['format']}, newer than this "
            f"workbench's {RECIPE_FORMAT}; upgrade workbench"
        )
    cls = get_transform(recipe["name"])
    version = _recipe_int(recipe, "version", cls.version)
    config = recipe.get("config", {})
    if not isinstance(config, Mapping):
        raise TransformError(
            f"recipe {recipe['name']!r}: 'config' holds field values by name, got {config!r:.80}"
        )
    return _build(cls, _migrated(cls, version, dict(config)))


def _recipe_int(recipe: Mapping[str, Any], key: str, default: int) -> int:
    value = recipe.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TransformError(f"recipe {recipe['name']!r}: {key!r} is a whole number, got {value!r}")
    return value


def chain_to_dict(configs: Sequence[Transform]) -> dict[str, Any]:
    """The recipe of configs applied in order, as `transform` would record it.

    Args:
        configs: one or more configs, first applied first.

    Returns:
        The last config's `config_to_dict`, with the earlier ones under ``"chain"``.

    Example:
        >>> recipe_label(chain_to_dict([ChannelPrune(sparsity=0.5), Int8Static()]))
        'prune-channels(50%) → int8-static(entropy)'
    """
    if not configs:
        raise TransformError("a chain needs at least one config")
    *earlier, last = configs
    recipe = config_to_dict(last)
    if earlier:
        recipe[RECIPE_CHAIN] = [config_to_dict(c) for c in earlier]
    return recipe


def chain_from_dict(recipe: Mapping[str, Any]) -> list[Transform]:
    """The configs of a (possibly chained) recipe, first applied first.

    Raises:
        TransformError: as `config_from_dict`, for any step.
    """
    return [config_from_dict(step) for step in recipe_steps(recipe)]


def recipe_steps(recipe: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The one-step recipes a model's recipe is made of, first applied first.

    Returns:
        ``[]`` for a loaded model's ``None`` recipe; else the earlier steps under
        ``"chain"`` followed by the recipe itself without its chain.
    """
    if not recipe:
        return []
    chain = recipe.get(RECIPE_CHAIN, ())
    if not isinstance(chain, list | tuple) or not all(isinstance(s, Mapping) for s in chain):
        raise TransformError(f"a recipe's {RECIPE_CHAIN!r} is a list of recipes, got {chain!r:.80}")
    own = {k: v for k, v in recipe.items() if k != RECIPE_CHAIN}
    return [*(dict(step) for step in chain), own]


def _steps(spec: ConfigSpec | Sequence[ConfigSpec], fields: dict[str, Any]) -> list[Transform]:
    if isinstance(spec, Transform | str) or (
        isinstance(spec, Mapping) and not spec.get(RECIPE_CHAIN)
    ):
        return [make_config(spec, **fields)]
    # a chain: which step a field would override is ambiguous, so none is allowed
    if fields:
        raise TransformError(
            f"field overrides {sorted(fields)} apply to one config, not a chain; "
            "set them in the chain's configs"
        )
    if isinstance(spec, Mapping):
        return chain_from_dict(spec)
    return [make_config(step) for step in spec]


def _chained(source: Model, derived: Model) -> Model:
    """``derived`` with ``source``'s recipe recorded as the earlier steps of its own."""
    recipe = derived.recipe
    if derived is source or not source.recipe or recipe is None or RECIPE_CHAIN in recipe:
        return derived
    chain = recipe_steps(source.recipe)
    # `derived` was built just now by the transform, so nobody else holds it yet
    return dataclasses.replace(derived, recipe={**recipe, RECIPE_CHAIN: chain})


def _check_data_fields(fields: dict[str, Any]) -> None:
    # ``calibration=data`` was an old spelling; data is iterable, method names are strings
    calibration = fields.get("calibration")
    if isinstance(calibration, Iterable) and not isinstance(calibration, str):
        raise TransformError(
            "calibration data goes in data=, not calibration=; "
            "the calibration method (minmax, entropy or percentile) is method="
        )


def _migrated(cls: type[Transform], version: int, fields: dict[str, Any]) -> dict[str, Any]:
    if version > cls.version:
        raise TransformError(
            f"recipe {cls.name!r} has version {version}, newer than this workbench's "
            f"{cls.version}; upgrade workbench"
        )
    for old in range(version, cls.version):
        if old not in cls.migrations:
            raise TransformError(
                f"recipe {cls.name!r} has version {version}, which cannot be upgraded to "
                f"version {cls.version}; rebuild the variant with wb.transform(model, "
                f"{cls.name!r}, ...) and store the new recipe"
            )
        fields = cls.migrations[old](fields)
    return fields


def _build(cls: type[Transform], fields: dict[str, Any]) -> Transform:
    fields = _renamed_fields(cls, fields)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TransformError(f"{cls.name} has no field(s) {unknown}; fields are {sorted(known)}")
    for name, value in fields.items():  # a list field (exclude, layer_sparsity) gets a list
        if isinstance(known[name].default, tuple) and not isinstance(value, list | tuple):
            raise TransformError(f"{cls.name} field {name} is a list, got {value!r:.80}")
    try:
        return cls(**{k: _tupled(v) for k, v in fields.items()})
    except (TypeError, ValueError) as exc:
        raise TransformError(f"invalid {cls.name} settings {fields}: {exc}") from exc


def _replace(config: Transform, fields: dict[str, Any]) -> Transform:
    fields = _renamed_fields(type(config), fields)
    current = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return _build(type(config), {**current, **fields})


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    # JSON turns tuples into lists; configs are frozen and hashable, so turn them back
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _load_all() -> None:
    global _builtins_loaded, _entry_points_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        import importlib

        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group="workbench.transforms"):
            if ep.name in _REGISTRY:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not break the built-ins
                import warnings

                warnings.warn(f"transform plugin {ep.name!r} failed to load: {exc}", stacklevel=2)
                continue
            if isinstance(loaded, type) and issubclass(loaded, Transform):
                _REGISTRY.setdefault(ep.name, loaded)
                if not loaded.name:
                    loaded.name = ep.name
