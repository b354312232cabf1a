"""Mixtures: SFT, safety and preference training sets specified as data, built reproducibly,
stored as versions, compared and exported.

A spec (YAML or JSON) follows open-instruct's ``dataset_mixer``: per source a fraction (a number
with a decimal point; above 1.0 upsamples) or an absolute count, a seed and filters, optionally
in stages (a mixture per training stage, as OLMo 2's late annealing mix). Building a spec reads
the workspace's datasets, removes duplicates (:mod:`curation.dedup`) and eval overlaps
(:mod:`curation.decontam`), draws the rows and writes a version folder
``mixtures/<name>-v<version>/``:

- ``data.jsonl``: one row per example, the canonical bytes the content hash covers. SFT and safety
  rows are ``{"messages": [{"role", "content"}...], "source", "instance_id"}`` (safety mixtures
  add ``"safety_type"``, null on their general rows); preference rows are ``{"prompt",
  "messages" (the conversation, or null), "chosen", "rejected", "source", "instance_id"}``.
  Stages follow each other in the file; ``manifest["stages"]`` gives each one's row range.
- ``manifest.json``: sources, counts drawn, seed, filters, dedup and decontamination reports and
  the content hash (also stored in the ``mixtures`` table);
- ``hf/``: the same rows as a saved Hugging Face dataset;
- ``reports/``: every dropped duplicate and every eval overlap, one JSON object a line.

The same spec over the same data rebuilds the same bytes: pools are read in instance order,
every draw has its own seed derived from the spec's seed, and rows are serialised canonically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from curation.decontam import (
    DecontamConfig,
    PromptSet,
    decontaminate,
    load_prompt_set,
    user_text,
)
from curation.dedup import DedupConfig, find_duplicates
from curation.errors import CuratorError, Problem
from curation.safety import SAFETY_TYPES, SafetySpec, safety_count, safety_type_of, split_count
from curation.store import InstanceFilter, Store

KINDS = ("sft", "safety", "preference")
LABEL_SOURCES = ("hybrid", "human", "lm")
SLIGHT = ("collapse", "drop")
FORMATS = ("jsonl", "parquet", "hf")
DEFAULT_STAGE = "main"
DATA_FILE = "data.jsonl"
MANIFEST_FILE = "manifest.json"
HF_DIR = "hf"
MANIFEST_EXAMPLES = 200  # dropped rows and matches listed in the manifest; reports/ has all
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The dataset kinds each mixture kind can draw its (general) sources from.
SOURCE_KINDS = {
    "sft": ("sft", "safety"),
    "safety": ("sft", "safety"),
    "preference": ("preference",),
}

Progress = Callable[[str, float], None]


# ---- the spec --------------------------------------------------------------------------------


@dataclass
class SourceSpec:
    """One source of a stage: a dataset (narrowed by ``where``) and how much of it to draw."""

    name: str
    dataset: str
    fraction: float | None = None
    count: int | None = None
    where: str = ""
    path: str = ""  # where the source sits in the spec file, for error messages

    @property
    def amount(self) -> str:
        return f"{self.count} rows" if self.count is not None else f"fraction {self.fraction:g}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset}
        if self.count is not None:
            out["count"] = self.count
        else:
            out["fraction"] = self.fraction
        if self.where:
            out["where"] = self.where
        return out


@dataclass
class StageSpec:
    """A mixture for one training stage."""

    name: str
    sources: list[SourceSpec]
    safety: SafetySpec | None = None
    safety_path: str = "safety"  # where its safety block sits in the spec file

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "sources": {s.name: s.to_dict() for s in self.sources},
        }
        if self.safety is not None:
            out["safety"] = self.safety.to_dict()
        return out


@dataclass
class PreferenceSpec:
    """How preference labels become prompt/chosen/rejected rows (the hybrid labels)."""

    labels: str = field(
        default="hybrid",
        metadata={"help": "hybrid: the human majority where people labelled the pair, the LM "
                          "judge otherwise; human or lm: that side only."},
    )  # fmt: skip
    judge: str | None = field(
        default=None, metadata={"help": "LM judge whose labels count (default: the most used)."}
    )
    slight: str = field(
        default="collapse",
        metadata={"help": "collapse: 'A slightly' counts as A; drop: only clear preferences."},
    )
    trusted_only: bool = field(
        default=False,
        metadata={"help": "Use only LM labels that trust-or-escalate keeps (confidence at or "
                          "above the calibrated threshold)."},
    )  # fmt: skip
    threshold: float | None = field(
        default=None,
        metadata={"help": "Trusted only: the judge's confidence threshold; default: calibrate "
                          "it on the dataset's human labels with alpha and delta."},
    )  # fmt: skip
    alpha: float = field(default=0.15, metadata={"help": "Calibration: tolerated disagreement."})
    delta: float = field(default=0.1, metadata={"help": "Calibration: chance the bound fails."})

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class EvalTarget:
    """An eval set to decontaminate against: a workspace dataset or a file (with its field)."""

    ref: str
    field: str | None = None

    def to_dict(self) -> Any:
        return self.ref if self.field is None else {"ref": self.ref, "field": self.field}


@dataclass
class MixtureSpec:
    """A whole mixture: what to draw, how to clean it, and the seed that fixes every draw."""

    name: str
    kind: str
    stages: list[StageSpec]
    seed: int = 0
    description: str = ""
    dedup: DedupConfig | None = field(default_factory=DedupConfig)
    decontaminate: DecontamConfig = field(default_factory=DecontamConfig)
    against: list[EvalTarget] = field(default_factory=list)
    preference: PreferenceSpec = field(default_factory=PreferenceSpec)
    exclude_flagged: bool = True
    file: str = "<spec>"
    base_dir: Path | None = None  # relative eval file paths are read from here
    lines: dict[str, int] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec: what the spec hash covers and what the manifest records."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "seed": self.seed,
            "description": self.description,
            "stages": [s.to_dict() for s in self.stages],
            "dedup": self.dedup.to_dict() if self.dedup else False,
            "decontaminate": {
                **self.decontaminate.to_dict(),
                "against": [t.to_dict() for t in self.against],
            },
            "exclude_flagged": self.exclude_flagged,
        }
        if self.kind == "preference":
            out["preference"] = self.preference.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def spec_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def locate(self, path: str) -> str:
        """``file:line [field]`` for a field of the spec, as error messages name it."""
        line = self.lines.get(path)
        probe = path
        while line is None and probe:
            probe = probe.rpartition(".")[0] if "." in probe else ""
            line = self.lines.get(probe)
        return str(Problem(self.file, line, path or None, "")).removesuffix(": ")


# ---- reading a spec --------------------------------------------------------------------------


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(text: str) -> dict[str, int]:
    """Line numbers of the spec's fields (JSON is YAML, so one reader serves both)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        lines.setdefault(_dotted(path), node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[_dotted((*path, key.value))] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


class _Reader:
    """Type-checked access to the raw spec that records every problem with its place."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        line, probe = self.lines.get(path), path
        while line is None and probe:
            probe = probe.rpartition(".")[0] if "." in probe else ""
            line = self.lines.get(probe)
        self.problems.append(Problem(self.file, line, path or None, message))

    def mapping(self, value: Any, path: str, known: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, f"unknown field {key!r} (known: {', '.join(known)})")
        return value

    def text(self, data: dict, key: str, path: str, default: str = "") -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(_join(path, key), f"expected text, got {type(value).__name__}")
            return default
        return value.strip()

    def number(
        self, data: dict, key: str, path: str, default: float, *, low: float, high: float
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(_join(path, key), f"expected a number, got {value!r}")
            return default
        if not low <= value <= high:
            self.problem(_join(path, key), f"must be between {low:g} and {high:g}, got {value}")
            return default
        return float(value)

    def integer(self, data: dict, key: str, path: str, default: int, *, low: int = 0) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(_join(path, key), f"expected a whole number, got {value!r}")
            return default
        if value < low:
            self.problem(_join(path, key), f"must be at least {low}, got {value}")
            return default
        return value

    def flag(self, data: dict, key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(_join(path, key), f"expected true or false, got {value!r}")
            return default
        return value

    def choice(self, data: dict, key: str, path: str, default: str, options: Sequence[str]) -> str:
        value = data.get(key, default)
        if value not in options:
            self.problem(_join(path, key), f"expected one of {', '.join(options)}, got {value!r}")
            return default
        return value


def _join(path: str, key: Any) -> str:
    return _dotted((path, key)) if path else str(key)


_TOP = (
    "name", "kind", "seed", "description", "sources", "dataset_mixer", "stages", "safety",
    "dedup", "decontaminate", "preference", "exclude_flagged",
)  # fmt: skip
_SOURCE_KEYS = ("dataset", "fraction", "count", "where")
_STAGE_KEYS = ("name", "sources", "dataset_mixer", "safety")
_SAFETY_KEYS = ("dataset", "fraction", "ratios", "where", "prompts_only", "name")
_DEDUP_KEYS = tuple(DedupConfig.__dataclass_fields__)
_DECONTAM_KEYS = (*DecontamConfig.__dataclass_fields__, "against")
_PREFERENCE_KEYS = tuple(PreferenceSpec.__dataclass_fields__)


def load_spec(path: str | os.PathLike) -> MixtureSpec:
    """Read a spec file (``.yaml``/``.yml``/``.json``); CuratorError naming file, line and field
    for every problem found."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CuratorError(f"cannot read the mixture spec {p}: {exc}") from exc
    return parse_spec(text, file=str(p), base_dir=p.resolve().parent, json_only=p.suffix == ".json")


def parse_spec(
    text: str | Mapping[str, Any],
    *,
    file: str = "<spec>",
    base_dir: Path | None = None,
    json_only: bool = False,
) -> MixtureSpec:
    """A spec from YAML or JSON text, or from an already parsed mapping."""
    if isinstance(text, Mapping):
        data, lines = dict(text), {}
    else:
        try:
            data = json.loads(text) if json_only else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise CuratorError(
                str(Problem(file, exc.lineno, None, f"not JSON: {exc.msg}"))
            ) from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise CuratorError(str(Problem(file, line, None, f"not YAML: {reason}"))) from exc
        lines = _line_map(text)
    reader = _Reader(file, lines)
    if not isinstance(data, dict):
        raise CuratorError(str(Problem(file, 1, None, "a mixture spec is a mapping of fields")))
    reader.mapping(data, "", _TOP)
    name = reader.text(data, "name", "")
    if not name:
        reader.problem("name", "a mixture needs a name")
    elif not _NAME.match(name):
        reader.problem(
            "name", f"{name!r}: use letters, digits, '.', '_' or '-' (it names a folder)"
        )
    kind = reader.choice(data, "kind", "", "sft", KINDS)
    seed = reader.integer(data, "seed", "", 0)
    description = reader.text(data, "description", "")
    default_safety = (
        _read_safety(reader, data.get("safety"), "safety") if "safety" in data else None
    )
    stages = _read_stages(reader, data)
    for stage in stages:
        if stage.safety is None:
            stage.safety, stage.safety_path = default_safety, "safety"
        if kind == "safety" and stage.safety is None:
            reader.problem("safety", "a safety mixture needs a safety block (dataset, fraction)")
        if kind != "safety" and stage.safety is not None:
            reader.problem("safety", f"a {kind} mixture has no safety block (use kind: safety)")
    dedup = _read_dedup(reader, data.get("dedup", {}))
    decontam, against = _read_decontam(reader, data.get("decontaminate"))
    preference = _read_preference(reader, data.get("preference"))
    if kind != "preference" and "preference" in data:
        reader.problem("preference", f"a {kind} mixture has no preference block")
    exclude_flagged = reader.flag(data, "exclude_flagged", "", True)
    if reader.problems:
        raise CuratorError(
            f"the mixture spec has {len(reader.problems)} problem(s):\n"
            + "\n".join(str(p) for p in reader.problems)
        )
    return MixtureSpec(
        name=name,
        kind=kind,
        stages=stages,
        seed=seed,
        description=description,
        dedup=dedup,
        decontaminate=decontam,
        against=against,
        preference=preference,
        exclude_flagged=exclude_flagged,
        file=file,
        base_dir=base_dir,
        lines=lines,
    )


def _read_stages(reader: _Reader, data: dict) -> list[StageSpec]:
    top_sources = "sources" in data or "dataset_mixer" in data
    if "stages" in data:
        if top_sources:
            reader.problem("stages", "give either stages or top-level sources, not both")
        raw = data["stages"]
        if not isinstance(raw, list) or not raw:
            reader.problem("stages", "expected a non-empty list of stages")
            return []
        stages, names = [], set()
        for i, item in enumerate(raw):
            path = f"stages[{i}]"
            item = reader.mapping(item, path, _STAGE_KEYS)
            name = reader.text(item, "name", path, f"stage{i + 1}")
            if name in names:
                reader.problem(_join(path, "name"), f"stage name {name!r} is used twice")
            names.add(name)
            safety = _read_safety(reader, item["safety"], _join(path, "safety")) if (
                "safety" in item
            ) else None  # fmt: skip
            stages.append(
                StageSpec(name, _read_sources(reader, item, path), safety, _join(path, "safety"))
            )
        return stages
    if not top_sources:
        reader.problem("sources", "name the sources to draw from (sources: {dataset: amount})")
        return []
    return [StageSpec(DEFAULT_STAGE, _read_sources(reader, data, ""))]


def _read_sources(reader: _Reader, data: dict, path: str) -> list[SourceSpec]:
    key = "dataset_mixer" if "dataset_mixer" in data else "sources"
    if "dataset_mixer" in data and "sources" in data:
        reader.problem(_join(path, "sources"), "give sources or dataset_mixer, not both")
    raw = data.get(key)
    spath = _join(path, key)
    if not isinstance(raw, dict) or not raw:
        reader.problem(spath, "expected a mapping of source name to amount (or to details)")
        return []
    sources = []
    for name, value in raw.items():
        where = _join(spath, str(name))
        if not isinstance(name, str) or not name.strip():
            reader.problem(where, "a source needs a name")
            continue
        if isinstance(value, dict):
            details = reader.mapping(value, where, _SOURCE_KEYS)
            dataset = reader.text(details, "dataset", where, name)
            filt = reader.text(details, "where", where)
            has_f, has_c = "fraction" in details, "count" in details
            if has_f == has_c:
                reader.problem(where, "give exactly one of fraction or count")
                continue
            if has_f:
                fraction = reader.number(details, "fraction", where, 1.0, low=0.0, high=1e6)
                sources.append(SourceSpec(name, dataset, fraction=fraction, where=filt, path=where))
            else:
                count = reader.integer(details, "count", where, 0)
                sources.append(SourceSpec(name, dataset, count=count, where=filt, path=where))
            continue
        # open-instruct's rule: a number with a decimal point is a fraction, a whole number a count
        if isinstance(value, bool) or not isinstance(value, int | float):
            reader.problem(
                where, f"expected a fraction (like 0.5) or a count (like 1000), got {value!r}"
            )
        elif value < 0:
            reader.problem(where, f"an amount cannot be negative, got {value}")
        elif isinstance(value, float):
            sources.append(SourceSpec(name, name, fraction=value, path=where))
        else:
            sources.append(SourceSpec(name, name, count=value, path=where))
    return sources


def _read_safety(reader: _Reader, value: Any, path: str) -> SafetySpec | None:
    data = reader.mapping(value, path, _SAFETY_KEYS)
    dataset = reader.text(data, "dataset", path)
    if not dataset:
        reader.problem(_join(path, "dataset"), "name the safety dataset")
    fraction = reader.number(data, "fraction", path, 0.1, low=0.0, high=0.99)
    raw = data.get("ratios", None)
    ratios: dict[str, float] = {t: 0.25 for t in SAFETY_TYPES}
    if raw is not None:
        if not isinstance(raw, dict):
            reader.problem(_join(path, "ratios"), "expected a mapping of safety type to share")
        else:
            rpath = _join(path, "ratios")
            for t in raw:
                if t not in SAFETY_TYPES:
                    reader.problem(
                        _join(rpath, t), f"unknown safety type; types: {', '.join(SAFETY_TYPES)}"
                    )
            ratios = {t: reader.number(raw, t, rpath, 0.0, low=0.0, high=1e6) for t in SAFETY_TYPES}
            if sum(ratios.values()) <= 0:
                reader.problem(rpath, "give at least one safety type a share above 0")
                ratios = {t: 0.25 for t in SAFETY_TYPES}
    spec = SafetySpec(
        dataset=dataset,
        fraction=fraction,
        ratios=ratios,
        where=reader.text(data, "where", path),
        prompts_only=reader.flag(data, "prompts_only", path, False),
        name=reader.text(data, "name", path),
    )
    if dataset:
        try:
            spec.validate()
        except CuratorError as exc:
            reader.problem(path, str(exc))
    return spec


def _read_dedup(reader: _Reader, value: Any) -> DedupConfig | None:
    if value is False or value is None:
        return None
    if value is True:
        return DedupConfig()
    data = reader.mapping(value, "dedup", _DEDUP_KEYS)
    base = DedupConfig()
    config = DedupConfig(
        exact=reader.flag(data, "exact", "dedup", base.exact),
        near=reader.flag(data, "near", "dedup", base.near),
        threshold=reader.number(data, "threshold", "dedup", base.threshold, low=0.01, high=1.0),
        num_perm=reader.integer(data, "num_perm", "dedup", base.num_perm, low=16),
        shingle=reader.integer(data, "shingle", "dedup", base.shingle, low=1),
        on=reader.choice(data, "on", "dedup", base.on, ("example", "prompt")),
    )
    return config if (config.exact or config.near) else None


def _read_decontam(reader: _Reader, value: Any) -> tuple[DecontamConfig, list[EvalTarget]]:
    data = reader.mapping(value, "decontaminate", _DECONTAM_KEYS)
    base = DecontamConfig()
    path = "decontaminate"
    config = DecontamConfig(
        ngram=reader.integer(data, "ngram", path, base.ngram, low=1),
        threshold=reader.number(data, "threshold", path, base.threshold, low=0.0, high=0.999),
        source_threshold=reader.number(
            data, "source_threshold", path, base.source_threshold, low=0.0, high=0.999
        ),
        action=reader.choice(data, "action", path, base.action, ("remove_rows", "drop_source", "report")),
    )  # fmt: skip
    targets: list[EvalTarget] = []
    raw = data.get("against", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        reader.problem(_join(path, "against"), "expected a list of eval sets (datasets or files)")
        return config, targets
    for i, item in enumerate(raw):
        where = f"{path}.against[{i}]"
        if isinstance(item, str) and item.strip():
            targets.append(EvalTarget(item.strip()))
        elif isinstance(item, dict):
            details = reader.mapping(item, where, ("ref", "field"))
            ref = reader.text(details, "ref", where)
            if not ref:
                reader.problem(_join(where, "ref"), "name the dataset or file")
                continue
            targets.append(EvalTarget(ref, reader.text(details, "field", where) or None))
        else:
            reader.problem(where, "expected a dataset name, a file path, or {ref, field}")
    return config, targets


def _read_preference(reader: _Reader, value: Any) -> PreferenceSpec:
    data = reader.mapping(value, "preference", _PREFERENCE_KEYS)
    path = "preference"
    base = PreferenceSpec()
    threshold = data.get("threshold")
    if threshold is not None:
        threshold = reader.number(data, "threshold", path, 0.0, low=0.0, high=1.0)
    judge = data.get("judge")
    if judge is not None and not isinstance(judge, str):
        reader.problem(_join(path, "judge"), f"expected a judge name, got {judge!r}")
        judge = None
    return PreferenceSpec(
        labels=reader.choice(data, "labels", path, base.labels, LABEL_SOURCES),
        judge=judge,
        slight=reader.choice(data, "slight", path, base.slight, SLIGHT),
        trusted_only=reader.flag(data, "trusted_only", path, base.trusted_only),
        threshold=threshold,
        alpha=reader.number(data, "alpha", path, base.alpha, low=0.001, high=0.999),
        delta=reader.number(data, "delta", path, base.delta, low=0.001, high=0.999),
    )


# ---- candidate rows --------------------------------------------------------------------------


@dataclass
class _Candidate:
    """A row a source could contribute, with the texts dedup and decontamination compare."""

    source: str
    instance_id: int
    row: dict[str, Any]
    prompt: str
    example: str
    safety_type: str | None = None


@dataclass
class _Pool:
    """One source's candidates, and what was left out on the way and why."""

    source: str
    dataset: str
    spec: SourceSpec | SafetySpec
    instances: int = 0
    candidates: list[_Candidate] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)
    labels: dict[str, Any] | None = None  # preference pools: where the labels came from


def _seed(*parts: Any) -> int:
    """A draw's own seed from the spec's seed and names, so adding a source moves no other."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _turns(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _example_text(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _filtered_ids(store: Store, dataset: str, where: str, locate: str) -> set[int] | None:
    if not where:
        return None
    try:
        flt = InstanceFilter.parse(where, dataset=dataset)
    except CuratorError as exc:
        raise CuratorError(f"{locate}: {exc}") from None
    total = store.count_instances(flt)
    return {r["id"] for r in store.page_instances(flt, limit=max(total, 1))}


def _dataset_of(
    store: Store, spec: MixtureSpec, name: str, path: str, kinds: Sequence[str]
) -> dict[str, Any]:
    found = store.find_dataset(name)
    if found is None:
        known = ", ".join(d["name"] for d in store.list_datasets()) or "none yet"
        raise CuratorError(f"{spec.locate(path)}: no dataset named {name!r} (datasets: {known})")
    if found["kind"] not in kinds:
        raise CuratorError(
            f"{spec.locate(path)}: dataset {name!r} holds {found['kind']} data; a {spec.kind} "
            f"mixture draws from {' or '.join(kinds)} datasets"
        )
    return found


def _excluded(store: Store, spec: MixtureSpec, dataset: str) -> set[int]:
    if not spec.exclude_flagged:
        return set()
    from curation.flags import excluded_instance_ids

    return excluded_instance_ids(store, dataset)


def _sft_pool(
    store: Store, spec: MixtureSpec, source: SourceSpec | SafetySpec, name: str, path: str
) -> _Pool:
    """SFT rows of a source: conversations, or a safety prompt with its completion."""
    info = _dataset_of(store, spec, source.dataset, path + ".dataset", SOURCE_KINDS["sft"])
    pool = _Pool(name, source.dataset, source)
    chosen = _filtered_ids(store, source.dataset, source.where, spec.locate(path + ".where"))
    flagged = _excluded(store, spec, source.dataset)
    prompts_only = isinstance(source, SafetySpec) and source.prompts_only
    with_type = spec.kind == "safety"
    for instance_id, inst in store.iter_instances(source.dataset):
        pool.instances += 1
        if chosen is not None and instance_id not in chosen:
            pool.left_out["filtered"] += 1
            continue
        if instance_id in flagged:
            pool.left_out["flagged"] += 1
            continue
        safety_type = safety_type_of(inst.subset, inst.metadata)
        if isinstance(source, SafetySpec) and safety_type is None:
            pool.left_out["no_safety_type"] += 1
            continue
        if info["kind"] == "safety":
            if inst.response_a:
                messages = [
                    {"role": "user", "content": inst.prompt},
                    {"role": "assistant", "content": inst.response_a},
                ]
            elif prompts_only:
                messages = [{"role": "user", "content": inst.prompt}]
            else:
                pool.left_out["no_completion"] += 1
                continue
        elif inst.messages:
            messages = _turns(inst.messages)
        else:
            pool.left_out["no_messages"] += 1
            continue
        row: dict[str, Any] = {"messages": messages, "source": name, "instance_id": instance_id}
        if with_type:
            row["safety_type"] = safety_type
        pool.candidates.append(
            _Candidate(
                name,
                instance_id,
                row,
                user_text(inst.prompt, messages),
                _example_text(messages),
                safety_type,
            )
        )
    return pool


def _preference_labels(
    store: Store, spec: MixtureSpec, dataset: str
) -> tuple[dict[int, int], dict[str, Any]]:
    """Each instance's training verdict (-1 A, 1 B; 0 none) and where the labels came from.

    The labels are routing's (:class:`routing.splits.SplitLabels`: the human strict majority,
    the chosen judge's verdict, "slightly" collapsed or dropped); trusted-only keeps an LM verdict
    only where trust or escalate (:mod:`routing.selective`) would not escalate the instance.
    Imported here, not at the top: the label rules have one home, in routing, and curation must
    not need the routing stack to import.
    """
    from routing.splits import LabelConfig, SplitLabels

    pref = spec.preference
    labels = SplitLabels.load(store, dataset, LabelConfig(slight=pref.slight, judge=pref.judge))
    info: dict[str, Any] = {"judge": labels.judge, "labels": pref.labels, "slight": pref.slight}
    trusted: set[int] | None = None
    if pref.trusted_only and pref.labels != "human" and labels.judge is not None:
        from routing.selective import (
            calibrate,
            calibration_items_from_store,
            escalated_instance_ids,
        )

        threshold = pref.threshold
        if threshold is None:
            items = calibration_items_from_store(store, dataset, labels.judge)
            result = calibrate(items, pref.alpha, pref.delta, judge=labels.judge)
            threshold = result.threshold
            info["calibration"] = {
                k: getattr(result, k)
                for k in ("threshold", "coverage", "n", "n_kept", "alpha", "delta", "certified")
            }
        escalated = set(escalated_instance_ids(store, dataset, labels.judge, threshold))
        trusted = {int(i) for i in labels.instance_ids} - escalated
        info["threshold"] = threshold
    counts = {
        row[0]: (row[1], row[2])
        for row in store.conn.execute(
            "SELECT s.instance_id, s.n_human, s.n_lm FROM instance_summary s "
            "JOIN instances i ON i.id = s.instance_id WHERE i.dataset_id = ?",
            (store.dataset(dataset)["id"],),
        )
    }
    out: dict[int, int] = {}
    origin: dict[int, str] = {}
    for instance_id, human, lm in zip(
        labels.instance_ids.tolist(), labels.human.tolist(), labels.lm.tolist(), strict=True
    ):
        n_human, n_lm = counts.get(instance_id, (0, 0))
        if pref.labels == "human" or (pref.labels == "hybrid" and n_human):
            value, why = int(human), "human" if n_human else "none"
        elif not n_lm:
            value, why = 0, "none"
        elif trusted is not None and instance_id not in trusted:
            value, why = 0, "untrusted"
        else:
            value, why = int(lm), "lm"
        out[instance_id], origin[instance_id] = value, why
    info["origin"] = origin
    return out, info


def _preference_pool(store: Store, spec: MixtureSpec, source: SourceSpec) -> _Pool:
    """Preference rows of a source: prompt/chosen/rejected from the hybrid labels."""
    _dataset_of(store, spec, source.dataset, source.path + ".dataset", SOURCE_KINDS["preference"])
    pool = _Pool(source.name, source.dataset, source)
    chosen = _filtered_ids(store, source.dataset, source.where, spec.locate(source.path + ".where"))
    flagged = _excluded(store, spec, source.dataset)
    verdicts, info = _preference_labels(store, spec, source.dataset)
    origin = info.pop("origin")
    used: Counter[str] = Counter()
    for instance_id, inst in store.iter_instances(source.dataset):
        pool.instances += 1
        if chosen is not None and instance_id not in chosen:
            pool.left_out["filtered"] += 1
            continue
        if instance_id in flagged:
            pool.left_out["flagged"] += 1
            continue
        if not inst.response_a or not inst.response_b:
            pool.left_out["no_response"] += 1
            continue
        side = verdicts.get(instance_id, 0)
        if side == 0:
            why = origin.get(instance_id, "none")
            reason = {"untrusted": "lm_untrusted", "none": "unlabelled"}.get(
                why, f"{why}_no_verdict"
            )
            pool.left_out[reason] += 1
            continue
        used[origin[instance_id]] += 1
        first, second = (inst.response_a, inst.response_b) if side < 0 else (
            inst.response_b, inst.response_a
        )  # fmt: skip
        messages = _turns(inst.messages) if inst.messages else None
        row = {
            "prompt": inst.prompt,
            "messages": messages,
            "chosen": first,
            "rejected": second,
            "source": source.name,
            "instance_id": instance_id,
        }
        prompt = user_text(inst.prompt, messages)
        pool.candidates.append(
            _Candidate(source.name, instance_id, row, prompt, f"{prompt}\n{first}\n{second}")
        )
    info["label_origin"] = dict(sorted(used.items()))
    pool.labels = info
    return pool


# ---- drawing ---------------------------------------------------------------------------------


def _draw(n: int, fraction: float | None, count: int | None, rng: np.random.Generator) -> list[int]:
    """Indices into a pool of ``n``: a count without replacement, or a fraction (whole copies for
    the part above 1, then a sample without replacement for the rest), in pool order."""
    if count is not None:
        return sorted(rng.choice(n, size=count, replace=False).tolist()) if count else []
    assert fraction is not None
    copies = int(fraction)
    rest = round((fraction - copies) * n)
    picked = list(range(n)) * copies
    if rest:
        picked += sorted(rng.choice(n, size=rest, replace=False).tolist())
    return picked


def _draw_count(n: int, count: int, rng: np.random.Generator) -> tuple[list[int], bool]:
    """``count`` indices; more than the pool holds repeats it whole and samples the rest."""
    if count <= n:
        return _draw(n, None, count, rng), False
    return _draw(n, count / n, None, rng)[:count], True


@dataclass
class _Stage:
    name: str
    rows: list[dict[str, Any]]
    report: dict[str, Any]


def _build_stage(
    store: Store,
    spec: MixtureSpec,
    stage: StageSpec,
    eval_sets: list[PromptSet],
    progress: Progress,
) -> _Stage:
    """One stage: read the pools, drop duplicates and eval overlaps, draw, shuffle."""
    label = f"stage {stage.name}" if len(spec.stages) > 1 else "pools"
    progress(f"{label}: reading sources", 0.0)
    pools = [
        _preference_pool(store, spec, source)
        if spec.kind == "preference"
        else _sft_pool(store, spec, source, source.name, source.path)
        for source in stage.sources
    ]
    safety_pool = None
    if stage.safety is not None:
        if stage.safety.source in {p.source for p in pools}:
            raise CuratorError(
                f"{spec.locate(stage.safety_path)}: the safety source name "
                f"{stage.safety.source!r} is also a general source's name; give the safety "
                "block a name"
            )
        safety_pool = _sft_pool(store, spec, stage.safety, stage.safety.source, stage.safety_path)
    every = [*pools, *([safety_pool] if safety_pool else [])]
    candidates = [c for p in every for c in p.candidates]
    keep = [True] * len(candidates)
    progress(f"{label}: removing duplicates", 0.3)
    dedup_report = _dedup(candidates, keep, spec.dedup)
    progress(f"{label}: checking eval overlap", 0.5)
    decontam_report = _decontaminate(candidates, keep, eval_sets, spec.decontaminate)
    progress(f"{label}: drawing rows", 0.8)
    kept_of: dict[str, list[_Candidate]] = {p.source: [] for p in every}
    for candidate, kept in zip(candidates, keep, strict=True):
        if kept:
            kept_of[candidate.source].append(candidate)
    rows: list[dict[str, Any]] = []
    sources_report = [_draw_source(spec, stage, pool, kept_of[pool.source], rows) for pool in pools]
    safety_report = None
    if safety_pool is not None:
        safety_report = _draw_safety(spec, stage, safety_pool, kept_of[safety_pool.source], rows)
    order = np.random.default_rng(_seed(spec.seed, stage.name, "order")).permutation(len(rows))
    rows = [rows[i] for i in order.tolist()]
    report = {
        "name": stage.name,
        "rows": len(rows),
        "sources": sources_report,
        "safety": safety_report,
        "dedup": dedup_report,
        "decontamination": decontam_report,
    }
    return _Stage(stage.name, rows, report)


def _dedup(
    candidates: list[_Candidate], keep: list[bool], config: DedupConfig | None
) -> dict[str, Any]:
    """Mark duplicates in ``keep``; the report (``_all``: every drop, for reports/dedup.jsonl)."""
    if config is None:
        return {"enabled": False}
    texts = [c.example if config.on == "example" else c.prompt for c in candidates]
    result = find_duplicates(texts, config)
    keep[:] = result.keep
    report = result.report(
        [c.source for c in candidates], [c.instance_id for c in candidates], limit=MANIFEST_EXAMPLES
    )
    report["_all"] = [
        {
            "source": candidates[d.index].source,
            "instance_id": candidates[d.index].instance_id,
            "reason": d.reason,
            "duplicate_of_source": candidates[d.kept].source,
            "duplicate_of_instance_id": candidates[d.kept].instance_id,
            "similarity": round(d.similarity, 4),
        }
        for d in result.dropped
    ]
    return {"enabled": True, **report}


def _decontaminate(
    candidates: list[_Candidate],
    keep: list[bool],
    eval_sets: list[PromptSet],
    config: DecontamConfig,
) -> dict[str, Any]:
    """Check the rows still kept against the eval sets and mark what the action removes."""
    if not eval_sets:
        return {"enabled": False}
    alive = [i for i, k in enumerate(keep) if k]
    report = decontaminate(
        [candidates[i].prompt for i in alive],
        [candidates[i].source for i in alive],
        eval_sets,
        config,
    )
    drop = report.rows_to_drop([candidates[i].source for i in alive])
    for j in drop:
        keep[alive[j]] = False
    out = {
        "enabled": True,
        **report.to_dict(limit=MANIFEST_EXAMPLES),
        "removed": dict(sorted(Counter(candidates[alive[j]].source for j in drop).items())),
    }
    for match in out["matches"]:
        match["instance_id"] = candidates[alive[match.pop("row")]].instance_id
    out["_all"] = [
        {
            "source": m.source,
            "instance_id": candidates[alive[m.row]].instance_id,
            "eval_set": m.eval_set,
            "eval_id": m.eval_id,
            "score": round(m.score, 4),
            "removed": m.row in drop,
        }
        for m in report.matches
    ]
    return out


def _draw_source(
    spec: MixtureSpec,
    stage: StageSpec,
    pool: _Pool,
    available: list[_Candidate],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Draw one source's rows (appended to ``rows``); its line of the manifest."""
    src = pool.spec
    assert isinstance(src, SourceSpec)
    if src.count is not None and src.count > len(available):
        raise CuratorError(
            f"{spec.locate(src.path)}: asks for {src.count} rows but {pool.source!r} has "
            f"{len(available)} after filters, flags, dedup and decontamination (ask for fewer, "
            "or give a fraction above 1.0 to upsample)"
        )
    rng = np.random.default_rng(_seed(spec.seed, stage.name, pool.source))
    picked = _draw(len(available), src.fraction, src.count, rng)
    rows.extend(available[i].row for i in picked)
    entry = {
        "source": pool.source,
        "dataset": pool.dataset,
        **src.to_dict(),
        "instances": pool.instances,
        "left_out": dict(sorted(pool.left_out.items())),
        "candidates": len(pool.candidates),
        "after_cleaning": len(available),
        "drawn": len(picked),
        "distinct": len(set(picked)),
    }
    if pool.labels is not None:
        entry["labels"] = pool.labels
    return entry


def _draw_safety(
    spec: MixtureSpec,
    stage: StageSpec,
    pool: _Pool,
    available: list[_Candidate],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Draw the safety rows: the safety fraction of the general rows drawn so far, shared out
    over the four types by ratio (a type short of prompts is upsampled, and says so)."""
    safety = stage.safety
    assert safety is not None
    general = len(rows)
    total = safety_count(general, safety.fraction)
    wanted = split_count(total, safety.ratios)
    by_type: dict[str, list[_Candidate]] = {t: [] for t in SAFETY_TYPES}
    for candidate in available:
        by_type[candidate.safety_type or ""].append(candidate)  # the pool holds typed prompts
    types = {}
    for t in SAFETY_TYPES:
        of_type = by_type[t]
        if wanted[t] and not of_type:
            raise CuratorError(
                f"{spec.locate(stage.safety_path)}: the mix needs {wanted[t]} {t} rows but "
                f"{safety.dataset!r} has none left"
            )
        rng = np.random.default_rng(_seed(spec.seed, stage.name, safety.source, t))
        picked, upsampled = _draw_count(len(of_type), wanted[t], rng) if of_type else ([], False)
        rows.extend(of_type[i].row for i in picked)
        types[t] = {
            "ratio": round(safety.ratios[t], 6),
            "available": len(of_type),
            "drawn": len(picked),
            "upsampled": upsampled,
        }
    return {
        **safety.to_dict(),
        "source": safety.source,
        "instances": pool.instances,
        "left_out": dict(sorted(pool.left_out.items())),
        "general_rows": general,
        "safety_rows": total,
        "over_refusal_share": round(safety.over_refusal_share(), 6),
        "types": types,
    }


# ---- building --------------------------------------------------------------------------------


def row_bytes(row: Mapping[str, Any]) -> bytes:
    """A row's canonical line in ``data.jsonl`` (the bytes the content hash covers)."""
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _arrow_schema(kind: str) -> Any:
    import pyarrow as pa

    s = pa.string()
    messages = pa.list_(pa.struct([("role", s), ("content", s)]))
    if kind == "preference":
        return pa.schema(
            [
                ("prompt", s),
                ("messages", messages),
                ("chosen", s),
                ("rejected", s),
                ("source", s),
                ("instance_id", pa.int64()),
            ]
        )
    columns = [("messages", messages), ("source", s), ("instance_id", pa.int64())]
    if kind == "safety":
        columns.append(("safety_type", s))
    return pa.schema(columns)


def _arrow_table(kind: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(list(rows), schema=_arrow_schema(kind))


def _save_hf(kind: str, rows: Sequence[Mapping[str, Any]], folder: Path) -> None:
    import datasets
    from datasets.table import InMemoryTable

    was_quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        datasets.Dataset(InMemoryTable(_arrow_table(kind, rows))).save_to_disk(str(folder))
    finally:
        if not was_quiet:
            datasets.enable_progress_bars()


@dataclass
class BuildResult:
    """What a build produced: the stored version's row, its manifest, and whether an identical
    latest version was returned instead of a new one."""

    mixture: dict[str, Any]
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def ref(self) -> str:
        return f"{self.mixture['name']}@{self.mixture['version']}"


def _eval_sets(store: Store, spec: MixtureSpec) -> list[PromptSet]:
    sets = []
    for i, target in enumerate(spec.against):
        ref = target.ref
        if store.find_dataset(ref) is None and spec.base_dir is not None:
            candidate = spec.base_dir / ref
            if not Path(ref).is_absolute() and candidate.exists():
                ref = str(candidate)
        try:
            sets.append(load_prompt_set(store, ref, field=target.field))
        except CuratorError as exc:
            raise CuratorError(f"{spec.locate(f'decontaminate.against[{i}]')}: {exc}") from None
    names = Counter(s.name for s in sets)
    for s in sets:
        if names[s.name] > 1:  # two files called test.jsonl: name them by where they came from
            s.name = s.origin
    return sets


def _eval_fingerprint(prompts: PromptSet) -> str:
    digest = hashlib.sha256()
    for text in prompts.texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def build_mixture(
    store: Store,
    spec: MixtureSpec,
    *,
    dry_run: bool = False,
    new_version: bool = False,
    job_id: int | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build a spec into a new version (or, when nothing changed, return the latest version).

    ``dry_run`` computes the manifest (pools, dedup, decontamination, counts) and writes nothing;
    ``new_version`` stores a new version even when it repeats the latest one byte for byte.
    """
    progress = progress or (lambda message, fraction: None)
    started = time.perf_counter()
    latest = _latest(store, spec.name)
    if latest is not None and latest["kind"] != spec.kind:
        raise CuratorError(
            f"{spec.locate('name')}: mixture {spec.name!r} holds {latest['kind']} data; a "
            f"{spec.kind} spec needs another name"
        )
    eval_sets = _eval_sets(store, spec)
    stages = [_build_stage(store, spec, stage, eval_sets, progress) for stage in spec.stages]
    progress("writing", 0.9)
    digest = hashlib.sha256()
    n_rows = 0
    stage_ranges = []
    for stage in stages:
        stage_ranges.append({"name": stage.name, "start": n_rows, "end": n_rows + len(stage.rows)})
        for row in stage.rows:
            digest.update(row_bytes(row))
        n_rows += len(stage.rows)
    if n_rows == 0:
        raise CuratorError(f"the mixture {spec.name!r} came out empty: nothing left to draw")
    content_hash = "sha256:" + digest.hexdigest()
    composition: Counter[str] = Counter()
    for stage in stages:
        composition.update(r["source"] for r in stage.rows)
    reports = {
        "dedup": [
            {**d, "stage": s.name} for s in stages for d in s.report["dedup"].pop("_all", [])
        ],
        "decontamination": [
            {**d, "stage": s.name}
            for s in stages
            for d in s.report["decontamination"].pop("_all", [])
        ],
    }
    manifest: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "seed": spec.seed,
        "description": spec.description,
        "rows": n_rows,
        "content_hash": content_hash,
        "spec_hash": spec.spec_hash(),
        "spec": spec.to_dict(),
        "composition": dict(sorted(composition.items())),
        "stages": [{**r, **s.report} for r, s in zip(stage_ranges, stages, strict=True)],
        "eval_sets": [
            {
                "name": s.name,
                "origin": s.origin,
                "instances": len(s),
                "fingerprint": _eval_fingerprint(s),
            }
            for s in eval_sets
        ],
        "format": {
            "data": DATA_FILE,
            "hf": HF_DIR,
            "row": "preference" if spec.kind == "preference" else "messages",
        },
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    if dry_run:
        return BuildResult({"name": spec.name, "version": None, "path": None}, manifest)
    if (
        latest is not None
        and not new_version
        and latest["content_hash"] == content_hash
        and json.loads(latest["manifest"] or "{}").get("spec_hash") == manifest["spec_hash"]
    ):
        return BuildResult(_decode(latest), json.loads(latest["manifest"]), reused=True)
    return _store_version(store, spec, stages, manifest, reports, job_id=job_id)


def _store_version(
    store: Store,
    spec: MixtureSpec,
    stages: list[_Stage],
    manifest: dict[str, Any],
    reports: dict[str, list[dict[str, Any]]],
    *,
    job_id: int | None,
) -> BuildResult:
    """Write the version folder (staged, then renamed) and its row, as one all-or-nothing step."""
    if store.workspace is None:
        raise CuratorError("this store has no workspace folder to write mixtures into")
    root = store.workspace.dir("mixtures")
    staging = root / f".{spec.name}.{os.getpid()}.{time.time_ns()}.partial"
    staging.mkdir(parents=True)
    try:
        with (staging / DATA_FILE).open("wb") as handle:
            for stage in stages:
                for row in stage.rows:
                    handle.write(row_bytes(row))
        rows = [r for s in stages for r in s.rows]
        _save_hf(spec.kind, rows, staging / HF_DIR)
        (staging / "reports").mkdir()
        for name, items in reports.items():
            with (staging / "reports" / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                for item in items:
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        with store.write():
            row = store.conn.execute(
                "SELECT coalesce(max(version), 0) FROM mixtures WHERE name = ?", (spec.name,)
            ).fetchone()
            version = int(row[0]) + 1
            final = root / f"{spec.name}-v{version}"
            if final.exists():
                shutil.rmtree(final)  # a folder no stored version owns (an interrupted build)
            manifest = {"version": version, "path": str(final), **manifest}
            (staging / MANIFEST_FILE).write_text(
                json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            os.replace(staging, final)
            try:
                store.conn.execute(
                    "INSERT INTO mixtures(name, version, kind, spec, manifest, content_hash, path, "
                    "job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.name,
                        version,
                        spec.kind,
                        json.dumps(spec.to_dict(), ensure_ascii=False, sort_keys=True),
                        json.dumps(manifest, ensure_ascii=False),
                        manifest["content_hash"],
                        str(final),
                        job_id,
                    ),
                )
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(resolve_mixture(store, f"{spec.name}@{version}"), manifest)


def run_build_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A background job that builds a mixture: register it with
    ``training.kinds.register_kind("mix", "curation.mixtures:run_build_job")``; its job spec is
    ``{"spec": <the spec mapping>}``."""
    parsed = parse_spec(spec.get("spec") or {}, file=f"job {ctx.job.id}")
    result = build_mixture(
        ctx.store,
        parsed,
        job_id=ctx.job.id,
        progress=lambda message, fraction: ctx.progress(fraction, message),
    )
    return {
        "mixture": result.ref,
        "rows": result.manifest["rows"],
        "content_hash": result.manifest["content_hash"],
        "reused": result.reused,
    }


# ---- versions --------------------------------------------------------------------------------


def _latest(store: Store, name: str) -> Any:
    """The newest version's row of a mixture (a sqlite3.Row), or None."""
    return store.conn.execute(
        "SELECT * FROM mixtures WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()


def _decode(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["spec"] = json.loads(out.get("spec") or "{}")
    out["manifest"] = json.loads(out.get("manifest") or "{}")
    out["ref"] = f"{out['name']}@{out['version']}"
    return out


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` (latest version) or ``name@version`` (``name@v3`` works too)."""
    name, sep, version = (ref or "").strip().partition("@")
    if not name:
        raise CuratorError("name a mixture (name or name@version)")
    if not sep:
        return name, None
    digits = version[1:] if version[:1] in ("v", "V") else version
    if not digits.isdigit():
        raise CuratorError(f"mixture {ref!r}: the version after @ must be a number")
    return name, int(digits)


def resolve_mixture(store: Store, ref: str) -> dict[str, Any]:
    """The ``mixtures`` row of ``name`` (its latest version) or ``name@version``, with ``spec``
    and ``manifest`` decoded and ``ref`` added."""
    name, version = parse_ref(ref)
    if version is None:
        row = _latest(store, name)
    else:
        row = store.conn.execute(
            "SELECT * FROM mixtures WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
    if row is None:
        known = [
            f"{r[0]}@{r[1]}"
            for r in store.conn.execute("SELECT name, version FROM mixtures ORDER BY name, version")
        ]
        raise CuratorError(
            f"no mixture {ref!r} in this workspace (mixtures: {', '.join(known) or 'none yet'})"
        )
    return _decode(row)


def _data_path(mixture: Mapping[str, Any]) -> Path:
    if not mixture["path"]:
        raise CuratorError(f"mixture {mixture['ref']} has no built folder yet; build it first")
    path = Path(mixture["path"]) / DATA_FILE
    if not path.is_file():
        raise CuratorError(f"mixture {mixture['ref']}: its data file {path} is missing")
    return path


def iter_mixture_rows(
    store: Store, ref: str, *, stage: str | None = None, verify: bool = True
) -> Iterator[dict[str, Any]]:
    """The rows of a mixture version in file order (one stage's only, when named), read from
    ``data.jsonl``. With ``verify`` the file is checked against the stored content hash first,
    so a training job never trains on a file edited behind the store's back (the trainers read
    mixtures only through here)."""
    mixture = resolve_mixture(store, ref)
    path = _data_path(mixture)
    if verify:
        expected = mixture["content_hash"]
        if not expected:
            raise CuratorError(
                f"mixture {mixture['ref']} has no content hash to check {path} against (rebuild it)"
            )
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        found = "sha256:" + digest.hexdigest()
        if found != expected:
            raise CuratorError(
                f"mixture {mixture['ref']}: {path} no longer matches its content hash "
                f"(expected {expected}, found {found}); it was edited after the build, rebuild "
                "the mixture"
            )
    start, end = 0, None
    if stage is not None:
        ranges = {s["name"]: s for s in mixture["manifest"].get("stages", [])}
        if stage not in ranges:
            raise CuratorError(
                f"mixture {mixture['ref']} has no stage {stage!r} (stages: {', '.join(ranges)})"
            )
        start, end = ranges[stage]["start"], ranges[stage]["end"]
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i < start:
                continue
            if end is not None and i >= end:
                break
            yield json.loads(line)


def mixture_rows(store: Store, ref: str, *, stage: str | None = None) -> list[dict[str, Any]]:
    """Every row of a mixture version (see :func:`iter_mixture_rows`)."""
    return list(iter_mixture_rows(store, ref, stage=stage))


def list_mixtures(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Stored versions, newest first: name, version, kind, rows, content hash, when and where."""
    rows = store.conn.execute(
        "SELECT id, name, version, kind, content_hash, path, job_id, created_at, "
        "json_extract(manifest, '$.rows') AS rows, json_extract(manifest, '$.description') AS "
        "description FROM mixtures WHERE (? IS NULL OR name = ?) ORDER BY name, version DESC",
        (name, name),
    ).fetchall()
    return [{**dict(r), "ref": f"{r['name']}@{r['version']}"} for r in rows]


# ---- diff ------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "name" in v for v in value)
    ):
        out = {}
        for item in value:
            out.update(_flatten({k: v for k, v in item.items() if k != "name"},
                                f"{prefix}[{item['name']}]"))  # fmt: skip
        return out
    return {prefix: value}


def _composition(manifest: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for stage in manifest.get("stages", []):
        for src in stage.get("sources", []):
            out[(stage["name"], src["source"])] = src["drawn"]
        safety = stage.get("safety") or {}
        for t, info in (safety.get("types") or {}).items():
            out[(stage["name"], f"{safety['source']}/{t}")] = info["drawn"]
    return out


def diff_mixtures(store: Store, a: str, b: str) -> dict[str, Any]:
    """How version ``b`` differs from ``a``: spec fields, rows per source, and rows (as whole
    lines) only in one of them."""
    left, right = resolve_mixture(store, a), resolve_mixture(store, b)
    spec_a, spec_b = _flatten(left["spec"]), _flatten(right["spec"])
    spec_changes = [
        {"field": k, "a": spec_a.get(k), "b": spec_b.get(k)}
        for k in sorted(set(spec_a) | set(spec_b))
        if spec_a.get(k) != spec_b.get(k)
    ]
    comp_a, comp_b = _composition(left["manifest"]), _composition(right["manifest"])
    composition = [
        {"stage": stage, "source": source, "a": comp_a.get((stage, source), 0),
         "b": comp_b.get((stage, source), 0),
         "change": comp_b.get((stage, source), 0) - comp_a.get((stage, source), 0)}
        for stage, source in sorted(set(comp_a) | set(comp_b))
    ]  # fmt: skip

    def lines(mixture: Mapping[str, Any]) -> Counter[str]:
        counts: Counter[str] = Counter()
        with _data_path(mixture).open("rb") as handle:
            for line in handle:
                counts[hashlib.blake2b(line, digest_size=16).hexdigest()] += 1
        return counts

    rows_a, rows_b = lines(left), lines(right)
    shared = sum((rows_a & rows_b).values())
    return {
        "a": left["ref"],
        "b": right["ref"],
        "same_content": left["content_hash"] == right["content_hash"],
        "rows": {
            "a": sum(rows_a.values()),
            "b": sum(rows_b.values()),
            "shared": shared,
            "only_a": sum(rows_a.values()) - shared,
            "only_b": sum(rows_b.values()) - shared,
        },
        "spec_changes": spec_changes,
        "composition": composition,
    }


# ---- export ----------------------------------------------------------------------------------


def export_mixture(store: Store, ref: str, fmt: str, out: str | os.PathLike) -> dict[str, Any]:
    """Write a mixture version as JSONL (its ``data.jsonl`` bytes), Parquet or an HF folder."""
    if fmt not in FORMATS:
        raise CuratorError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    mixture = resolve_mixture(store, ref)
    source = _data_path(mixture)
    target = Path(out).expanduser()
    if fmt == "hf":
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CuratorError(f"{target} already exists and is not an empty folder")
    elif target.is_dir():
        raise CuratorError(f"{target} is a folder; a {fmt} export needs a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            shutil.copyfile(source, target)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            rows = mixture_rows(store, ref)
            pq.write_table(_arrow_table(mixture["kind"], rows), target, compression="zstd")
        else:
            hf = Path(mixture["path"]) / HF_DIR
            if target.exists():
                target.rmdir()
            if hf.is_dir():
                shutil.copytree(hf, target)
            else:
                _save_hf(mixture["kind"], mixture_rows(store, ref), target)
    except OSError as exc:
        raise CuratorError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return {
        "mixture": mixture["ref"],
        "format": fmt,
        "path": str(target),
        "rows": mixture["manifest"].get("rows"),
        "content_hash": mixture["content_hash"],
    }


# ---- a quick look before building ------------------------------------------------------------


def preview(store: Store, spec: MixtureSpec) -> list[dict[str, Any]]:
    """Expected rows per stage and source before any dedup or decontamination: the instances
    under the filters (less flagged ones), times the fraction, or the count.

    Cheap enough to run on every slider move, so the page can show the composition live; the
    build's manifest has the real counts.
    """
    out = []
    for stage in spec.stages:
        general = 0
        for source in stage.sources:
            kinds = SOURCE_KINDS[spec.kind]
            _dataset_of(store, spec, source.dataset, source.path + ".dataset", kinds)
            pool = _pool_size(store, spec, source.dataset, source.where, source.path)
            expected = (
                source.count if source.count is not None else round(pool * (source.fraction or 0))
            )
            general += expected
            out.append({"stage": stage.name, "source": source.name, "dataset": source.dataset,
                        "type": "", "pool": pool, "expected": expected})  # fmt: skip
        if stage.safety is not None:
            safety = stage.safety
            path = stage.safety_path + ".dataset"
            _dataset_of(store, spec, safety.dataset, path, SOURCE_KINDS["safety"])
            counts = split_count(safety_count(general, safety.fraction), safety.ratios)
            for t in SAFETY_TYPES:
                out.append({"stage": stage.name, "source": safety.source, "dataset": safety.dataset,
                            "type": t, "pool": None, "expected": counts[t]})  # fmt: skip
    return out


def _pool_size(store: Store, spec: MixtureSpec, dataset: str, where: str, path: str) -> int:
    try:
        flt = InstanceFilter.parse(where, dataset=dataset)
    except CuratorError as exc:
        raise CuratorError(f"{spec.locate(path + '.where')}: {exc}") from None
    total = store.count_instances(flt)
    excluded = _excluded(store, spec, dataset)
    if excluded:
        under = {r["id"] for r in store.page_instances(flt, limit=max(total, 1))}
        total -= len(excluded & under)
    return total


def manifest_tables(manifest: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A manifest's reports as flat tables (rows of dicts) for the page and scripts: sources,
    safety types, duplicates and eval overlaps per stage, and examples of each drop."""
    tables: dict[str, list[dict[str, Any]]] = {
        "sources": [],
        "safety": [],
        "dedup": [],
        "dedup_examples": [],
        "decontamination": [],
        "decontamination_matches": [],
    }
    for stage in manifest.get("stages", []):
        name = stage["name"]
        for src in stage.get("sources", []):
            left_out = ", ".join(
                f"{n} {why.replace('_', ' ')}" for why, n in src["left_out"].items()
            )
            tables["sources"].append(
                {
                    "stage": name,
                    "source": src["source"],
                    "dataset": src["dataset"],
                    "amount": f"{src['count']} rows" if "count" in src else f"x{src['fraction']:g}",
                    "where": src.get("where", ""),
                    "instances": src["instances"],
                    "left out": left_out,
                    "after cleaning": src["after_cleaning"],
                    "drawn": src["drawn"],
                }
            )
        safety = stage.get("safety") or {}
        for t, info in (safety.get("types") or {}).items():
            tables["safety"].append({"stage": name, "source": safety["source"], "type": t, **info})
        dedup = stage.get("dedup") or {}
        for source, counts in (dedup.get("by_source") or {}).items():
            tables["dedup"].append({"stage": name, "source": source, **counts})
        tables["dedup_examples"].extend({"stage": name, **e} for e in dedup.get("examples", []))
        decontam = stage.get("decontamination") or {}
        for item in decontam.get("sources", []):
            tables["decontamination"].append({"stage": name, **item})
        tables["decontamination_matches"].extend(
            {"stage": name, **m} for m in decontam.get("matches", [])
        )
    return tables
