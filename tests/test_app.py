"""The Streamlit pages, driven headless through AppTest against a real workspace store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation import flags, queues, saved_views, users
from curation.records import Annotation, Instance
from curation.store import InstanceFilter, Store
from curation.workspace import Workspace

HOME = Path(__file__).resolve().parents[1] / "app" / "Home.py"
PAGES = ["views/home.py", "views/explore.py", "views/import_data.py", "views/export.py"]
HOSTILE_PROMPT = "Is <b>x</b> bold?"
HOSTILE_RESPONSE = "Sure <script>alert(1)</script> done"


def build_store(ws: Workspace) -> None:
    """Twelve pairs over three domains, human labels on all, LM labels on every other one."""
    with Store.open(ws) as store:
        dataset = store.create_dataset("prefs", "preference")
        instances = [
            Instance(
                uid=f"pair-{i}",
                prompt=f"prompt {i} about {['gardening', 'recursion', 'integrals'][i % 3]}",
                response_a=f"first answer {i}\n\n```python\nprint({i})\n```",
                response_b=f"second answer {i}",
                model_a="model-a",
                model_b="model-b",
                domain=["chat", "code", "math"][i % 3],
                source="unit",
                gold=-2,
            )
            for i in range(12)
        ]
        instances.append(
            Instance(
                uid="hostile",
                prompt=HOSTILE_PROMPT,
                response_a=HOSTILE_RESPONSE,
                response_b="plain",
                domain="chat",
                source="unit",
            )
        )
        instances.append(
            Instance(
                uid="chatty",
                prompt="and now in French?",
                messages=[
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Say hello."},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "and now in French?"},
                ],
                response_a="Bonjour.",
                response_b="Salut.",
                domain="chat",
                source="unit",
            )
        )
        ids = store.insert_instances(dataset["id"], instances)
        labels = []
        for k, iid in enumerate(ids):
            labels.append(
                (
                    iid,
                    Annotation(
                        "human",
                        "alice",
                        overall=-2 if k % 2 == 0 else 1,
                        helpful=-1,
                        truthful=0,
                        confidence_level="high",
                        reasons={"overall": ["more accurate"]},
                        justification="A gets the facts right",
                    ),
                )
            )
            if k % 2 == 0:
                labels.append(
                    (
                        iid,
                        Annotation(
                            "lm", "judge-1", overall=-1 if k % 4 == 0 else 2, confidence=0.83
                        ),
                    )
                )
        store.add_annotations(labels)


@pytest.fixture
def empty_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = Workspace(tmp_path / "empty").ensure()
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    build_store(ws)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    if page != "views/home.py":
        at.switch_page(page).run()
    return at


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def table(at: AppTest, column: str = "uid") -> list:
    return list(at.dataframe(key="explore_table").value[column])


def count_instances(ws: Workspace) -> int:
    with Store.open(ws) as store:
        return store.count_instances()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_workspace(empty_ws: Workspace, page: str) -> None:
    """No page needs data to render: an empty workspace shows guidance, not a traceback."""
    no_errors(open_page(page))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_populated_workspace(ws: Workspace, page: str) -> None:
    """Every page renders against a workspace with a dataset and labels."""
    no_errors(open_page(page))


def test_home_summarises_the_workspace_and_links_existing_pages(ws: Workspace) -> None:
    """Home shows counts per dataset and links only pages that exist."""
    at = open_page("views/home.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Instances"] == "14"
    assert metrics["Human labels"] == "14"
    assert metrics["LM labels"] == "7"
    assert list(at.dataframe[0].value["name"]) == ["prefs"]
    links = [link.value for link in at.get("page_link")]
    # what to do next follows the workspace: labelled by people and a judge, no features yet
    assert links[:3] == ["Agreement", "Route", "Mix"]
    assert "Compute routing features, then sweep and route." in [c.value for c in at.caption]
    every = links[3:]  # then every page the role may open, in menu order
    assert every[0].startswith("Import: ") and any(x.startswith("Explore: ") for x in every)


def test_an_empty_workspace_is_told_to_import_first(empty_ws: Workspace) -> None:
    at = open_page("views/home.py")
    assert [link.value for link in at.get("page_link")][0] == "Import"
    assert any("The workspace is empty" in c.value for c in at.caption)


def test_domain_filter_narrows_the_table(ws: Workspace) -> None:
    """Choosing a domain keeps only that domain's rows, and the count follows."""
    at = open_page("views/explore.py")
    assert len(table(at)) == 14
    at.multiselect(key="explore_domain_1").set_value(["math"]).run()
    no_errors(at)
    assert set(table(at, "domain")) == {"math"}
    assert len(table(at)) == 4
    assert "**4** of 14" in markdown_text(at)


def test_search_keeps_only_matching_rows(ws: Workspace) -> None:
    """Full-text search narrows to rows containing the words."""
    at = open_page("views/explore.py")
    at.text_input(key="explore_search").set_value("recursion").run()
    no_errors(at)
    assert table(at) == ["pair-1", "pair-4", "pair-7", "pair-10"]


def test_the_table_leads_with_verdicts_and_leaves_out_empty_columns(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    columns = list(at.dataframe[0].value.columns)
    assert columns[:5] == ["id", "prompt", "human_verdict", "lm_verdict", "agreement"]
    assert "subset" not in columns  # None on every row
    assert {"domain", "uid", "model_a"} <= set(columns)


def test_search_hits_are_marked_in_the_pair_and_code_is_left_alone(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    at.text_input(key="explore_search").set_value("Recursion").run()
    no_errors(at)
    bodies = [m.value for m in at.markdown]
    assert "prompt 1 about :orange-background[recursion]" in bodies
    assert any(b.startswith("first answer 1\n\n```python\nprint(1)") for b in bodies)


def test_a_judges_reasons_read_as_text_not_as_a_dict() -> None:
    from app.widgets import labels_frame

    reasons = {
        "method": "logprobs",
        "orders": [
            {"p_answer_a": 0.752, "swapped": False},
            {"p_answer_a": 0.7284, "swapped": True},
        ],
        "aspects": {"overall": {"probs": [0.51, 0.49]}},
    }
    frame = labels_frame([{"annotator_kind": "lm", "annotator": "j", "reasons": reasons}])
    assert frame.loc[0, "reasons"] == "P(A) 0.75 as shown; P(A) 0.73 swapped (logprobs)"
    person = labels_frame([{"annotator_kind": "human", "annotator": "a",
                            "reasons": {"overall": ["accurate", "concise"]}}])  # fmt: skip
    assert person.loc[0, "reasons"] == "overall: accurate, concise"


def test_the_agreement_chart_labels_each_bar_so_zero_is_seen(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    at.radio(key="explore_agree").set_value("disagree").run()
    no_errors(at)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    [bars] = [
        c
        for c in charts
        if c["layout"].get("yaxis", {}).get("title", {}).get("text") == "agreement rate"
    ]
    # pair-2, pair-6 and pair-10 disagree, one per domain
    assert [t for trace in bars["data"] for t in trace["text"]] == ["0% of 1"] * 3


def test_a_flaw_report_starts_with_no_category_and_needs_one(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    assert at.selectbox(key="flag_explore_category").value is None
    at.button(key="flag_explore_send").click().run()
    assert any("Choose what is wrong" in w.value for w in at.warning)
    with Store.open(ws) as store:
        assert store.conn.execute("SELECT count(*) FROM flags").fetchone()[0] == 0


def select_rows(at: AppTest, rows: list[int]) -> None:
    at.session_state["explore_table"] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()


def test_bulk_assign_from_explore_fills_an_annotators_queue(ws: Workspace) -> None:
    with Store.open(ws) as store:
        users.add_user(store, "cur", "curator", "a-long-password")
        users.add_user(store, "ann", "annotator", "a-long-password")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.session_state["_curator_user"] = "cur"  # signed in (accounts exist now)
    at.run().switch_page("views/explore.py").run()
    select_rows(at, [0, 2, 3])
    at.selectbox(key="explore_bulk_action").set_value("assign")
    at.multiselect(key="explore_bulk_people").set_value(["ann"]).run()
    at.button(key="explore_bulk_go").click().run()
    no_errors(at)
    assert any("Assigned 3 items to ann" in s.value for s in at.success)
    with Store.open(ws) as store:
        queued = [item.instance_id for item in queues.queue(store, users.get_user(store, "ann"))]
        picked = [store.page_instances(InstanceFilter(dataset="prefs"))[i]["id"] for i in (0, 2, 3)]
    assert queued == picked


def test_bulk_exclude_of_everything_under_a_filter_asks_first_and_leaves_the_export(
    ws: Workspace,
) -> None:
    at = open_page("views/explore.py")
    at.multiselect(key="explore_domain_1").set_value(["math"]).run()
    at.radio(key="explore_bulk_scope").set_value("all")
    at.selectbox(key="explore_bulk_action").set_value("exclude")
    at.text_input(key="explore_bulk_note").set_value("off-topic for this mix").run()
    at.button(key="explore_bulk_go").click().run()
    no_errors(at)
    assert any("Excluded 4 instances" in s.value for s in at.success)
    with Store.open(ws) as store:
        excluded = flags.excluded_instance_ids(store, "prefs")
        maths = set(store.matching_ids(InstanceFilter(dataset="prefs", domains=["math"])))
    assert excluded == maths and len(maths) == 4


def test_a_bulk_flag_needs_a_category(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    select_rows(at, [1])
    at.selectbox(key="explore_bulk_action").set_value("flag").run()
    at.button(key="explore_bulk_go").click().run()
    assert any("choose what is wrong" in e.value for e in at.error)
    at.selectbox(key="explore_bulk_category").set_value("broken text").run()
    at.button(key="explore_bulk_go").click().run()
    assert any("Flagged 1 instance as broken text" in s.value for s in at.success)


def test_a_saved_view_is_saved_from_the_filters_and_applied_again(ws: Workspace) -> None:
    at = open_page("views/explore.py")
    at.multiselect(key="explore_domain_1").set_value(["math"])
    at.selectbox(key="explore_hv").set_value("A better").run()
    narrowed = table(at)
    at.text_input(key="explore_view_name").set_value("maths, people say A")
    at.button(key="explore_view_save").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        [view] = saved_views.list_views(store, "prefs")
    assert (view.dataset, view.query) == ("prefs", "domain=math,human_verdict=A")

    fresh = open_page("views/explore.py")
    assert len(table(fresh)) == 14
    fresh.selectbox(key="explore_view").set_value("maths, people say A").run()
    no_errors(fresh)
    assert table(fresh) == narrowed and fresh.selectbox(key="explore_hv").value == "A better"


def test_label_filters_narrow_the_table(ws: Workspace) -> None:
    """Verdict, agreement and has-label filters go through the label summary."""
    at = open_page("views/explore.py")
    at.radio(key="explore_hl").set_value("no").run()
    assert len(table(at)) == 7
    at.radio(key="explore_hl").set_value("any").run()
    at.radio(key="explore_agree").set_value("disagree").run()
    no_errors(at)
    # human says A on even rows; the LM says A on rows 0, 4, 8, 12 and B on 2, 6, 10
    assert table(at) == ["pair-2", "pair-6", "pair-10"]


def test_pagination_reads_one_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows per page and the page number pick the slice; a new filter goes back to page 1."""
    ws = Workspace(tmp_path / "paged").ensure()
    with Store.open(ws) as store:
        dataset = store.create_dataset("many", "preference")
        store.insert_instances(
            dataset["id"],
            [
                Instance(
                    uid=f"n-{i:02d}",
                    prompt=f"p{i}",
                    response_a="a",
                    response_b="b",
                    domain="even" if i % 2 == 0 else "odd",
                )
                for i in range(60)
            ],
        )
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    at = open_page("views/explore.py")
    at.selectbox(key="explore_page_size").set_value(25).run()
    assert table(at)[0] == "n-00" and len(table(at)) == 25
    at.number_input(key="explore_page").set_value(3).run()
    no_errors(at)
    assert table(at) == [f"n-{i}" for i in range(50, 60)]
    assert "page 3 of 3" in markdown_text(at)
    at.multiselect(key="explore_domain_1").set_value(["odd"]).run()
    no_errors(at)
    assert at.number_input(key="explore_page").value == 1
    assert table(at)[0] == "n-01" and len(table(at)) == 25


def test_pair_view_shows_both_responses_and_every_label(ws: Workspace) -> None:
    """The selected pair shows prompt, A and B, and human and LM labels with readable names."""
    at = open_page("views/explore.py")
    text = markdown_text(at)
    assert "prompt 0 about gardening" in text
    assert "first answer 0\n\n```python\nprint(0)\n```" in text
    assert "second answer 0" in text
    labels = at.dataframe[1].value
    assert list(labels["kind"]) == ["human", "lm"]
    assert list(labels["annotator"]) == ["alice", "judge-1"]
    assert list(labels["overall"]) == ["A clearly better", "A slightly better"]
    assert labels["helpful"][0] == "A slightly better"
    assert labels["confidence"][1] == "0.83"
    assert labels["confidence_level"][0] == "high"
    assert "more accurate" in labels["reasons"][0]


def test_gold_label_is_hidden_until_asked_for(ws: Workspace) -> None:
    """The hidden gold label shows only behind its checkbox."""
    at = open_page("views/explore.py")
    assert not any("gold label:" in i.value for i in at.info)
    at.checkbox(key="explore_gold").check().run()
    assert any("Hidden gold label: A clearly better" in i.value for i in at.info)


def test_selecting_a_row_opens_that_pair_and_a_conversation_renders_turn_by_turn(
    ws: Workspace,
) -> None:
    """Picking a table row shows that instance; multi-turn prompts render as chat turns."""
    at = open_page("views/explore.py")
    at.session_state["explore_table"] = {"selection": {"rows": [13], "columns": [], "cells": []}}
    at.run()
    no_errors(at)
    assert [c.name for c in at.chat_message] == ["system", "user", "assistant", "user"]
    assert "Bonjour." in markdown_text(at) and "Salut." in markdown_text(at)


def test_data_text_is_never_rendered_as_html(ws: Workspace) -> None:
    """Prompts and responses holding HTML reach the page as escaped markdown, not HTML."""
    at = open_page("views/explore.py")
    at.session_state["explore_table"] = {"selection": {"rows": [12], "columns": [], "cells": []}}
    at.run()
    no_errors(at)
    bodies = [m.value for m in at.markdown]
    assert HOSTILE_PROMPT in bodies and HOSTILE_RESPONSE in bodies
    assert not any(m.proto.allow_html for m in at.markdown)
    assert not at.get("html")


def test_charts_render_for_the_filter(ws: Workspace) -> None:
    """Label distribution, agreement by domain and the verdict confusion matrix render."""
    at = open_page("views/explore.py")
    assert len(at.get("plotly_chart")) == 3


def upload_and_import(at: AppTest, name: str, content: bytes, **settings) -> AppTest:
    at.file_uploader(key="import_upload").upload(name, content, "application/octet-stream").run()
    no_errors(at)
    for key, value in settings.items():
        at.session_state[key] = value
    at.button(key="import_go").click().run()
    no_errors(at)
    return at


def test_importing_a_bad_file_lists_every_problem_and_writes_nothing(ws: Workspace) -> None:
    """A file with bad rows shows each problem (line, field) and leaves the store unchanged."""
    rows = [
        {"id": "n1", "prompt": "ok", "response_a": "a", "response_b": "b"},
        {"id": "n2", "prompt": "", "response_a": "a", "response_b": "b"},
        {"id": "n3", "prompt": "ok", "response_a": "a", "response_b": "b", "overall": "sideways"},
    ]
    content = ("\n".join(json.dumps(r) for r in rows) + "\n{not json\n").encode()
    before = count_instances(ws)
    at = open_page("views/import_data.py")
    upload_and_import(at, "bad.jsonl", content)
    assert any("nothing was written" in e.value for e in at.error)
    problems = at.dataframe[-1].value
    assert list(problems["line"]) == [2, 3, 4]
    assert list(problems["field"])[:2] == ["prompt", "overall"]
    assert count_instances(ws) == before
    assert (ws.root / "imports" / "bad.jsonl").exists()


def test_importing_a_good_file_adds_its_rows(ws: Workspace) -> None:
    """A clean file lands in a new dataset, with its labels, and the report says so."""
    rows = [
        {"id": f"g{i}", "prompt": f"p{i}", "response_a": "a", "response_b": "b", "label": "A>B"}
        for i in range(5)
    ]
    before = count_instances(ws)
    at = open_page("views/import_data.py")
    upload_and_import(at, "good.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    assert any("Imported 5 instances and 5 labels" in s.value for s in at.success)
    assert count_instances(ws) == before + 5
    with Store.open(ws) as store:
        assert store.dataset("good")["kind"] == "preference"


def test_skip_bad_rows_imports_the_good_ones(ws: Workspace) -> None:
    """With skip ticked, good rows land and the skipped ones are listed."""
    content = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n{"prompt": "p"}\n'
    at = open_page("views/import_data.py")
    upload_and_import(at, "mixed.jsonl", content, import_skip=True)
    assert any("Imported 1 instance and 0 labels" in s.value for s in at.success)
    assert any("Skipped 1" in w.value for w in at.warning)


def test_unknown_schema_imports_through_the_column_mapping_form(ws: Workspace) -> None:
    """Columns the presets do not know are mapped onto a preset's fields in the form."""
    content = b"question,first,second\nwhy?,because,no idea\nhow?,like this,like that\n"
    at = open_page("views/import_data.py")
    at.file_uploader(key="import_upload").upload("odd.csv", content, "text/csv").run()
    no_errors(at)
    assert any("map its columns" in w.value for w in at.warning)
    at.selectbox(key="import_map_pairwise_prompt").set_value("question")
    at.selectbox(key="import_map_pairwise_response_a").set_value("first")
    at.selectbox(key="import_map_pairwise_response_b").set_value("second")
    at.run()
    at.button(key="import_go").click().run()
    no_errors(at)
    assert any("Imported 2 instances" in s.value for s in at.success)
    with Store.open(ws) as store:
        pair = store.page_instances(InstanceFilter(dataset="odd"))[0]
        assert pair["prompt"] == "why?"


def test_small_label_codes_need_a_value_map_and_the_result_names_unread_columns(
    ws: Workspace,
) -> None:
    """0/1/2 labels are refused with the two likely maps; with one, they import, and the
    summary says which columns went to metadata."""
    rows = [
        {"prompt": f"p{i}", "response_a": "a", "response_b": "b" * i, "label": i, "team": "t"}
        for i in range(3)
    ]
    content = "\n".join(json.dumps(r) for r in rows).encode()
    before = count_instances(ws)
    at = open_page("views/import_data.py")
    upload_and_import(at, "codes.jsonl", content)
    assert any("label:0=A,1=B,2=tie" in e.value for e in at.error)
    assert count_instances(ws) == before
    at.session_state["import_values"] = "label:0=A,1=B,2=tie"
    at.button(key="import_go").click().run()
    no_errors(at)
    assert any("Imported 3 instances and 3 labels" in s.value for s in at.success)
    captions = [c.value for c in at.caption]
    assert "kept as metadata: team" in captions and "1 pair with an empty response" in captions


def test_an_existing_dataset_is_appended_to_or_replaced_only_when_asked(ws: Workspace) -> None:
    rows = [{"id": "x1", "prompt": "p", "response_a": "a", "response_b": "b"}]
    before = count_instances(ws)
    at = open_page("views/import_data.py")
    at.file_uploader(key="import_upload").upload(
        "more.jsonl", json.dumps(rows[0]).encode(), "application/octet-stream"
    ).run()
    at.text_input(
        key=next(k for k in at.session_state if k.startswith("import_dataset_"))
    ).set_value("prefs").run()
    assert at.radio(key="import_mode").value == "new"
    at.button(key="import_go").click().run()
    assert any("already exists" in e.value for e in at.error)
    at.radio(key="import_mode").set_value("append").run()
    at.button(key="import_go").click().run()
    no_errors(at)
    assert count_instances(ws) == before + 1
    at.radio(key="import_mode").set_value("replace").run()
    at.button(key="import_go").click().run()
    assert any("Replaced the contents with 1 instance" in s.value for s in at.success)
    with Store.open(ws) as store:
        assert store.count_instances(InstanceFilter(dataset="prefs")) == 1


def test_a_judges_verdicts_attach_to_existing_pairs_from_the_import_page(ws: Workspace) -> None:
    verdicts = [{"pair": f"pair-{i}", "winner": "B"} for i in range(3)]
    content = "\n".join(json.dumps(r) for r in verdicts).encode()
    at = open_page("views/import_data.py")
    at.file_uploader(key="import_upload").upload(
        "verdicts.jsonl", content, "application/octet-stream"
    ).run()
    at.radio(key="import_holds").set_value("Labels for pairs already in a dataset").run()
    no_errors(at)
    at.selectbox(key="labels_map_id").set_value("pair")
    at.selectbox(key="labels_map_label").set_value("winner")
    at.radio(key="labels_kind").set_value("lm")
    at.text_input(key="labels_annotator").set_value("gpt-4")
    at.run()
    at.button(key="labels_go").click().run()
    no_errors(at)
    assert any("Matched 3 pairs of 'prefs'" in s.value for s in at.success)
    with Store.open(ws) as store:
        found = store.conn.execute(
            "SELECT count(*) FROM annotations WHERE annotator = 'gpt-4' AND overall = 2"
        ).fetchone()[0]
    assert found == 3


def test_a_previous_files_error_goes_when_another_file_is_picked(ws: Workspace) -> None:
    at = open_page("views/import_data.py")
    upload_and_import(at, "bad.jsonl", b'{"prompt": ""}\n')
    assert any("nothing was written" in e.value for e in at.error)
    good = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
    at.file_uploader(key="import_upload").upload("good2.jsonl", good, "application/json").run()
    no_errors(at)
    assert not at.error and not at.success


def test_a_path_outside_the_workspace_is_refused(ws: Workspace, tmp_path: Path) -> None:
    """Paths typed into the Import page are confined to the workspace."""
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('{"prompt": "p", "response_a": "a", "response_b": "b"}\n')
    at = open_page("views/import_data.py")
    at.radio(key="import_kind").set_value("A file in the workspace").run()
    at.text_input(key="import_path").set_value(str(outside)).run()
    no_errors(at)
    assert any("outside the workspace" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "import_go"]


def test_export_writes_into_the_workspace_and_offers_a_download(ws: Workspace) -> None:
    """Exporting JSONL writes under exports/ and offers the file for download."""
    at = open_page("views/export.py")
    at.button(key="export_go").click().run()
    no_errors(at)
    assert (ws.root / "exports" / "prefs.jsonl").is_file()
    assert at.get("download_button")


def test_export_refuses_a_path_outside_the_workspace(ws: Workspace) -> None:
    """An output path escaping the workspace is an error message, not a write."""
    at = open_page("views/export.py")
    at.text_input(key="export_out_prefs_jsonl").set_value("../../escape.jsonl").run()
    at.button(key="export_go").click().run()
    no_errors(at)
    assert any("outside the workspace" in e.value for e in at.error)
