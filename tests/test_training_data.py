"""Training data: label sources, drops, mixtures, the deterministic split, runs and configs.

Real stores on disk with hand-made labels; no model is loaded except the tiny tokenizer that the
prompt-fitting tests need.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from curation.errors import CuratorError
from curation.mixtures import build_mixture, mixture_rows, parse_spec, resolve_mixture
from curation.pairs import pair_labels, parse_labels
from curation.records import Annotation, Instance
from training.data import chat_examples, load_training_data, preference_pairs, split_examples
from training.dpo import TULU3_DPO, DPOTrainConfig
from training.reward import RewardTrainConfig
from training.runs import get_run, list_runs, record_run, run_for_job, set_evaluation
from training.sft import SFTTrainConfig


def _human(value: int, who: str) -> Annotation:
    return Annotation("human", who, overall=value)


def _lm(value: int, judge: str = "j1") -> Annotation:
    return Annotation("lm", judge, overall=value, confidence=0.8)


@pytest.fixture
def labelled(store):
    """Six pairs whose labels cover every case a label source must handle."""
    ds = store.create_dataset("prefs", "preference")
    rows = [
        # uid, gold, labels
        ("both", None, [_human(-2, "ann"), _human(-1, "bob"), _lm(2), _lm(2, "j2")]),
        ("lm-only", 2, [_lm(-1)]),
        ("gold-only", -2, []),
        ("human-tie", None, [_human(-1, "ann"), _human(1, "bob"), _lm(1)]),
        ("nothing", None, []),
        ("human-b", None, [_human(2, "ann")]),
    ]
    instances = [
        Instance(
            prompt=f"prompt {uid}",
            uid=uid,
            response_a=f"A of {uid}",
            response_b=f"B of {uid}",
            gold=gold,
        )
        for uid, gold, _ in rows
    ]
    ids = store.insert_instances(ds["id"], instances)
    store.add_annotations((i, a) for i, (_, _, anns) in zip(ids, rows, strict=True) for a in anns)
    return dict(zip([r[0] for r in rows], ids, strict=True))


def _chosen(store, labels: str, judge: str | None = None) -> dict[str, str]:
    pairs, _ = preference_pairs(store, dataset="prefs", labels=labels, judge=judge)
    return {p.chosen.split(" of ")[1]: p.chosen.split(" of ")[0] for p in pairs}


def test_best_labels_prefer_people_then_the_judge_then_gold(store, labelled):
    """`best`: human majority where people labelled, else the LM judge, else gold."""
    assert _chosen(store, "best") == {"both": "A", "lm-only": "A", "gold-only": "A", "human-b": "B"}


def test_a_human_tie_is_dropped_not_handed_to_the_judge(store, labelled):
    """People who called a pair a tie decide it: `best` drops it rather than using the LM."""
    labels = pair_labels(store, "prefs", "best")
    winners, dropped = labels.winners, labels.dropped
    assert labelled["human-tie"] not in winners
    assert dropped["human tie"] == 1
    assert dropped["no gold label"] == 1  # "nothing" fell through to gold, which it lacks


def test_single_sources_use_only_their_labels(store, labelled):
    """`human`, `lm` and `gold` each read one kind of label; the rest is dropped."""
    assert _chosen(store, "human") == {"both": "A", "human-b": "B"}
    assert _chosen(store, "lm") == {"both": "B", "lm-only": "A", "human-tie": "B"}
    assert _chosen(store, "gold") == {"lm-only": "B", "gold-only": "A"}


def test_lm_labels_come_from_the_named_judge(store, labelled):
    """A named judge's labels are used; by default the judge with the most labels."""
    assert _chosen(store, "lm", judge="j2") == {"both": "B"}
    with pytest.raises(CuratorError, match="judge 'nobody' has not labelled"):
        preference_pairs(store, dataset="prefs", labels="lm", judge="nobody")


def test_a_route_plan_mixes_human_and_lm_labels(store, labelled):
    """`plan:<id>`: the human label where the plan routes to people, the LM label elsewhere."""
    from routing.router import RoutePlan, save_plan

    ids = np.array(sorted(labelled.values()))
    human = np.isin(ids, [labelled["both"], labelled["lm-only"]])
    plan_id = save_plan(
        store, RoutePlan("prefs", "topk", 2, ids, human, np.zeros(len(ids)), 0.5, {})
    )
    labels = pair_labels(store, "prefs", f"plan:{plan_id}")
    winners, dropped = labels.winners, labels.dropped
    assert winners[labelled["both"]] == (-1, "human")  # people said A (the LM said B)
    assert labelled["lm-only"] not in winners  # routed to people, who have not labelled it yet
    assert winners[labelled["human-tie"]] == (1, "lm")
    assert dropped["no human label"] == 1
    assert parse_labels(f"plan:{plan_id}") == ("plan", plan_id)


def test_unknown_label_sources_and_plans_are_refused(store, labelled):
    """A mistyped label source or a plan of another dataset is a curator's error."""
    with pytest.raises(CuratorError, match="labels must be one of"):
        parse_labels("majority")
    with pytest.raises(CuratorError, match="no route plan 99"):
        pair_labels(store, "prefs", "plan:99")


def test_nothing_usable_says_why(store):
    """A dataset without a single usable pair fails with the reasons counted."""
    ds = store.create_dataset("empty", "preference")
    store.insert_instances(
        ds["id"], [Instance(prompt="p", uid="1", response_a="a", response_b="b")]
    )
    with pytest.raises(CuratorError, match="1 no gold label"):
        preference_pairs(store, dataset="empty")


def test_sft_examples_from_conversations_and_from_chosen_replies(store, labelled):
    """An sft dataset trains its conversations as stored; a preference dataset its chosen
    replies; safety prompts have no reply to learn."""
    sft = store.create_dataset("chats", "sft")
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    store.insert_instances(
        sft["id"],
        [
            Instance(prompt="Hi", uid="c1", messages=conversation),
            Instance(prompt="Q", uid="c2", messages=[{"role": "user", "content": "Q"}]),
        ],
    )
    examples, stats = chat_examples(store, dataset="chats")
    assert [e.messages for e in examples] == [conversation]
    assert examples[0].completion == [{"role": "assistant", "content": "Hello."}]
    assert stats["dropped"] == {"no assistant reply": 1}

    replies, _ = chat_examples(store, dataset="prefs")
    assert {e.messages[-1]["content"] for e in replies} == {
        "A of both",
        "A of lm-only",
        "A of gold-only",
        "B of human-b",
    }
    store.create_dataset("pool", "safety")
    with pytest.raises(CuratorError, match="safety prompts"):
        chat_examples(store, dataset="pool")


def test_multi_turn_prompts_keep_their_conversation(store):
    """A pair stored with its conversation trains with every turn before the replies."""
    ds = store.create_dataset("multi", "eval")
    turns = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "second"},
    ]
    store.insert_instances(
        ds["id"],
        [
            Instance(
                prompt="second", uid="m", messages=turns, response_a="a", response_b="b", gold=-2
            )
        ],
    )
    (pair,), stats = preference_pairs(store, dataset="multi")
    assert pair.messages == turns and (pair.chosen, pair.rejected) == ("a", "b")
    assert stats["by_label_source"] == {"gold": 1}


def test_split_is_deterministic_and_held_out_ignores_the_limit(store, labelled):
    """The same seed gives the same split; another seed another; `limit` trims training only."""
    items = list(range(40))
    first = split_examples(items, 0.25, seed=3)
    assert first == split_examples(items, 0.25, seed=3)
    assert first != split_examples(items, 0.25, seed=4)
    assert len(first[1]) == 10 and sorted(first[0] + first[1]) == items
    assert split_examples([1, 2], 0.1, seed=0)[1] != []  # at least one held out
    assert split_examples([1, 2, 3], 0.0, seed=0)[1] == []

    config = RewardTrainConfig(dataset="prefs", eval_fraction=0.25, seed=1)
    full = load_training_data(store, config, "pairs")
    config.limit = 2
    limited = load_training_data(store, config, "pairs")
    assert limited.held_out == full.held_out
    assert len(limited.train) == 2 and limited.stats["train"] == 2


# ---- mixtures -------------------------------------------------------------------------------


def _mixture(store, tmp_path, name: str, records: list[dict], kind: str = "preference") -> None:
    """A hand-written mixture version: its folder's data.jsonl and the content hash of it."""
    folder = tmp_path / name
    folder.mkdir()
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    (folder / "data.jsonl").write_bytes(data)
    with store.write():
        store.conn.execute(
            "INSERT INTO mixtures(name, version, kind, spec, content_hash, path) "
            "VALUES (?, 1, ?, '{}', ?, ?)",
            (name, kind, "sha256:" + hashlib.sha256(data).hexdigest(), str(folder)),
        )


def test_a_mixture_file_trains_with_its_own_chosen_and_rejected(store, tmp_path):
    """A built mixture's JSONL (TRL text or message forms) gives pairs and SFT replies."""
    _mixture(
        store,
        tmp_path,
        "mix",
        [
            {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."},
            {
                "prompt": [{"role": "user", "content": "Count"}],
                "chosen": [{"role": "assistant", "content": "1 2 3"}],
                "rejected": [{"role": "assistant", "content": "3 2 1"}],
            },
        ],
    )
    pairs, stats = preference_pairs(store, mixture="mix")
    assert [(p.messages[-1]["content"], p.chosen, p.rejected) for p in pairs] == [
        ("Say hi", "Hi!", "No."),
        ("Count", "1 2 3", "3 2 1"),
    ]
    assert stats["mixture"] == "mix" and stats["by_label_source"] == {"mixture": 2}
    replies, _ = chat_examples(store, mixture="mix@1")
    assert [e.messages[-1]["content"] for e in replies] == ["Hi!", "1 2 3"]


def test_a_multi_turn_pair_in_a_built_mixture_keeps_its_whole_conversation(store, tmp_path):
    """Mixture builds write preference rows with ``prompt`` (the last user turn) and
    ``messages`` (the conversation): training sees the conversation, not only the last turn."""
    turns = [
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blue"},
        {"role": "user", "content": "Another"},
    ]
    record = {"prompt": "Another", "messages": turns, "chosen": "Red", "rejected": "Blue",
              "source": "prefs", "instance_id": 7}  # fmt: skip
    _mixture(store, tmp_path, "multi", [record])
    (pair,), _ = preference_pairs(store, mixture="multi")
    assert [m["content"] for m in pair.messages] == ["Name a colour", "Blue", "Another"]
    assert (pair.chosen, pair.rejected) == ("Red", "Blue")


def test_an_sft_mixture_has_no_pairs(store, tmp_path):
    """Conversations train SFT; asking a reward model to train on them says what is wrong."""
    conversation = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    _mixture(store, tmp_path, "chatmix", [{"messages": conversation}], kind="sft")
    assert chat_examples(store, mixture="chatmix")[0][0].messages == conversation
    with pytest.raises(CuratorError, match="holds conversations"):
        preference_pairs(store, mixture="chatmix")


def test_missing_mixtures_are_clear_errors(store, tmp_path):
    """An unknown mixture, one not built yet, and one whose file is gone each say so."""
    with pytest.raises(CuratorError, match="no mixture 'nope'"):
        chat_examples(store, mixture="nope")
    with store.write():
        store.conn.execute(
            "INSERT INTO mixtures(name, version, kind, spec) VALUES ('unbuilt', 1, 'sft', '{}')"
        )
    with pytest.raises(CuratorError, match="no built folder yet"):
        chat_examples(store, mixture="unbuilt")
    _mixture(store, tmp_path, "gone", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    (tmp_path / "gone" / "data.jsonl").unlink()
    with pytest.raises(CuratorError, match="is missing"):
        preference_pairs(store, mixture="gone")


def _built_mixture(store) -> tuple[str, Path]:
    """A preference mixture really built from the ``labelled`` pairs: its ref and data file."""
    spec = parse_spec({"name": "built", "kind": "preference", "sources": {"prefs": 1.0}})
    result = build_mixture(store, spec)
    return result.ref, Path(result.mixture["path"]) / "data.jsonl"


def test_a_built_mixture_trains_on_exactly_its_rows(store, labelled):
    """Pairs and SFT replies of an untouched mixture are its data.jsonl rows, in file order."""
    ref, _ = _built_mixture(store)
    rows = mixture_rows(store, ref)
    pairs, stats = preference_pairs(store, mixture=ref)
    assert [(p.messages, p.chosen, p.rejected) for p in pairs] == [
        ([{"role": "user", "content": r["prompt"]}], r["chosen"], r["rejected"]) for r in rows
    ]
    assert stats["records"] == len(rows) == 3
    replies, _ = chat_examples(store, mixture=ref)
    assert [e.messages[-1]["content"] for e in replies] == [r["chosen"] for r in rows]


def test_a_mixture_edited_behind_the_stores_back_is_refused_for_training(store, labelled):
    """Training reads a mixture only through its content-hash check: once data.jsonl is edited,
    SFT examples and preference pairs (DPO, reward) refuse it, naming both hashes."""
    ref, path = _built_mixture(store)
    stored = resolve_mixture(store, ref)["content_hash"]
    edited = path.read_bytes().replace(b'"chosen":"A of both"', b'"chosen":"edited reply"')
    assert edited != path.read_bytes()
    path.write_bytes(edited)
    found = "sha256:" + hashlib.sha256(edited).hexdigest()
    message = rf"no longer matches its content hash \(expected {stored}, found {found}\)"
    with pytest.raises(CuratorError, match=message):
        chat_examples(store, mixture=ref)
    with pytest.raises(CuratorError, match=message):
        preference_pairs(store, mixture=ref)
    config = DPOTrainConfig(mixture=ref).validate()
    with pytest.raises(CuratorError, match=message):
        load_training_data(store, config, "pairs")


# ---- runs -----------------------------------------------------------------------------------


def test_runs_are_recorded_listed_and_evaluated_later(store, labelled):
    """A run keeps its config and metrics; evaluations merge in; filters find it."""
    from training import jobs

    job_id = jobs.enqueue(store, "reward", {"dataset": "prefs"})
    first = record_run(
        store,
        kind="reward",
        name="rm",
        job_id=job_id,
        dataset="prefs",
        base_model="all-minilm-l6-v2",
        config={"learning_rate": 1e-4},
        metrics={"train_loss": 0.6},
        evaluation={"held_out": {"accuracy": 0.7}},
        artifact_path="/tmp/rm",
    )
    record_run(store, kind="sft", name="other")
    run = get_run(store, first)
    assert (run.kind, run.dataset, run.config, run.metrics) == (
        "reward",
        "prefs",
        {"learning_rate": 1e-4},
        {"train_loss": 0.6},
    )
    merged = set_evaluation(store, first, {"rewardbench:demo-eval": {"overall": 0.6}})
    assert set(merged.evaluation) == {"held_out", "rewardbench:demo-eval"}
    assert [r.name for r in list_runs(store)] == ["other", "rm"]
    assert [r.id for r in list_runs(store, kind="reward", dataset="prefs")] == [first]
    assert run_for_job(store, job_id).id == first
    assert run_for_job(store, job_id + 100) is None
    with pytest.raises(CuratorError, match="no run 999"):
        get_run(store, 999)
    with pytest.raises(CuratorError, match="no dataset named"):
        record_run(store, kind="reward", dataset="missing")


# ---- configs --------------------------------------------------------------------------------


def test_tulu3_preset_sets_the_published_recipe(store):
    """The tulu3 preset sets Tulu 3's DPO hyperparameters; accumulation makes 128 pairs a step."""
    config = DPOTrainConfig(dataset="prefs", preset="tulu3", batch_size=4, learning_rate=1e-3)
    config.validate()
    assert {k: getattr(config, k) for k in TULU3_DPO} == TULU3_DPO
    assert (config.loss_type, config.beta, config.learning_rate) == ("sigmoid_norm", 5.0, 5e-7)
    assert config.batch_size * config.grad_accum == 128
    again = DPOTrainConfig.from_spec(config.to_spec())
    assert again == config
    with pytest.raises(CuratorError, match="unknown DPO preset"):
        DPOTrainConfig(dataset="prefs", preset="zephyr").validate()


def test_configs_refuse_what_they_cannot_run():
    """Bad label sources, eval suites and losses fail at validation, before a job is queued."""
    with pytest.raises(CuratorError, match="labels must be one of"):
        RewardTrainConfig(dataset="d", labels="crowd").validate()
    with pytest.raises(CuratorError, match="unknown eval suite"):
        SFTTrainConfig(dataset="d", eval_sets=("mmlu:x",)).validate()
    with pytest.raises(CuratorError, match="needs a source"):
        SFTTrainConfig(dataset="d", eval_sets=("gsm8k",)).validate()
    with pytest.raises(CuratorError, match="loss_type"):
        DPOTrainConfig(dataset="d", loss_type="kto").validate()
    spec = SFTTrainConfig(dataset="d", eval_sets=("xstest:x.csv",)).to_spec()
    assert spec["eval_sets"] == ["xstest:x.csv"]
    assert SFTTrainConfig.from_spec(spec).eval_sets == ("xstest:x.csv",)


# ---- token budgets --------------------------------------------------------------------------


def test_long_prompts_are_cut_so_the_reply_keeps_its_room(tiny_model):
    """fit_prompt drops the oldest turns, then the start of the earliest, to leave the reply room;
    the reward encoding keeps the reply's start and closing token within max_length."""
    from transformers import AutoTokenizer

    from training.reward import encode_response
    from training.trainer_base import chat_ids, fit_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = [
        {"role": "user", "content": "A " * 30},
        {"role": "assistant", "content": "B " * 30},
        {"role": "user", "content": "A B " * 20},
    ]
    fitted = fit_prompt(tokenizer, prompt, "B " * 10, max_length=40)
    assert len(fitted) == 1 and fitted[0]["role"] == "user"
    assert len(chat_ids(tokenizer, fitted, add_generation_prompt=True)) <= 40 - 18
    assert fit_prompt(tokenizer, prompt[-1:], "B", max_length=400) == prompt[-1:]

    ids = encode_response(tokenizer, prompt, "B " * 50, max_length=32)
    full = encode_response(tokenizer, prompt, "B " * 50, max_length=10_000)
    assert len(ids) == 32 and ids[-1] == full[-1]
    assert ids[:8] != full[:8]  # the prompt lost its start, not the reply
