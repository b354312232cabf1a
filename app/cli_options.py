"""A command's options from a config dataclass: one ``--option`` per field, plus ``--config``.

``@config_command(FeatureConfig)`` gives a typer command every (flattened) field of the config
as an option, with its help and default, and ``--config FILE.yaml`` as TRL's ``TrlParser`` does:
values from the file, overridden by options given on the command line. The command receives
them as ``settings`` (:class:`ConfigSettings`) and builds its config with ``settings.build()``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from curation.configs import build_config, config_fields, load_config_file

CONFIG_FILE_HELP = "YAML file of settings (field names as keys); options given here win."
_FILE_PARAM = "config_file"
_CTX_PARAM = "config_ctx"
_UNSET = ("DEFAULT", "DEFAULT_MAP")  # click's sources of a value nobody gave


@dataclass
class ConfigSettings:
    """The settings a command was given: from ``--config``'s file, then the command line."""

    config_cls: type
    values: dict[str, Any]

    def build(self, **defaults: Any) -> Any:
        """The config; ``defaults`` are the command's own, which given settings override."""
        return build_config(self.config_cls, {**defaults, **self.values})


def config_parameters(
    config_cls: type, *, exclude: tuple[str, ...] = (), computed: tuple[str, ...] = ()
) -> list[inspect.Parameter]:
    """One keyword parameter per field, annotated as a typer option; ``computed`` fields show no
    default, as the command decides it."""
    params = []
    for f in config_fields(config_cls, exclude=exclude):
        kind = list[str] if f.kind is tuple else f.kind
        default = (list(f.default) or None) if isinstance(f.default, tuple) else f.default
        option = typer.Option(f.flag, help=f.help, show_default=f.name not in computed)
        optional = f.optional or f.kind is tuple
        annotation = Annotated[kind | None if optional else kind, option]
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params


def config_command(
    config_cls: type, *, exclude: tuple[str, ...] = (), computed: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command whose ``settings`` parameter takes the config's options."""
    names = [f.name for f in config_fields(config_cls, exclude=exclude)]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation), kind=p.KEYWORD_ONLY)
            for p in inspect.signature(command).parameters.values()
            if p.name != "settings"
        ]
        file_option = typer.Option("--config", help=CONFIG_FILE_HELP, show_default=False)
        extra = [
            inspect.Parameter(
                _FILE_PARAM,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Path | None, file_option],
            ),
            inspect.Parameter(_CTX_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        ]
        params = own + config_parameters(config_cls, exclude=exclude, computed=computed) + extra

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            ctx, path = kwargs.pop(_CTX_PARAM), kwargs.pop(_FILE_PARAM)
            given = {n: kwargs.pop(n) for n in names}
            values = load_config_file(config_cls, path, exclude=exclude) if path else {}
            values.update(
                {n: v for n, v in given.items() if ctx.get_parameter_source(n).name not in _UNSET}
            )
            return command(**kwargs, settings=ConfigSettings(config_cls, values))

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
