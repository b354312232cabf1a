"""Presets for published schemas: MultiPref, TRL, UltraFeedback, HelpSteer2, hh-rlhf, PandaLM,
Tulu-style SFT messages, Alpaca, prompt/completion, WildJailbreak and RewardBench.

Each preset turns one input record into one instance (and the labels that came with it); fields a
preset does not map are kept in the instance's metadata, so nothing in the source is lost.
Signatures are chosen so that :func:`curation.presets.detect_preset` never has to guess between
two of them: where two schemas share their columns, the more specific one has more.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.labels import parse_preference
from curation.preset_fields import (
    FieldError,
    Preset,
    json_safe,
    messages,
    optional_text,
    register,
    reply,
    require,
    rest_as_metadata,
    split_conversation,
    text,
    uid_of,
)
from curation.records import ANNOTATOR_KINDS, Annotation, ImportedItem, Instance, validate_messages

# ---- shared helpers -------------------------------------------------------------------------


def chosen_goes_first(key: str) -> bool:
    """Whether a chosen response takes slot A: a fixed coin flip on the row's key.

    Chosen/rejected data always lists the winner first. Stored that way, "A wins" becomes a
    shortcut that anything trained or judged on the store can learn; hashing keeps the layout
    random-looking yet identical every time the same file is imported.
    """
    return hashlib.sha256(key.encode("utf-8")).digest()[0] % 2 == 0


def _winner(chosen_first: bool) -> int:
    """The label saying the chosen response is clearly better, wherever it was placed."""
    return -2 if chosen_first else 2


def _json_list(record: dict[str, Any], field: str) -> list[Any]:
    """A list field; CSV cells hold lists as JSON text, so text is parsed first."""
    value = require(record, field)
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FieldError(field, f"invalid JSON text: {exc.msg}") from exc
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise FieldError(field, f"expected a list, got {type(value).__name__}")
    return value


def _integer(record: dict[str, Any], field: str, allowed: range) -> int:
    """An integer field (CSV gives it as text) that must lie in ``allowed``."""
    value = require(record, field)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if number is None or number not in allowed:
        raise FieldError(
            field, f"expected an integer from {allowed.start} to {allowed.stop - 1}, got {value!r}"
        )
    return number


def _number(record: dict[str, Any], field: str) -> float:
    value = require(record, field)
    if isinstance(value, bool):
        raise FieldError(field, f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise FieldError(field, f"expected a number, got {value!r}") from exc


def _annotator_kind(record: dict[str, Any]) -> str:
    kind = optional_text(record, "annotator_kind") or "human"
    if kind not in ANNOTATOR_KINDS:
        raise FieldError("annotator_kind", f"expected human or lm, got {kind!r}")
    return kind


# ---- chosen/rejected pairs in any TRL form --------------------------------------------------

_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_REPLY = "\n\nAssistant:"


def parse_hh_dialogue(field: str, dialogue: str) -> list[dict[str, str]]:
    """Anthropic's ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` text as chat messages."""
    parts = _HH_TURN.split(dialogue)
    if parts[0].strip():
        raise FieldError(field, "has text before its first 'Human:' turn")
    if len(parts) < 3:
        raise FieldError(field, "has no 'Human:' / 'Assistant:' turns")
    return [
        {"role": _HH_ROLES[role], "content": content}
        for role, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


@dataclass
class _Pair:
    """A prompt and its two replies, whichever form the row gave them in."""

    prompt: str
    prompt_messages: list[dict[str, str]] | None
    chosen: str
    rejected: str
    extra: dict[str, Any]

    def key(self) -> str:
        return "\x1f".join((self.prompt, self.chosen, self.rejected))


def _hh_split(chosen: str, rejected: str) -> tuple[list[dict[str, str]], str, str]:
    """Split two text dialogues at the last Assistant turn they share.

    Cutting the text (rather than the parsed turns) keeps each reply exactly as written, even
    where a reply itself runs on into further "Human:"/"Assistant:" turns, as a few hh-rlhf
    rows do.
    """
    cut = os.path.commonprefix([chosen, rejected]).rfind(_HH_REPLY)
    if cut < 0:
        raise FieldError("chosen", "chosen and rejected share no '\\n\\nAssistant:' turn")
    start = cut + len(_HH_REPLY)
    turns = parse_hh_dialogue("chosen", chosen[:cut])
    return turns, chosen[start:].removeprefix(" "), rejected[start:].removeprefix(" ")


def _split_dialogues(
    chosen: list[dict[str, str]], rejected: list[dict[str, str]]
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """Two full conversations as (shared prompt, chosen reply turns, rejected reply turns).

    The prompt is the longest shared prefix that does not end in an assistant turn, as in TRL's
    implicit-prompt form, so each reply starts where the assistant starts speaking.
    """
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and chosen[k - 1]["role"] == "assistant":
        k -= 1
    if k == 0:
        raise FieldError("chosen", "chosen and rejected share no prompt turn")
    if k == len(chosen):
        raise FieldError("chosen", "has no reply after the prompt it shares with rejected")
    if k == len(rejected):
        raise FieldError("rejected", "has no reply after the prompt it shares with chosen")
    return chosen[:k], chosen[k:], rejected[k:]


def _conversation(field: str, value: Any) -> list[dict[str, str]]:
    try:
        return validate_messages(value)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from exc


def _prompt_turns(record: dict[str, Any]) -> list[dict[str, str]]:
    value = require(record, "prompt")
    if isinstance(value, list):
        return messages(record, "prompt")
    if not isinstance(value, str):
        raise FieldError(
            "prompt", f"expected text or a list of messages, got {type(value).__name__}"
        )
    return [{"role": "user", "content": text(record, "prompt")}]


def _joined(turns: list[dict[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in turns)


def _chosen_rejected(record: dict[str, Any]) -> _Pair:
    """The prompt and replies of a chosen/rejected row in any of TRL's forms.

    Accepted: prompt text + reply texts; prompt messages + reply messages (the assistant
    turns only); no prompt and two full text dialogues (hh-rlhf); two full conversations
    sharing their prompt turns (TRL's implicit prompt, UltraFeedback, MultiPref binarized),
    with or without a ``prompt`` column beside them.
    """
    chosen, rejected = require(record, "chosen"), require(record, "rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str | list):
            raise FieldError(
                name, f"expected text or a list of messages, got {type(value).__name__}"
            )
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise FieldError("rejected", "must have the same form as chosen (text, or messages)")
    has_prompt = record.get("prompt") not in (None, "")
    extra: dict[str, Any] = {}
    if isinstance(chosen, str):
        if has_prompt:
            turns, chosen_text, rejected_text = _prompt_turns(record), chosen, rejected
        else:
            turns, chosen_text, rejected_text = _hh_split(chosen, rejected)
    else:
        chosen_turns = _conversation("chosen", chosen)
        rejected_turns = _conversation("rejected", rejected)
        if any(m["role"] == "user" for m in chosen_turns):
            turns, chosen_turns, rejected_turns = _split_dialogues(chosen_turns, rejected_turns)
        elif has_prompt:
            turns = _prompt_turns(record)
        else:
            raise FieldError("prompt", "missing: chosen and rejected hold only the replies")
        for name, reply in (("chosen", chosen_turns), ("rejected", rejected_turns)):
            if len(reply) > 1:
                extra[f"{name}_messages"] = reply
        chosen_text, rejected_text = _joined(chosen_turns), _joined(rejected_turns)
    prompt, prompt_messages = split_conversation("prompt" if has_prompt else "chosen", turns)
    return _Pair(prompt, prompt_messages, chosen_text, rejected_text, extra)


def _placed(
    pair: _Pair, key: str, record: dict[str, Any], used: Iterable[str], **instance: Any
) -> tuple[Instance, bool]:
    """The instance of a chosen/rejected pair with the chosen reply in slot A or B by ``key``.

    ``metadata.chosen`` records the slot, so the original pair can always be rebuilt.
    """
    first = chosen_goes_first(key)
    models = optional_text(record, "chosen_model"), optional_text(record, "rejected_model")
    replies = pair.chosen, pair.rejected
    if not first:
        models, replies = models[::-1], replies[::-1]
    metadata = rest_as_metadata(
        record, {"prompt", "chosen", "rejected", "chosen_model", "rejected_model", *used}
    )
    metadata.update(pair.extra)
    metadata["chosen"] = "a" if first else "b"
    built = Instance(
        prompt=pair.prompt,
        messages=pair.prompt_messages,
        response_a=replies[0],
        response_b=replies[1],
        model_a=models[0],
        model_b=models[1],
        metadata=metadata,
        **instance,
    )
    return built, first


# ---- TRL and hh-rlhf ------------------------------------------------------------------------


def _trl(record: dict[str, Any]) -> ImportedItem:
    pair = _chosen_rejected(record)
    uid = uid_of(record, "id", "uid")
    kind = _annotator_kind(record)
    instance, first = _placed(
        pair,
        uid or pair.key(),
        record,
        ("id", "uid", "annotator", "annotator_kind", "source", "domain"),
        uid=uid,
        source=optional_text(record, "source"),
        domain=optional_text(record, "domain"),
    )
    annotator = optional_text(record, "annotator") or f"imported-{kind}"
    return ImportedItem(instance, [Annotation(kind, annotator, overall=_winner(first))])


_TRL_FIELDS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_model",
    "rejected_model",
    "annotator",
    "annotator_kind",
    "source",
    "domain",
    "id",
)

register(
    Preset(
        name="trl",
        kind="preference",
        description="TRL preference rows: prompt, chosen, rejected as text, or as messages (prompt "
        "turns; the reply's assistant turns), or full conversations sharing their prompt turns. "
        "Chosen lands in A or B by a hash of the id (or the texts); the label is a human one "
        "('imported-human') unless annotator_kind/annotator say otherwise",
        signature=("prompt", "chosen", "rejected"),
        convert=_trl,
        fields=_TRL_FIELDS,
    )
)

register(
    Preset(
        name="hh-rlhf",
        kind="preference",
        description="Anthropic hh-rlhf: chosen and rejected, each a whole '\\n\\nHuman: ... "
        "\\n\\nAssistant: ...' dialogue (or a message list); the shared turns are the prompt, the "
        "final Assistant turns the replies; a human label ('imported-human')",
        signature=("chosen", "rejected"),
        convert=_trl,
        fields=_TRL_FIELDS,
    )
)


# ---- UltraFeedback and MultiPref binarized --------------------------------------------------


def _ultrafeedback(record: dict[str, Any]) -> ImportedItem:
    pair = _chosen_rejected(record)
    score_chosen = _number(record, "score_chosen")
    score_rejected = _number(record, "score_rejected")
    uid = uid_of(record, "id", "uid")
    instance, first = _placed(
        pair,
        uid or optional_text(record, "prompt_id") or pair.key(),
        record,
        ("id", "uid", "messages", "source"),
        uid=uid,
        source=optional_text(record, "source"),
    )
    overall = 0 if score_chosen == score_rejected else _winner(first)
    return ImportedItem(instance, [Annotation("lm", "gpt-4-ultrafeedback", overall=overall)])


register(
    Preset(
        name="ultrafeedback",
        kind="preference",
        description="HuggingFaceH4/ultrafeedback_binarized: prompt, prompt_id, chosen and rejected "
        "(conversations), messages, score_chosen, score_rejected; an LM label "
        "('gpt-4-ultrafeedback'), a tie where the scores are equal; scores kept in metadata",
        signature=("prompt", "chosen", "rejected", "score_chosen", "score_rejected"),
        convert=_ultrafeedback,
        fields=(
            "prompt",
            "prompt_id",
            "chosen",
            "rejected",
            "score_chosen",
            "score_rejected",
            "id",
        ),
    )
)


def _binarized(kind: str, annotator: str):
    """MultiPref's binarized configs: one converter, the label's author differs."""

    def convert(record: dict[str, Any]) -> ImportedItem:
        pair = _chosen_rejected(record)
        uid = uid_of(record, "comparison_id", "id")
        key = uid or optional_text(record, "prompt_id") or pair.key()
        instance, first = _placed(
            pair,
            key,
            record,
            ("comparison_id", "id", "source"),
            uid=uid,
            source=optional_text(record, "source"),
        )
        return ImportedItem(instance, [Annotation(kind, annotator, overall=_winner(first))])

    return convert


_BINARIZED_FIELDS = (
    "prompt_id",
    "prompt",
    "chosen",
    "rejected",
    "chosen_model",
    "rejected_model",
    "comparison_id",
)

register(
    Preset(
        name="multipref-gpt4",
        kind="preference",
        description="MultiPref's gpt4_overall_binarized config: prompt_id, prompt, chosen, rejected "
        "(text or conversations), chosen_model, rejected_model; chosen lands in A or B by a hash "
        "of the comparison/prompt id; an LM label ('gpt-4')",
        signature=("prompt_id", "prompt", "chosen", "rejected", "chosen_model", "rejected_model"),
        convert=_binarized("lm", "gpt-4"),
        fields=_BINARIZED_FIELDS,
    )
)

register(
    Preset(
        name="multipref-human",
        kind="preference",
        description="MultiPref's human_overall_binarized config (same columns as multipref-gpt4, "
        "so never detected: name it); a human label ('imported-human')",
        signature=(),
        convert=_binarized("human", "imported-human"),
        fields=_BINARIZED_FIELDS,
    )
)


# ---- HelpSteer2 -----------------------------------------------------------------------------

# HelpSteer2's -3..3 folds onto -2..2: "much better" and "better" are both clearly better.
_HELPSTEER2_STRENGTH = {-3: -2, -2: -2, -1: -1, 0: 0, 1: 1, 2: 2, 3: 2}


def _helpsteer2(record: dict[str, Any]) -> ImportedItem:
    strength = _integer(record, "preference_strength", range(-3, 4))
    instance = Instance(
        uid=uid_of(record, "id", "uid"),
        prompt=text(record, "prompt"),
        response_a=reply(record, "response_1"),
        response_b=reply(record, "response_2"),
        metadata=rest_as_metadata(
            record,
            (
                "id",
                "uid",
                "prompt",
                "response_1",
                "response_2",
                "preference_statement",
                "preference_elaboration",
            ),
        ),
    )
    elaboration = optional_text(record, "preference_elaboration")
    annotation = Annotation(
        "human",
        "imported-human",
        overall=_HELPSTEER2_STRENGTH[strength],
        justification=optional_text(record, "preference_statement"),
        reasons={"elaboration": elaboration} if elaboration else {},
    )
    return ImportedItem(instance, [annotation])


register(
    Preset(
        name="helpsteer2",
        kind="preference",
        description="nvidia/HelpSteer2 preference: prompt, response_1 (A), response_2 (B), "
        "preference_strength -3..3 (negative: response_1 better; |3|,|2| clearly, |1| slightly), "
        "preference_statement (justification), preference_elaboration, split; a human label",
        signature=("prompt", "response_1", "response_2", "preference_strength"),
        convert=_helpsteer2,
        fields=(
            "prompt",
            "response_1",
            "response_2",
            "preference_strength",
            "preference_statement",
            "preference_elaboration",
            "id",
        ),
    )
)


# ---- MultiPref ------------------------------------------------------------------------------

_MULTIPREF_CONFIDENCE = {
    "absolutely-confident": "high",
    "fairly-confident": "medium",
    "not-confident": "low",
    "high": "high",
    "medium": "medium",
    "low": "low",
}
_MULTIPREF_ASPECTS = ("overall", "helpful", "harmless", "truthful")


def _multipref_annotation(group: str, index: int, raw: Any) -> Annotation:
    where = f"{group}_worker_annotations[{index}]"
    if not isinstance(raw, dict):
        raise FieldError(where, f"expected an object, got {type(raw).__name__}")
    evaluator = raw.get("evaluator")
    if evaluator in (None, ""):
        raise FieldError(f"{where}.evaluator", "missing: who gave this label")
    labels: dict[str, int | None] = {}
    for aspect in _MULTIPREF_ASPECTS:
        value = raw.get(f"{aspect}_pref")
        try:
            labels[aspect] = None if value in (None, "") else parse_preference(value)
        except ValueError as exc:
            raise FieldError(f"{where}.{aspect}_pref", str(exc)) from exc
    if all(v is None for v in labels.values()):
        raise FieldError(f"{where}.overall_pref", "missing: the annotation has no preference")
    level = raw.get("overall_confidence")
    if level not in (None, "") and str(level).lower() not in _MULTIPREF_CONFIDENCE:
        raise FieldError(
            f"{where}.overall_confidence",
            f"{level!r} is not one of {', '.join(k for k in _MULTIPREF_CONFIDENCE if '-' in k)}",
        )
    spent = raw.get("time_spent")
    try:
        time_spent = None if spent in (None, "") else float(spent)
    except (TypeError, ValueError) as exc:
        raise FieldError(f"{where}.time_spent", f"expected seconds, got {spent!r}") from exc
    kept = ("_checked_reasons", "_own_reason", "_confidence")
    reasons = {
        k: v
        for k, v in raw.items()
        if ((k.endswith(kept) and k != "overall_confidence") or k == "timestamp")
        and v not in (None, "", [])
    }
    return Annotation(
        "human",
        f"{group}:{evaluator}",
        confidence_level=_MULTIPREF_CONFIDENCE[str(level).lower()] if level else None,
        reasons=json_safe(reasons),
        time_spent_s=time_spent,
        **labels,
    )


def _multipref(record: dict[str, Any]) -> ImportedItem:
    instance = Instance(
        uid=str(require(record, "comparison_id")),
        prompt=text(record, "text"),
        response_a=reply(record, "completion_a"),
        response_b=reply(record, "completion_b"),
        model_a=optional_text(record, "model_a"),
        model_b=optional_text(record, "model_b"),
        source=optional_text(record, "source"),
        domain=optional_text(record, "category") or optional_text(record, "subject_study"),
        metadata=rest_as_metadata(
            record,
            (
                "comparison_id",
                "text",
                "completion_a",
                "completion_b",
                "model_a",
                "model_b",
                "source",
                "normal_worker_annotations",
                "expert_worker_annotations",
            ),
        ),
    )
    annotations = []
    for group in ("normal", "expert"):
        column = f"{group}_worker_annotations"
        found = _json_list(record, column) if record.get(column) is not None else []
        annotations.extend(_multipref_annotation(group, i, raw) for i, raw in enumerate(found))
    return ImportedItem(instance, annotations)


register(
    Preset(
        name="multipref",
        kind="preference",
        description="allenai/multipref: comparison_id, prompt_id, text, model_a/completion_a, "
        "model_b/completion_b, source, category, subject_study, highest_level_degree, "
        "normal_worker_annotations and expert_worker_annotations (each a human label per "
        "evaluator, named 'normal:<id>' / 'expert:<id>', with overall/helpful/harmless/truthful "
        "prefs, reasons, confidence and time spent); domain = category or subject_study",
        signature=(
            "comparison_id",
            "text",
            "completion_a",
            "completion_b",
            "normal_worker_annotations",
        ),
        convert=_multipref,
        fields=(
            "comparison_id",
            "text",
            "completion_a",
            "completion_b",
            "model_a",
            "model_b",
            "source",
            "category",
            "subject_study",
            "normal_worker_annotations",
            "expert_worker_annotations",
        ),
    )
)


def _instruction_prompt(record: dict[str, Any]) -> str:
    """An instruction and its optional input as one prompt.

    Either part may be blank (PandaLM has a row whose whole task is in ``input``); both blank
    leaves no prompt.
    """
    require(record, "instruction")
    parts = [text(record, "instruction", required=False), text(record, "input", required=False)]
    prompt = "\n\n".join(p for p in parts if p and p.strip())
    if not prompt:
        raise FieldError("instruction", "is empty, and so is input")
    return prompt


# ---- PandaLM --------------------------------------------------------------------------------

# PandaLM votes: 0 tie, 1 response1 better, 2 response2 better.
_PANDALM_VOTE = {0: 0, 1: -2, 2: 2}
# LM judges of PandaLM's test set: (annotator, verdict field, reason field, file of verdicts).
PANDALM_JUDGES = {
    "gpt-3.5-turbo": ("gpt_result", "gpt_reason", "gpt-3.5-turbo-testset-v1.json"),
    "pandalm-7b": ("pandalm_result", "pandalm_reason", "pandalm-7b-testset-v1.json"),
}
_UNPARSED_VERDICTS = ("garbage",)


def _pandalm_reply(record: dict[str, Any], field: str) -> str:
    """A PandaLM response. The published JSON holds a few answers "True" as the boolean
    ``true``; they become the text the model evidently wrote."""
    value = require(record, field)
    if isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise FieldError(field, f"expected text, got {type(value).__name__}")
    return value


def _judge_verdict(field: str, value: Any) -> int | None:
    """A PandaLM-style verdict on -2..2; None where the judge's answer was unparsable."""
    word = str(value).strip().lower()
    if word in _UNPARSED_VERDICTS:
        return None
    if word in ("0", "tie"):
        return 0
    if word in ("1", "2"):
        return _PANDALM_VOTE[int(word)]
    raise FieldError(field, f"expected 1, 2, Tie or garbage, got {value!r}")


def _pandalm(record: dict[str, Any]) -> ImportedItem:
    prompt = _instruction_prompt(record)
    models = (optional_text(record, "cmp_key") or "").split("_")
    model_a, model_b = models if len(models) == 2 else (None, None)
    used = {
        "idx",
        "id",
        "response1",
        "response2",
        "motivation_app",
        "annotator1",
        "annotator2",
        "annotator3",
    }
    annotations = [
        Annotation("human", name, overall=_PANDALM_VOTE[_integer(record, name, range(3))])
        for name in ("annotator1", "annotator2", "annotator3")
    ]
    unparsed = {}
    for judge, (verdict_field, reason_field, _) in PANDALM_JUDGES.items():
        used.update((verdict_field, reason_field))
        if record.get(verdict_field) in (None, ""):
            continue
        verdict = _judge_verdict(verdict_field, record[verdict_field])
        if verdict is None:
            unparsed[judge] = record[verdict_field]
            continue
        annotations.append(
            Annotation(
                "lm",
                judge,
                overall=verdict,
                model=judge,
                justification=optional_text(record, reason_field),
            )
        )
    metadata = rest_as_metadata(record, used)
    if unparsed:
        metadata["unparsed_verdicts"] = unparsed
    instance = Instance(
        uid=uid_of(record, "idx", "id"),
        prompt=prompt,
        response_a=_pandalm_reply(record, "response1"),
        response_b=_pandalm_reply(record, "response2"),
        model_a=model_a,
        model_b=model_b,
        domain=optional_text(record, "motivation_app"),
        metadata=metadata,
    )
    return ImportedItem(instance, annotations)


def _json_array(path: Path) -> list[dict[str, Any]]:
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise CuratorError(f"{path}: cannot read it ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CuratorError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(r, dict) and "idx" in r for r in value):
        raise CuratorError(f"{path}: expected a JSON array of objects with an idx")
    return value


def pandalm_records(
    folder: str | os.PathLike, judges: Iterable[str] = ("gpt-3.5-turbo",)
) -> Iterator[dict[str, Any]]:
    """PandaLM's test set with the named judges' verdicts joined on ``idx``.

    PandaLM publishes each judge's verdicts in its own file, aligned by ``idx``; joined, each
    record carries every label on its pair, so it imports with the ``pandalm`` preset (write
    the records as JSONL) and the one-record-one-item rule holds. A pair a judge skipped simply
    has no verdict; a verdict for a pair the test set lacks is an error.
    """
    root = Path(folder)
    rows = _json_array(root / "testset-v1.json")
    known = {str(r["idx"]) for r in rows}
    verdicts: dict[str, dict[str, Any]] = {}
    for judge in judges:
        if judge not in PANDALM_JUDGES:
            raise CuratorError(f"no PandaLM judge {judge!r}; judges: {', '.join(PANDALM_JUDGES)}")
        path = root / PANDALM_JUDGES[judge][2]
        for row in _json_array(path):
            idx = str(row["idx"])
            if idx not in known:
                raise CuratorError(f"{path}: idx {idx} is not in the test set")
            verdicts.setdefault(idx, {}).update((k, v) for k, v in row.items() if k != "idx")
    for row in rows:
        yield {**row, **verdicts.get(str(row["idx"]), {})}


register(
    Preset(
        name="pandalm",
        kind="preference",
        description="PandaLM test set: idx, motivation_app (domain), cmp_key (model_a_model_b), "
        "instruction + input (prompt), response1 (A), response2 (B), annotator1..3 (human "
        "labels: 0 tie, 1 response1, 2 response2); optional judge verdicts gpt_result/gpt_reason "
        "(LM label 'gpt-3.5-turbo') and pandalm_result/pandalm_reason ('pandalm-7b'), as "
        "joined by pandalm_records(); 'garbage' verdicts are kept in metadata, not as labels",
        signature=(
            "instruction",
            "response1",
            "response2",
            "annotator1",
            "annotator2",
            "annotator3",
        ),
        convert=_pandalm,
        fields=(
            "idx",
            "instruction",
            "input",
            "response1",
            "response2",
            "annotator1",
            "annotator2",
            "annotator3",
            "motivation_app",
            "cmp_key",
            "gpt_result",
            "gpt_reason",
            "pandalm_result",
            "pandalm_reason",
        ),
    )
)


# ---- SFT ------------------------------------------------------------------------------------


def _sft_instance(
    record: dict[str, Any], turns: list[dict[str, str]], used: Iterable[str]
) -> Instance:
    prompt = next((m["content"] for m in turns if m["role"] == "user"), None)
    if prompt is None:
        raise FieldError("messages", "the conversation has no user turn")
    return Instance(
        uid=uid_of(record, "id", "uid"),
        prompt=prompt,
        messages=turns,
        source=optional_text(record, "source") or optional_text(record, "dataset"),
        metadata=rest_as_metadata(record, {"id", "uid", "source", *used}),
    )


def _sft(record: dict[str, Any]) -> ImportedItem:
    value = require(record, "messages")
    if isinstance(value, str):  # a CSV cell holds the list as JSON text
        value = _json_list(record, "messages")
    return ImportedItem(_sft_instance(record, _conversation("messages", value), ("messages",)))


def _alpaca(record: dict[str, Any]) -> ImportedItem:
    prompt = _instruction_prompt(record)
    turns = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": text(record, "output")},
    ]
    return ImportedItem(_sft_instance(record, turns, ("instruction", "input", "output")))


def _prompt_completion(record: dict[str, Any]) -> ImportedItem:
    turns = [
        {"role": "user", "content": text(record, "prompt")},
        {"role": "assistant", "content": text(record, "completion")},
    ]
    return ImportedItem(_sft_instance(record, turns, ("prompt", "completion")))


register(
    Preset(
        name="sft",
        kind="sft",
        description="SFT conversations (Tulu 3): messages [{role, content}], optional source "
        "(or dataset) and id; the prompt shown is the first user turn",
        signature=("messages",),
        convert=_sft,
        fields=("messages", "source", "id"),
    )
)

register(
    Preset(
        name="alpaca",
        kind="sft",
        description="Alpaca SFT rows: instruction, optional input (appended to the prompt), "
        "output; optional source (or dataset) and id",
        signature=("instruction", "output"),
        convert=_alpaca,
        fields=("instruction", "input", "output", "source", "id"),
    )
)

register(
    Preset(
        name="prompt-completion",
        kind="sft",
        description="SFT rows as prompt and completion (one user turn, one assistant turn); "
        "optional source and id",
        signature=("prompt", "completion"),
        convert=_prompt_completion,
        fields=("prompt", "completion", "source", "id"),
    )
)


# ---- WildJailbreak --------------------------------------------------------------------------

WILDJAILBREAK_TYPES = (
    "vanilla_harmful",
    "vanilla_benign",
    "adversarial_harmful",
    "adversarial_benign",
)


def _wildjailbreak(record: dict[str, Any]) -> ImportedItem:
    data_type = text(record, "data_type").strip()
    if data_type not in WILDJAILBREAK_TYPES:
        raise FieldError(
            "data_type", f"{data_type!r} is not one of {', '.join(WILDJAILBREAK_TYPES)}"
        )
    if data_type.startswith("adversarial"):
        prompt = text(record, "adversarial")
    else:
        adversarial = text(record, "adversarial", required=False)
        prompt = adversarial if adversarial and adversarial.strip() else text(record, "vanilla")
    instance = Instance(
        uid=uid_of(record, "id", "uid"),
        prompt=prompt,
        response_a=text(record, "completion", required=False) or None,
        subset=data_type,
        metadata=rest_as_metadata(record, ("id", "uid", "adversarial", "completion", "data_type")),
    )
    return ImportedItem(instance)


register(
    Preset(
        name="wildjailbreak",
        kind="safety",
        description="allenai/wildjailbreak: vanilla, adversarial, completion, data_type (subset: "
        "vanilla_/adversarial_ harmful/benign); the prompt is adversarial where given, else "
        "vanilla; completion becomes response A; vanilla and label kept in metadata",
        signature=("adversarial", "data_type"),
        convert=_wildjailbreak,
        fields=("vanilla", "adversarial", "completion", "data_type", "id"),
    )
)


# ---- RewardBench ----------------------------------------------------------------------------


def _eval_reply(record: dict[str, Any], field: str) -> str:
    value = require(record, field)
    if isinstance(value, list):
        raise FieldError(
            field,
            f"holds a list of {len(value)} responses (RM-Bench style); an eval row is one pair: "
            "write one row per chosen/rejected pair first",
        )
    return reply(record, field)


def _rewardbench(record: dict[str, Any]) -> ImportedItem:
    instance = Instance(
        uid=uid_of(record, "id", "uid"),
        prompt=text(record, "prompt"),
        response_a=_eval_reply(record, "chosen"),
        response_b=_eval_reply(record, "rejected"),
        model_a=optional_text(record, "chosen_model"),
        model_b=optional_text(record, "rejected_model"),
        subset=text(record, "subset"),
        gold=-2,
        metadata=rest_as_metadata(
            record,
            (
                "id",
                "uid",
                "prompt",
                "chosen",
                "rejected",
                "chosen_model",
                "rejected_model",
                "subset",
            ),
        ),
    )
    return ImportedItem(instance)


register(
    Preset(
        name="rewardbench",
        kind="eval",
        description="RewardBench-format eval pairs: prompt, chosen (A), rejected (B), subset, "
        "optional id, chosen_model, rejected_model; gold = -2 (A is correct)",
        signature=("prompt", "chosen", "rejected", "subset"),
        convert=_rewardbench,
        fields=("prompt", "chosen", "rejected", "subset", "chosen_model", "rejected_model", "id"),
    )
)
