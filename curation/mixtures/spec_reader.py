"""Reading a spec file (YAML or JSON) into a :class:`MixtureSpec`, naming file, line and field
for every problem, all in one go.

A hand-written typed reader rather than pydantic models, because the messages are the point:
each names the bounds ("must be between 0 and 0.99, got 1.5"), the known fields of the block,
and open-instruct's amount rule (a number with a decimal point is a fraction, a whole number a
count) as one problem. Pydantic can give the place (an error's ``loc`` is a path into
:func:`_line_map`), but its errors name one bound, no field list, one error per union member,
and skip a model's cross-field checks (``kind: safety`` without a safety block) while any of its
fields fails, so a curator would fix the file in several passes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from curation.decontam import DecontamConfig
from curation.dedup import DedupConfig
from curation.errors import CuratorError, Problem
from curation.mixtures.spec import (
    DEFAULT_STAGE,
    KINDS,
    EvalTarget,
    MixtureSpec,
    PreferenceSpec,
    SourceSpec,
    StageSpec,
)
from curation.pairs import LABEL_SOURCES, SLIGHT, parse_labels
from curation.safety import SAFETY_TYPES, SafetySpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
    labels = data.get("labels", base.labels)
    try:
        parse_labels(labels if isinstance(labels, str) else "")
    except CuratorError:
        choices = f"{', '.join(LABEL_SOURCES)} or plan:<id>"
        reader.problem(_join(path, "labels"), f"expected one of {choices}, got {labels!r}")
        labels = base.labels
    return PreferenceSpec(
        labels=labels,
        judge=judge,
        slight=reader.choice(data, "slight", path, base.slight, SLIGHT),
        trusted_only=reader.flag(data, "trusted_only", path, base.trusted_only),
        accepted_only=reader.flag(data, "accepted_only", path, base.accepted_only),
        threshold=threshold,
        alpha=reader.number(data, "alpha", path, base.alpha, low=0.001, high=0.999),
        delta=reader.number(data, "delta", path, base.delta, low=0.001, high=0.999),
    )
