"""A trained reward model as a judge: registered in ``judges`` (backend ``reward_model``) and
labelling preference pairs like the LM judges do, so its labels feed agreement, trust-or-escalate,
routing and training like any other LM label.

Bradley-Terry gives the probability that A is better: P(A) = sigmoid(r(A) - r(B)). The label is
the same -2..2 verdict an LM judge's probability gives (``routing.judges``), with ``probs``
[P(A), P(B)] and ``confidence`` max(P(A), P(B)). Pairs this judge already labelled are skipped,
so a stopped run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from curation.errors import CuratorError
from curation.records import Annotation
from curation.store import Store
from routing.judges import pairs_to_judge, verdict_from_probability
from training.data import prompt_turns
from training.reward_scorer import RewardScorer, sigmoid
from training.runs import get_run, local_model, run_model_dir
from training.trainer_base import run_info

BACKEND = "reward_model"


def register_reward_judge(store: Store, run_id: int, name: str | None = None) -> dict[str, Any]:
    """Record a finished reward-model run as a judge (default name ``rm-run<id>``); registering
    the same run under the same name again is a no-op, another model under that name an error.

    The judge's model is the run's ``artifact_path`` as recorded (a storage URL stays a URL: it is
    the model's identity wherever the workspace is opened); it is loaded from a local copy."""
    run = get_run(store, run_id)
    if run.kind != "reward":
        raise CuratorError(f"run {run_id} is a {run.kind} run; only reward models can judge")
    run_model_dir(store, run)  # a missing model is refused now, not when the judge first labels
    name = (name or f"rm-run{run_id}").strip()
    row = store.conn.execute("SELECT * FROM judges WHERE name = ?", (name,)).fetchone()
    if row:
        row = dict(row)
        if (row["backend"], row["model"]) != (BACKEND, run.artifact_path):
            raise CuratorError(
                f"judge {name!r} already exists for another model ({row['backend']}: "
                f"{row['model']}); choose another name"
            )
        return row
    config = {
        "run_id": run_id,
        "base_model": run.base_model,
        "max_length": run.config.get("max_length"),
        "trained_on": run.dataset or run.mixture,
    }
    with store.write():
        store.conn.execute(
            "INSERT INTO judges(name, backend, model, config) VALUES (?, ?, ?, ?)",
            (name, BACKEND, run.artifact_path, json.dumps(config, sort_keys=True)),
        )
    return dict(store.conn.execute("SELECT * FROM judges WHERE name = ?", (name,)).fetchone())


def reward_judge(store: Store, name: str) -> dict[str, Any]:
    """A registered reward-model judge's row."""
    row = store.conn.execute("SELECT * FROM judges WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise CuratorError(f"no judge named {name!r}; register a reward-model run first")
    if row["backend"] != BACKEND:
        raise CuratorError(f"judge {name!r} is a {row['backend']} judge, not a reward model")
    return dict(row)


def label_with_reward_model(
    store: Store,
    dataset: str,
    judge_name: str,
    *,
    batch_size: int = 32,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Label every pair of a dataset that this reward-model judge has not labelled yet.

    Writes one LM annotation per pair, a batch at a time (an interrupted run keeps what it
    finished). Returns counts like ``routing.judges.judge_dataset``.
    """
    judge = reward_judge(store, judge_name)
    model_dir = local_model(store, judge["model"], what=f"the model of judge {judge_name!r}")
    done, todo, incomplete = pairs_to_judge(store, dataset, judge_name, limit)
    started = time.monotonic()
    judged = 0
    if progress:
        progress(0, len(todo))
    if todo:
        scorer = RewardScorer.load(model_dir, batch_size=batch_size)
        run_id = run_info(model_dir).get("run_id")
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            prompts = [prompt_turns(instance) for _, instance in chunk]
            r_a = scorer.score(prompts, [instance.response_a for _, instance in chunk])
            r_b = scorer.score(prompts, [instance.response_b for _, instance in chunk])
            labelled = []
            for (instance_id, _), a, b in zip(chunk, r_a, r_b, strict=True):
                p_a = sigmoid(float(a - b))
                labelled.append(
                    (
                        instance_id,
                        Annotation(
                            annotator_kind="lm",
                            annotator=judge_name,
                            overall=verdict_from_probability(p_a),
                            confidence=max(p_a, 1.0 - p_a),
                            probs=[p_a, 1.0 - p_a],
                            model=judge["model"],
                            reasons={"reward_a": float(a), "reward_b": float(b), "run_id": run_id},
                            origin=BACKEND,
                        ),
                    )
                )
            judged += store.add_annotations(labelled)
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
    seconds = time.monotonic() - started
    return {
        "judge": judge_name,
        "dataset": dataset,
        "model": judge["model"],
        "judged": judged,
        "skipped_done": len(done),
        "skipped_incomplete": incomplete,
        "seconds": round(seconds, 2),
        "judgments_per_s": round(judged / seconds, 2) if judged and seconds > 0 else None,
    }
