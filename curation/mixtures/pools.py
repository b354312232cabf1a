"""Pools: the rows each source could contribute (conversations, safety prompts with their
completions, or preference pairs under the hybrid label rules), and what was left out and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.decontam import user_text
from curation.errors import CuratorError
from curation.flags import excluded_instance_ids
from curation.mixtures.spec import SOURCE_KINDS, MixtureSpec, SourceSpec
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


def sft_pool(
    store: Store, spec: MixtureSpec, source: SourceSpec | SafetySpec, name: str, path: str
) -> Pool:
    """SFT rows of a source: conversations, or a safety prompt with its completion."""
    info = dataset_of(store, spec, source.dataset, path + ".dataset", SOURCE_KINDS["sft"])
    pool = Pool(name, source.dataset, source)
    chosen = _filtered_ids(store, source.dataset, source.where, spec.locate(path + ".where"))
    flagged = flagged_ids(store, spec, source.dataset)
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


def preference_pool(store: Store, spec: MixtureSpec, source: SourceSpec) -> Pool:
    """Preference rows of a source: prompt/chosen/rejected from the hybrid labels."""
    dataset_of(store, spec, source.dataset, source.path + ".dataset", SOURCE_KINDS["preference"])
    pool = Pool(source.name, source.dataset, source)
    chosen = _filtered_ids(store, source.dataset, source.where, spec.locate(source.path + ".where"))
    flagged = flagged_ids(store, spec, source.dataset)
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
            Candidate(source.name, instance_id, row, prompt, f"{prompt}\n{first}\n{second}")
        )
    info["label_origin"] = dict(sorted(used.items()))
    pool.labels = info
    return pool
