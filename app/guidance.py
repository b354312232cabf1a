"""What to do next, from what the workspace holds: the Home page's short list.

The workflow runs import -> label (people, a judge) -> route -> mix -> train -> compare; each
step is suggested once the one before it has something to work on, with the reason in words.
Only counts are read, so the list costs a handful of queries however large the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation.store import Store


@dataclass(frozen=True)
class Step:
    script: str  # the page under app/views
    reason: str


def _count(store: Store, sql: str) -> int:
    return int(store.conn.execute(sql).fetchone()[0])


def next_steps(store: Store) -> list[Step]:
    """The pages worth opening now, most pressing first."""
    datasets = _count(store, "SELECT count(*) FROM datasets")
    if datasets == 0:
        return [Step("import_data.py", "The workspace is empty: import a file or a hub dataset.")]
    prefs = _count(store, "SELECT count(*) FROM datasets WHERE kind = 'preference'")
    human = _count(store, "SELECT count(*) FROM annotations WHERE annotator_kind = 'human'")
    lm = _count(store, "SELECT count(*) FROM annotations WHERE annotator_kind = 'lm'")
    pending = _count(store, "SELECT count(*) FROM assignments WHERE status = 'pending'")
    flags = _count(store, "SELECT count(*) FROM flags WHERE status = 'open'")
    featured = _count(store, "SELECT count(DISTINCT i.dataset_id) FROM features f "
                             "JOIN instances i ON i.id = f.instance_id")  # fmt: skip
    predictors = _count(store, "SELECT count(*) FROM ppms")
    mixtures = _count(store, "SELECT count(*) FROM mixtures")
    runs = _count(store, "SELECT count(*) FROM runs")
    jobs = _count(store, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")

    steps: list[Step] = []
    if flags:
        steps.append(Step("flags.py", f"{flags:,} open flaw reports wait for a decision."))
    if jobs:
        steps.append(Step("jobs.py", f"{jobs:,} jobs are queued or running."))
    if prefs and human == 0:
        steps.append(Step("team.py", "No human labels yet: assign pairs to annotators."))
    elif pending:
        steps.append(Step("team.py", f"{pending:,} assigned items are still pending."))
    if prefs and lm == 0:
        steps.append(Step("judge.py", "No LM labels yet: run a judge over a preference dataset."))
    if human and lm:
        steps.append(Step("agreement.py", "People and a judge have both labelled: compare them."))
        if featured == 0:
            steps.append(Step("route.py", "Compute routing features, then sweep and route."))
        elif predictors == 0:
            steps.append(Step("route.py", "Features are ready: run a sweep to fit a predictor."))
        else:
            steps.append(Step("route.py", "A predictor is fitted: route and prove it."))
    if mixtures == 0 and (human or lm or prefs < datasets):
        steps.append(Step("mix.py", "Build a first training mixture from the labelled data."))
    if mixtures and runs == 0 and not jobs:
        steps.append(Step("jobs.py", "Mixtures are built: train a reward model, SFT or DPO."))
    if runs >= 2:
        steps.append(Step("compare.py", f"{runs:,} training runs to compare."))
    return steps or [Step("explore.py", "Read and filter the data.")]
