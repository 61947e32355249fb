"""Transforms: config dataclasses, their registry, and their JSON form.

A transform is a frozen dataclass (torchao style) whose fields are its settings and
whose `Transform.apply` builds a NEW `Model`; it never changes the one it is given.
Configs register under the short names users type (``"int8-static"``) with `register`;
plugins add theirs through the ``workbench.transforms`` entry-point group, loaded
lazily the first time an unknown name is looked up. The derived model's ``recipe`` is
`config_to_dict` of the config, so any variant can be rebuilt from a stored result
with `config_from_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from workbench.errors import TransformError

if TYPE_CHECKING:
    from workbench.model import Model

#: version of the recipe format written by `config_to_dict`
RECIPE_FORMAT = 1

T = TypeVar("T", bound="type[Transform]")

_REGISTRY: dict[str, type[Transform]] = {}
_BUILTIN_MODULES = ("workbench.optimize.quantize", "workbench.optimize.prune")
_builtins_loaded = False
_entry_points_loaded = False


@dataclasses.dataclass(frozen=True)
class Transform:
    """Base of every transform config: settings as fields, ``apply`` builds a new model.

    Subclasses are frozen dataclasses registered with `register`; they set the class
    attributes ``name`` (registry key) and ``version`` (bumped when field meanings
    change) and implement `apply`. Layer lists (``exclude``) hold canonical layer names.

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
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement apply")

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
        return cls

    return decorate


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


def make_config(config_or_name: Transform | str | dict[str, Any], **fields: Any) -> Transform:
    """A config from an instance, a registry name plus field values, or a recipe dict.

    Args:
        config_or_name: a `Transform`, a name such as ``"int8-static"``, or a dict from
            `config_to_dict`.
        **fields: field values overriding those of the config or the defaults.

    Raises:
        TransformError: unknown name or field.
    """
    if isinstance(config_or_name, dict):
        config_or_name = config_from_dict(config_or_name)
    if isinstance(config_or_name, Transform):
        return _replace(config_or_name, fields) if fields else config_or_name
    cls = get_transform(str(config_or_name))
    return _build(cls, fields)


def apply(
    model: Any, config_or_name: Transform | str | dict[str, Any], data: Any = None, **fields: Any
) -> Model:
    """Apply a transform to a model; returns a new `Model` (``wb.transform``).

    Args:
        model: a `Model` or anything `workbench.load` accepts. Never changed.
        config_or_name: a `Transform` config, its registry name, or a recipe dict.
        data: calibration or fine-tuning data for transforms that use it.
        **fields: config fields (e.g. ``sparsity=0.5``) overriding the config's.

    Returns:
        The transformed `Model`, with ``recipe`` set and ``parent`` the input model.

    Raises:
        TransformError: unknown transform or field, or the transform cannot handle the model.

    Example:
        >>> q = wb.transform(m, "int8-dynamic")
        >>> q.recipe["label"]
        'int8-dynamic'
    """
    from workbench.loaders import load

    config = make_config(config_or_name, **fields)
    return config.apply(load(model), data)


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


def config_from_dict(recipe: dict[str, Any]) -> Transform:
    """Rebuild a config from `config_to_dict`'s output (or a stored recipe).

    Raises:
        TransformError: unknown transform name, a newer version than this workbench
            knows, or unknown fields.
    """
    if "name" not in recipe:
        raise TransformError(f"a recipe needs a 'name', got keys {sorted(recipe)}")
    cls = get_transform(recipe["name"])
    version = int(recipe.get("version", cls.version))
    if version > cls.version:
        raise TransformError(
            f"recipe {recipe['name']!r} has version {version}, newer than this workbench's "
            f"{cls.version}; upgrade workbench"
        )
    return _build(cls, dict(recipe.get("config", {})))


def _build(cls: type[Transform], fields: dict[str, Any]) -> Transform:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TransformError(f"{cls.name} has no field(s) {unknown}; fields are {sorted(known)}")
    try:
        return cls(**{k: _tupled(v) for k, v in fields.items()})
    except (TypeError, ValueError) as exc:
        raise TransformError(f"invalid {cls.name} settings {fields}: {exc}") from exc


def _replace(config: Transform, fields: dict[str, Any]) -> Transform:
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
