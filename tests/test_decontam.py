"""Decontamination with the Tulu 3 rule (curation.decontam): planted copies are caught, prompts on
the same topic are not, the 50% and 2% thresholds sit where the rule puts them, and the fast
n-gram index agrees with a plain-Python reading of the rule."""

from __future__ import annotations

import json
import random
import re

import pytest

from curation.decontam import (
    DecontamConfig,
    NgramIndex,
    PromptSet,
    decontaminate,
    find_overlaps,
    load_prompt_set,
    tokenize,
)
from curation.errors import CuratorError

# Eval prompts written for these tests (GSM8K-like in shape, not taken from any eval set).
EVAL = [
    "A baker sells muffins for 3 dollars each and cookies for 2 dollars each. On Monday she "
    "sold 14 muffins and 23 cookies. How much money did she make on Monday?",
    "Tom reads 12 pages of his book every evening. The book has 348 pages and he has already "
    "read 96 of them. How many more evenings will he need to finish the book?",
    "A train leaves the station at 9 am travelling at 80 kilometres per hour. A second train "
    "leaves the same station at 10 am at 100 kilometres per hour. When does it catch up?",
]


def prompts(texts: list[str], name: str = "eval") -> PromptSet:
    return PromptSet(name, [f"{name}-{i}" for i in range(len(texts))], list(texts))


def test_a_verbatim_copy_of_an_eval_prompt_is_caught():
    """A paraphrase-free copy (inside a longer training prompt) overlaps its eval instance."""
    train = ["Solve this step by step and show your work. " + EVAL[1], "Write a haiku about rain."]
    report = decontaminate(train, ["chat", "chat"], [prompts(EVAL)])
    assert [(m.row, m.eval_id) for m in report.matches] == [(0, "eval-1")]
    assert report.matches[0].score == 1.0


def test_a_different_prompt_on_the_same_topic_is_not_caught():
    """Same subject (a bakery, a book, trains), different words: no 8-gram in common."""
    train = [
        "A bakery sells loaves of bread for 4 dollars. If it sells 30 loaves a day, how much "
        "does it earn in a week?",
        "Sara has a 300 page novel and reads 15 pages a day. After how many days is she done?",
        "Two trains travel towards each other from cities 300 kilometres apart. When do they meet?",
    ]
    report = decontaminate(train, ["chat"] * 3, [prompts(EVAL)])
    assert report.matches == []
    assert report.flagged_sources() == []


def test_formatting_changes_do_not_hide_a_copy():
    """Tokens are lower-cased words; case, punctuation and line breaks do not matter."""
    copy = EVAL[0].upper().replace(" ", "\n").replace(".", " ;")
    report = decontaminate([copy], ["chat"], [prompts(EVAL)])
    assert [m.eval_id for m in report.matches] == ["eval-0"]


def test_overlap_must_cover_more_than_half_of_the_eval_prompt():
    """With 20 eval tokens, a shared span of 10 tokens is 50% (not counted), 11 is 55%."""
    words = [f"w{i}" for i in range(20)]
    eval_set = prompts([" ".join(words)])
    train = [" ".join(["intro", *words[:10], "outro"]), " ".join(["intro", *words[:11]])]
    report = decontaminate(train, ["a", "b"], [eval_set])
    assert [(m.row, round(m.score, 2)) for m in report.matches] == [(1, 0.55)]


def test_spans_shorter_than_an_ngram_never_count():
    """Seven shared words are no 8-gram: an eval prompt of seven words cannot be overlapped."""
    eval_set = prompts(["one two three four five six seven"])
    report = decontaminate(["one two three four five six seven"], ["a"], [eval_set])
    assert report.matches == []
    assert report.eval_sets["eval"]["too_short"] == 1


def test_a_source_is_flagged_when_it_overlaps_more_than_two_percent_of_an_eval_set():
    """100 eval prompts: overlapping 2 of them (2%) passes, 3 (3%) is flagged."""
    evals = [" ".join(f"p{i}w{j}" for j in range(12)) for i in range(100)]
    train = [evals[0], evals[1], "unrelated", evals[2], evals[3], evals[4]]
    sources = ["two", "two", "two", "three", "three", "three"]
    report = decontaminate(train, sources, [prompts(evals)])
    by_source = {s.source: s for s in report.sources}
    assert (by_source["two"].overlapping, by_source["two"].flagged) == (2, False)
    assert (by_source["three"].overlapping, by_source["three"].flagged) == (3, True)
    assert report.flagged_sources() == ["three"]


def test_the_action_decides_which_rows_go():
    """remove_rows drops the matching rows; drop_source the flagged source whole; report none."""
    evals = [" ".join(f"p{i}w{j}" for j in range(12)) for i in range(10)]
    train = [evals[0], "clean row of source a", evals[1], "clean row of source b"]
    sources = ["a", "a", "b", "b"]
    for action, expected in [
        ("remove_rows", {0, 2}),
        ("drop_source", {0, 1, 2, 3}),
        ("report", set()),
    ]:
        report = decontaminate(train, sources, [prompts(evals)], DecontamConfig(action=action))
        assert report.rows_to_drop(sources) == expected, action


def test_the_fast_index_agrees_with_a_plain_python_reading_of_the_rule():
    """Random texts from a small vocabulary (many shared n-grams, repeats inside a text): the
    hashed n-gram index finds exactly the pairs and scores that sets of n-gram tuples give."""
    rng = random.Random(7)
    vocab = [f"v{i}" for i in range(6)]
    evals = [" ".join(rng.choices(vocab, k=rng.randint(3, 40))) + "?" for _ in range(60)]
    train = []
    for _ in range(300):
        source = rng.choice(evals).split()
        a = rng.randint(0, len(source))
        b = rng.randint(a, len(source))
        noise = " ".join(rng.choices(vocab, k=rng.randint(0, 10)))
        train.append(f" ({noise} {' '.join(source[a:b])}, {noise}!")

    def plain(n: int = 8, threshold: float = 0.5) -> list[tuple[int, int, float]]:
        index: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        lengths = []
        for e, text in enumerate(evals):
            tokens = re.findall(r"\w+", text.lower())
            lengths.append(len(tokens))
            for p in range(len(tokens) - n + 1):
                index.setdefault(tuple(tokens[p : p + n]), []).append((e, p))
        found = []
        for t, text in enumerate(train):
            tokens = re.findall(r"\w+", text.lower())
            covered: dict[int, set[int]] = {}
            for p in range(len(tokens) - n + 1):
                for e, q in index.get(tuple(tokens[p : p + n]), ()):
                    covered.setdefault(e, set()).update(range(q, q + n))
            found += [
                (t, e, round(len(c) / lengths[e], 9))
                for e, c in covered.items()
                if len(c) / lengths[e] > threshold
            ]
        return sorted(found)

    fast = find_overlaps(train, NgramIndex(prompts(evals)), 0.5, batch_size=37)
    assert sorted((t, e, round(s, 9)) for t, _, e, s in fast) == plain()
    assert len(fast) > 20  # the case is not trivially empty


def test_tokens_are_stable_hashes_of_lower_cased_words():
    """The same word hashes the same in any text and any batch; punctuation is not a token."""
    one = tokenize(["Hello, World!"])
    two = tokenize(["say hello world", ""])
    assert list(one.offsets) == [0, 2]
    assert list(two.offsets) == [0, 3, 3]
    assert list(one.hashes) == list(two.hashes[1:3])


def test_eval_files_are_read_by_their_prompt_field(tmp_path):
    """JSONL with `question`, CSV with `Behavior`, lists of turns joined; names from the folder."""
    folder = tmp_path / "mathset"
    folder.mkdir()
    (folder / "test.jsonl").write_text(
        "\n".join(json.dumps({"question": q, "answer": "1"}) for q in EVAL) + "\n"
    )
    (tmp_path / "behaviors.csv").write_text('Behavior,Category\n"Do a thing, badly",x\n')
    (tmp_path / "turns.jsonl").write_text(json.dumps({"turns": ["first", "second"]}) + "\n")
    mathset = load_prompt_set(None, str(folder / "test.jsonl"))
    assert (mathset.name, mathset.texts) == ("mathset", EVAL)
    assert load_prompt_set(None, str(tmp_path / "behaviors.csv")).texts == ["Do a thing, badly"]
    assert load_prompt_set(None, str(tmp_path / "turns.jsonl")).texts == ["first\nsecond"]


def test_eval_file_problems_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "evals.jsonl"
    path.write_text(json.dumps({"question": "ok"}) + "\n" + json.dumps({"other": 1}) + "\n")
    with pytest.raises(CuratorError, match=r"evals\.jsonl:2 \[question\]: missing prompt field"):
        load_prompt_set(None, str(path))
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"answer": 1}) + "\n")
    with pytest.raises(CuratorError, match=r"answers\.jsonl:1: no prompt field found"):
        load_prompt_set(None, str(answers))
    with pytest.raises(CuratorError, match="neither a dataset of this workspace nor a file"):
        load_prompt_set(None, str(tmp_path / "missing.jsonl"))


def test_workspace_datasets_are_eval_sets_too(store):
    """An imported eval set is read from the store: its user turns, ids from the uids."""
    from curation.records import Instance

    ds = store.create_dataset("my-eval", "sft")
    store.insert_instances(
        ds["id"],
        [
            Instance(
                uid="e1",
                prompt=EVAL[0],
                messages=[
                    {"role": "user", "content": EVAL[0]},
                    {"role": "assistant", "content": "42"},
                    {"role": "user", "content": "and on Tuesday?"},
                ],
            )
        ],
    )
    loaded = load_prompt_set(store, "my-eval")
    assert loaded.ids == ["e1"]
    assert loaded.texts == [EVAL[0] + "\nand on Tuesday?"]


REAL_EVALS = {
    "gsm8k": ("gsm8k/test.jsonl", 1319),
    "math500": ("math500/test.jsonl", 500),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", 164),
    "ifeval": ("ifeval/input_data.jsonl", 541),
    "harmbench": ("harmbench/harmbench_behaviors_text_all.csv", 400),
    "wildjailbreak-eval": ("wildjailbreak-eval/eval.tsv", 2210),
    "xstest": ("xstest/xstest_prompts.csv", 450),
}


@pytest.mark.realdata
def test_planted_copies_of_real_eval_prompts_are_caught_and_nothing_else(shared_data):
    """Generated prompts with verbatim copies of real eval prompts planted among them: every
    copy long enough for the rule is found (and flags its source), no generated prompt is."""
    evals = [load_prompt_set(None, str(shared_data / path)) for path, _ in REAL_EVALS.values()]
    assert {s.name: len(s) for s in evals} == {k: n for k, (_, n) in REAL_EVALS.items()}
    rng = random.Random(0)
    words = (
        "the a of to and in for on with how what why write explain list give small large".split()
    )
    train = [" ".join(rng.choices(words, k=rng.randint(6, 30))) for _ in range(3000)]
    sources = ["generated"] * len(train)
    planted = {}
    for s in evals:
        for i in rng.sample(range(len(s)), 12):
            planted[len(train)] = (s.name, s.ids[i])
            train.append("Please answer: " + s.texts[i])
            sources.append(f"copies-of-{s.name}")
    report = decontaminate(train, sources, evals)
    found = {(m.row, m.eval_set) for m in report.matches}
    caught = {row for row, _ in found}
    assert caught <= set(planted)
    for row, (name, eval_id) in planted.items():
        s = next(e for e in evals if e.name == name)
        if len(tokenize([s.texts[s.ids.index(eval_id)]]).hashes) >= 8:
            assert (row, name) in found, (name, eval_id)
    # 12 of a few hundred or thousand instances is above 2% only for the smaller sets
    flagged = set(report.flagged_sources())
    for s in evals:
        overlap = next(
            x for x in report.sources if x.source == f"copies-of-{s.name}" and x.eval_set == s.name
        )
        assert (f"copies-of-{s.name}" in flagged) == (overlap.fraction > 0.02)
    assert "generated" not in flagged
