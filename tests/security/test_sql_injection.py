"""SQL injection: hostile text in every search and filter box is data, never SQL.

Classic injection strings, LIKE wildcards, a NUL and a very long string go into the store's
filter and search functions, the CLI's names and `--where`, and every text box and menu of every
page (found from the rendered element tree, so a new page or box is covered). Each time: no
exception, the schema and every table's row count as before, and the rows a literal match gives.
The search box promises "words that must all appear": a row matches when it holds every word of
the query (punctuation is not a word), so `%` and `_` are never wildcards.
"""

from __future__ import annotations

from collections.abc import Iterator

import hostile_workspace as hw
import pytest
from streamlit.testing.v1.element_tree import _format_value_for_widget
from typer.testing import CliRunner

from app.cli import cli
from app.state import PAGES, PageSpec
from curation import explore, queues, users
from curation.agreement import load_labels
from curation.errors import CuratorError
from curation.mixtures import resolve_mixture
from curation.store import InstanceFilter, Store
from curation.users import AuthError
from curation.workspace import Workspace
from training import jobs

# What the data offers in menus: choosing one must select it literally.
HOSTILE_VALUES = (
    hw.HOSTILE_DATASET,
    hw.HOSTILE_DOMAIN,
    hw.HOSTILE_SOURCE,
    hw.HOSTILE_FEATURE,
    hw.HOSTILE_JUDGE,
    hw.HOSTILE_USER,
    hw.HOSTILE_ANNOTATOR,
    f"{hw.HOSTILE_RUN}0",
    "%",
    "_",
)
# Typed into every text box of every page at once.
TYPED = f"{hw.OR_TRUE} {hw.DROP} {hw.UNION} a\x00b {'y' * 5000}"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Iterator[Workspace]:
    yield from hw.module_workspace(tmp_path_factory, "sqli")


@pytest.fixture(scope="module")
def store(ws: Workspace):
    with Store.open(ws) as store:
        yield store


@pytest.fixture
def intact(ws: Workspace):
    """The schema and every table's row count are the same after the test as before it."""
    before = hw.schema_and_counts(ws)
    yield
    assert hw.schema_and_counts(ws) == before


def rows_of(store: Store) -> dict[str, str]:
    """uid -> every searchable text of the main dataset's rows."""
    return {
        r["uid"]: " ".join(str(r[c] or "") for c in ("prompt", "response_a", "response_b"))
        for r in store.conn.execute(
            "SELECT uid, prompt, response_a, response_b FROM instances i "
            "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'prefs'"
        )
    }


def searched(store: Store, text: str) -> set[str]:
    flt = InstanceFilter(dataset="prefs", search=text)
    return {r["uid"] for r in store.page_instances(flt, limit=1000)}


# ---- the store's filter and search -------------------------------------------------------------


@pytest.mark.parametrize("payload", hw.PAYLOADS, ids=hw.payload_id)
@pytest.mark.usefixtures("intact")
def test_search_finds_exactly_the_rows_holding_every_word(store: Store, payload: str) -> None:
    """Every row found holds every word of the query, and every row that holds the query text
    itself is found: the query is matched as text, never run as SQL or FTS syntax."""
    found = searched(store, payload)
    texts = rows_of(store)
    wanted = hw.words(payload)
    for uid in found:
        assert set(wanted) <= set(hw.words(texts[uid])), (uid, payload)
    if wanted:
        literal = {uid for uid, text in texts.items() if payload.lower() in text.lower()}
        assert literal <= found


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("%", set()),
        ("_", set()),
        ("100%", {"percent"}),
        ("foo_bar", {"underscore"}),
        (hw.OR_TRUE, {"or-true"}),
        (hw.DROP, {"drop"}),
        (hw.UNION, {"union"}),
        ("a\x00b", {"nul"}),
    ],
    ids=hw.payload_id,
)
def test_wildcards_and_injections_match_only_their_literal_rows(
    store: Store, query: str, expected: set[str]
) -> None:
    """`%` and `_` are not wildcards (`100%` is not "100 and more", `foo_bar` is not
    "foo, any character, bar"); `' OR 1=1 --` finds the one row that says it, not every row."""
    assert searched(store, query) == expected


@pytest.mark.usefixtures("intact")
def test_every_filter_field_takes_hostile_values_as_data(store: Store) -> None:
    """Facet values, verdicts and search all hostile at once: bound parameters, literal match;
    every query the Explore page runs for a filter (count, page, facets, labels, charts)."""
    rows = store.conn.execute(
        "SELECT uid, domain, source, subset FROM instances WHERE dataset_id = ?",
        (store.dataset("prefs")["id"],),
    ).fetchall()
    for column, value in [
        ("domains", hw.HOSTILE_DOMAIN),
        ("sources", hw.HOSTILE_SOURCE),
        ("subsets", "%"),
        ("subsets", "_"),
        ("domains", hw.UNION),
        ("sources", "a\x00b"),
    ]:
        flt = InstanceFilter(dataset="prefs", **{column: [value]})
        field = column.removesuffix("s")
        expected = {r["uid"] for r in rows if r[field] == value}
        assert {r["uid"] for r in store.page_instances(flt, limit=1000)} == expected
        assert store.count_instances(flt) == len(expected)
    hostile = InstanceFilter(
        dataset="prefs",
        domains=list(hw.PAYLOADS),
        sources=list(hw.PAYLOADS),
        subsets=list(hw.PAYLOADS),
        human_verdict=-1,
        search=" ".join(hw.PAYLOADS),
    )
    assert store.count_instances(hostile) == 0
    for column in ("domain", "source", "subset", "human_verdict"):
        store.facet_counts(column, hostile)
    store.label_counts(hostile)
    explore.agreement_by_domain(store, hostile)
    explore.verdict_confusion(store, hostile)


@pytest.mark.usefixtures("intact")
def test_names_are_looked_up_literally(store: Store) -> None:
    """Datasets, features, jobs, accounts and mixtures named or queried with SQL in the name."""
    assert store.find_dataset(hw.HOSTILE_DATASET)["name"] == hw.HOSTILE_DATASET
    for payload in hw.PAYLOADS:
        assert store.find_dataset(payload) is None
        assert users.find_user(store, payload) is None
        assert jobs.list_jobs(store, kind=payload) == []
        with pytest.raises(CuratorError):
            store.dataset(payload)
        with pytest.raises(CuratorError):
            jobs.list_jobs(store, status=payload)
        with pytest.raises(CuratorError):
            resolve_mixture(store, payload)
    for payload in (hw.OR_TRUE, "a\x00b"):  # each check costs a (deliberately slow) hash
        with pytest.raises(AuthError):
            users.authenticate(store, payload, payload)
    labels = load_labels(store, "prefs", feature=hw.HOSTILE_FEATURE)
    assert set(labels["feature"].dropna()) == {"low", "high"}
    with pytest.raises(CuratorError, match="has the feature"):
        load_labels(store, "prefs", feature=hw.UNION)
    assert users.find_user(store, hw.HOSTILE_USER).name == hw.HOSTILE_USER


# ---- the command line --------------------------------------------------------------------------


def curator(ws: Workspace, *args: str):
    return CliRunner().invoke(cli, [*args, "--workspace", str(ws.root)])


@pytest.mark.usefixtures("intact")
def test_cli_names_and_filters_take_hostile_text_literally(ws: Workspace, tmp_path) -> None:
    """Dataset names and --where searches from the command line: literal, never SQL."""
    out = tmp_path / "hostile.jsonl"
    result = curator(ws, "export", hw.HOSTILE_DATASET, "--out", str(out), "--shape", "native")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    for payload in (hw.OR_TRUE, hw.DROP, hw.UNION):
        result = curator(ws, "export", payload, "--out", str(tmp_path / "x.jsonl"))
        assert isinstance(result.exception, CuratorError), result.output
        assert "no dataset" in str(result.exception)
        result = curator(ws, "jobs", "list", "--kind", payload, "--json")
        assert result.exit_code == 0 and result.output.strip() == "[]"


def test_cli_assign_where_search_takes_the_words_literally(ws: Workspace) -> None:
    """`curator assign --where "search=' OR 1=1 --"` queues the one pair that says it."""
    before_schema, before = hw.schema_and_counts(ws)
    result = curator(
        ws, "assign", "prefs", "--to", hw.HOSTILE_USER, "--where", f"search={hw.OR_TRUE}", "--json"
    )
    assert result.exit_code == 0, result.output
    with Store.open(ws) as store:
        queue = queues.queue(store, users.get_user(store, hw.HOSTILE_USER))
        assert [store.instance(item.instance_id)["uid"] for item in queue] == ["or-true"]
    schema, after = hw.schema_and_counts(ws)
    assert schema == before_schema
    assert after == before | {"assignments": before["assignments"] + 1}


# ---- every box on every page -------------------------------------------------------------------


@pytest.fixture(scope="module")
def curator_session(ws: Workspace):
    return hw.run(hw.new_session(hw.APP / "Home.py", hw.CURATOR))


def on_page(session, script: str):
    session.switch_page(f"views/{script}")
    return hw.run(session)


def no_exceptions(at) -> None:
    assert not hw.exceptions(at), hw.exceptions(at)


def choose_hostile_options(at) -> int:
    """Pick, in every menu, the options that are hostile values; returns how many were set."""
    chosen = 0
    for box in [*at.selectbox, *at.multiselect]:
        offered = []
        for value in HOSTILE_VALUES:
            try:
                label = _format_value_for_widget(box.format_func, value)
            except (KeyError, TypeError, ValueError):  # not a value of this menu
                continue
            if label in box.options:
                offered.append(value)
        if not offered:
            continue
        chosen += 1
        box.set_value(offered if box.type == "multiselect" else offered[0])
    return chosen


def shows_itself(widget, value) -> bool:
    try:
        return _format_value_for_widget(widget.format_func, value) == value
    except (KeyError, TypeError, ValueError):
        return False


def type_everywhere(at) -> int:
    boxes = [*at.text_input, *at.text_area]
    for box in boxes:
        box.set_value(TYPED)
    return len(boxes)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.script.removesuffix(".py"))
def test_every_box_and_menu_of_every_page_takes_hostile_input(
    ws: Workspace, curator_session, page: PageSpec
) -> None:
    """Hostile text in every text box and the hostile option in every menu, then a rerun: no
    exception and the store's schema and row counts as they were. (On Annotate, where a change
    saves a draft, the draft holds the typed text exactly.)"""
    if not page.exists():
        pytest.skip(f"{page.script} is not written yet")
    annotating = page.script == "annotate.py"
    at = (
        hw.open_page(page.script, hw.ANNOTATOR)
        if annotating
        else on_page(curator_session, page.script)
    )
    no_exceptions(at)
    schema, counts = hw.schema_and_counts(ws)
    choose_hostile_options(at)
    hw.run(at)
    no_exceptions(at)
    type_everywhere(at)
    hw.run(at)
    no_exceptions(at)
    # Radio buttons can show other boxes (Import: a workspace path, a hub id): each choice.
    for choice in range(1, max((len(r.options) for r in at.radio), default=1)):
        for radio in at.radio:
            label = radio.options[min(choice, len(radio.options) - 1)]
            if shows_itself(radio, label):  # a radio with labels for its values is left alone
                radio.set_value(label)
        hw.run(at)
        if type_everywhere(at):
            hw.run(at)
        no_exceptions(at)
    after_schema, after = hw.schema_and_counts(ws)
    assert after_schema == schema
    if annotating:
        with Store.open(ws) as store:
            ann = users.get_user(store, hw.ANNOTATOR)
            draft = queues.load_draft(store, ann, queues.queue(store, ann)[0].instance_id)
        assert draft is not None and draft.justification == TYPED
        counts["annotations"] += 1
    assert after == counts


@pytest.mark.usefixtures("intact")
def test_the_sign_in_form_takes_hostile_names_and_passwords_as_data(ws: Workspace) -> None:
    """The one form a stranger can reach: `' OR '1'='1` signs nobody in, whatever the name."""
    at = hw.run(hw.new_session(hw.APP / "Home.py"))
    for name, password in [
        (hw.OR_TRUE, hw.OR_TRUE),
        (hw.HOSTILE_USER, "' OR '1'='1"),
        (f"{hw.CURATOR}' --", "x"),
        ("a\x00b", "\x00"),
    ]:
        at.text_input(key="login_name").input(name)
        at.text_input(key="login_password").input(password)
        hw.run(at.button(key="login_submit").click())
        no_exceptions(at)
        assert [e.value for e in at.error] == ["Cannot sign in: wrong user name or password."]
        assert hw.USER_KEY not in at.session_state


@pytest.mark.parametrize("payload", hw.PAYLOADS, ids=hw.payload_id)
def test_explore_search_box_shows_the_literal_matches(
    ws: Workspace, store: Store, curator_session, payload: str
) -> None:
    """The Explore page's search box lists exactly the rows the literal search finds."""
    at = on_page(curator_session, "explore.py")
    at.selectbox(key="explore_dataset").set_value("prefs")
    for toggle in at.toggle:  # the charts' queries ran with hostile filters in the test above
        toggle.set_value(False)
    at.text_input(key="explore_search").set_value(payload)
    hw.run(at)
    no_exceptions(at)
    expected = searched(store, payload.strip())
    if expected:
        assert set(at.dataframe(key="explore_table").value["uid"]) == expected
    else:
        assert "Nothing matches these filters." in [i.value for i in at.info]


@pytest.mark.parametrize("payload", hw.PAYLOADS, ids=hw.payload_id)
def test_team_search_box_counts_the_literal_matches(
    ws: Workspace, store: Store, curator_session, payload: str
) -> None:
    """The Team page's assignment search counts exactly the rows the literal search finds."""
    at = on_page(curator_session, "team.py")
    at.text_input(key="team_search").set_value(payload)
    hw.run(at)
    no_exceptions(at)
    expected = len(searched(store, payload.strip()))
    assert any(c.value.startswith(f"{expected:,} instances match") for c in at.caption)
