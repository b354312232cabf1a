"""Pools: the rows each source could contribute (conversations, safety prompts with their
completions, or preference pairs under a label source of :mod:`curation.pairs`), and what was
left out and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.decontam import user_text
from curation.errors import CuratorError
from curation.flags import excluded_instance_ids
from curation.mixtures.spec import SOURCE_KINDS, MixtureSpec, SourceSpec
from curation.pairs import PairLabels, TrustedLabels, TrustRule, pair_labels
from curation.records import Instance
from curation.safety import SafetySpec, safety_type_of
from curation.store import InstanceFilter, Store


@dataclass
class Candidate:
    """A row a source could contribute, with the texts dedup and decontamination compare."""

    source: str
    instance_id: int
    row: dict[str, Any]
    prompt: str
    example: str
    safety_type: str | None = None


@dataclass
class Pool:
    """One source's candidates, and what was left out on the way and why."""

    source: str
    dataset: str
    spec: SourceSpec | SafetySpec
    instances: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)
    labels: dict[str, Any] | None = None  # preference pools: where the labels came from


# How a pair without a winner is counted in the manifest, by why (see curation.pairs.MISSING).
_LEFT_OUT = {"tie": "{}_no_verdict", "unlabelled": "unlabelled", "untrusted": "{}_untrusted"}


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


def dataset_of(
    store: Store, spec: MixtureSpec, name: str, path: str, kinds: Sequence[str]
) -> dict[str, Any]:
    """The dataset a source names, refused (at its place in the spec) when missing or when it
    holds a kind of data this mixture cannot draw from."""
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


def flagged_ids(store: Store, spec: MixtureSpec, dataset: str) -> set[int]:
    """The instances a flag excludes, unless the spec keeps flagged instances."""
    if not spec.exclude_flagged:
        return set()
    return excluded_instance_ids(store, dataset)


def _eligible(
    store: Store, spec: MixtureSpec, pool: Pool, where: str, path: str
) -> Iterator[tuple[int, Instance]]:
    """A source's instances that its filter keeps and no flag excludes; the others are counted
    in the pool's ``left_out`` (``filtered``, ``flagged``)."""
    chosen = _filtered_ids(store, pool.dataset, where, spec.locate(path + ".where"))
    flagged = flagged_ids(store, spec, pool.dataset)
    for instance_id, inst in store.iter_instances(pool.dataset):
        pool.instances += 1
        if chosen is not None and instance_id not in chosen:
            pool.left_out["filtered"] += 1
        elif instance_id in flagged:
            pool.left_out["flagged"] += 1
        else:
            yield instance_id, inst


def sft_pool(
    store: Store, spec: MixtureSpec, source: SourceSpec | SafetySpec, name: str, path: str
) -> Pool:
    """SFT rows of a source: conversations, or a safety prompt with its completion."""
    info = dataset_of(store, spec, source.dataset, path + ".dataset", SOURCE_KINDS["sft"])
    pool = Pool(name, source.dataset, source)
    prompts_only = isinstance(source, SafetySpec) and source.prompts_only
    with_type = spec.kind == "safety"
    for instance_id, inst in _eligible(store, spec, pool, source.where, path):
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
            Candidate(
                name,
                instance_id,
                row,
                user_text(inst.prompt, messages),
                _example_text(messages),
                safety_type,
            )
        )
    return pool


def _trust(
    store: Store, spec: MixtureSpec, dataset: str, rule: TrustRule | None
) -> Callable[[str], TrustedLabels] | None:
    """The trusted-only rule for one source's judge, when the spec asks for it. Trust or escalate
    lives above curation (``routing.selective``), so the builder's caller supplies it."""
    pref = spec.preference
    if not pref.trusted_only:
        return None

    def trusted(judge: str) -> TrustedLabels:
        if rule is None:
            raise CuratorError(
                f"{spec.locate('preference.trusted_only')}: keeping only trusted LM labels needs "
                "trust or escalate; build with `curator mix build`, the Mix page or a mix job"
            )
        return rule(
            store, dataset, judge, threshold=pref.threshold, alpha=pref.alpha, delta=pref.delta
        )

    return trusted


def _preference_labels(
    store: Store, spec: MixtureSpec, dataset: str, trust: TrustRule | None
) -> tuple[PairLabels, dict[str, Any]]:
    """Each instance's training verdict under the spec's label source (:mod:`curation.pairs`)
    and where the labels came from; trusted-only keeps an LM verdict only where trust or
    escalate (``trust``) would not escalate the instance."""
    pref = spec.preference
    labels = pair_labels(
        store,
        dataset,
        pref.labels,
        judge=pref.judge,
        slight=pref.slight,
        trust=_trust(store, spec, dataset, trust),
        accepted_only=pref.accepted_only,
    )
    info: dict[str, Any] = {"judge": labels.judge, "labels": pref.labels, "slight": pref.slight}
    if labels.trusted is not None:
        if labels.trusted.calibration is not None:
            info["calibration"] = labels.trusted.calibration
        info["threshold"] = labels.trusted.threshold
    return labels, info


def preference_pool(
    store: Store, spec: MixtureSpec, source: SourceSpec, trust: TrustRule | None = None
) -> Pool:
    """Preference rows of a source: prompt/chosen/rejected under the spec's label source."""
    dataset_of(store, spec, source.dataset, source.path + ".dataset", SOURCE_KINDS["preference"])
    pool = Pool(source.name, source.dataset, source)
    labels, info = _preference_labels(store, spec, source.dataset, trust)
    used: Counter[str] = Counter()
    for instance_id, inst in _eligible(store, spec, pool, source.where, source.path):
        if not inst.response_a or not inst.response_b:
            pool.left_out["no_response"] += 1
            continue
        if instance_id not in labels.winners:
            consulted, why = labels.missing.get(instance_id, ("", "unlabelled"))
            pool.left_out[_LEFT_OUT[why].format(consulted)] += 1
            continue
        side, origin = labels.winners[instance_id]
        used[origin] += 1
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
            Candidate(source.name, instance_id, row, prompt, f"{prompt}\n{first}\n{second}")
        )
    info["label_origin"] = dict(sorted(used.items()))
    pool.labels = info
    return pool
