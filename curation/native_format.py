"""The lossless record form of a dataset: one record per instance, with every label on it.

An export in this form re-imports into an identical dataset (ids and timestamps aside). Each
record has every :class:`Instance` field, an ``annotations`` list with every :class:`Annotation`
field, and a marker column named after the preset that reads it back (``curator`` for
preference data, ``curator-sft``, ``curator-safety``, ``curator-eval``) holding the format
version. Presets fix the dataset kind, and detection only sees column names, so the marker's name
is what carries the kind; no other schema has these columns, so detection never confuses them.

In JSONL, ``metadata`` and each annotation's ``reasons`` are JSON objects. Columnar files
(Parquet, HF folders) need one schema for every row, so there they are JSON text; the presets
read either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from curation.labels import SCALE
from curation.preset_fields import FieldError, Preset, register, text
from curation.records import DATASET_KINDS, Annotation, ImportedItem, Instance, validate_messages

NATIVE_VERSION = 1
INSTANCE_FIELDS = tuple(f.name for f in fields(Instance))
ANNOTATION_FIELDS = tuple(f.name for f in fields(Annotation))


def preset_name(kind: str) -> str:
    """The native preset (and marker column) for a dataset kind: ``curator``, ``curator-sft``, ..."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}")
    return "curator" if kind == "preference" else f"curator-{kind}"


MARKERS = {preset_name(kind): kind for kind in DATASET_KINDS}


def _as_instance(instance: Instance | Mapping[str, Any]) -> Instance:
    if isinstance(instance, Instance):
        return instance
    row = dict(instance)
    # Rows straight from SQLite hold JSON text; rows from Store.instance are already decoded.
    for key, empty in (("messages", None), ("metadata", {})):
        value = row.get(key)
        row[key] = json.loads(value) if isinstance(value, str) else (value or empty)
    values = {k: row[k] for k in INSTANCE_FIELDS if k in row}
    return Instance(**values)


def _as_annotation(annotation: Annotation | Mapping[str, Any]) -> Annotation:
    if isinstance(annotation, Annotation):
        return annotation
    row = dict(annotation)
    for key in ("reasons", "probs"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    values = {k: row[k] for k in ANNOTATION_FIELDS if k in row}
    values["reasons"] = values.get("reasons") or {}
    return Annotation(**values)


def instance_record(
    instance: Instance | Mapping[str, Any],
    annotations: Iterable[Annotation | Mapping[str, Any]] = (),
    *,
    kind: str = "preference",
) -> dict[str, Any]:
    """The native record of one instance and its labels (JSON-ready; dict columns as dicts).

    ``instance`` may be an :class:`Instance` or a store row; ``annotations`` Annotation objects
    or store rows (their ids and ``instance_id`` are dropped: the record is its own instance).
    """
    # Shallow field copies, not dataclasses.asdict: asdict deep-copies every value, which was
    # most of the time of a 100,000-instance export; the record is serialised, not kept.
    inst = _as_instance(instance)
    record: dict[str, Any] = {preset_name(kind): NATIVE_VERSION}
    record.update((name, getattr(inst, name)) for name in INSTANCE_FIELDS)
    record["annotations"] = [
        {name: getattr(ann, name) for name in ANNOTATION_FIELDS}
        for ann in map(_as_annotation, annotations)
    ]
    return record


def columnar_record(record: dict[str, Any]) -> dict[str, Any]:
    """A native record with its free-form dict columns as JSON text, for :func:`arrow_schema`."""
    out = dict(record)
    out["metadata"] = _dumps(record.get("metadata") or {})
    out["annotations"] = [
        {**a, "reasons": _dumps(a.get("reasons") or {})} for a in record.get("annotations") or []
    ]
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def arrow_schema(kind: str) -> Any:
    """The Arrow schema of :func:`columnar_record` rows (Parquet and HF exports)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    annotation = pa.struct(
        [
            ("annotator_kind", pa.string()),
            ("annotator", pa.string()),
            ("overall", pa.int8()),
            ("helpful", pa.int8()),
            ("harmless", pa.int8()),
            ("truthful", pa.int8()),
            ("confidence", pa.float64()),
            ("confidence_level", pa.string()),
            ("reasons", pa.string()),
            ("justification", pa.string()),
            ("probs", pa.list_(pa.float64())),
            ("model", pa.string()),
            ("template_hash", pa.string()),
            ("time_spent_s", pa.float64()),
            ("status", pa.string()),
            ("origin", pa.string()),
            ("created_at", pa.string()),
        ]
    )
    columns = {name: pa.string() for name in INSTANCE_FIELDS}
    columns.update(messages=pa.list_(message), gold=pa.int8())
    return pa.schema(
        [(preset_name(kind), pa.int32())]
        + list(columns.items())
        + [("annotations", pa.list_(annotation))]
    )


# ---- reading records back (the presets) ------------------------------------------------------


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FieldError(field, f"invalid JSON text: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise FieldError(field, f"expected an object, got {type(value).__name__}")
    return value


def _optional(record: Mapping[str, Any], field: str, types: tuple[type, ...]) -> Any:
    value = record.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise FieldError(field, f"expected {types[0].__name__}, got {type(value).__name__}")
    return value


def _annotation(raw: Any, index: int) -> Annotation:
    where = f"annotations[{index}]"
    if not isinstance(raw, Mapping):
        raise FieldError(where, "expected an object")
    unknown = set(raw) - set(ANNOTATION_FIELDS)
    if unknown:
        raise FieldError(where, f"unknown fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in ANNOTATION_FIELDS:
        if name == "reasons":
            values[name] = _json_object(raw.get(name), f"{where}.reasons")
        elif name == "probs":
            probs = raw.get(name)
            if probs is not None and (
                not isinstance(probs, list) or not all(isinstance(p, int | float) for p in probs)
            ):
                raise FieldError(f"{where}.probs", "expected a list of numbers")
            values[name] = None if probs is None else [float(p) for p in probs]
        elif name in ("overall", "helpful", "harmless", "truthful"):
            values[name] = _optional(raw, name, (int,))
        elif name in ("confidence", "time_spent_s"):
            number = _optional(raw, name, (int, float))
            values[name] = None if number is None else float(number)
        elif name in ("status", "origin"):
            if raw.get(name) is not None:
                values[name] = _optional(raw, name, (str,))
        else:
            values[name] = _optional(raw, name, (str,))
    if not values.get("annotator_kind") or not values.get("annotator"):
        raise FieldError(where, "needs annotator_kind and annotator")
    return Annotation(**values)


def _converter(kind: str):
    marker = preset_name(kind)

    def convert(record: dict[str, Any]) -> ImportedItem:
        if marker not in record:
            other = next((m for m in MARKERS if m in record), None)
            if other:
                raise FieldError(
                    other,
                    f"this is a native {MARKERS[other]} export: import it with preset {other}",
                )
            raise FieldError(marker, "missing: not a native Hybrid Curator export")
        version = record[marker]
        if version != NATIVE_VERSION:
            raise FieldError(marker, f"native format version {version!r} is not {NATIVE_VERSION}")
        conversation = record.get("messages")
        if conversation is not None:
            try:
                conversation = validate_messages(conversation)
            except ValueError as exc:
                raise FieldError("messages", str(exc)) from exc
        gold = _optional(record, "gold", (int,))
        if gold is not None and gold not in SCALE:
            raise FieldError("gold", f"{gold} is outside -2..2")
        strings = {
            name: _optional(record, name, (str,))
            for name in (
                "response_a",
                "response_b",
                "model_a",
                "model_b",
                "source",
                "domain",
                "subset",
            )
        }
        instance = Instance(
            uid=text(record, "uid"),
            prompt=text(record, "prompt", required=True),
            messages=conversation,
            gold=gold,
            metadata=_json_object(record.get("metadata"), "metadata"),
            **strings,
        )
        raw = record.get("annotations") or []
        if not isinstance(raw, list):
            raise FieldError("annotations", "expected a list of labels")
        return ImportedItem(instance, [_annotation(a, i) for i, a in enumerate(raw)])

    return convert


for _kind in DATASET_KINDS:
    _name = preset_name(_kind)
    register(
        Preset(
            name=_name,
            kind=_kind,
            description=f"Hybrid Curator's lossless export of a {_kind} dataset (every instance "
            "field and every label); written by `curator export --shape native`",
            signature=(_name, *INSTANCE_FIELDS, "annotations"),
            convert=_converter(_kind),
            fields=(*INSTANCE_FIELDS, "annotations"),
            marker=_name,
        )
    )
