"""What the trainers train on: a store dataset (or a built mixture) turned into preference pairs or
chat examples, split deterministically into a training part and a held-out part.

Which side of a pair is "chosen" comes from a label source (``labels``: best, hybrid, human, lm,
gold or plan:<id>), read by :func:`curation.pairs.pair_labels`, the one home of the label rules.
Pairs without a usable label (no label, or a tie) are dropped and counted.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CuratorError
from curation.mixtures import DATA_FILE, iter_mixture_rows
from curation.pairs import pair_labels
from curation.preset_fields import FieldError
from curation.presets import get_preset
from curation.records import Instance
from curation.store import Store

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (the conversation up to the last user turn) and two replies, the better first."""

    prompt: tuple[tuple[str, str], ...]  # (role, content) turns, hashable and immutable
    chosen: str
    rejected: str
    instance_id: int | None = None
    label_source: str = ""

    @property
    def messages(self) -> Messages:
        return [{"role": role, "content": content} for role, content in self.prompt]


@dataclass(frozen=True)
class ChatExample:
    """A conversation whose last turn is the assistant reply to learn; earlier turns are context."""

    turns: tuple[tuple[str, str], ...]
    instance_id: int | None = None

    @property
    def messages(self) -> Messages:
        return [{"role": role, "content": content} for role, content in self.turns]

    @property
    def prompt(self) -> Messages:
        return self.messages[:-1]

    @property
    def completion(self) -> Messages:
        return self.messages[-1:]


@dataclass
class TrainingData:
    """A trainer's examples: the training part, the held-out part, and how they were made."""

    train: list[Any]
    held_out: list[Any]
    stats: dict[str, Any] = field(default_factory=dict)


def _turns(messages: Sequence[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


def prompt_turns(instance: Instance) -> Messages:
    """The conversation a pair's replies answer: its stored messages, else its prompt as one turn."""
    if instance.messages:
        return [dict(m) for m in instance.messages]
    return [{"role": "user", "content": instance.prompt}]


# ---- mixtures --------------------------------------------------------------------------------


def read_jsonl(path: str | Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Records of a JSONL file (``.gz`` too) or of every such file in a folder, in name order, as
    (file name, line number, record)."""
    path = Path(path)
    files = (
        sorted(p for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
        if path.is_dir()
        else [path]
    )
    if not files:
        raise CuratorError(f"no .jsonl files in {path}")
    for file in files:
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CuratorError(f"{file.name}:{line_no}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise CuratorError(f"{file.name}:{line_no}: a record must be a JSON object")
                yield file.name, line_no, record


def mixture_records(store: Store, ref: str) -> Iterator[tuple[str, Instance, int]]:
    """A built mixture's records as (form, instance, winner), see :func:`_mixture_record`.

    Read only through the store's checked reader: a ``data.jsonl`` edited since the build no
    longer matches its content hash, and training on it is refused before any row is read."""
    for line, record in enumerate(iter_mixture_rows(store, ref, verify=True), 1):
        yield _mixture_record(DATA_FILE, line, record)


def _mixture_record(name: str, line: int, record: dict[str, Any]) -> tuple[str, Instance, int]:
    """A mixture record as ("pair" or "chat", instance, winner): pairs in any TRL form through
    the ``trl`` import preset (winner -1 when A is chosen), conversations through ``sft``."""
    try:
        if "chosen" in record or "rejected" in record:
            if record.get("messages"):  # a multi-turn pair: the conversation is the prompt
                record = {**record, "prompt": record["messages"]}
            item = get_preset("trl").convert(record)
            return "pair", item.instance, int(item.annotations[0].overall or 0)
        if "messages" in record:
            return "chat", get_preset("sft").convert(record).instance, 0
    except FieldError as exc:
        raise CuratorError(f"{name}:{line} [{exc.field}]: {exc.message}") from None
    raise CuratorError(f"{name}:{line}: a mixture record needs prompt/chosen/rejected or messages")


# ---- examples --------------------------------------------------------------------------------


def as_pair(instance: Instance, winner: int, **extra: Any) -> PreferencePair:
    """A pair as chosen/rejected from its two responses and a winner (negative: A)."""
    a, b = instance.response_a or "", instance.response_b or ""
    chosen, rejected = (a, b) if winner < 0 else (b, a)
    return PreferencePair(_turns(prompt_turns(instance)), chosen, rejected, **extra)


def _chat(instance: Instance, reply: str | None, **extra: Any) -> ChatExample | None:
    """A chat example: an SFT conversation as stored (it must end with an assistant turn), or a
    prompt with the reply given."""
    if reply is None:
        messages = instance.messages or []
        if not messages or messages[-1]["role"] != "assistant":
            return None
        return ChatExample(_turns(messages), **extra)
    if not reply.strip():
        return None
    turns = [*prompt_turns(instance), {"role": "assistant", "content": reply}]
    return ChatExample(_turns(turns), **extra)


def preference_pairs(
    store: Store,
    *,
    dataset: str | None = None,
    mixture: str | None = None,
    labels: str = "best",
    judge: str | None = None,
) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Every usable pair of a dataset (labelled by ``labels``) or of a mixture's file (its own
    chosen/rejected), in a fixed order, with counts of what was kept and dropped."""
    pairs: list[PreferencePair] = []
    dropped: Counter = Counter()
    by_source: Counter = Counter()
    if mixture:
        for form, instance, winner in mixture_records(store, mixture):
            if form != "pair":
                raise CuratorError(
                    f"mixture {mixture!r} holds conversations, not preference pairs "
                    "(train SFT on it, or build a preference mixture)"
                )
            pairs.append(as_pair(instance, winner, label_source="mixture"))
            by_source["mixture"] += 1
        stats = {"mixture": mixture, "records": len(pairs)}
    else:
        if not dataset:
            raise CuratorError("name a dataset or a mixture to train on")
        kind = store.dataset(dataset)["kind"]
        if kind in ("sft", "safety"):
            raise CuratorError(
                f"{dataset!r} is {kind} data without response pairs; reward models and DPO "
                "train on preference (or eval) datasets"
            )
        labelled = pair_labels(store, dataset, labels, judge=judge)
        winners, dropped = labelled.winners, labelled.dropped
        total = 0
        for instance_id, instance in store.iter_instances(dataset):
            total += 1
            if instance_id not in winners:
                continue
            if not instance.response_a or not instance.response_b:
                dropped["missing a response"] += 1
                continue
            winner, source = winners[instance_id]
            pairs.append(as_pair(instance, winner, instance_id=instance_id, label_source=source))
            by_source[source] += 1
        stats = {"dataset": dataset, "labels": labels, "judge": judge, "instances": total}
    if not pairs:
        why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "no pairs"
        raise CuratorError(f"nothing to train on: no usable preference pair ({why})")
    return pairs, stats | {
        "pairs": len(pairs),
        "by_label_source": dict(by_source),
        "dropped": dict(dropped),
    }


def chat_examples(
    store: Store,
    *,
    dataset: str | None = None,
    mixture: str | None = None,
    labels: str = "best",
    judge: str | None = None,
) -> tuple[list[ChatExample], dict[str, Any]]:
    """SFT examples: an sft dataset's conversations as stored (the last assistant turn is learnt);
    for a preference dataset the prompt with its chosen reply under ``labels`` (a single-response
    item without a label uses its one reply); a mixture's conversations or chosen replies."""
    examples: list[ChatExample] = []
    dropped: Counter = Counter()
    if mixture:
        for form, instance, winner in mixture_records(store, mixture):
            if form == "chat":
                example = _chat(instance, None)
            else:
                example = _chat(instance, as_pair(instance, winner).chosen)
            if example is None:
                dropped["no assistant reply"] += 1
                continue
            examples.append(example)
        stats: dict[str, Any] = {"mixture": mixture}
    else:
        if not dataset:
            raise CuratorError("name a dataset or a mixture to train on")
        kind = store.dataset(dataset)["kind"]
        if kind == "safety":
            raise CuratorError(
                f"{dataset!r} holds safety prompts without replies; SFT trains on sft or "
                "preference datasets, or on a mixture"
            )
        winners: dict[int, tuple[int, str]] = {}
        if kind in ("preference", "eval"):
            winners = pair_labels(store, dataset, labels, judge=judge).winners
        total = 0
        for instance_id, instance in store.iter_instances(dataset):
            total += 1
            if kind == "sft":
                example = _chat(instance, None, instance_id=instance_id)
            elif instance_id in winners:
                pair = as_pair(instance, winners[instance_id][0])
                example = _chat(instance, pair.chosen, instance_id=instance_id)
            elif instance.response_a and not instance.response_b:
                example = _chat(instance, instance.response_a, instance_id=instance_id)
            else:
                dropped["no usable label"] += 1
                continue
            if example is None:
                dropped["no assistant reply"] += 1
                continue
            examples.append(example)
        stats = {"dataset": dataset, "labels": labels, "judge": judge, "instances": total}
    if not examples:
        why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "no examples"
        raise CuratorError(f"nothing to train on: no usable conversation ({why})")
    return examples, stats | {"examples": len(examples), "dropped": dict(dropped)}


# ---- the split -------------------------------------------------------------------------------


def split_examples(
    examples: Sequence[Any], eval_fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """A deterministic (seeded) random split into (train, held out); at least one example is held
    out whenever ``eval_fraction`` > 0 and there are two or more, and at least one trains."""
    if not 0 <= eval_fraction < 1:
        raise CuratorError("eval_fraction must be in [0, 1)")
    n = len(examples)
    order = np.random.default_rng(seed).permutation(n)
    n_eval = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        n_eval = min(max(n_eval, 1), n - 1)
    held_out = [examples[i] for i in order[:n_eval]]
    train = [examples[i] for i in order[n_eval:]]
    return train, held_out


def load_training_data(store: Store, config: Any, form: str) -> TrainingData:
    """The examples a trainer config names (``form``: "pairs" or "chat"), split by its
    ``eval_fraction`` and ``seed``; ``limit`` caps the training part only, so the held-out part
    (and a comparison of runs on it) does not change with the limit."""
    load = {"pairs": preference_pairs, "chat": chat_examples}[form]
    examples, stats = load(
        store,
        dataset=config.dataset,
        mixture=config.mixture,
        labels=getattr(config, "labels", "best"),
        judge=getattr(config, "judge", None),
    )
    train, held_out = split_examples(examples, config.eval_fraction, config.seed)
    if config.limit is not None:
        train = train[: config.limit]
    return TrainingData(train, held_out, stats | {"train": len(train), "held_out": len(held_out)})
