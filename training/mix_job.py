"""Building a mixture as the app, the CLI and the ``mix`` job kind do: curation's build, with trust
or escalate (:func:`routing.selective.trusted_labels`) for preference specs that keep only the
LM labels it trusts. Curation cannot reach up to routing, so the rule is handed down from here."""

from __future__ import annotations

from typing import Any

from curation import mixtures
from curation.mixtures import BuildResult, parse_spec
from curation.mixtures.spec import MixtureSpec
from curation.store import Store
from routing.selective import trusted_labels


def build_mixture(store: Store, spec: MixtureSpec, **options: Any) -> BuildResult:
    """:func:`curation.mixtures.build_mixture` with trust or escalate wired in (same options)."""
    return mixtures.build_mixture(store, spec, trust=trusted_labels, **options)


def run_build_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``mix`` job kind: build a mixture in the background; its job spec is
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
