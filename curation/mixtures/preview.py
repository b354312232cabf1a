"""What the page shows around a build: the expected composition of a spec before building,
and a built manifest's reports as flat tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curation.errors import CuratorError
from curation.mixtures.pools import dataset_of, flagged_ids
from curation.mixtures.spec import SOURCE_KINDS, MixtureSpec
from curation.safety import SAFETY_TYPES, safety_count, split_count
from curation.store import InstanceFilter, Store


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
            dataset_of(store, spec, source.dataset, source.path + ".dataset", kinds)
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
            dataset_of(store, spec, safety.dataset, path, SOURCE_KINDS["safety"])
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
    excluded = flagged_ids(store, spec, dataset)
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
