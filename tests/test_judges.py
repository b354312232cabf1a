"""LM judges: templates, order combination, store writing, resuming, backends' answer parsing."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from curation.demo import build_demo
from curation.errors import CuratorError
from curation.records import Instance
from curation.store import Store
from curation.workspace import Workspace
from routing.backends import (
    TransformersBackend,
    candidate_logprobs,
    logprobs_from_chat_choice,
    logprobs_from_completion_choice,
    parse_answer,
)
from routing.judges import (
    Judge,
    combine_orders,
    judge_dataset,
    load_template,
    normalise,
    render_prompt,
    verdict_from_answers,
    verdict_from_probability,
)


def _pairs_dataset(store: Store, n: int = 3) -> str:
    dataset = store.create_dataset("pairs", "preference")
    store.insert_instances(
        dataset["id"],
        [
            Instance(
                uid=f"p{i}",
                prompt=f"What is {i} + {i}?",
                response_a=f"{2 * i}",
                response_b=f"{2 * i + 1}",
            )
            for i in range(n)
        ]
        + [Instance(uid="bare", prompt="no responses here")],
    )
    return "pairs"


# ---- templates and prompts ------------------------------------------------------------------


def test_shipped_templates_have_every_multipref_aspect():
    """The multipref template asks one question per MultiPref aspect; pairwise asks overall."""
    assert set(load_template("multipref").aspects) == {"overall", "helpful", "harmless", "truthful"}
    assert set(load_template("pairwise").aspects) == {"overall"}


def test_render_prompt_fills_and_swaps_without_reinterpreting_data():
    """Placeholders are filled in one pass: braces or placeholder names in the data stay as typed."""
    text = "P: {prompt}\nA: {response_a}\nB: {response_b}\nAnswer A or B."
    instance = Instance(prompt="say {response_b}", response_a="first {x}", response_b="second")
    assert render_prompt(text, instance) == (
        "P: say {response_b}\nA: first {x}\nB: second\nAnswer A or B."
    )
    assert render_prompt(text, instance, swapped=True).split("\n")[1:3] == [
        "A: second",
        "B: first {x}",
    ]


def test_render_prompt_shows_a_conversation_as_a_transcript():
    """A multi-turn prompt is rendered as User/Assistant turns ending with the last user turn."""
    instance = Instance(
        prompt="hi",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "and now?"},
        ],
        response_a="x",
        response_b="y",
    )
    rendered = render_prompt("{prompt}|{response_a}|{response_b}", instance)
    assert rendered == "User: hi\n\nAssistant: hello\n\nUser: and now?|x|y"


def test_template_hash_is_sha256_of_the_prompt_text(tmp_path: Path):
    """The hash recorded on labels is the first 16 hex digits of the template text's SHA-256."""
    path = tmp_path / "mine.md"
    path.write_text("Which is better?\n{prompt}\n{response_a}\n{response_b}\nA or B:")
    template = load_template(str(path))
    expected = hashlib.sha256(path.read_text().encode()).hexdigest()[:16]
    assert template.hash() == expected
    assert load_template("multipref").hash(("overall", "helpful")) != load_template(
        "multipref"
    ).hash(("overall",))


def test_template_without_responses_is_refused(tmp_path: Path):
    """A template that never shows the responses cannot judge; it is refused up front."""
    path = tmp_path / "bad.txt"
    path.write_text("{prompt} A or B?")
    with pytest.raises(CuratorError, match="response_a"):
        load_template(str(path))
    with pytest.raises(CuratorError, match="no judge template"):
        load_template("no-such-template")


# ---- probabilities --------------------------------------------------------------------------


def test_order_combination_cancels_position_bias():
    """pA = mean(P("A") in order 1, P("B") in the swapped order): a judge that always says "A"
    with the same probability ends at exactly 0.5, a tie."""
    assert combine_orders(0.9, 0.9) == pytest.approx(0.5)
    assert verdict_from_probability(combine_orders(0.9, 0.9)) == 0
    assert combine_orders(0.8, 0.3) == pytest.approx(0.75)
    assert combine_orders(0.2, 0.6) == pytest.approx(0.3)
    assert combine_orders(0.7) == 0.7


def test_normalise_uses_only_the_two_candidates():
    """Probabilities are renormalised over A and B; a candidate outside the top-k counts as 0."""
    assert normalise({"A": math.log(0.3), "B": math.log(0.1)}) == pytest.approx(0.75)
    assert normalise({"B": -1.0}) == 0.0
    assert normalise({}) is None


def test_verdict_strength_threshold():
    """>= 0.75 on one side is 'clearly', above 0.5 'slightly', 0.5 a tie; negative means A."""
    assert [verdict_from_probability(p) for p in (0.9, 0.75, 0.6, 0.5, 0.4, 0.25, 0.1)] == [
        -2,
        -2,
        -1,
        0,
        1,
        2,
        2,
    ]
    assert verdict_from_answers(["A", "A"]) == -1
    assert verdict_from_answers(["A", "B"]) == 0
    assert verdict_from_answers([None, "B"]) == 1
    assert verdict_from_answers([None, None]) is None


def test_parse_answer_reads_the_named_letter():
    """Generated answers name a letter in several common ways; an article "A" does not count."""
    assert parse_answer("A") == "A"
    assert parse_answer(" B.") == "B"
    assert parse_answer("(B) because it is right") == "B"
    assert parse_answer("The better response is B.") == "B"
    assert parse_answer("Answer: A") == "A"
    assert parse_answer("A good question, hard to say") is None
    assert parse_answer("") is None


def test_candidate_logprobs_folds_spellings():
    """'A' and ' A' both count for candidate A (log-sum-exp); other tokens are ignored."""
    folded = candidate_logprobs([("A", math.log(0.2)), (" A", math.log(0.2)), ("C", -0.1)])
    assert folded["A"] == pytest.approx(math.log(0.4))
    assert "B" not in folded


# ---- OpenAI-compatible responses, built from the openai package's own types -----------------


def test_chat_completion_logprobs_are_read():
    """A chat completion with top_logprobs (vLLM, llama.cpp, OpenAI) gives P(A) and P(B)."""
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "smollm2",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "A"},
                    "logprobs": {
                        "content": [
                            {
                                "token": "A",
                                "logprob": math.log(0.6),
                                "bytes": [65],
                                "top_logprobs": [
                                    {"token": "A", "logprob": math.log(0.6), "bytes": [65]},
                                    {"token": " B", "logprob": math.log(0.2), "bytes": [32, 66]},
                                    {"token": "The", "logprob": math.log(0.1), "bytes": None},
                                ],
                            }
                        ]
                    },
                }
            ],
        }
    )
    found = logprobs_from_chat_choice(response.choices[0])
    assert normalise(found) == pytest.approx(0.75)
    no_logprobs = response.choices[0].model_copy(update={"logprobs": None})
    assert logprobs_from_chat_choice(no_logprobs) is None


def test_completion_logprobs_are_read():
    """A legacy completion with logprobs=5 gives the top tokens as a dict per position."""
    from openai.types import Completion

    response = Completion.model_validate(
        {
            "id": "x",
            "object": "text_completion",
            "created": 0,
            "model": "smollm2",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "text": " B",
                    "logprobs": {
                        "tokens": [" B"],
                        "token_logprobs": [math.log(0.5)],
                        "top_logprobs": [{" B": math.log(0.5), "A": math.log(0.25)}],
                        "text_offset": [0],
                    },
                }
            ],
        }
    )
    found = logprobs_from_completion_choice(response.choices[0])
    assert normalise(found) == pytest.approx(1 / 3)


# ---- judging a dataset with a real (tiny, randomly initialised) transformers model ----------


def test_judging_writes_labels_and_resumes(store: Store, tiny_model: Path):
    """Each complete pair gets one LM label (probs sum to 1, confidence = max); the judge is
    registered; a second run judges nothing new; a pair without responses is skipped."""
    dataset = _pairs_dataset(store)
    judge = Judge(name="tiny", model=str(tiny_model), batch_size=2)
    backend = TransformersBackend(str(tiny_model), model_id="tiny-llama", batch_size=2)
    first = judge_dataset(store, dataset, judge, backend, limit=2)
    assert (first["judged"], first["skipped_done"]) == (2, 0)
    rest = judge_dataset(store, dataset, judge, backend)
    assert (rest["judged"], rest["skipped_done"], rest["skipped_incomplete"]) == (1, 2, 1)
    again = judge_dataset(store, dataset, judge, backend)
    assert (again["judged"], again["skipped_done"]) == (0, 3)

    rows = store.conn.execute(
        "SELECT * FROM annotations WHERE annotator = 'tiny' ORDER BY instance_id"
    ).fetchall()
    assert len(rows) == 3
    for row in rows:
        probs = json.loads(row["probs"])
        assert sum(probs) == pytest.approx(1.0)
        assert row["confidence"] == pytest.approx(max(probs))
        assert row["annotator_kind"] == "lm" and row["model"] == "tiny-llama"
        assert row["template_hash"] == load_template("pairwise").hash()
        assert json.loads(row["reasons"])["method"] == "logprobs"
        assert len(json.loads(row["reasons"])["orders"]) == 2
    registered = store.conn.execute("SELECT * FROM judges WHERE name = 'tiny'").fetchone()
    assert registered["model"] == "tiny-llama"
    assert registered["template_hash"] == rows[0]["template_hash"]


def test_judge_name_reused_for_another_model_is_refused(store: Store, tiny_model: Path):
    """Two setups under one name would mix their labels: the second is refused."""
    dataset = _pairs_dataset(store, n=1)
    backend = TransformersBackend(str(tiny_model), model_id="tiny-llama")
    judge_dataset(store, dataset, Judge(name="j"), backend)
    other = TransformersBackend(str(tiny_model), model_id="another-model")
    with pytest.raises(CuratorError, match="already exists"):
        judge_dataset(store, dataset, Judge(name="j"), other)


def test_judging_every_multipref_aspect(store: Store, tiny_model: Path):
    """With the multipref template every requested aspect gets a value on the -2..2 scale."""
    dataset = _pairs_dataset(store, n=1)
    judge = Judge(name="mp", template="multipref", aspects=("overall", "harmless"))
    backend = TransformersBackend(str(tiny_model), model_id="tiny-llama")
    assert judge_dataset(store, dataset, judge, backend)["judged"] == 1
    row = store.conn.execute("SELECT * FROM annotations WHERE annotator = 'mp'").fetchone()
    assert row["overall"] in (-2, -1, 0, 1, 2) and row["harmless"] in (-2, -1, 0, 1, 2)
    assert row["helpful"] is None


def test_cli_judge_runs_and_resumes(workspace: Workspace, tiny_model: Path):
    """`curator judge` labels a dataset and, run again, skips what is done."""
    from typer.testing import CliRunner

    from app.cli import cli

    with Store.open(workspace) as store:
        _pairs_dataset(store, n=2)
    args = ["judge", "pairs", "-w", str(workspace.root), "--model", str(tiny_model), "--json"]
    runner = CliRunner()
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["judged"] == 2
    second = runner.invoke(cli, args)
    assert json.loads(second.stdout)["judged"] == 0
    assert json.loads(second.stdout)["skipped_done"] == 2
    missing = runner.invoke(cli, ["judge", "nope", "-w", str(workspace.root)])
    assert missing.exit_code != 0


# ---- the embedded SmolLM2, converted from the shipped GGUF ----------------------------------


@pytest.mark.slow
def test_embedded_smollm2_judges_demo_pairs(smollm2_workspace: Workspace):
    """The default judge (SmolLM2 from the shipped GGUF) labels 3 demo pairs with probabilities
    and, run again, skips them; the conversion is cached and reused."""
    from routing.judges import open_backend
    from routing.models import MARKER, default_model_dir, ensure_default_model

    folder = default_model_dir(smollm2_workspace)
    assert (folder / MARKER).is_file() and (folder / "model.safetensors").is_file()
    assert ensure_default_model(smollm2_workspace) == folder  # cached: no second conversion
    with Store.open(smollm2_workspace) as store:
        build_demo(store, n_pairs=3)
        judge = Judge(max_chars=600)
        backend = open_backend(judge, smollm2_workspace)
        result = judge_dataset(store, "demo-prefs", judge, backend)
        assert result["judged"] == 3
        rows = store.conn.execute(
            "SELECT * FROM annotations WHERE annotator = ?", (judge.name,)
        ).fetchall()
        assert len(rows) == 3
        for row in rows:
            probs = json.loads(row["probs"])
            assert sum(probs) == pytest.approx(1.0)
            assert row["confidence"] == pytest.approx(max(probs))
            assert row["model"] == "smollm2-135m-instruct"
            assert row["template_hash"] == load_template("pairwise").hash()
        again = judge_dataset(store, "demo-prefs", judge, backend)
        assert (again["judged"], again["skipped_done"]) == (0, 3)


# ---- Simulated Annotators ---------------------------------------------------------------------


def _human_labels(store: Store, labels: dict[str, list[tuple[int, int]]]) -> list[int]:
    """Label pairs of the 'pairs' dataset as named people: {person: [(pair index, overall)]}."""
    from curation.records import Annotation

    ids = [r[0] for r in store.conn.execute("SELECT id FROM instances ORDER BY id")]
    store.add_annotations(
        (ids[k], Annotation(annotator_kind="human", annotator=person, overall=value))
        for person, items in labels.items()
        for k, value in items
    )
    return ids


def test_personas_imitate_people_with_the_most_labels_then_draw_from_everyone(store: Store):
    """Each persona is shown pairs one person labelled, with that person's letter; once the
    people run out, personas draw from everyone's labels; ties are never shown as examples."""
    from routing.judges import simulated_personas

    _pairs_dataset(store, n=6)
    ids = _human_labels(
        store,
        {"ann": [(0, -2), (1, 1), (2, -1)], "bo": [(3, 2), (4, -2)], "cy": [(5, 0), (0, 1)]},
    )
    personas = simulated_personas(store, "pairs", count=3, shots=2, seed=1)
    assert [p.source for p in personas] == ["ann", "bo", "everyone"]
    letters = {"ann": {ids[0]: "A", ids[1]: "B", ids[2]: "A"}, "bo": {ids[3]: "B", ids[4]: "A"}}
    for persona in personas[:2]:
        assert len(persona.shots) == 2
        for instance_id, _, letter in persona.shots:
            assert letters[persona.source][instance_id] == letter
    assert all(i != ids[5] for i, _, _ in personas[2].shots)  # cy's tie is no example
    with pytest.raises(CuratorError, match="at least 9 pairs"):
        simulated_personas(store, "pairs", count=1, shots=9)


def test_a_persona_is_shown_answered_examples_but_never_the_pair_it_judges(store: Store):
    from routing.judges import render_persona_prompt, simulated_personas

    _pairs_dataset(store, n=4)
    ids = _human_labels(store, {"ann": [(0, -2), (1, 2)]})
    persona = simulated_personas(store, "pairs", count=1, shots=2)[0]
    text = load_template("pairwise").text("overall")
    target = Instance(prompt="What is 3 + 3?", response_a="6", response_b="7")
    prompt = render_persona_prompt(text, persona, target, ids[3])
    assert prompt.count("Answer: A") == 1 and prompt.count("Answer: B") == 1
    assert prompt.rindex("What is 3 + 3?") > prompt.rindex("Answer:")
    own = render_persona_prompt(text, persona, persona.shots[0][1], persona.shots[0][0])
    assert own.count("Answer: ") == 1  # its own pair is left out of the examples


def test_personas_average_probabilities_or_vote_on_letters():
    from routing.judges import average_personas

    assert average_personas([(0.9, None), (0.5, None), (0.4, None)])[0] == pytest.approx(0.6)
    assert average_personas([(None, "B"), (0.8, None), (None, "B")]) == (None, "B")
    assert average_personas([(None, "A"), (None, "B")]) == (None, None)


def test_judging_with_personas_labels_each_pair_once_and_records_the_personas(
    store: Store, tiny_model: Path
):
    _pairs_dataset(store, n=3)
    _human_labels(store, {"ann": [(0, -2), (1, 2)], "bo": [(2, 1), (0, -1)]})
    judge = Judge(model=str(tiny_model), personas=2, persona_shots=1, batch_size=4)
    assert judge.name.endswith("-sa2x1")
    backend = TransformersBackend(str(tiny_model), model_id="tiny-llama", batch_size=4)
    result = judge_dataset(store, "pairs", judge, backend)
    assert result["judged"] == 3
    rows = store.conn.execute(
        "SELECT reasons, probs FROM annotations WHERE annotator = ?", (judge.name,)
    ).fetchall()
    assert len(rows) == 3
    for row in rows:
        assert json.loads(row["reasons"])["personas"] == ["ann", "bo"]
        assert sum(json.loads(row["probs"])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("wanted", "has_cuda", "has_vllm", "engine"),
    [
        ("auto", False, False, "transformers"),
        ("auto", False, True, "transformers"),  # vLLM's CPU build: transformers is the judge's
        ("auto", True, False, "transformers"),
        ("auto", True, True, "vllm"),  # a cluster's GPU node with the gpu extra
        ("transformers", True, True, "transformers"),
        ("vllm", False, True, "vllm"),
    ],
)
def test_a_local_judge_runs_on_vllm_only_where_a_gpu_and_vllm_are_both_there(
    wanted, has_cuda, has_vllm, engine
):
    from routing.judges import local_engine

    assert local_engine(wanted, has_cuda=has_cuda, has_vllm=has_vllm) == engine


def test_an_engine_that_cannot_run_here_is_refused_by_name():
    from routing.judges import local_engine

    with pytest.raises(CuratorError, match=r"hybrid-curator\[gpu\]"):
        local_engine("vllm", has_cuda=True, has_vllm=False)
    with pytest.raises(CuratorError, match="unknown judge engine 'fast'"):
        local_engine("fast", has_cuda=False, has_vllm=False)


def test_a_judge_job_spread_over_tasks_labels_each_pair_as_one_process_does(
    store: Store, workspace: Workspace, tiny_model: Path, monkeypatch
):
    """On a cluster a judge job hands chunks of pairs to tasks (training.judge_job.judge_chunk,
    each loading the model once per process); chunks are whole batches, so every label equals
    the one a one-process run gives. Here the pool runs its tasks in this process."""
    from training import jobs, judge_job
    from training.judge_job import run_judge_job
    from training.kinds import JobContext
    from training.task_pool import LocalPool

    class TasksHere(LocalPool):
        name = "tasks-here"  # not "local": the job takes its cluster path

    class SpreadContext(JobContext):
        @property
        def pool(self):
            return TasksHere()

    dataset = _pairs_dataset(store, n=7)
    monkeypatch.setattr(judge_job, "JUDGE_TASK_PAIRS", 3)  # tasks of 4: whole batches of 2
    spec = {"dataset": dataset, "model": str(tiny_model), "batch_size": 2, "num_gpus": 0}
    jobs.enqueue(store, "judge", spec | {"name": "spread"})
    spread = run_judge_job(SpreadContext(store, workspace, jobs.claim_next(store, "w")),
                           spec | {"name": "spread"})  # fmt: skip
    judge = Judge(name="here", model=str(tiny_model), batch_size=2)
    backend = TransformersBackend(str(tiny_model), model_id=str(tiny_model), batch_size=2)
    here = judge_dataset(store, dataset, judge, backend)

    def labels(name: str) -> list[tuple]:
        return [tuple(r) for r in store.conn.execute(
            "SELECT instance_id, overall, probs, confidence, model FROM annotations "
            "WHERE annotator = ? ORDER BY instance_id", (name,))]  # fmt: skip

    assert (spread["judged"], spread["tasks"], spread["engine"]) == (7, 2, "transformers")
    assert spread["spread_over"] == "tasks-here tasks" and here["judged"] == 7
    assert labels("spread") == labels("here")


def test_a_judge_retried_after_its_node_died_restores_the_checkpointed_labels(
    store: Store, workspace: Workspace, tiny_model: Path, monkeypatch
):
    """On a node the labels live in a snapshot store, lost with the node: the job checkpoints
    them as JSONL parts. A retry restores the parts it is given and judges only the pairs left;
    the labels end as a run that never stopped left them."""
    import shutil

    from training import jobs, judge_job
    from training.judge_job import run_judge_job
    from training.kinds import JobContext

    messages: list[str] = []

    class OnNode(JobContext):
        @property
        def store_is_snapshot(self) -> bool:
            return True

        def progress(self, fraction, message=None):
            messages.append(message or "")

    monkeypatch.setattr(judge_job, "JUDGE_CHECKPOINT_S", 0.0)  # a part after every batch
    dataset = _pairs_dataset(store, n=7)
    spec = {"dataset": dataset, "model": str(tiny_model), "batch_size": 2, "name": "tiny"}
    jobs.enqueue(store, "judge", spec)
    first = run_judge_job(OnNode(store, workspace, jobs.claim_next(store, "node")), dict(spec))
    query = "SELECT instance_id, overall, probs FROM annotations WHERE annotator = 'tiny' "
    whole = [tuple(r) for r in store.conn.execute(query + "ORDER BY instance_id")]
    parts = sorted((workspace.root / "runs" / "job-1" / "judge-labels").glob("part-*.jsonl"))
    assert first["judged"] == 7 and len(parts) == 4  # batches of 2, 2, 2, 1
    half = workspace.root / "half"  # what the storage held when the node died
    half.mkdir()
    for part in parts[:2]:
        shutil.copy2(part, half / part.name)
    with store.write():  # the node's store is gone with it
        store.conn.execute("DELETE FROM annotations WHERE annotator = 'tiny'")
    jobs.enqueue(store, "judge", spec)
    job = jobs.claim_next(store, "other node")
    job.checkpoint_path = str(half)
    messages.clear()
    again = run_judge_job(OnNode(store, workspace, job), dict(spec))
    assert again["judged"] == 3 and again["skipped_done"] == 4
    assert "4 labels restored from the checkpoint" in messages
    assert [tuple(r) for r in store.conn.execute(query + "ORDER BY instance_id")] == whole
