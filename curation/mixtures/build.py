"""Building a spec: every stage drawn, the manifest (counts, reports, hashes) assembled, and a
new version stored, or the latest one returned when nothing changed."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.decontam import PromptSet, load_prompt_set
from curation.errors import CuratorError
from curation.mixtures.draw import Progress, build_stage
from curation.mixtures.formats import DATA_FILE, HF_DIR, row_bytes
from curation.mixtures.spec import MixtureSpec
from curation.mixtures.versions import decode_row, latest_row, store_version
from curation.pairs import TrustRule
from curation.store import Store


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
    trust: TrustRule | None = None,
) -> BuildResult:
    """Build a spec into a new version (or, when nothing changed, return the latest version).

    ``dry_run`` computes the manifest (pools, dedup, decontamination, counts) and writes nothing;
    ``new_version`` stores a new version even when it repeats the latest one byte for byte.
    ``trust`` is trust or escalate, which a preference spec's ``trusted_only`` needs: it lives
    above curation, so callers pass it (``training.mix_job.build_mixture`` does).
    """
    progress = progress or (lambda message, fraction: None)
    started = time.perf_counter()
    latest = latest_row(store, spec.name)
    if latest is not None and latest["kind"] != spec.kind:
        raise CuratorError(
            f"{spec.locate('name')}: mixture {spec.name!r} holds {latest['kind']} data; a "
            f"{spec.kind} spec needs another name"
        )
    eval_sets = _eval_sets(store, spec)
    stages = [build_stage(store, spec, stage, eval_sets, progress, trust) for stage in spec.stages]
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
        return BuildResult(decode_row(latest), json.loads(latest["manifest"]), reused=True)
    rows = [row for stage in stages for row in stage.rows]
    return BuildResult(*store_version(store, spec, rows, manifest, reports, job_id=job_id))
