"""Presets: how each known schema maps onto instances and annotations; this module finds one by
name or by a file's columns, :mod:`curation.preset_fields` holds what presets are made of.

A preset is data plus one pure function: ``convert(record) -> ImportedItem``. It raises
:class:`FieldError` naming the input field that is missing or wrong; the importer adds file and
line. ``signature`` columns let the importer recognise a schema when the user names no preset.
Unknown schemas go through the ``pairwise`` (or ``sft`` / ``safety``) preset with a column
mapping (``--map prompt=question``).
"""

from __future__ import annotations

# Importing these registers their presets, after the generic ones of preset_fields.
from curation import native_format, preset_llmbar, preset_schemas  # noqa: F401
from curation.errors import CuratorError
from curation.preset_fields import PRESETS, Preset

__all__ = ["PRESETS", "detect_preset", "get_preset"]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; CuratorError naming the presets there are."""
    if name not in PRESETS:
        raise CuratorError(f"no preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def detect_preset(columns: set[str]) -> Preset | None:
    """The preset whose marker column is present, else the most specific one whose signature
    columns are all present."""
    marked = [p for p in PRESETS.values() if p.marker and p.marker in columns]
    if marked:
        return marked[0]
    matches = [p for p in PRESETS.values() if p.signature and set(p.signature) <= columns]
    return max(matches, key=lambda p: len(p.signature), default=None)
