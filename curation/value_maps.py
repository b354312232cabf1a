"""Value maps, and the label columns that cannot be read without one.

Other tools write preference labels as small integers with their own meaning: 0/1/2 for
"first better / second better / tie", 1/2 for "response 1 / response 2". Read on the store's
-2..2 scale those codes turn "first better" into a tie and nobody notices. So a label column
whose integer codes all fall in 0..3 is refused unless the user says what they mean with a
value map (``--values label:0=A,1=B,2=tie``), which rewrites the raw codes before the preset
reads them. Value maps work on any mapped field (``--values annotator_kind:gpt4=lm``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from curation.errors import CuratorError
from curation.labels import parse_preference
from curation.preset_fields import FieldError

# {field: {raw code as text: the value the preset reads}}
ValueMaps = dict[str, dict[str, str]]

# Codes of another tool's scale: all non-negative and at most 3 (0/1/2, 1/2, 1/2/3).
_AMBIGUOUS_MAX = 3


def _key(value: Any) -> str:
    """The text a raw code is matched by: ``2``, ``2.0`` and ``"2"`` are the same code."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_value_maps(specs: Iterable[str]) -> ValueMaps:
    """``["label:0=A,1=B,2=tie"]`` from the CLI into ``{"label": {"0": "A", ...}}``."""
    maps: ValueMaps = {}
    for spec in specs:
        name, sep, body = spec.partition(":")
        if not sep or not name.strip() or not body.strip():
            raise CuratorError(f"--values expects FIELD:CODE=VALUE,CODE=VALUE, got {spec!r}")
        codes: dict[str, str] = {}
        for pair in body.split(","):
            code, eq, value = pair.partition("=")
            if not eq or not code.strip():
                raise CuratorError(f"--values {spec!r}: expected CODE=VALUE, got {pair!r}")
            if code.strip() in codes:
                raise CuratorError(f"--values {spec!r}: code {code.strip()!r} is mapped twice")
            codes[code.strip()] = value.strip()
        if name.strip() in maps:
            raise CuratorError(f"--values: field {name.strip()!r} has two maps")
        maps[name.strip()] = codes
    return maps


def check_label_targets(maps: ValueMaps, label_fields: Iterable[str]) -> None:
    """Refuse a map onto a label field whose values are not labels, before any row is read."""
    for name in set(maps) & set(label_fields):
        for code, value in maps[name].items():
            try:
                parse_preference(value)
            except ValueError:
                raise CuratorError(
                    f"--values {name}: {code}={value!r} is not a preference "
                    "(use A, B, tie, A>B, B>A or -2..2)"
                ) from None


def apply_value_maps(record: dict[str, Any], maps: ValueMaps) -> dict[str, Any]:
    """The record with mapped fields' codes rewritten; a code outside its map is an error."""
    if not maps:
        return record
    out = dict(record)
    for name, codes in maps.items():
        value = record.get(name)
        if value is None or value == "":
            continue
        key = _key(value)
        if key not in codes:
            raise FieldError(
                name, f"value {value!r} is not in its --values map ({', '.join(codes)})"
            )
        out[name] = codes[key]
    return out


@dataclass
class ScaleWatch:
    """Watches the raw codes of label fields across a file, to refuse another tool's scale.

    Only a column of integer codes can be ambiguous; the first code that is text, negative,
    fractional or above 3 settles it, so the watch holds at most four codes per field.
    """

    fields: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)  # field -> the file's column name
    codes: dict[str, set[int]] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)

    def see(self, record: dict[str, Any]) -> None:
        for name in self.fields:
            if name in self.settled:
                continue
            value = record.get(name)
            if value is None or value == "":
                continue
            code = _integer_code(value)
            if code is None or not 0 <= code <= _AMBIGUOUS_MAX:
                self.settled.add(name)
                self.codes.pop(name, None)
            else:
                self.codes.setdefault(name, set()).add(code)

    def ambiguous(self) -> list[str]:
        """One message per label field whose codes could mean another scale."""
        return [self._message(name, sorted(codes)) for name, codes in self.codes.items()]

    def _message(self, name: str, codes: list[int]) -> str:
        column = self.columns.get(name, name)
        read_as = "" if column == name else f" (read as {name})"
        guesses = likely_maps(codes)
        return (
            f"column {column!r}{read_as} holds only the codes "
            f"{{{', '.join(map(str, codes))}}}, which could be another tool's scale rather than "
            f"-2..2 (where 0 is a tie and 1 is B slightly better); say what they mean with "
            + " or ".join(f"--values {name}:{g}" for g in guesses)
        )


def _integer_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return None


def likely_maps(codes: list[int]) -> list[str]:
    """Two common meanings of a set of small codes, written as --values bodies."""
    low = 0 if 0 in codes else 1
    if max(codes, default=low) - low >= 2:  # three codes: A, B and a tie, in two orders
        return [f"{low}=A,{low + 1}=B,{low + 2}=tie", f"{low}=tie,{low + 1}=A,{low + 2}=B"]
    return [f"{low}=A,{low + 1}=B", f"{low}=B,{low + 1}=A"]
