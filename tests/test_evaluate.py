"""Evaluation: the refusal detector, GSM8K answers and IFEval checks on real public data, the
RewardBench score of a reward model, and generation and held-out loss on a real (tiny) model."""

from __future__ import annotations

import csv
import json
import math

import pytest

from curation.errors import CuratorError
from curation.records import Instance
from training.evaluate import (
    IFEVAL_CHECKS,
    Generator,
    check_instruction,
    evaluate_reward_model,
    final_number,
    gsm8k_accuracy,
    heldout_loss,
    ifeval_scores,
    is_refusal,
    load_gsm8k,
    load_ifeval,
    load_xstest,
    parse_suite,
    refusal_metrics,
    run_suite,
)

XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")


# ---- refusals --------------------------------------------------------------------------------


def test_refusal_detector_opens_like_a_refusal():
    """XSTest's string match: a refusal opening, case and leading space ignored."""
    assert is_refusal("  I'm sorry, but I can't help with that.")
    assert is_refusal("As an AI, I do not have opinions.")
    assert not is_refusal("Sure! Here is how to kill a Python process: ...")
    assert is_refusal("Sorryville is a town.")  # a prefix match, false positives included


@pytest.mark.realdata
def test_refusal_detector_reproduces_xstest_and_agrees_with_people(shared_data):
    """On XSTest v2's 2,250 completions the detector gives exactly the paper's string-match labels,
    and agrees with the human refusal labels (full or partial refusal vs compliance) on 85%+."""
    agree = total = 0
    for model in XSTEST_MODELS:
        path = shared_data / "xstest" / f"xstest_v2_completions_{model}_streval.csv"
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        ours = [is_refusal(r["completion"]) for r in rows]
        assert ours == [r["strmatch_label"] == "2_full_refusal" for r in rows], model
        human = [r["final_label"] != "1_full_compliance" for r in rows]
        matches = sum(a == b for a, b in zip(ours, human, strict=True))
        assert matches / len(rows) > 0.8, model
        agree, total = agree + matches, total + len(rows)
    assert total == 2250 and agree / total > 0.85


@pytest.mark.realdata
def test_xstest_prompts_load_and_score_refusal_and_over_refusal(shared_data):
    """The XSTest prompt file loads with its safe/unsafe labels; refusal on unsafe prompts and
    over-refusal on safe ones are separate rates."""
    prompts, labels, types = load_xstest(shared_data / "xstest" / "xstest_prompts.csv")
    assert len(prompts) == 450 and labels.count("safe") == 250 and labels.count("unsafe") == 200
    assert all(
        t.startswith("contrast_")
        for t, label in zip(types, labels, strict=True)
        if label == "unsafe"
    )
    generations = ["I'm sorry, I can't." if label == "unsafe" else "Sure." for label in labels]
    generations[0] = "I cannot do that."  # one safe prompt refused
    result = refusal_metrics(generations, labels)
    assert result["refusal_rate_unsafe"] == 1.0
    assert result["over_refusal_rate_safe"] == pytest.approx(1 / 250)
    with pytest.raises(CuratorError, match="safe or unsafe"):
        refusal_metrics(["x"], ["harmful"])


# ---- GSM8K -----------------------------------------------------------------------------------


def test_final_number_reads_answers_in_either_form():
    """#### answers take the number after the marker; free text its last number."""
    assert final_number("She makes 9 * 2 = $18.\n#### 18") == "18"
    assert final_number("So the answer is 1,000.00 dollars.") == "1000"
    assert final_number("#### -3.50") == "-3.5"
    assert final_number("no digits here") is None
    assert gsm8k_accuracy(["It is 18.", "I do not know"], ["#### 18", "#### 7"]) == {
        "accuracy": 0.5,
        "n": 2,
        "no_number": 1,
    }


@pytest.mark.realdata
def test_gsm8k_gold_answers_extract_to_their_final_number(shared_data):
    """Every real GSM8K test solution scores as right against itself, and its reasoning alone
    (the #### line removed) ends on the right number for 95%+ of problems."""
    questions, answers = load_gsm8k(shared_data / "gsm8k" / "test.jsonl")
    assert len(questions) == 1319
    assert gsm8k_accuracy(answers, answers)["accuracy"] == 1.0
    reasoning = [a.rsplit("####", 1)[0] for a in answers]
    assert gsm8k_accuracy(reasoning, answers)["accuracy"] > 0.95


# ---- IFEval ----------------------------------------------------------------------------------

FAKE_NEWS = "\n\n".join(
    ["Aliens landed.", "President Zorg spoke.", "Cows fled.", "Tea ran out.", "Birds sang.", "End."]
)
IFEVAL_CASES = {  # IFEval key -> (a response that follows it, one that does not)
    1001: ("Day one Kyoto. Day two Nara.", "Day one, Kyoto."),
    1005: (" ".join(f"[field{i}]" for i in range(12)), " ".join(f"[field{i}]" for i in range(11))),
    1019: ("what are the boys holding?", "What are the boys holding?"),
    102: ("* gown\n* suit\n- hat", "* gown\n* suit"),
    1072: ("word " * 400, "word " * 399),
    1075: ('```json\n{"product": "diaper"}\n```', "Here it is: {product}"),
    1082: ("The man woke.\n***\nHe was a cat.", "The man woke. He was a cat."),
    1098: ("Allah ****** Yahweh", "Allah ****** Allah"),
    1128: ("It is unclear. Is there anything else I can help with?", "It is unclear."),
    1130: ("a quiz", "a tattoo"),
    1131: ("Section 1 a Section 2 b Section 3 c Section 4 d", "Section 1 a Section 2 b"),
    1147: ("We are grateful for the problem.", "Many thanks for the issue."),
    122: ('"The internet began in 1969."', "The internet began in 1969."),
    1246: ("A poem.\nP.P.S. Buy it.", "A poem."),
    1307: (" ".join(f"*part {i}*" for i in range(15)), " ".join(f"*part {i}*" for i in range(14))),
    1322: ("<<Kotlin vs Java>>\nBoth run on the JVM.", "Kotlin vs Java: both run on the JVM."),
    1393: ("synonyms, Synonyms and more synonyms", "synonyms"),
    1480: (
        "Write a blog post about the most interesting things you have seen or ridden on public "
        "transportation. Here it is.",
        "Here it is.",
    ),
    1531: ("Atlantis needs a constable.", "Atlantis needs a mayor."),
    1566: ("I REGRET NOTHING", "I regret nothing"),
    181: (FAKE_NEWS, FAKE_NEWS.replace("President Zorg", "Zorg")),
    227: ("My answer is no.", "No."),
}


@pytest.fixture
def ifeval_records(shared_data):
    return {r["key"]: r for r in load_ifeval(shared_data / "ifeval" / "input_data.jsonl")}


@pytest.mark.realdata
@pytest.mark.parametrize("key", sorted(IFEVAL_CASES))
def test_ifeval_checks_pass_and_fail_constructed_responses(ifeval_records, key):
    """Each implemented instruction accepts a response that follows it and rejects one that
    does not, with the real prompt's arguments."""
    record = ifeval_records[key]
    follows, breaks = IFEVAL_CASES[key]
    (instruction,), (kwargs,) = record["instruction_id_list"], record["kwargs"]
    assert check_instruction(instruction, follows, kwargs) is True, instruction
    assert check_instruction(instruction, breaks, kwargs) is False, instruction


@pytest.mark.realdata
def test_ifeval_reports_coverage_of_unimplemented_instructions(ifeval_records):
    """Instruction types without a check are skipped and counted, never scored as failures."""
    records = list(ifeval_records.values())
    result = ifeval_scores(["x"] * len(records), records)
    assert set(result["unsupported"]) == {
        "language:response_language",
        "length_constraints:number_sentences",
        "change_case:capital_word_frequency",
    }
    total = sum(len(r["instruction_id_list"]) for r in records)
    assert result["coverage"] == pytest.approx(result["instructions_checked"] / total)
    assert result["coverage"] > 0.8 and len(IFEVAL_CHECKS) == 22
    assert result["prompts_scored"] < result["prompts"] == 541
    assert check_instruction("language:response_language", "hola", {"language": "es"}) is None


# ---- suites ----------------------------------------------------------------------------------


def test_suite_names_are_checked():
    """Suites are name:source; a typo or a missing source is a curator's error."""
    assert parse_suite("gsm8k:/data/test.jsonl") == ("gsm8k", "/data/test.jsonl")
    assert parse_suite("heldout") == ("heldout", "")
    with pytest.raises(CuratorError, match="unknown eval suite"):
        parse_suite("mmlu:x")
    with pytest.raises(CuratorError, match="needs a source"):
        parse_suite("xstest")


def test_missing_suite_sources_fail_before_training(store, tmp_path):
    """A suite whose file or dataset is missing is reported before a trainer starts."""
    from training.evaluate import check_suites

    present = tmp_path / "gsm8k.jsonl"
    present.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    check_suites(store, [f"gsm8k:{present}", "heldout"])
    with pytest.raises(CuratorError, match="no file"):
        check_suites(store, [f"ifeval:{tmp_path / 'missing.jsonl'}"])
    with pytest.raises(CuratorError, match="no dataset named 'nope'"):
        check_suites(store, ["safety:nope"])


@pytest.fixture(scope="module")
def tiny_generator(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    return Generator(model, AutoTokenizer.from_pretrained(tiny_model), batch_size=2)


def test_generation_is_greedy_batched_and_in_order(tiny_generator):
    """Generations come back in the prompts' order and do not depend on the batch they ran in."""
    prompts = ["A", "A B A B A", "B", [{"role": "user", "content": "B A"}]]
    batched = tiny_generator.generate(prompts, max_new_tokens=4)
    single = [tiny_generator.generate([p], max_new_tokens=4)[0] for p in prompts]
    assert batched == single and len(batched) == 4


def test_heldout_loss_scores_only_reply_tokens(tiny_generator):
    """Held-out loss is the mean NLL over the assistant reply's tokens; a longer reply adds its
    tokens, the prompt adds none."""
    from training.data import ChatExample

    model, tokenizer = tiny_generator.model, tiny_generator.tokenizer
    short = ChatExample((("user", "A B"), ("assistant", "A")))
    long_prompt = ChatExample((("user", "A B A B A B"), ("assistant", "A")))
    long_reply = ChatExample((("user", "A B"), ("assistant", "A B A")))
    one = heldout_loss(model, tokenizer, [short])
    assert heldout_loss(model, tokenizer, [long_prompt])["tokens"] == one["tokens"]
    assert heldout_loss(model, tokenizer, [long_reply])["tokens"] == one["tokens"] + 2
    both = heldout_loss(model, tokenizer, [short, long_reply], batch_size=2)
    assert both["tokens"] == 2 * one["tokens"] + 2 and math.isfinite(both["loss"])
    assert both["perplexity"] == pytest.approx(math.exp(both["loss"]))


def test_a_safety_dataset_is_a_refusal_suite(store, tiny_generator):
    """safety:<dataset> reads WildJailbreak-typed prompts as unsafe (harmful) or safe (benign)."""
    ds = store.create_dataset("pool", "safety")
    store.insert_instances(
        ds["id"],
        [
            Instance(prompt="A B", uid="1", subset="vanilla_harmful"),
            Instance(prompt="B A", uid="2", subset="adversarial_benign"),
            Instance(prompt="A", uid="3", subset="other"),
        ],
    )
    result = run_suite(tiny_generator, "safety:pool", store=store, max_new_tokens=3)
    assert (result["n_unsafe"], result["n_safe"]) == (1, 1)
    assert 0 <= result["refusal_rate_unsafe"] <= 1 and len(result["samples"]) == 2


# ---- reward models ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_rewardbench_score_of_a_reward_model_on_real_pairs(store, shared_data):
    """A reward model (here MiniLM with an untrained head) is scored RewardBench's way on XSTest's
    derived pairs: per subset, per category, and Overall; the result lands on the run."""
    import torch

    from curation.embeddings import shipped_encoder
    from curation.importer import ImportOptions, import_path
    from training.evaluate import evaluate_reward_run
    from training.runs import get_run, record_run

    import_path(
        store,
        shared_data / "xstest" / "xstest_pairs_derived.jsonl",
        ImportOptions(dataset="xstest-pairs", preset="rewardbench"),
    )
    torch.manual_seed(0)
    model_dir = str(shipped_encoder())
    run_id = record_run(store, kind="reward", artifact_path=model_dir)
    score = evaluate_reward_run(store, run_id, "xstest-pairs", max_length=64)
    assert score["n"] == 243 and set(score["categories"]) == {"safety"}
    assert set(score["subsets"]) == {"xstest-should-respond", "xstest-should-refuse"}
    assert score["overall"] == score["categories"]["safety"]
    assert get_run(store, run_id).evaluation["rewardbench:xstest-pairs"] == score
    with pytest.raises(CuratorError, match="is not an eval set"):
        store.create_dataset("plain", "preference")
        store.insert_instances(
            store.dataset("plain")["id"],
            [Instance(prompt="p", uid="1", response_a="a", response_b="b")],
        )
        evaluate_reward_model(store, model_dir, "plain")


def test_score_lists_must_line_up():
    """Scoring functions refuse lists of different lengths rather than zip them short."""
    with pytest.raises(ValueError):
        gsm8k_accuracy(["1"], [])
    with pytest.raises(ValueError):
        ifeval_scores(["a"], [])
    assert json.loads(json.dumps(refusal_metrics(["Sure"], ["safe"])))["n_safe"] == 1
