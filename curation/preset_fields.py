"""What every import preset is made of: the :class:`Preset` record, the registry presets add
themselves to, the field readers their ``convert`` functions share, and the generic ``pairwise``
preset. :mod:`curation.presets` is the catalogue that finds a preset by name or by columns."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from curation.errors import CuratorError
from curation.labels import parse_preference
from curation.records import Annotation, ImportedItem, Instance, validate_messages


class FieldError(ValueError):
    """A problem with one field of one record."""

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # dataset kind it produces: preference, sft, safety, eval
    description: str
    signature: tuple[str, ...]  # columns whose presence identifies the schema
    convert: Callable[[dict[str, Any]], ImportedItem]
    fields: tuple[str, ...] = ()  # the fields a --map can target, for help text and the app form
    # Fields read on the store's -2..2 scale whose integer codes could mean another scale
    # ({0,1,2} as A/B/tie...): the importer refuses them without a value map. A preset whose
    # schema fixes its own codes (PandaLM's 0/1/2, LLMBar's 1/2) reads them itself, not here.
    label_fields: tuple[str, ...] = ()
    # A column only this preset's files have (the native export's ``curator`` marker): when
    # present it decides detection, whatever other columns the file has or lacks.
    marker: str | None = None


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


def apply_mapping(record: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Rename input columns to a preset's field names (``{field: column}``).

    A mapped column is renamed, not copied: it is read as its field, and a preset that keeps
    the rest of a row as metadata does not keep a second copy of it. (A column that is itself
    the name of a mapped field, as in a swap ``response_a=response_b``, is kept as that field.)
    """
    if not mapping:
        return record
    out = dict(record)
    for target, column in mapping.items():
        if column not in record:
            raise FieldError(column, f"mapped column {column!r} (for {target}) is not in the row")
        out[target] = record[column]
    for column in set(mapping.values()) - set(mapping):
        out.pop(column, None)
    return out


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["prompt=question", ...]`` from the CLI into ``{"prompt": "question"}``."""
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise CuratorError(f"--map expects FIELD=COLUMN, got {pair!r}")
        mapping[field.strip()] = column.strip()
    return mapping


# ---- field helpers shared by the presets ----------------------------------------------------


def require(record: dict[str, Any], field: str) -> Any:
    if field not in record:
        raise FieldError(field, "missing required field")
    value = record[field]
    if value is None:
        raise FieldError(field, "is empty (null)")
    return value


def text(record: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    """A text field: required fields must be non-empty strings; numbers are not text."""
    if field not in record or record[field] is None:
        if required:
            raise FieldError(field, "missing required field")
        return None
    value = record[field]
    if not isinstance(value, str):
        raise FieldError(field, f"expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise FieldError(field, "is empty")
    return value


def reply(record: dict[str, Any], field: str) -> str:
    """A response as text. Unlike a prompt it may be empty: real preference sets hold empty
    generations, and refusing them would refuse the whole file (``--require-nonempty`` asks the
    importer to refuse them)."""
    value = require(record, field)
    if not isinstance(value, str):
        raise FieldError(field, f"expected text, got {type(value).__name__}")
    return value


def optional_text(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    if value is None or value == "":
        return None
    return str(value)


def preference(record: dict[str, Any], field: str) -> int | None:
    value = record.get(field)
    if value is None or value == "":
        return None
    try:
        return parse_preference(value)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from exc


def messages(record: dict[str, Any], field: str) -> list[dict[str, str]]:
    value = require(record, field)
    try:
        return validate_messages(value)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from exc


def split_conversation(
    field: str, conversation: list[dict[str, str]]
) -> tuple[str, list[dict[str, str]] | None]:
    """The prompt text of a conversation prefix (its last user turn) and the prefix itself.

    A single user turn is stored as plain text (``messages`` stays None) so the common case
    stays simple; longer conversations keep their messages.
    """
    users = [m for m in conversation if m["role"] == "user"]
    if not users:
        raise FieldError(field, "the conversation has no user turn")
    prompt = users[-1]["content"]
    if len(conversation) == 1:
        return prompt, None
    return prompt, conversation


def uid_of(record: dict[str, Any], *fields: str) -> str | None:
    for field in fields:
        value = record.get(field)
        if value is not None and value != "":
            return str(value)
    return None


# ---- the generic presets --------------------------------------------------------------------

PAIRWISE_LABELS = ("overall", "helpful", "harmless", "truthful")
_PAIRWISE_FIELDS = (
    "prompt",
    "response_a",
    "response_b",
    "label",
    *PAIRWISE_LABELS,
    "annotator",
    "annotator_kind",
    "model_a",
    "model_b",
    "domain",
    "source",
    "subset",
    "id",
    "uid",
)


def json_safe(value: Any) -> Any:
    """A value the store can write as JSON (dates and other objects become their text)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def rest_as_metadata(record: dict[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The columns a preset did not read, kept as metadata (nulls left out)."""
    skip = set(used)
    return {k: json_safe(v) for k, v in record.items() if k not in skip and v is not None}


def _pairwise(record: dict[str, Any]) -> ImportedItem:
    instance = Instance(
        uid=uid_of(record, "id", "uid"),
        prompt=text(record, "prompt"),
        response_a=reply(record, "response_a"),
        response_b=reply(record, "response_b"),
        model_a=optional_text(record, "model_a"),
        model_b=optional_text(record, "model_b"),
        source=optional_text(record, "source"),
        domain=optional_text(record, "domain"),
        subset=optional_text(record, "subset"),
        metadata=rest_as_metadata(record, _PAIRWISE_FIELDS),
    )
    labels = {aspect: preference(record, aspect) for aspect in PAIRWISE_LABELS}
    if labels["overall"] is None and record.get("label") not in (None, ""):
        labels["overall"] = preference(record, "label")
    annotations = []
    if any(v is not None for v in labels.values()):
        kind = optional_text(record, "annotator_kind") or "human"
        if kind not in ("human", "lm"):
            raise FieldError("annotator_kind", f"expected human or lm, got {kind!r}")
        annotations.append(
            Annotation(
                annotator_kind=kind,
                annotator=optional_text(record, "annotator") or f"imported-{kind}",
                **labels,
            )
        )
    return ImportedItem(instance, annotations)


register(
    Preset(
        name="pairwise",
        kind="preference",
        description="prompt, response_a, response_b; optional label/overall/helpful/harmless/truthful "
        "(-2..2 or 'A>B' forms), annotator, annotator_kind, model_a/b, domain, source, id",
        signature=("prompt", "response_a", "response_b"),
        convert=_pairwise,
        fields=tuple(f for f in _PAIRWISE_FIELDS if f != "uid"),
        label_fields=("label", *PAIRWISE_LABELS),
    )
)
