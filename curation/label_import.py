"""Attach labels from a file to pairs already in a dataset (Argilla's suggestions, Label
Studio's predictions): a judge's verdicts, a second team's annotations, a gold column.

Each row is matched to a stored pair by id, or by the content of its prompt and responses.
A row whose A and B are swapped relative to the stored pair is recognised (by content, or by
its responses under a matching id) and its labels are flipped. The same annotator labelling
the same pair again updates that label, so running an import twice changes nothing. Like an
import, it is all or nothing unless the user asks to skip bad rows: every row that matches
nothing, is ambiguous or holds no label is reported with its file and line.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError, ImportFailed, Problem
from curation.labels import ASPECTS, CONFIDENCE_LEVELS, flip
from curation.preset_fields import FieldError, apply_mapping, optional_text, preference, uid_of
from curation.readers import RowError, open_source
from curation.records import ANNOTATOR_KINDS, Annotation
from curation.store import Store
from curation.value_maps import ScaleWatch, ValueMaps, apply_value_maps, check_label_targets

MATCH_MODES = ("id", "content")
LABEL_FIELDS = ("label", *ASPECTS)
MAX_LISTED_PROBLEMS = 50


@dataclass
class LabelImportOptions:
    """Which dataset the labels belong to and how to read them.

    ``annotator`` and ``kind`` name who labelled every row; when absent they come from the
    row's ``annotator`` / ``annotator_kind`` columns, else ``imported-<kind>`` and ``human``.
    """

    dataset: str
    match: str = "id"
    annotator: str | None = None
    kind: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    values: ValueMaps = field(default_factory=dict)
    skip_bad: bool = False
    format: str | None = None
    split: str | None = None


@dataclass
class LabelImportReport:
    """What a labels import did: matched rows (``flipped`` of them with A and B swapped), and
    labels added or updated (an annotator's earlier label on the same pair)."""

    dataset: str
    file: str
    matched: int = 0
    flipped: int = 0
    labels_added: int = 0
    labels_updated: int = 0
    unmatched: list[Problem] = field(default_factory=list)
    unmatched_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "file": self.file,
            "matched": self.matched,
            "flipped": self.flipped,
            "labels_added": self.labels_added,
            "labels_updated": self.labels_updated,
            "unmatched": [
                {"line": p.line, "field": p.field, "message": p.message} for p in self.unmatched
            ],
            "unmatched_count": self.unmatched_count,
        }


def content_key(prompt: str, response_a: str, response_b: str) -> str:
    """A pair's identity by content: surrounding whitespace is not content."""
    joined = "\x1f".join(part.strip() for part in (prompt, response_a, response_b))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Pair:
    instance_id: int
    uid: str
    prompt: str
    response_a: str
    response_b: str


class _PairIndex:
    """The dataset's pairs by id and by content (both orders), to match rows against."""

    def __init__(self, store: Store, dataset: str):
        self.by_uid: dict[str, _Pair] = {}
        self.by_content: dict[str, list[_Pair]] = {}
        for instance_id, inst in store.iter_instances(dataset):
            pair = _Pair(
                instance_id,
                str(inst.uid),
                inst.prompt,
                inst.response_a or "",
                inst.response_b or "",
            )
            self.by_uid[pair.uid] = pair
            key = content_key(pair.prompt, pair.response_a, pair.response_b)
            self.by_content.setdefault(key, []).append(pair)

    def match(self, row: dict[str, Any], how: str) -> tuple[_Pair, bool]:
        """The stored pair a row labels, and whether its A and B are swapped."""
        if how == "id":
            uid = uid_of(row, "id", "uid")
            if uid is None:
                raise FieldError("id", "missing: rows are matched by id (or use --match content)")
            pair = self.by_uid.get(uid)
            if pair is None:
                raise FieldError("id", f"no pair with id {uid!r} in the dataset")
            return pair, self._swapped_by_responses(row, pair)
        prompt, a, b = (_text(row, name) for name in ("prompt", "response_a", "response_b"))
        same = self.by_content.get(content_key(prompt, a, b), [])
        swapped = self.by_content.get(content_key(prompt, b, a), [])
        if a.strip() == b.strip():
            swapped = []  # identical responses: the order cannot be told, and does not matter
        found = [(p, False) for p in same] + [(p, True) for p in swapped]
        if not found:
            raise FieldError(None, "no pair in the dataset has this prompt and these responses")
        if len(found) > 1:
            ids = ", ".join(repr(p.uid) for p, _ in found[:5])
            raise FieldError(
                None, f"the content matches {len(found)} pairs ({ids}): use --match id"
            )
        return found[0]

    @staticmethod
    def _swapped_by_responses(row: dict[str, Any], pair: _Pair) -> bool:
        """Under an id match, responses in the row (when given) must be the stored ones."""
        if row.get("response_a") in (None, "") and row.get("response_b") in (None, ""):
            return False
        a, b = _text(row, "response_a"), _text(row, "response_b")
        stored = (pair.response_a.strip(), pair.response_b.strip())
        if (a.strip(), b.strip()) == stored:
            return False
        if (b.strip(), a.strip()) == stored:
            return True
        raise FieldError("response_a", f"the responses differ from those of pair {pair.uid!r}")


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise FieldError(name, "missing: rows are matched by prompt and responses")
    return value


def row_annotation(row: dict[str, Any], opts: LabelImportOptions) -> Annotation:
    """The label a row carries, on the store's scale, before any flip."""
    labels = {aspect: preference(row, aspect) for aspect in ASPECTS}
    if labels["overall"] is None:
        labels["overall"] = preference(row, "label")
    if all(v is None for v in labels.values()):
        raise FieldError("label", "the row holds no label (label, overall, helpful, ...)")
    kind = opts.kind or optional_text(row, "annotator_kind") or "human"
    if kind not in ANNOTATOR_KINDS:
        raise FieldError("annotator_kind", f"expected one of {ANNOTATOR_KINDS}, got {kind!r}")
    annotation = Annotation(
        annotator_kind=kind,
        annotator=opts.annotator or optional_text(row, "annotator") or f"imported-{kind}",
        origin="import",
        justification=optional_text(row, "justification") or optional_text(row, "rationale"),
        model=optional_text(row, "model") if kind == "lm" else None,
        **labels,
    )
    confidence = row.get("confidence")
    if confidence not in (None, ""):
        if isinstance(confidence, str) and confidence.strip().lower() in CONFIDENCE_LEVELS:
            annotation.confidence_level = confidence.strip().lower()
        else:
            try:
                annotation.confidence = float(confidence)
            except (TypeError, ValueError):
                raise FieldError(
                    "confidence", f"expected a probability, got {confidence!r}"
                ) from None
    try:
        annotation.validate()
    except ValueError as exc:
        raise FieldError(None, str(exc)) from exc
    return annotation


def flipped(annotation: Annotation) -> Annotation:
    """The same judgement of the pair with A and B swapped back."""
    for aspect in ASPECTS:
        value = getattr(annotation, aspect)
        if value is not None:
            setattr(annotation, aspect, flip(value))
    if annotation.probs:
        annotation.probs = list(reversed(annotation.probs))
    return annotation


def import_labels(
    store: Store, path: str | os.PathLike, options: LabelImportOptions
) -> LabelImportReport:
    """Attach the labels of a file to a dataset's pairs, in one transaction."""
    opts = options
    if opts.match not in MATCH_MODES:
        raise CuratorError(f"--match must be one of {', '.join(MATCH_MODES)}, not {opts.match!r}")
    if opts.kind is not None and opts.kind not in ANNOTATOR_KINDS:
        raise CuratorError(f"--kind must be one of {', '.join(ANNOTATOR_KINDS)}")
    dataset = store.dataset(opts.dataset)
    if dataset["kind"] != "preference":
        raise CuratorError(
            f"dataset {opts.dataset!r} holds {dataset['kind']} data; labels attach to preference pairs"
        )
    check_label_targets(opts.values, LABEL_FIELDS)
    source = open_source(path, opts.format, split=opts.split)
    name = Path(source.name).name if source.format != "hub" else source.name
    report = LabelImportReport(dataset=opts.dataset, file=source.name)
    index = _PairIndex(store, opts.dataset)
    scales = ScaleWatch(
        fields=tuple(f for f in LABEL_FIELDS if f not in opts.values), columns=dict(opts.mapping)
    )
    problems: list[Problem] = []
    labelled: list[tuple[int, Annotation]] = []
    first_line: dict[tuple[int, str, str], int] = {}

    def note(problem: Problem) -> None:
        report.unmatched_count += 1
        if len(problems) < MAX_LISTED_PROBLEMS:
            problems.append(problem)

    for line, record in source.records:
        if isinstance(record, RowError):
            note(Problem(name, record.line, None, record.message))
            continue
        try:
            row = apply_value_maps(apply_mapping(record, opts.mapping), opts.values)
            scales.see(row)
            pair, swapped = index.match(row, opts.match)
            annotation = row_annotation(row, opts)
        except FieldError as exc:
            note(Problem(name, line, exc.field, exc.message))
            continue
        key = (pair.instance_id, annotation.annotator_kind, annotation.annotator)
        if key in first_line:
            note(
                Problem(
                    name,
                    line,
                    None,
                    f"a second label by {annotation.annotator!r} on pair {pair.uid!r} "
                    f"(first on line {first_line[key]})",
                )
            )
            continue
        first_line[key] = line
        labelled.append((pair.instance_id, flipped(annotation) if swapped else annotation))
        report.flipped += swapped

    refusals = scales.ambiguous()
    if refusals:
        raise ImportFailed([Problem(name, None, None, message) for message in refusals])
    if report.unmatched_count and not opts.skip_bad:
        raise ImportFailed(problems, truncated=report.unmatched_count - len(problems))
    if not labelled:
        raise ImportFailed(problems or [Problem(name, None, None, "no labels in the input")])
    report.matched = len(labelled)
    existing = store.existing_annotations(first_line)
    report.labels_updated = len(existing)
    report.labels_added = len(labelled) - len(existing)
    store.add_annotations(labelled)
    report.unmatched = problems
    return report
