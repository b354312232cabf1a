"""A mixture spec as data: the sources of each stage, the safety share, dedup, decontamination
and preference label rules, normalised and hashed so a build can be repeated exactly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curation.decontam import DecontamConfig
from curation.dedup import DedupConfig
from curation.errors import Problem
from curation.safety import SafetySpec

KINDS = ("sft", "safety", "preference")
DEFAULT_STAGE = "main"
# The dataset kinds each mixture kind can draw its (general) sources from.
SOURCE_KINDS = {
    "sft": ("sft", "safety"),
    "safety": ("sft", "safety"),
    "preference": ("preference",),
}


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
                          "judge otherwise; any label source of curation.pairs (best, human, "
                          "lm, gold, plan:<id>) too."},
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
    accepted_only: bool = field(
        default=False,
        metadata={"help": "Count only people's labels a reviewer accepted (a rejected label "
                          "never counts)."},
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
