"""A Streamlit form section built from a config dataclass: one input per field, with its help.

A config dataclass (a trainer's, :mod:`training.config`) feeds the CLI's options, the job spec and
this form through :mod:`curation.configs`, so a setting is declared once. Field types are str,
int, float, bool, their ``| None`` forms and ``tuple[str, ...]``; an optional field left empty is
None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from curation.configs import ConfigField, config_fields

NONE_CHOICE = "(none)"


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _step(default: float) -> float:
    """A step of the default's own order of magnitude (1e-5 for a learning rate of 5e-5)."""
    if not default or not math.isfinite(default):
        return 0.01
    return 10.0 ** math.floor(math.log10(abs(default)))


def _field_widget(
    spec: ConfigField, key: str, choices: Sequence[str] | None, format_choice: Any
) -> Any:
    label, help_text = _label(spec.name), spec.help or None
    if choices is not None:
        options = list(choices)
        if spec.kind is tuple:
            default = [c for c in (spec.default or ()) if c in options]
            return tuple(st.multiselect(label, options, default, help=help_text, key=key))
        if spec.optional:
            options = [NONE_CHOICE, *options]
        index = options.index(spec.default) if spec.default in options else 0
        chosen = st.selectbox(
            label, options, index, help=help_text, key=key, format_func=format_choice or str
        )
        return None if chosen == NONE_CHOICE else chosen
    if spec.kind is bool:
        return st.checkbox(label, bool(spec.default), help=help_text, key=key)
    if spec.kind is int:
        return st.number_input(label, value=spec.default, step=1, help=help_text, key=key)
    if spec.kind is float:
        value = None if spec.default is None else float(spec.default)
        return st.number_input(
            label, value=value, step=_step(value or 0.0), format="%g", help=help_text, key=key
        )
    if spec.kind is tuple:
        text = st.text_area(
            label, "\n".join(spec.default or ()), help=f"{spec.help} One per line.", key=key
        )
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    text = st.text_input(label, spec.default or "", help=help_text, key=key)
    return text.strip() or (None if spec.optional else "")


def config_inputs(
    config_cls: type,
    *,
    key: str,
    choices: Mapping[str, Sequence[str]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    format_choice: Mapping[str, Any] | None = None,
    primary: Sequence[str] = (),
    columns: int = 3,
) -> dict[str, Any]:
    """Inputs for every field of ``config_cls`` (inside the caller's ``st.form``); returns the
    values by field name, ready for ``curation.configs.build_config(config_cls, values)``.

    ``choices`` turns a field into a select box (with "(none)" when optional), ``format_choice``
    labels its options, ``defaults`` replaces the dataclass's defaults; ``primary`` fields come first and the rest fold into "More settings".
    Widget keys are ``{key}_{field name}``.
    """
    choices = choices or {}
    format_choice = format_choice or {}
    specs = [
        dataclasses.replace(s, default=defaults[s.name]) if defaults and s.name in defaults else s
        for s in config_fields(config_cls)
    ]
    first = [s for s in specs if s.name in primary] if primary else specs
    rest = [s for s in specs if s.name not in primary] if primary else []
    values: dict[str, Any] = {}

    def grid(group: list[ConfigField]) -> None:
        cells = st.columns(columns)
        for i, spec in enumerate(group):
            with cells[i % columns]:
                values[spec.name] = _field_widget(
                    spec,
                    f"{key}_{spec.name}",
                    choices.get(spec.name, spec.choices),
                    format_choice.get(spec.name),
                )

    grid(first)
    if rest:
        with st.expander("More settings"):
            grid(rest)
    return values
