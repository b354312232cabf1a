"""The routing proof: cross-fitted scoring, disjoint fit and proof rows, paired deltas, baselines and
the headroom verdict, on a real store whose LM error pattern is planted and known.

The planted dataset: in "easy" pairs the better response says "alpha"; in "hard" pairs it says
"beta" and the worse one "gamma". People label every pair right; the LM labels easy pairs right and
hard pairs backwards, with a low confidence there. A reward probe trained on LM labels learns
"gamma beats beta" and fails every hard pair, so people's labels matter exactly on the hard pairs,
and a router that reads the ``kind`` feature can send them there.
"""

from __future__ import annotations

import numpy as np
import pytest

from curation.pairs import SplitLabels
from curation.records import Annotation, Instance
from routing.evaluation import (
    EvaluateConfig,
    evaluate_routing,
    headroom,
    headroom_verdict,
    measure_headroom,
    oracle_split,
    paired,
)
from routing.ppm import PPMConfig, cross_validate, fit_predictor, train_ppm
from routing.reward_probe import ProbeConfig, crossfit_accuracy, train_probe
from routing.router import RouteConfig, centred_by_dimension
from routing.sweeps import (
    SweepConfig,
    SweepData,
    SweepRuns,
    create_sweep,
    proof_rows,
    run_sweep,
    sweep_info,
)

N, HARD = 400, 0.3
FILLER = "the a answer here is some text with words about things and more words".split()


def _response(rng, marker: str) -> str:
    return " ".join([marker, *rng.choice(FILLER, size=8)])


def planted(store, name: str = "planted", n: int = N) -> np.ndarray:
    """The planted dataset (see the module docstring); returns which pairs are hard."""
    rng = np.random.default_rng(0)
    hard = rng.random(n) < HARD
    a_better = rng.random(n) < 0.5
    instances, sides = [], []
    for i in range(n):
        good, bad = ("beta", "gamma") if hard[i] else ("alpha", "omega")
        first, second = (good, bad) if a_better[i] else (bad, good)
        instances.append(Instance(uid=f"p{i}", prompt=f"question {i}",
                                  response_a=_response(rng, first),
                                  response_b=_response(rng, second)))  # fmt: skip
        sides.append(-1 if a_better[i] else 1)
    ds = store.create_dataset(name, "preference")
    ids = store.insert_instances(ds["id"], instances)
    labels = []
    for i, side in zip(ids, sides, strict=True):
        k = ids.index(i)
        labels += [(i, Annotation("human", f"h{j}", overall=2 * side)) for j in range(3)]
        lm_side = -side if hard[k] else side
        confidence = 0.55 if hard[k] else 0.95
        labels.append((i, Annotation("lm", "judge", overall=2 * lm_side, confidence=confidence)))
    store.add_annotations(labels)
    noise = rng.random(n) < 0.5
    rows = [
        (i, "kind", 1.0, "test", "hard" if h else "easy") for i, h in zip(ids, hard, strict=True)
    ]
    rows += [(i, "noise", 0.0, "test", "x" if z else "y") for i, z in zip(ids, noise, strict=True)]
    with store.write():
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor, label) VALUES (?,?,?,?,?)",
            rows,
        )
    return hard


@pytest.fixture
def proven(store):
    """The planted store with a 60-run sweep, its linear predictor and the evaluation rows."""
    hard = planted(store)
    config = SweepConfig(runs=60)
    data = SweepData.load(store, "planted", None, config)
    sweep_id = run_sweep(store, "planted", None, config, data=data)
    predictor = train_ppm(store, sweep_id, PPMConfig(kind="linear"))
    uncertainty = np.where(hard, 1.0, 0.0)
    rows = evaluate_routing(data, predictor, EvaluateConfig(seeds=10), uncertainty=uncertainty)
    return {"data": data, "rows": rows, "hard": hard, "sweep_id": sweep_id, "store": store}


def _row(rows, method, budget):
    return next(r for r in rows if r["method"] == method and r.get("budget") == budget)


def test_crossfit_never_scores_a_row_with_a_model_that_saw_its_label():
    """Labels that are pure noise cannot be learned, only memorised: cross-fitted, they score
    chance (0.5, SE 0.025 at 400 rows) however well a probe fits its own training rows."""
    rng = np.random.default_rng(1)
    diffs = rng.normal(size=(400, 600)).astype(np.float32)
    noise = rng.choice([-1, 1], size=400).astype(np.int8)
    config = ProbeConfig(l2=1e-4)
    weights = train_probe(diffs, noise, config)
    assert np.mean(np.sign(diffs @ weights) == noise) > 0.95  # memorised in-sample
    folds = np.arange(400) % 5
    accuracy, scored = crossfit_accuracy(diffs, noise, noise, folds, np.ones(400, bool), config)
    assert scored == 400
    assert abs(accuracy - 0.5) < 0.125


def test_proof_rows_are_a_fixed_share_disjoint_from_what_sweeps_score(store):
    planted(store)
    data = SweepData.load(store, "planted", None, SweepConfig())
    assert data.proof.sum() == N // 2
    assert np.array_equal(data.proof, proof_rows(N, 0.5))
    everyone = np.ones(N, dtype=bool)
    fit_score, _ = data.score(everyone, part="fit")
    proof_score, _ = data.score(everyone, part="proof")
    assert fit_score.n + proof_score.n == N  # every pair has a reference: each scored once


def test_the_penalty_is_tuned_and_stored_with_the_sweep(store):
    planted(store)
    data = SweepData.load(store, "planted", None, SweepConfig(runs=5))
    assert data.config.probe.l2 is not None
    sweep_id = run_sweep(store, "planted", None, SweepConfig(runs=5), data=data)
    stored = SweepConfig.from_dict(sweep_info(store, sweep_id)["config"])
    assert stored.probe.l2 == data.config.probe.l2
    assert stored.target == "crossfit" and stored.sampler == "grouped"


def test_a_sweep_created_before_its_data_was_loaded_stores_the_tuned_penalty(store):
    """A background job creates its sweep first; the penalty tuned on loading still lands there."""
    planted(store)
    sweep_id = create_sweep(store, "planted", None, SweepConfig(runs=3))
    assert sweep_info(store, sweep_id)["config"]["probe"]["l2"] is None
    run_sweep(store, "planted", None, sweep_id=sweep_id)
    assert sweep_info(store, sweep_id)["config"]["probe"]["l2"] is not None


def test_an_abstaining_tag_ranks_an_instance_as_an_average_one():
    """A dimension's gains are centred, so an instance without a value for it (an ``unknown``
    tag) sits between those with a helpful and an unhelpful value, not below both."""
    names = ["safety=high", "safety=safe", "rouge=low", "rouge=high"]
    raw = np.array([3.0, 1.0, 0.5, -0.5])  # OLS put a common offset of 2 on the safety columns
    counts = np.array([10, 10, 20, 20])
    centred = centred_by_dimension(names, raw, counts)
    assert centred.tolist() == [1.0, -1.0, 0.5, -0.5]
    features = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]], dtype=bool)  # last: unknown
    gains = features.astype(float) @ centred
    assert gains[0] > gains[2] > gains[1]


def test_sweep_vectors_count_only_human_labels_that_survive_tie_dropping(store):
    planted(store)
    first = store.conn.execute("SELECT min(id) FROM instances").fetchone()[0]
    store.add_annotations([(first, Annotation("human", f"h{j}", overall=0)) for j in range(3)])
    data = SweepData.load(store, "planted", None, SweepConfig())
    everyone = np.ones(N, dtype=bool)
    assert data.surviving(everyone).sum() == N - 1
    sweep_id = run_sweep(store, "planted", None, SweepConfig(runs=3, min_budget=1.0), data=data)
    runs = SweepRuns.load(store, sweep_id)
    kinds = [runs.names.index("kind=easy"), runs.names.index("kind=hard")]
    assert runs.vectors[:, kinds].sum(axis=1).tolist() == [N - 1] * 3


def test_old_sweeps_read_back_as_scored_on_an_eval_set_with_the_minilm_probe():
    old = SweepConfig.from_dict({"runs": 20, "sampler": "mixed", "probe": {"l2": 0.001}})
    assert (old.target, old.sampler, old.probe.representation) == ("eval", "mixed", "minilm")
    assert SweepConfig.from_dict(SweepConfig().to_dict()) == SweepConfig()


def test_headroom_is_measured_paired_and_found_where_people_matter(store):
    planted(store)
    row = measure_headroom(SweepData.load(store, "planted", None, SweepConfig()), seeds=10)
    assert row["significant"] and row["delta"] > 5 * row["se"]
    assert row["all_human"] > 0.9 and row["all_lm"] < 0.8


def test_the_headroom_verdict_refuses_a_plan_under_two_standard_errors():
    ok, text = headroom_verdict(0.01, 0.008, 10)
    assert not ok and "cannot help" in text and "+0.0100" in text
    ok, text = headroom_verdict(-0.05, 0.01, 10)
    assert not ok and "LM labels train a better reward model" in text
    ok, _ = headroom_verdict(0.05, 0.01, 10)
    assert ok


def test_ends_that_score_alike_still_leave_room_when_a_mix_beats_both():
    """People and the judge can be equally good overall and wrong on different pairs: the oracle's
    mix then shows the room a router has, and the verdict says so."""
    ok, text = headroom_verdict(0.004, 0.005, 10, mix=(0.05, 0.006, 0.25))
    assert ok and text.startswith("headroom in a mix") and "25%" in text
    ok, text = headroom_verdict(0.004, 0.005, 10, mix=(0.005, 0.006, 0.25))
    assert not ok and text.startswith("no headroom")


def test_paired_differences_cancel_what_the_seeds_share():
    shared = np.array([0.5, 0.7, 0.6, 0.8])
    delta, se = paired(list(shared + 0.02), list(shared))
    assert delta == pytest.approx(0.02) and se == pytest.approx(0.0, abs=1e-12)
    delta, se = paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert delta == 2.0 and se == pytest.approx(1.0 / np.sqrt(3))


def test_the_oracle_sends_the_pairs_whose_lm_label_is_wrong_first():
    human = np.array([1, 1, -1, -1, 1, 0])
    lm = np.array([1, -1, -1, 1, 1, 1])
    oracle = oracle_split(human, lm, human, 2, np.random.default_rng(0))
    assert np.flatnonzero(oracle).tolist() == [1, 3]
    wider = oracle_split(human, lm, human, 4, np.random.default_rng(0))
    assert wider[[1, 3]].all() and wider.sum() == 4


def test_routing_beats_random_by_many_paired_standard_errors_where_the_lm_errs(proven):
    rows = proven["rows"]
    assert headroom(rows)["significant"]
    for budget in (0.25, 0.5):
        routed = _row(rows, "routed", budget)
        assert routed["seeds"] == 10
        assert routed["delta_vs_random"] > 0.05
        assert routed["delta_vs_random"] > 3 * routed["delta_se"], routed
    # at 25% the budget (100 pairs) is all hard pairs: routed beats every baseline but all-human
    routed = _row(rows, "routed", 0.25)
    assert routed["mean"] > _row(rows, "all-lm", 0.0)["mean"] + 0.1


def test_every_method_and_the_headroom_are_reported_with_paired_deltas(proven):
    rows = proven["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"routed", "random", "all-human", "all-lm", "oracle", "confidence",
                       "headroom"}  # fmt: skip
    for row in rows:
        if row["method"] in ("routed", "oracle", "confidence"):
            assert {"delta_vs_random", "delta_se"} <= set(row)
    # the confidence router reads the judge's uncertainty: here that is exactly the hard pairs
    confidence = _row(rows, "confidence", 0.25)
    assert confidence["delta_vs_random"] > 3 * confidence["delta_se"]
    assert rows[-1]["method"] == "headroom"


def test_the_reference_is_gold_where_the_dataset_carries_it(store):
    planted(store)
    labels = SplitLabels.load(store, "planted")
    assert labels.reference_source == "human"
    with store.write():
        store.conn.execute("UPDATE instances SET gold = 2")
    labels = SplitLabels.load(store, "planted")
    assert labels.reference_source == "gold" and set(labels.reference.tolist()) == {1}


def test_partial_r2_removes_what_the_budget_alone_explains():
    rng = np.random.default_rng(4)
    budgets = rng.random(200)
    x = np.outer(budgets, np.ones(6)) * 100 + rng.normal(0, 1, size=(200, 6))
    y = 0.5 + 0.2 * budgets + rng.normal(0, 0.002, size=200)
    fit = cross_validate(x, y, PPMConfig(kind="linear"), budgets)
    assert fit["r2"] > 0.9
    assert fit["partial_r2"] < 0.2


def test_monotone_lightgbm_keeps_the_sign_the_linear_fit_gives_each_feature():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 50, size=(300, 3)).astype(float)
    y = 0.01 * x[:, 0] - 0.01 * x[:, 1] + rng.normal(0, 0.05, size=300)
    predictor = fit_predictor(x, y, ["up", "down", "none"], PPMConfig(kind="lightgbm"))
    grid = np.tile(x.mean(axis=0), (50, 1))
    grid[:, 0] = np.arange(50)
    assert np.all(np.diff(predictor.predict(grid)) >= -1e-12)
    grid = np.tile(x.mean(axis=0), (50, 1))
    grid[:, 1] = np.arange(50)
    assert np.all(np.diff(predictor.predict(grid)) <= 1e-12)


def test_evaluation_needs_two_seeds_to_pair():
    with pytest.raises(Exception, match="at least 2 seeds"):
        EvaluateConfig(seeds=1, route=RouteConfig()).validate()


def test_the_pairs_own_domain_becomes_a_feature_only_where_it_is_a_domain(store):
    from routing.features import MAX_DOMAINS, FeatureMatrix, domain_rows

    planted(store)
    assert domain_rows(store, "planted") == []  # no domain column
    with store.write():
        store.conn.execute(
            "UPDATE instances SET domain = CASE WHEN id % 2 THEN 'odd' ELSE 'even' END"
        )
    rows = domain_rows(store, "planted")
    assert len(rows) == N and {r[4] for r in rows} == {"odd", "even"}
    with store.write():
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor, label) VALUES (?,?,?,?,?)",
            rows,
        )
    kept = FeatureMatrix.load(store, "planted").for_routing().names
    assert {"domain=even", "domain=odd"} <= set(kept)
    with store.write():
        store.conn.execute(f"UPDATE instances SET domain = 'd' || (id % {MAX_DOMAINS + 1})")
    assert domain_rows(store, "planted") == []  # an id-like column is no domain
