"""Comparing two versions: spec fields, rows per source, and rows found in only one of them."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from curation.mixtures.read import data_path
from curation.mixtures.versions import resolve_mixture
from curation.store import Store


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
        with data_path(mixture).open("rb") as handle:
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
