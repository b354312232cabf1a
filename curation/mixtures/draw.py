"""One stage of a build: read its pools, drop duplicates and eval overlaps, draw each source's
rows (and the safety share by type) with their own seeds, and shuffle."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.decontam import DecontamConfig, PromptSet, decontaminate
from curation.dedup import DedupConfig, find_duplicates
from curation.errors import CuratorError
from curation.mixtures.pools import Candidate, Pool, preference_pool, sft_pool
from curation.mixtures.spec import MixtureSpec, SourceSpec, StageSpec
from curation.pairs import TrustRule
from curation.safety import SAFETY_TYPES, safety_count, split_count
from curation.store import Store

MANIFEST_EXAMPLES = 200  # dropped rows and matches listed in the manifest; reports/ has all

Progress = Callable[[str, float], None]


def _seed(*parts: Any) -> int:
    """A draw's own seed from the spec's seed and names, so adding a source moves no other."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


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
class BuiltStage:
    """A stage's drawn rows, shuffled, and its part of the manifest."""

    name: str
    rows: list[dict[str, Any]]
    report: dict[str, Any]


def build_stage(
    store: Store,
    spec: MixtureSpec,
    stage: StageSpec,
    eval_sets: list[PromptSet],
    progress: Progress,
    trust: TrustRule | None = None,
) -> BuiltStage:
    """One stage: read the pools, drop duplicates and eval overlaps, draw, shuffle."""
    label = f"stage {stage.name}" if len(spec.stages) > 1 else "pools"
    progress(f"{label}: reading sources", 0.0)
    pools = [
        preference_pool(store, spec, source, trust)
        if spec.kind == "preference"
        else sft_pool(store, spec, source, source.name, source.path)
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
        safety_pool = sft_pool(store, spec, stage.safety, stage.safety.source, stage.safety_path)
    every = [*pools, *([safety_pool] if safety_pool else [])]
    candidates = [c for p in every for c in p.candidates]
    keep = [True] * len(candidates)
    progress(f"{label}: removing duplicates", 0.3)
    dedup_report = _dedup(candidates, keep, spec.dedup)
    progress(f"{label}: checking eval overlap", 0.5)
    decontam_report = _decontaminate(candidates, keep, eval_sets, spec.decontaminate)
    progress(f"{label}: drawing rows", 0.8)
    kept_of: dict[str, list[Candidate]] = {p.source: [] for p in every}
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
    return BuiltStage(stage.name, rows, report)


def _dedup(
    candidates: list[Candidate], keep: list[bool], config: DedupConfig | None
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
    candidates: list[Candidate],
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
    pool: Pool,
    available: list[Candidate],
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
    pool: Pool,
    available: list[Candidate],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Draw the safety rows: the safety fraction of the general rows drawn so far, shared out
    over the four types by ratio (a type short of prompts is upsampled, and says so)."""
    safety = stage.safety
    assert safety is not None
    general = len(rows)
    total = safety_count(general, safety.fraction)
    wanted = split_count(total, safety.ratios)
    by_type: dict[str, list[Candidate]] = {t: [] for t in SAFETY_TYPES}
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
