"""Safety mixtures: WildJailbreak's four prompt types in chosen ratios, mixed into general SFT
data at a chosen safety fraction.

The four types are vanilla or adversarial (a jailbreak tactic wraps the request) crossed with
harmful or benign. The benign ones are the contrastive prompts that look like the harmful ones
but deserve an answer: they are the over-refusal control, so a mixture keeps a share of them
next to the harmful prompts it teaches the model to refuse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from curation.errors import CuratorError
from curation.preset_schemas import WILDJAILBREAK_TYPES

SAFETY_TYPES: tuple[str, ...] = WILDJAILBREAK_TYPES
BENIGN_TYPES = tuple(t for t in SAFETY_TYPES if t.endswith("_benign"))
EVEN_RATIOS = dict.fromkeys(SAFETY_TYPES, 0.25)


def type_ratios(harmful_share: float = 0.5, adversarial_share: float = 0.5) -> dict[str, float]:
    """The four ratios from two knobs: the share of harmful prompts (the rest are the benign
    over-refusal control) and the share of adversarial ones (the rest are vanilla)."""
    for name, value in (("harmful share", harmful_share), ("adversarial share", adversarial_share)):
        if not 0.0 <= value <= 1.0:
            raise CuratorError(f"the {name} must be between 0 and 1, got {value}")
    h, a = harmful_share, adversarial_share
    return {
        "vanilla_harmful": (1 - a) * h,
        "vanilla_benign": (1 - a) * (1 - h),
        "adversarial_harmful": a * h,
        "adversarial_benign": a * (1 - h),
    }


def normalise_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Ratios over the four types, summing to 1 (types left out get 0)."""
    unknown = sorted(set(ratios) - set(SAFETY_TYPES))
    if unknown:
        raise CuratorError(
            f"unknown safety type(s) {', '.join(unknown)}; the types are {', '.join(SAFETY_TYPES)}"
        )
    values = {t: float(ratios.get(t, 0.0)) for t in SAFETY_TYPES}
    if any(v < 0 or math.isnan(v) for v in values.values()):
        raise CuratorError("safety ratios cannot be negative")
    total = sum(values.values())
    if total <= 0:
        raise CuratorError("safety ratios are all zero: give at least one type a share")
    return {t: v / total for t, v in values.items()}


def split_count(total: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """``total`` rows shared out by ratio, rounded so the parts add up exactly (largest
    remainder; ties go to the type listed first)."""
    shares = normalise_ratios(ratios)
    exact = {t: total * shares[t] for t in SAFETY_TYPES}
    counts = {t: math.floor(v) for t, v in exact.items()}
    left = total - sum(counts.values())
    by_remainder = sorted(
        SAFETY_TYPES, key=lambda t: (-(exact[t] - counts[t]), SAFETY_TYPES.index(t))
    )
    for t in by_remainder[:left]:
        counts[t] += 1
    return counts


def safety_count(general_rows: int, fraction: float) -> int:
    """Safety rows to add so they make up ``fraction`` of the mixture with ``general_rows``
    general rows (a fraction of 1 means a safety-only mixture, which needs no general rows)."""
    if not 0.0 <= fraction <= 1.0:
        raise CuratorError(f"the safety fraction must be between 0 and 1, got {fraction}")
    if fraction == 1.0:
        raise CuratorError(
            "a safety fraction of 1 leaves no room for general data; give the safety set as an "
            "ordinary source with a count instead"
        )
    return round(general_rows * fraction / (1.0 - fraction))


def safety_type_of(subset: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    """An instance's WildJailbreak type: its subset, else ``metadata.data_type``."""
    for value in (subset, (metadata or {}).get("data_type")):
        if isinstance(value, str) and value.strip() in SAFETY_TYPES:
            return value.strip()
    return None


@dataclass
class SafetySpec:
    """The safety part of a mixture: which pool, which ratios, and how much of the mix."""

    dataset: str = field(
        default="", metadata={"help": "Safety dataset (WildJailbreak types as subsets)."}
    )
    fraction: float = field(
        default=0.1, metadata={"help": "Share of the mixture's rows that are safety rows."}
    )
    ratios: dict[str, float] = field(
        default_factory=lambda: dict(EVEN_RATIOS),
        metadata={"help": "Relative shares of vanilla/adversarial x harmful/benign."},
    )
    where: str = field(default="", metadata={"help": "Filter on the safety dataset."})
    prompts_only: bool = field(
        default=False,
        metadata={"help": "Keep prompts without a completion (as a lone user turn); by default "
                          "only prompts with a completion train."},
    )  # fmt: skip
    name: str = field(
        default="", metadata={"help": "Source name in the mixture (default: dataset)."}
    )

    def validate(self) -> SafetySpec:
        if not self.dataset:
            raise CuratorError("a safety mixture names its safety dataset")
        safety_count(0, self.fraction)
        self.ratios = normalise_ratios(self.ratios)
        return self

    @property
    def source(self) -> str:
        return self.name or self.dataset

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratios"] = {t: round(v, 6) for t, v in self.ratios.items()}
        return out

    def over_refusal_share(self) -> float:
        """The benign (over-refusal control) share of the safety rows."""
        return sum(self.ratios.get(t, 0.0) for t in BENIGN_TYPES)
