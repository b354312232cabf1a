"""Agreement measures: hand-computed values on tiny label sets, textbook examples, the store and
CLI and app around them, and PandaLM's published human agreement reproduced from the real data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest

from curation.agreement import (
    AgreementConfig,
    agreement_matrix,
    agreement_table,
    dataset_agreement,
    export_report,
    labels_frame,
    load_labels,
    majority,
    measure,
)
from curation.errors import CuratorError
from curation.importer import ImportOptions, import_path
from curation.preset_schemas import pandalm_records
from curation.records import Annotation, Instance
from curation.store import Store
from curation.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "app" / "Home.py"


def _labels(*rows: tuple[Any, ...], aspect: str = "overall") -> Any:
    """Rows of (instance, annotator, value[, kind[, domain]]) as a labels frame."""
    out = []
    for row in rows:
        item, annotator, value, *rest = row
        kind = rest[0] if rest else "human"
        domain = rest[1] if len(rest) > 1 else None
        out.append(
            {
                "instance_id": item,
                "annotator": annotator,
                "annotator_kind": kind,
                aspect: value,
                "domain": domain,
            }
        )
    return labels_frame(out)


def _two_raters(a: list[int], b: list[int]) -> Any:
    return _labels(
        *[(i, "ann", v) for i, v in enumerate(a)], *[(i, "bob", v) for i, v in enumerate(b)]
    )


# ---- Cohen's kappa and raw agreement ---------------------------------------------------------


def test_cohen_on_two_raters_four_items_collapses_strength_by_default():
    """Verdicts: ann A,A,B,B vs bob A,B,B,B. Raw 3/4. p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2,
    so kappa = (3/4 - 1/2) / (1 - 1/2) = 0.5."""
    frame = _two_raters([-2, -1, 2, 1], [-1, 2, 1, 2])
    (pair,) = measure(frame).aspect("overall").pairs
    assert (pair.annotator_a, pair.annotator_b, pair.n_items) == ("ann", "bob", 4)
    assert pair.agreement == pytest.approx(0.75)
    assert pair.cohen_kappa == pytest.approx(0.5)


def test_cohen_on_the_five_point_scale_keeps_strength_apart():
    """Five-point: no item agrees, raw 0. ann has -2,-1,2,1 once each; bob -1 once, 1 once,
    2 twice: p_e = (1/4)(1/4) + (1/4)(1/4) + (1/4)(2/4) = 1/4, kappa = (0 - 1/4)/(3/4) = -1/3."""
    frame = _two_raters([-2, -1, 2, 1], [-1, 2, 1, 2])
    (pair,) = measure(frame, AgreementConfig(scale="five")).aspect("overall").pairs
    assert pair.agreement == 0
    assert pair.cohen_kappa == pytest.approx(-1 / 3)


def test_cohen_is_undefined_not_a_number_when_nobody_varies():
    """Both always say A: p_e = 1, kappa is 0/0; the report says None, and the JSON null."""
    frame = _two_raters([-2, -2], [-1, -1])
    report = measure(frame)
    (pair,) = report.aspect("overall").pairs
    assert pair.agreement == 1 and pair.cohen_kappa is None
    assert json.loads(report.to_json())["aspects"]["overall"]["pairs"][0]["cohen_kappa"] is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2)), min_size=1, max_size=30))
def test_grouped_kappa_equals_sklearn(pairs):
    """The one-pass kappa is sklearn's cohen_kappa_score, NaN exactly where sklearn's is."""
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    table = agreement_table(pd.DataFrame({"key": "k", "value_a": a, "value_b": b}), ["key"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns where kappa is undefined
        expected = cohen_kappa_score(a, b, labels=[-2, -1, 0, 1, 2])
    got = table.loc["k", "kappa"]
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def _three_people_two_judges():
    """Four instances, people a, b, c and judges j1, j2 (verdicts in comments).

    1 code: a -2, b -1, c 1   -> A, A, B: majority A.   j1 -2 (A), j2 1 (B)
    2 code: a 1, b 2, c 2     -> B, B, B: majority B.   j1 1 (B),  j2 -1 (A)
    3 chat: a 0, b 0, c 1     -> tie, tie, B: majority tie. j1 0, j2 0
    4 chat: a -1, b 1         -> A, B: no majority.     j1 -1, j2 -1
    """
    return _labels(
        (1, "a", -2, "human", "code"),
        (1, "b", -1, "human", "code"),
        (1, "c", 1, "human", "code"),
        (1, "j1", -2, "lm", "code"),
        (1, "j2", 1, "lm", "code"),
        (2, "a", 1, "human", "code"),
        (2, "b", 2, "human", "code"),
        (2, "c", 2, "human", "code"),
        (2, "j1", 1, "lm", "code"),
        (2, "j2", -1, "lm", "code"),
        (3, "a", 0, "human", "chat"),
        (3, "b", 0, "human", "chat"),
        (3, "c", 1, "human", "chat"),
        (3, "j1", 0, "lm", "chat"),
        (3, "j2", 0, "lm", "chat"),
        (4, "a", -1, "human", "chat"),
        (4, "b", 1, "human", "chat"),
        (4, "j1", -1, "lm", "chat"),
        (4, "j2", -1, "lm", "chat"),
    )


def test_pairwise_agreement_pools_every_pair_on_every_instance():
    """Pairs agreeing: item 1 ab (1 of 3), item 2 all (3 of 3), item 3 ab (1 of 3), item 4 none
    (0 of 1): 5 of 10. Per pair: ab agree on 1, 2, 3 not 4 (3/4); ac only on 2 (1/3); bc (1/3)."""
    result = measure(_three_people_two_judges()).aspect("overall")
    assert (result.n_comparisons, result.pairwise) == (10, 0.5)
    by_pair = {(p.annotator_a, p.annotator_b): (p.n_items, p.agreement) for p in result.pairs}
    assert by_pair == {
        ("a", "b"): (4, 0.75),
        ("a", "c"): (3, pytest.approx(1 / 3)),
        ("b", "c"): (3, pytest.approx(1 / 3)),
    }
    a = next(r for r in result.by_annotator if r.annotator == "a")
    # a's comparisons: 4 with b (3 agree) and 3 with c (1 agrees): 4 of 7.
    assert (a.n_labels, a.n_comparisons, a.agreement) == (4, 7, pytest.approx(4 / 7))


# ---- human vs LM -------------------------------------------------------------------------------


def test_each_judge_is_compared_with_the_human_majority():
    """j1 matches the majority on 1, 2, 3 (3/3); j2 only on 3 (1/3); item 4 has no majority.
    j2's kappa: majority A, B, tie vs j2 B, A, tie: p_o = 1/3, p_e = 3 * (1/3)(1/3) = 1/3: 0.
    The LM majority exists on 3 (tie, tie) and 4 (A, A), and 4 has no human majority: 1 item."""
    human_lm = measure(_three_people_two_judges()).aspect("overall").human_vs_lm
    judges = {j.judge: (j.n_items, j.agreement, j.cohen_kappa) for j in human_lm.judges}
    assert judges["j1"] == (3, 1.0, pytest.approx(1.0))
    assert judges["j2"] == (3, pytest.approx(1 / 3), pytest.approx(0.0))
    assert (human_lm.lm_majority.n_items, human_lm.lm_majority.agreement) == (1, 1.0)
    assert human_lm.n_no_human_majority == 1


def test_human_vs_lm_breaks_down_by_domain_and_person():
    """By domain, j2: code items 1, 2 (0 of 2), chat item 3 (1 of 1). Person a against the LM
    majority (items 3: tie = tie, 4: A = A): 2 of 2."""
    result = measure(_three_people_two_judges()).aspect("overall")
    frame = result.human_lm_frame("domain")
    j2 = frame[frame["judge"] == "j2"].set_index("group")
    assert j2.loc["code", "agreement"] == 0 and j2.loc["code", "n_items"] == 2
    assert j2.loc["chat", "agreement"] == 1 and j2.loc["chat", "n_items"] == 1
    a = next(r for r in result.by_annotator if r.annotator == "a")
    assert (a.n_lm, a.agreement_with_lm) == (2, 1.0)


def test_excluding_ties_drops_tie_comparisons_but_not_the_tie_majority_rule():
    """Item 3's majority is a tie (tie, tie, B), so it drops out of the judge comparisons; it
    does not become B. Pairs where a side says tie drop too: item 3 keeps none of its pairs."""
    result = measure(_three_people_two_judges(), AgreementConfig(exclude_ties=True)).aspect(
        "overall"
    )
    judges = {j.judge: (j.n_items, j.agreement) for j in result.human_vs_lm.judges}
    assert judges == {"j1": (2, 1.0), "j2": (2, 0.0)}
    # Remaining pairs: item 1 (3 pairs, 1 agrees), item 2 (3, 3), item 4 (1, 0): 4 of 7.
    assert (result.n_comparisons, result.pairwise) == (7, pytest.approx(4 / 7))


def test_majority_is_a_strict_plurality():
    """A shared top count means no majority; tie, tie, B is a tie majority (the store's quick
    summary, a sign of summed verdicts, would say B)."""
    frame = _labels((1, "a", 0), (1, "b", 0), (1, "c", 1), (2, "a", -1), (2, "b", 1), (3, "a", 1))
    ratings = pd.DataFrame({"item": frame["instance_id"], "value": frame["overall"].astype(int)})
    assert majority(ratings).to_dict() == {1: 0, 3: 1}


# ---- Fleiss' kappa ------------------------------------------------------------------------------

# Fleiss (1971), as in most textbooks and Wikipedia's "Fleiss' kappa" article: 10 subjects, 14
# raters each, 5 categories. P-bar = 0.378, P-e-bar = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_on_the_textbook_example():
    rows = []
    for item, counts in enumerate(FLEISS_TABLE):
        values = [v for v, n in zip((-2, -1, 0, 1, 2), counts, strict=True) for _ in range(n)]
        rows.extend((item, f"r{k:02d}", v) for k, v in enumerate(values))
    fleiss = measure(_labels(*rows), AgreementConfig(scale="five")).aspect("overall").fleiss
    assert (fleiss.raters_per_item, fleiss.n_items, fleiss.n_items_left_out) == (14, 10, 0)
    assert fleiss.kappa == pytest.approx(0.20993, abs=5e-5)


def test_fleiss_uses_the_most_common_rater_count_and_alpha_uses_everything():
    """Items 1-3 have 3 raters, item 4 has 2, item 5 one. Fleiss on items 1-3:
    1: A A A (P=1), 2: A A B (P=(4+1-3)/6=1/3), 3: B B tie (P=1/3): P-bar = 5/9;
    p_A = 5/9, p_B = 3/9, p_tie = 1/9: P_e = 35/81; kappa = (45-35)/(81-35) = 5/23."""
    frame = _labels(
        (1, "a", -1), (1, "b", -2), (1, "c", -1),
        (2, "a", -1), (2, "b", -1), (2, "c", 1),
        (3, "a", 1), (3, "b", 2), (3, "c", 0),
        (4, "a", 1), (4, "b", -1),
        (5, "a", 2),
    )  # fmt: skip
    result = measure(frame).aspect("overall")
    assert (result.fleiss.raters_per_item, result.fleiss.n_items) == (3, 3)
    assert result.fleiss.n_items_left_out == 1  # item 4; item 5 has nothing to agree with
    assert result.fleiss.kappa == pytest.approx(5 / 23)
    assert result.krippendorff.n_items == 4


def test_fleiss_rater_count_tie_goes_to_more_raters():
    frame = _labels(
        (1, "a", 1), (1, "b", 1),
        (2, "a", 1), (2, "b", -1),
        (3, "a", 1), (3, "b", 1), (3, "c", -1),
        (4, "a", -1), (4, "b", -1), (4, "c", -1),
    )  # fmt: skip
    fleiss = measure(frame).aspect("overall").fleiss
    assert (fleiss.raters_per_item, fleiss.n_items, fleiss.n_items_left_out) == (3, 2, 2)


# ---- Krippendorff's alpha -----------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
# example with missing values (values 1..5; here shifted to -2..2, which changes no distance):
# nominal 0.743, ordinal 0.815, interval 0.849.
KRIPPENDORFF_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_on_the_published_example(level, expected):
    rows = [
        (unit, coder, value - 3)
        for coder, values in KRIPPENDORFF_DATA.items()
        for unit, value in enumerate(values)
        if value is not None
    ]
    config = AgreementConfig(scale="five", alpha_level=level)
    alpha = measure(_labels(*rows), config).aspect("overall").krippendorff
    assert alpha.n_items == 11  # unit 12 has one value: nothing to pair it with
    assert alpha.alpha == pytest.approx(expected, abs=5e-4)


def test_krippendorff_by_hand_on_three_units():
    """Units (A, A), (B, B), (A, B). Coincidences: o_AA = 2, o_BB = 2, o_AB = o_BA = 1; n = 6,
    n_A = n_B = 3. D_o = 2/6; D_e = 2 * 3 * 3 / (6 * 5) = 0.6; alpha = 1 - (1/3)/0.6 = 4/9.
    With two values only, the ordinal distance is one constant, so ordinal alpha is 4/9 too."""
    frame = _labels((1, "a", -1), (1, "b", -2), (2, "a", 1), (2, "b", 2), (3, "a", -1), (3, "b", 1))
    for level in ("nominal", "ordinal"):
        alpha = measure(frame, AgreementConfig(alpha_level=level)).aspect("overall").krippendorff
        assert alpha.alpha == pytest.approx(4 / 9)


# ---- matrix, export, config ---------------------------------------------------------------------


def test_agreement_matrix_is_square_symmetric_with_judges_last():
    matrix = agreement_matrix(_three_people_two_judges())
    assert list(matrix.index) == ["a", "b", "c", "lm:j1", "lm:j2"]
    assert np.allclose(matrix.to_numpy(), matrix.to_numpy().T, equal_nan=True)
    assert matrix.loc["a", "b"] == 0.75 and matrix.loc["a", "a"] == 1
    shared = agreement_matrix(_three_people_two_judges(), value="shared", include_lm=False)
    assert shared.loc["a", "c"] == 3 and shared.loc["c", "c"] == 3
    lonely = agreement_matrix(_labels((1, "a", 1), (2, "b", 1)))
    assert math.isnan(lonely.loc["a", "b"])


def test_report_exports_as_json_and_csv(tmp_path):
    report = measure(_three_people_two_judges(), dataset="tiny")
    data = json.loads(export_report(report, tmp_path / "r.json").read_text())
    assert data["dataset"] == "tiny" and data["aspects"]["overall"]["pairwise"] == 0.5
    csv = export_report(report, tmp_path / "r.csv").read_text().splitlines()
    assert csv[0] == "aspect,section,subject,metric,value,n"
    assert any(line.startswith("overall,pair,a | b,cohen_kappa,") for line in csv)
    with pytest.raises(CuratorError, match=r"\.json or \.csv"):
        export_report(report, tmp_path / "r.txt")


def test_bad_settings_are_user_errors():
    with pytest.raises(CuratorError, match="scale"):
        measure(_labels((1, "a", 1)), AgreementConfig(scale="seven"))
    with pytest.raises(CuratorError, match="aspect"):
        measure(_labels((1, "a", 1)), AgreementConfig(aspects=("vibes",)))
    with pytest.raises(CuratorError, match="-2 to 2"):
        _labels((1, "a", 3))


# ---- the store ----------------------------------------------------------------------------------


def _small_store(store: Store) -> None:
    """Six pairs over two domains, three people and one judge, with a 'hard' tag on three."""
    dataset = store.create_dataset("prefs", "preference")
    ids = store.insert_instances(
        dataset["id"],
        [
            Instance(uid=f"p{i}", prompt=f"q{i}", response_a="a", response_b="b",
                     domain=["chat", "code"][i % 2])
            for i in range(6)
        ],
    )  # fmt: skip
    votes = {"ann": [-2, -1, 1, 2, 0, -1], "bob": [-1, -1, 2, 2, 1, -2], "cy": [-2, 1, 1, 1, 0, -1]}
    labels = [
        (iid, Annotation("human", who, overall=v[k], helpful=v[k]))
        for who, v in votes.items()
        for k, iid in enumerate(ids)
    ]
    labels += [
        (iid, Annotation("lm", "judge", overall=[-1, 1, 1, 2, 0, 1][k]))
        for k, iid in enumerate(ids)
    ]
    labels.append((ids[0], Annotation("human", "dora", overall=2, status="draft")))
    store.add_annotations(labels)
    with store.write():
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor) VALUES (?, 'hard', ?, 'test')",
            [(iid, float(k < 3)) for k, iid in enumerate(ids)],
        )


def test_store_labels_load_in_one_query_without_drafts(store):
    _small_store(store)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    labels = load_labels(store, "prefs", feature="hard")
    store.conn.set_trace_callback(None)
    assert sum("FROM annotations" in s for s in statements) == 1
    assert len(labels) == 6 * 4 and "dora" not in set(labels["annotator"])
    assert set(labels["feature"]) == {0.0, 1.0}


def test_dataset_report_breaks_down_by_domain_and_feature(store):
    """Verdicts per item (ann, bob, cy; judge): 0 A A A; A   1 A A B; B   2 B B B; B
    3 B B B; B   4 tie B tie; tie   5 A A A; B. The 'hard' items are 0-2."""
    _small_store(store)
    report = dataset_agreement(store, "prefs", AgreementConfig(feature="hard"))
    result = report.aspect("overall")
    assert [a.aspect for a in report.aspects] == ["overall", "helpful"]
    assert [g.group for g in result.by_group["domain"]] == ["chat", "code"]
    hard = {g.group: g for g in result.by_group["feature:hard"]}
    # hard=1: items 0, 1, 2 with majorities A, A, B; judge A, B, B: 2 of 3.
    assert (hard["1"].n_items, hard["1"].n_human_lm, hard["1"].human_lm) == (
        3,
        3,
        pytest.approx(2 / 3),
    )
    # hard=0: items 3, 4, 5 with majorities B, tie, A; judge B, tie, B: 2 of 3.
    assert hard["0"].human_lm == pytest.approx(2 / 3)
    with pytest.raises(CuratorError, match="features: hard"):
        dataset_agreement(store, "prefs", AgreementConfig(feature="nope"))


def test_cli_agreement_json_has_every_measure_per_aspect(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as s:
        _small_store(s)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "agreement", "prefs", "--workspace", str(ws.root),
         "--json", "--aspect", "overall", "--scale", "five"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert data["scale"] == "five" and list(data["aspects"]) == ["overall"]
    overall = data["aspects"]["overall"]
    assert {(p["annotator_a"], p["annotator_b"]) for p in overall["pairs"]} == {
        ("ann", "bob"),
        ("ann", "cy"),
        ("bob", "cy"),
    }
    assert {"agreement", "cohen_kappa", "n_items"} <= set(overall["pairs"][0])
    assert {"kappa", "raters_per_item"} <= set(overall["fleiss"])
    assert overall["krippendorff"]["level"] == "ordinal"
    assert [j["judge"] for j in overall["human_vs_lm"]["judges"]] == ["judge"]
    bad = subprocess.run(
        [sys.executable, "-m", "app.cli", "agreement", "prefs", "-w", str(ws.root), "--by", "x"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and "--by" in bad.stderr and "Traceback" not in bad.stderr


def test_agreement_page_renders_on_a_small_store(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as s:
        _small_store(s)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    at = AppTest.from_file(HOME, default_timeout=30).run()
    at.switch_page("views/agreement.py").run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Fleiss' kappa"] != "–"
    assert len(at.get("plotly_chart")) >= 2  # the heatmap and the by-domain bars
    at.radio(key="agreement_scale").set_value("five").run()
    at.selectbox(key="agreement_feature").set_value("hard").run()
    assert not at.exception, [e.value for e in at.exception]


def test_agreement_page_without_preference_data_says_so(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "empty").ensure()
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    at = AppTest.from_file(HOME, default_timeout=30).run()
    at.switch_page("views/agreement.py").run()
    assert not at.exception and at.info


# ---- PandaLM, the real data ---------------------------------------------------------------------


@pytest.fixture
def pandalm_store(store, shared_data, tmp_path) -> Store:
    """PandaLM's test set with both judges' verdicts, imported through the pandalm preset."""
    path = tmp_path / "pandalm.jsonl"
    records = pandalm_records(shared_data / "pandalm", judges=("gpt-3.5-turbo", "pandalm-7b"))
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    import_path(store, path, ImportOptions(preset="pandalm", dataset="pandalm"))
    return store


@pytest.mark.realdata
def test_real_pandalm_human_agreement_matches_its_source(pandalm_store):
    """SOURCE.md: pairwise raw human agreement 0.913 / 0.929 / 0.918, 3-way (ties counted) over
    all 999 pairs, which is the default verdict level; README: Cohen's kappa 0.85-0.88."""
    result = dataset_agreement(pandalm_store, "pandalm").aspect("overall")
    pairs = {(p.annotator_a, p.annotator_b): p for p in result.pairs}
    expected = {
        ("annotator1", "annotator2"): 0.913,
        ("annotator1", "annotator3"): 0.929,
        ("annotator2", "annotator3"): 0.918,
    }
    assert {k: round(p.agreement, 3) for k, p in pairs.items()} == expected
    assert all(p.n_items == 999 for p in pairs.values())
    assert all(0.85 <= p.cohen_kappa <= 0.88 + 5e-3 for p in pairs.values())
    assert (result.fleiss.raters_per_item, result.fleiss.n_items) == (3, 999)


@pytest.mark.realdata
def test_real_pandalm_judges_against_the_human_majority_match_its_source(pandalm_store):
    """SOURCE.md: gpt-3.5-turbo 0.698 over all 999 with its 25 'garbage' verdicts counted wrong
    (those are not labels here: 697 right of 974 labelled), 0.815 on the 849 pairs where neither
    the majority nor the judge says tie; PandaLM-7B 0.668 (3-way) and 0.775 on 819 non-tie."""
    judges = {
        j.judge: j
        for j in dataset_agreement(pandalm_store, "pandalm").aspect("overall").human_vs_lm.judges
    }
    gpt = judges["gpt-3.5-turbo"]
    assert gpt.n_items == 974 and round(gpt.agreement * gpt.n_items) == 697
    assert round(697 / 999, 3) == 0.698
    assert round(judges["pandalm-7b"].agreement, 3) == 0.668
    no_ties = dataset_agreement(pandalm_store, "pandalm", AgreementConfig(exclude_ties=True))
    judges = {j.judge: j for j in no_ties.aspect("overall").human_vs_lm.judges}
    assert (judges["gpt-3.5-turbo"].n_items, round(judges["gpt-3.5-turbo"].agreement, 3)) == (
        849,
        0.815,
    )
    assert (judges["pandalm-7b"].n_items, round(judges["pandalm-7b"].agreement, 3)) == (819, 0.775)
