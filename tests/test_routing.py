"""Splits, labels, the performance predictor and the router, on small inputs built in the test."""

from __future__ import annotations

import numpy as np
import pytest

from curation.errors import CuratorError
from curation.evalsets import rewardbench_score
from curation.pairs import LabelConfig, SplitLabels
from curation.records import Annotation, Instance
from routing.ppm import PerformancePredictor, PPMConfig, cross_validate, fit_predictor
from routing.reward_probe import train_probe
from routing.router import route_greedy, route_simulated, route_topk
from routing.splits import (
    budget_count,
    sample_grouped,
    sample_uniform,
    split_vector,
    split_vectors,
)


def test_budget_is_a_fraction_up_to_one_and_a_count_above():
    assert budget_count(0.25, 200) == 50
    assert budget_count(1.0, 200) == 200
    assert budget_count(0.0, 200) == 0
    assert budget_count(30, 200) == 30
    assert budget_count(30.0, 200) == 30
    with pytest.raises(CuratorError, match="more than the 200"):
        budget_count(500, 200)
    with pytest.raises(CuratorError, match="negative"):
        budget_count(-0.1, 200)


def _labelled(store):
    ds = store.create_dataset("prefs", "preference")
    ids = store.insert_instances(
        ds["id"], [Instance(uid=f"u{i}", prompt="p", response_a="a", response_b="b")
                   for i in range(4)],
    )  # fmt: skip
    human = {0: [-2, -1, 1], 1: [1, -1], 2: [-1, -1, 2], 3: [2, 2, 2]}
    lm = {0: 2, 1: -1, 2: 1, 3: 0}
    labels = []
    for k, values in human.items():
        labels += [(ids[k], Annotation("human", f"h{j}", overall=v)) for j, v in enumerate(values)]
        labels.append((ids[k], Annotation("lm", "judge-x", overall=lm[k])))
    labels.append((ids[0], Annotation("lm", "judge-y", overall=-2)))
    store.add_annotations(labels)
    return ids


def test_split_labels_take_the_human_majority_and_the_busiest_judge(store):
    _labelled(store)
    labels = SplitLabels.load(store, "prefs")
    assert labels.judge == "judge-x"
    assert labels.human.tolist() == [-1, 0, -1, 1]  # instance 1 has no majority: dropped
    assert labels.lm.tolist() == [1, -1, 1, 0]
    mixed = labels.for_split(np.array([True, False, False, True]))
    assert mixed.tolist() == [-1, -1, 1, 1]


def test_dropping_slight_preferences_keeps_only_clear_ones(store):
    _labelled(store)
    labels = SplitLabels.load(store, "prefs", LabelConfig(slight="drop", judge="judge-y"))
    # instance 0: only -2 is clear; instance 2: only the 2 is clear
    assert labels.human.tolist() == [-1, 0, 1, 1]
    assert labels.lm.tolist() == [-1, 0, 0, 0]


def test_sweeps_need_both_sources(store):
    ds = store.create_dataset("only-people", "preference")
    (i,) = store.insert_instances(ds["id"], [Instance(uid="x", prompt="p", response_a="a",
                                                      response_b="b")])  # fmt: skip
    store.add_annotations([(i, Annotation("human", "h", overall=1))])
    with pytest.raises(CuratorError, match="no instance has a usable LM-judge label"):
        SplitLabels.load(store, "only-people").require_both()


def _features(n=400, m=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, m)) < rng.uniform(0.05, 0.5, size=m)


def test_samplers_respect_the_budget_and_vectors_count_human_instances():
    features = _features()
    rng = np.random.default_rng(1)
    for sampler in (sample_uniform(400, 100, rng), sample_grouped(features, 100, rng)):
        assert sampler.sum() == 100
        vector = split_vector(features, sampler)
        assert vector.tolist() == features[sampler].sum(axis=0).tolist()
    masks = np.stack([sample_uniform(400, 50, rng) for _ in range(3)])
    assert np.allclose(split_vectors(features, masks), [split_vector(features, m) for m in masks])


def test_grouped_draws_spread_split_vectors_wider_than_uniform_draws():
    features = _features()
    rng = np.random.default_rng(2)
    grouped = np.stack([split_vector(features, sample_grouped(features, 80, rng))
                        for _ in range(200)])  # fmt: skip
    uniform = np.stack([split_vector(features, sample_uniform(400, 80, rng)) for _ in range(200)])
    assert grouped.std(axis=0).mean() > 2 * uniform.std(axis=0).mean()


def _linear_runs(features, coef, runs=300, seed=0, noise=0.002):
    rng = np.random.default_rng(seed)
    masks = np.stack([
        sample_grouped(features, int(rng.integers(0, len(features))), rng) for _ in range(runs)
    ])  # fmt: skip
    x = split_vectors(features, masks).astype(float)
    y = 0.6 + x @ coef + rng.normal(0, noise, size=runs)
    return x, y


def test_predictors_recover_a_known_score_function():
    features = _features()
    coef = np.linspace(-2e-4, 3e-4, features.shape[1])
    x, y = _linear_runs(features, coef)
    names = [f"f{j}" for j in range(features.shape[1])]
    linear = fit_predictor(x, y, names, PPMConfig(kind="linear"))
    assert linear.metrics["cv"]["r2"] > 0.9
    assert np.allclose(linear.model.coef, coef, atol=3e-5)
    lgbm = fit_predictor(x, y, names, PPMConfig(kind="lightgbm"))
    assert lgbm.metrics["cv"]["spearman"] > 0.8
    quadratic = cross_validate(x, y, PPMConfig(kind="quadratic"))
    assert quadratic["r2"] > 0.8
    curve = lgbm.metrics["learning_curve"]
    assert [p["runs"] for p in curve] == sorted(p["runs"] for p in curve)
    assert curve[-1]["runs"] == len(y)


def test_a_predictor_cannot_fit_noise():
    rng = np.random.default_rng(3)
    x = rng.random((120, 6)) * 100
    y = rng.random(120)
    fit = cross_validate(x, y, PPMConfig(kind="lightgbm"))
    assert fit["r2"] < 0.2


def test_saved_predictors_predict_the_same(tmp_path):
    features = _features()
    x, y = _linear_runs(features, np.linspace(-1e-4, 1e-4, features.shape[1]))
    names = [f"f{j}" for j in range(features.shape[1])]
    for kind in ("lightgbm", "linear", "quadratic"):
        fitted = fit_predictor(x, y, names, PPMConfig(kind=kind))
        loaded = PerformancePredictor.load_file(fitted.save(tmp_path / kind))
        assert loaded.names == names
        assert np.allclose(loaded.predict(x[:20]), fitted.predict(x[:20]))


def test_feature_gain_of_a_linear_predictor_is_its_coefficients():
    features = _features()
    coef = np.linspace(-2e-4, 3e-4, features.shape[1])
    x, y = _linear_runs(features, coef, noise=0.0)
    predictor = fit_predictor(x, y, [f"f{j}" for j in range(len(coef))], PPMConfig(kind="linear"))
    assert np.allclose(predictor.feature_gain(features, 100), coef, atol=1e-8)


def test_topk_sends_instances_with_helpful_features_to_humans():
    features = np.zeros((100, 2), dtype=bool)
    features[:30, 0] = True  # humans help here
    features[30:, 1] = True  # humans hurt here
    gains = features.astype(float) @ np.array([1.0, -1.0])
    mask = route_topk(gains, 20, np.random.default_rng(0))
    assert mask.sum() == 20 and mask[:30].sum() == 20


def _known_predictor(coef):
    features = _features(300, len(coef), seed=5)
    x, y = _linear_runs(features, np.asarray(coef), noise=0.0)
    names = [f"f{j}" for j in range(len(coef))]
    return features, fit_predictor(x, y, names, PPMConfig(kind="linear"))


def test_simulated_search_keeps_the_best_candidate_it_drew():
    features, predictor = _known_predictor(np.linspace(-3e-4, 3e-4, 8))
    rng = np.random.default_rng(0)
    best = route_simulated(predictor, features, 60, 200, rng)
    assert best.sum() == 60
    random_scores = predictor.predict(split_vectors(features, np.stack(
        [sample_uniform(300, 60, rng) for _ in range(50)])))  # fmt: skip
    assert predictor.predict(split_vector(features, best))[0] > random_scores.max()


def test_greedy_takes_no_one_when_humans_only_hurt_and_everyone_when_they_help():
    features, hurting = _known_predictor(-np.full(6, 1e-4))
    rng = np.random.default_rng(0)
    gains = features.astype(float) @ hurting.feature_gain(features, 50)
    assert route_greedy(hurting, features, gains, 50, 1e-9, 10, rng).sum() == 0
    features, helping = _known_predictor(np.full(6, 1e-4))
    gains = features.astype(float) @ helping.feature_gain(features, 50)
    assert route_greedy(helping, features, gains, 50, 1e-9, 10, rng).sum() == 50


def test_probe_learns_a_direction_from_pairs():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=16)
    diffs = rng.normal(size=(400, 16)).astype(np.float32)
    labels = np.sign(diffs @ truth).astype(np.int8)
    weights = train_probe(diffs, labels)
    agreement = np.mean(np.sign(diffs @ weights) == labels)
    assert agreement > 0.95
    flipped = train_probe(diffs, -labels)
    assert np.mean(np.sign(diffs @ flipped) == labels) < 0.05


def test_rewardbench_score_weights_subsets_by_size_and_counts_ties_wrong():
    margins = [1, 1, -1, 0, 1, 1]
    subsets = ["s1", "s1", "s1", "s2", "r1", "r1"]
    categories = ["chat", "chat", "chat", "chat", "reasoning", "reasoning"]
    score = rewardbench_score(margins, subsets, categories)
    assert score.subsets == {"r1": 1.0, "s1": pytest.approx(2 / 3), "s2": 0.0}
    assert score.categories == {"chat": 0.5, "reasoning": 1.0}
    assert score.overall == 0.75


def test_feature_shares_say_which_features_earned_human_labels():
    from routing.features import FeatureMatrix
    from routing.router import RoutePlan, human_share_by_feature

    matrix = np.array([[1, 0], [1, 1], [0, 1], [0, 1]], dtype=bool)
    features = FeatureMatrix(np.array([10, 11, 12, 13]), ["x=high", "y=low"], matrix)
    plan = RoutePlan("d", "topk", 2, features.instance_ids, np.array([1, 1, 0, 0], dtype=bool),
                     np.zeros(4), 0.5, {})  # fmt: skip
    shares = human_share_by_feature(features, plan)
    assert shares.to_dict("records") == [
        {"feature": "x=high", "instances": 2, "human": 2, "share": 1.0},
        {"feature": "y=low", "instances": 3, "human": 1, "share": pytest.approx(1 / 3)},
    ]
