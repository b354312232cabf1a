"""The routing pipeline end to end on the demo workspace, through the real `curator` commands:
features, a 400-run sweep, a route plan queued for an annotator, and the paired proof at a quarter
of the pairs (docs/demo.md says why there is something to find: the simulated judge errs on
coding, maths and safety, where people are careful, and people err on creative writing, factual
QA and advice, where the judge is good)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from curation.store import Store
from curation.users import add_user
from curation.workspace import Workspace

pytestmark = pytest.mark.slow

CURATOR = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[1]
PAIRS = 1200
RUNS = 400  # with 200 the predictor, and so the routed split, varies too much with the sweep seed


def curator(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*CURATOR, *args], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"curator {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def routed_demo(tmp_path_factory) -> dict:
    """A demo workspace (half the default pairs, to keep the suite fast) with features and one
    sweep (its predictor trained), and the proof of its routing over 10 paired seeds."""
    ws = str(tmp_path_factory.mktemp("routing") / "ws")
    curator("demo", "--no-ui", "--pairs", str(PAIRS), "-w", ws)
    features = json.loads(curator("features", "demo-prefs", "--json", "-w", ws).stdout)
    sweep = json.loads(
        curator("sweep", "demo-prefs", "--runs", str(RUNS), "--json", "-w", ws).stdout
    )
    proof = json.loads(
        curator("route", "demo-prefs", "--evaluate", "--seeds", "10", "--json", "-w", ws).stdout
    )
    return {"ws": ws, "features": features, "sweep": sweep, "proof": proof}


@pytest.mark.parametrize("command", ["features", "sweep", "route"])
def test_routing_commands_have_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_features_cover_every_demo_pair(routed_demo):
    features = routed_demo["features"]
    assert features["instances"] == PAIRS
    for measure in features["measures"]:
        bins = [n for n in features["features"] if n.split("=")[0] == measure]
        assert sum(features["features"][n] for n in bins) == PAIRS, measure


def test_sweep_stores_its_runs_and_fits_all_three_predictors(routed_demo):
    sweep = routed_demo["sweep"]
    assert sweep["runs"] == RUNS and sweep["kind"] == "linear" and sweep["target"] == "crossfit"
    assert set(sweep["baselines"]) == {"lightgbm", "linear", "quadratic"}
    # the split vectors are real: scores that vary with the split, beyond what the budget explains
    assert sweep["cv"]["spearman"] > 0.3
    assert sweep["cv"]["spearman_within_budget"] > 0.2
    with Store.open(routed_demo["ws"]) as store:
        run = store.conn.execute(
            "SELECT human_ids, feature_vector FROM sweep_runs WHERE sweep_id = ? LIMIT 1",
            (sweep["sweep_id"],),
        ).fetchone()
        human_ids = json.loads(run[0])
        vector = json.loads(run[1])
        marks = ",".join("?" * len(human_ids))
        # counted over the human labels that survive tie-dropping, as the paper's code counts
        (with_tag,) = store.conn.execute(
            f"SELECT count(*) FROM features WHERE name = 'cosine_sim' AND label = 'high' "  # noqa: S608
            f"AND instance_id IN ({marks})",
            human_ids,
        ).fetchone()
    assert 0 < vector["cosine_sim=high"] <= with_tag


def test_the_proof_reports_every_method_paired_and_the_headroom_first(routed_demo):
    rows = routed_demo["proof"]
    methods = {r["method"] for r in rows}
    assert methods == {"routed", "random", "all-human", "all-lm", "oracle", "confidence",
                       "headroom"}  # fmt: skip
    for row in rows:
        if row["method"] == "headroom":
            assert {"delta", "se", "verdict"} <= set(row)
            continue
        assert {"method", "budget", "mean", "std", "seeds"} <= set(row)
        assert row["seeds"] == 10
        if row["method"] in ("routed", "oracle", "confidence"):
            assert {"delta_vs_random", "delta_se"} <= set(row)


def test_at_a_quarter_of_the_demo_pairs_routing_beats_every_baseline_by_two_paired_ses(
    routed_demo,
):
    """The demo's documented error pattern (people and the judge err on different pairs), proven
    paired over 10 seeds: at 25% the routed split beats the best of all-LM, all-human and random
    by at least 2 paired SEs, and each of them on its own; an oracle shows the room it works in.
    docs/demo.md has the figures for other sweep seeds."""
    rows = routed_demo["proof"]
    routed = next(r for r in rows if r["method"] == "routed" and r["budget"] == 0.25)
    assert routed["delta_vs_best"] >= 2 * routed["delta_vs_best_se"], routed
    assert routed["delta_vs_random"] >= 2 * routed["delta_se"], routed
    for end in ("all_lm", "all_human"):
        assert routed[f"delta_vs_{end}"] >= 2 * routed[f"delta_vs_{end}_se"], (end, routed)
    oracle = next(r for r in rows if r["method"] == "oracle" and r["budget"] == 0.25)
    assert oracle["delta_vs_random"] > 3 * oracle["delta_se"], oracle
    assert next(r for r in rows if r["method"] == "headroom")["significant"]


def test_route_plan_is_stored_and_goes_to_an_annotators_queue(routed_demo):
    ws = routed_demo["ws"]
    plan = json.loads(
        curator("route", "demo-prefs", "--budget", "0.1", "--method", "simulated",
                "--candidates", "200", "--json", "-w", ws).stdout
    )  # fmt: skip
    assert plan["human"] == PAIRS // 10 and plan["lm"] == PAIRS - PAIRS // 10
    with Store.open(Workspace(Path(ws))) as store:
        add_user(store, "routing-ann", "annotator", "a long enough password")
    queued = json.loads(
        curator("assign", "demo-prefs", "--plan", str(plan["plan_id"]), "--to", "routing-ann",
                "--json", "-w", ws).stdout
    )  # fmt: skip
    assert queued["created"] == PAIRS // 10
    with Store.open(Workspace(Path(ws))) as store:
        origins = store.conn.execute(
            "SELECT DISTINCT origin, plan_id FROM assignments a JOIN users u ON u.id = a.user_id "
            "WHERE u.name = 'routing-ann'"
        ).fetchall()
    assert [tuple(r) for r in origins] == [("route_plan", plan["plan_id"])]


def test_routing_an_unfeatured_dataset_says_what_to_run(routed_demo):
    result = curator("route", "demo-eval", "-w", routed_demo["ws"], check=False)
    assert result.returncode == 1
    assert "curator features demo-eval" in result.stderr
