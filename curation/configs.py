"""Config dataclasses as front ends see them: their fields, flattened, and back to an instance.

A config dataclass declares each setting once, with ``metadata["help"]`` (and optionally
``metadata["choices"]``, or ``metadata["cli"]`` for a CLI option name kept from before). The CLI
(``app.cli_options``), the app's forms (``app.config_form``) and YAML config files all read it
through :func:`config_fields` and write it through :func:`build_config`, as TRL's ``TrlParser``
does. Field types are str, int, float, bool, their ``| None`` forms, ``tuple[str, ...]``, and
nested config dataclasses, whose fields are flattened into their parent's.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from curation.errors import CuratorError

T = TypeVar("T")
KINDS = (str, int, float, bool, tuple)


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One config field as a front end renders it (a CLI option, a form input)."""

    name: str  # unique among the flattened fields of its config
    kind: type  # str, int, float, bool or tuple (of str)
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None  # options the field declares (metadata["choices"])
    path: tuple[str, ...] = ()  # attributes from the top config to the field
    cli: str | None = None  # the option's declaration where it differs from --kebab-name

    @property
    def flag(self) -> str:
        """The CLI declaration: ``--kebab-name``, ``--x/--no-x`` for a bool, or ``metadata["cli"]``."""
        if self.cli:
            return self.cli
        flag = "--" + self.name.replace("_", "-")
        return f"{flag}/--no-{flag[2:]}" if self.kind is bool else flag


def _nested(hint: Any) -> type | None:
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_fields(config_cls: type, *, exclude: tuple[str, ...] = ()) -> list[ConfigField]:
    """The fields of a config dataclass in declaration order, a nested config's fields in its
    place; ``exclude`` names fields a front end fixes itself."""
    out: list[ConfigField] = []
    _collect(config_cls, (), None, out)
    names = [f.name for f in out]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TypeError(
            f"{config_cls.__name__}: nested configs share the field(s) {', '.join(clashes)}; "
            "rename one or give it metadata['cli'] and a distinct name"
        )
    return [f for f in out if f.name not in exclude]


def _collect(config_cls: type, path: tuple[str, ...], instance: Any, out: list) -> None:
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        hint, optional = hints[f.name], False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional, hint = len(args) < len(typing.get_args(hint)), args[0]
        nested = _nested(hint)
        if nested is not None:
            inner = getattr(instance, f.name) if instance is not None else _default(f)
            _collect(nested, (*path, f.name), inner, out)
            continue
        kind = tuple if typing.get_origin(hint) is tuple else hint
        if kind not in KINDS:
            raise TypeError(f"{config_cls.__name__}.{f.name}: {hint} is not a config field type")
        # A nested config's defaults are those of the instance its parent makes by default.
        default = getattr(instance, f.name) if instance is not None else _default(f)
        declared = f.metadata.get("choices")
        out.append(
            ConfigField(
                f.name,
                kind,
                optional,
                default,
                f.metadata.get("help", ""),
                tuple(declared) if declared else None,
                (*path, f.name),
                f.metadata.get("cli"),
            )
        )


def _coerce(spec: ConfigField, value: Any, where: str) -> Any:
    """A value from a file or form as its field's type; a wrong type is the user's error."""
    if value is None and spec.optional:
        return None
    if spec.kind is tuple:
        value = (value,) if isinstance(value, str) else value
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif spec.kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif spec.kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, spec.kind):
        return value
    wanted = "a list of strings" if spec.kind is tuple else spec.kind.__name__
    raise CuratorError(f"{where}: {spec.name} must be {wanted}, not {value!r}")


def config_values(
    config_cls: type, data: Mapping[str, Any], *, source: str, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Flat values by field name from a mapping (a YAML file's): flat keys, or a nested
    config's own mapping under its field's name; an unknown key names ``source`` and the key."""
    specs = {f.name: f for f in config_fields(config_cls, exclude=exclude)}
    nested = {f.path[0] for f in specs.values() if len(f.path) > 1}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in nested and isinstance(value, Mapping):
            inner = dict(value)
            prefix = {f.name for f in specs.values() if len(f.path) > 1 and f.path[0] == name}
            unknown = sorted(str(k) for k in inner if str(k).replace("-", "_") not in prefix)
            if unknown:
                raise CuratorError(
                    f"{source}: {config_cls.__name__} has no setting {name}.{unknown[0]}"
                )
            values.update(config_values(config_cls, inner, source=source, exclude=exclude))
            continue
        if name not in specs:
            raise CuratorError(
                f"{source}: {config_cls.__name__} has no setting {key!r} "
                f"(known: {', '.join(specs)})"
            )
        values[name] = _coerce(specs[name], value, source)
    return values


def load_config_file(
    config_cls: type, path: Path, *, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The settings a YAML file gives, by field name (``--config FILE.yaml``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CuratorError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CuratorError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise CuratorError(f"{path}: a config file maps setting names to values")
    return config_values(config_cls, data, source=str(path), exclude=exclude)


def build_config(config_cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance from flat values by field name (the rest keep their defaults), nested configs
    rebuilt from their fields; ``validate()`` runs where the class has it."""
    return _build(config_cls, (), config_fields(config_cls), values)


def _build(
    config_cls: type[T], path: tuple, specs: list[ConfigField], values: Mapping, base: Any = None
) -> T:
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        nested = _nested(hints[f.name])
        if nested is not None:
            inner = [s for s in specs if s.path[: len(path) + 1] == (*path, f.name)]
            if any(s.name in values for s in inner):
                # what is not given keeps the parent's default (its default_factory's values)
                default = getattr(base, f.name) if base is not None else _default(f)
                kwargs[f.name] = _build(nested, (*path, f.name), inner, values, default)
        elif f.name in values:
            value = values[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    config = dataclasses.replace(base, **kwargs) if base is not None else config_cls(**kwargs)
    validate = getattr(config, "validate", None)
    return validate() if callable(validate) and not path else config
