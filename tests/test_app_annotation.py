"""Sign-in, roles, the Annotate page, flags and the Team page, driven headless through AppTest.

Accounts, assignments and flags are built with the data-layer API on a real workspace store;
a "signed-in session" is a session whose state names the account, as the sign-in form leaves it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from curation import flags, guidelines, queues, users
from curation.records import Annotation, Instance
from curation.store import Store
from curation.workspace import Workspace

APP = Path(__file__).resolve().parents[1] / "app"
HOME = APP / "Home.py"
PASSWORD = "correct horse"
USER_KEY = "_curator_user"
SECRET = "CAROL-SECRET-JUSTIFICATION"


def build_store(ws: Workspace, *, accounts: bool = True) -> list[int]:
    """Six math/chat pairs; carol (another annotator) and an LM judge have labelled the first."""
    with Store.open(ws) as store:
        dataset = store.create_dataset("prefs", "preference")
        ids = store.insert_instances(
            dataset["id"],
            [
                Instance(
                    uid=f"pair-{i}",
                    prompt=f"prompt {i}: what is {i} + {i}?",
                    response_a=f"It is {2 * i}.\n\n```python\nprint({i} + {i})\n```",
                    response_b=f"Probably {2 * i + 1}.",
                    model_a="MODEL-ALPHA",
                    model_b="MODEL-BETA",
                    domain="math" if i < 4 else "chat",
                    source="unit",
                )
                for i in range(6)
            ],
        )
        store.add_annotations(
            [
                (ids[0], Annotation("human", "carol", overall=2, justification=SECRET)),
                (ids[0], Annotation("lm", "judge-x", overall=-2, confidence=0.9)),
            ]
        )
        if accounts:
            users.add_user(store, "cora", "curator", PASSWORD)
            users.add_user(store, "ann", "annotator", PASSWORD)
            users.add_user(store, "ben", "annotator", PASSWORD)
            users.add_user(store, "carol", "annotator", PASSWORD)
    return ids


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


@pytest.fixture
def ids(ws: Workspace) -> list[int]:
    return build_store(ws)


@pytest.fixture
def queue_of_three(ws: Workspace, ids: list[int]) -> list[int]:
    """ann's queue: the first three pairs, in order."""
    with Store.open(ws) as store:
        queues.assign(store, "prefs", ["ann"], instance_ids=ids[:3])
    return ids[:3]


@pytest.fixture
def on_network():
    """The app listening on every interface (Streamlit's default, no server.address)."""
    before = config.get_option("server.address")
    config.set_option("server.address", "")
    yield
    config.set_option("server.address", before)


def session(name: str | None = None, script: Path = HOME) -> AppTest:
    """A fresh browser session (a page load), signed in as ``name`` when given."""
    at = AppTest.from_file(script, default_timeout=30)
    if name:
        at.session_state[USER_KEY] = name
    return at.run()


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions, alerts and titles."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in ("title", "info", "warning", "error", "success", "text"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    return at.button(key="login_submit").click().run()


def pages_offered(at: AppTest) -> set[str]:
    """The page scripts the session's menu offers (those switch_page accepts)."""
    offered = set()
    for script in sorted((APP / "views").glob("*.py")):
        try:
            at.switch_page(f"views/{script.name}")
        except ValueError:
            continue
        offered.add(script.name)
    return offered


def label_of(ws: Workspace, instance_id: int, annotator: str) -> dict | None:
    with Store.open(ws) as store:
        return next(
            (
                a
                for a in store.annotations_for(instance_id, include_drafts=True)
                if a["annotator"] == annotator
            ),
            None,
        )


def shown_pair(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if c.value.startswith("Pair #"))
    return int(caption.split("#", 1)[1].split(" ", 1)[0])


def status_of(ws: Workspace, name: str) -> dict[int, str]:
    with Store.open(ws) as store:
        return {i.instance_id: i.status for i in queues.queue(store, users.get_user(store, name))}


def page_script_data(at: AppTest) -> dict:
    """What the page hands its in-browser script (keys, scroll, draft typing)."""
    (script,) = at.get("bidi_component")
    return json.loads(script.proto.json)


def in_page_order(node):
    """The elements under a block, top to bottom."""
    children = getattr(node, "children", None)
    if children is None:
        yield node
        return
    for index in sorted(children):
        yield from in_page_order(children[index])


# ---- sign-in and roles -------------------------------------------------------------------------


def test_without_accounts_on_localhost_the_session_is_the_local_curator(ws: Workspace) -> None:
    """No accounts and a local-only server: no sign-in, a notice says so, every page is offered."""
    build_store(ws, accounts=False)
    at = session()
    no_errors(at)
    assert "Local curator mode" in "\n".join(i.value for i in at.sidebar.info)
    assert not at.get("text_input")  # no sign-in form
    assert {"home.py", "annotate.py", "team.py", "flags.py", "explore.py"} <= pages_offered(at)
    at.switch_page("views/team.py").run()
    no_errors(at)
    assert [t.value for t in at.title] == ["Team"]


def test_without_accounts_on_the_network_nobody_gets_in(ws: Workspace, on_network) -> None:
    """Listening on every interface with no accounts: no local curator, only instructions."""
    build_store(ws, accounts=False)
    at = session()
    no_errors(at)
    assert "curator users add" in texts(at)
    assert pages_offered(at) == set()
    assert not at.dataframe and not at.metric


def test_with_accounts_sign_in_is_required_and_a_wrong_password_fails(ids: list[int]) -> None:
    """Accounts exist: even on localhost the sign-in form comes first; a wrong password (or an
    unknown name) gets one generic message and shows no data; repeated failures lock."""
    at = session()
    no_errors(at)
    assert at.text_input(key="login_password")
    assert pages_offered(at) == set()
    sign_in(at, "ann", "wrong password")
    no_errors(at)
    assert [e.value for e in at.error] == ["Cannot sign in: wrong user name or password."]
    sign_in(at, "nobody", "wrong password")
    assert [e.value for e in at.error] == ["Cannot sign in: wrong user name or password."]
    assert not at.dataframe and not at.metric and "prompt 0" not in texts(at)
    assert USER_KEY not in at.session_state
    for _ in range(4):
        sign_in(at, "ann", "wrong password")
    assert "locked" in at.error[0].value
    sign_in(at, "ann", PASSWORD)  # the right password does not open a locked account
    assert "locked" in at.error[0].value
    assert USER_KEY not in at.session_state


def test_an_annotator_signs_in_to_the_annotate_page_only_and_signs_out(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """After signing in, an annotator's menu holds Annotate alone; Sign out ends the session."""
    at = session()
    sign_in(at, "ann", PASSWORD)
    no_errors(at)
    assert [t.value for t in at.title] == ["Annotate"]
    assert "Signed in as **ann** (annotator)" in [c.value for c in at.sidebar.caption]
    assert pages_offered(at) == {"annotate.py"}
    at.sidebar.button(key="auth_sign_out").click().run()
    no_errors(at)
    assert USER_KEY not in at.session_state
    # The rerun goes through the entry script, which now offers only the sign-in form.
    assert "Sign in to see your work." in texts(at) and not at.button_group
    assert at.text_input(key="login_password")
    assert session().text_input(key="login_password")


def test_pages_refuse_a_session_nobody_signed_in_to(ids: list[int]) -> None:
    """With accounts, a page opened without signing in shows nothing but a pointer to sign in."""
    at = session(None, APP / "views" / "annotate.py")
    no_errors(at)
    assert any("Sign in first" in w.value for w in at.warning)
    assert not at.button


# ---- annotating --------------------------------------------------------------------------------


def test_annotate_is_blind_to_other_labels_and_model_names(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """The pair shows prompt and responses only: no other person's or LM's label, no models."""
    at = session("ann")
    no_errors(at)
    assert shown_pair(at) == queue_of_three[0]
    shown = texts(at)
    assert "prompt 0" in shown and "It is 0." in shown and "Probably 1." in shown
    for hidden in (SECRET, "carol", "judge-x", "MODEL-ALPHA", "MODEL-BETA"):
        assert hidden not in shown
    assert not at.dataframe


def test_submitting_stores_the_label_with_time_spent_and_moves_on(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Choose overall (the second of five buttons), aspects, confidence, reasons and a
    justification; Submit stores it with the time spent, advances the progress and shows the
    next pair."""
    first, second, _ = queue_of_three
    at = session("ann")
    assert at.get("progress")[0].proto.text == "0 of 3 done"
    assert at.button(key="annotate_submit").proto.shortcut.lower() == "ctrl+enter"
    assert at.button(key="annotate_skip").proto.shortcut.lower() == "s"
    at.button(key="annotate_overall_2").click().run()
    assert at.button(key="annotate_overall_2").proto.type == "primary"
    at.button(key="annotate_helpful_2").click().run()
    at.button(key="annotate_truthful_1").click().run()
    at.button(key="annotate_confidence_3").click().run()
    at.button_group(key=f"ann_reasons_truthful_{first}").select("correct calculation").run()
    at.text_area(key=f"ann_justification_{first}").input("B adds one.").run()
    at.button(key="annotate_submit").click().run()
    no_errors(at)

    label = label_of(ws, first, "ann")
    assert label["status"] == "submitted"
    assert (label["overall"], label["helpful"], label["truthful"]) == (-1, -1, -2)
    assert label["harmless"] is None
    assert label["confidence_level"] == "high"
    assert label["reasons"] == {"truthful": ["correct calculation"]}
    assert label["justification"] == "B adds one."
    assert label["time_spent_s"] is not None and label["time_spent_s"] >= 0
    assert at.get("progress")[0].proto.text == "1 of 3 done"
    assert shown_pair(at) == second
    assert at.button(key="annotate_overall_2").proto.type == "secondary"  # a fresh form


def test_submit_needs_an_overall_choice(ws: Workspace, queue_of_three: list[int]) -> None:
    """Submitting without an overall preference asks for one and stores nothing."""
    at = session("ann")
    at.button(key="annotate_submit").click().run()
    assert any("overall preference" in w.value for w in at.warning)
    assert shown_pair(at) == queue_of_three[0]
    assert label_of(ws, queue_of_three[0], "ann") is None


def test_skip_and_back_walk_the_queue_and_back_shows_your_label(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Skip puts an item aside; Back returns to the previous one with your own label filled in,
    ready to edit and submit again."""
    first, second, third = queue_of_three
    at = session("ann")
    at.button(key="annotate_overall_5").click().run()
    at.button(key="annotate_submit").click().run()
    assert shown_pair(at) == second
    at.button(key="annotate_skip").click().run()
    no_errors(at)
    assert shown_pair(at) == third
    at.button(key="annotate_back").click().run()
    assert shown_pair(at) == second
    assert "skipped this one earlier" in texts(at)
    at.button(key="annotate_back").click().run()
    assert shown_pair(at) == first
    assert "labelled this one already" in texts(at)
    assert at.button(key="annotate_overall_5").proto.type == "primary"
    at.button(key="annotate_overall_4").click().run()
    at.button(key="annotate_submit").click().run()
    no_errors(at)
    assert label_of(ws, first, "ann")["overall"] == 1
    assert shown_pair(at) == third  # the next pending item after the edited one


def test_skip_on_a_done_item_moves_on_and_says_it_stays_done(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Back to a done item: its Skip button reads Next, and pressing it (S) moves on without
    claiming a skip; the item stays done. Skip on a pending item puts it aside."""
    first, second, third = queue_of_three
    at = session("ann")
    at.button(key="annotate_overall_5").click().run()
    at.button(key="annotate_submit").click().run()
    at.button(key="annotate_back").click().run()
    assert shown_pair(at) == first
    assert at.button(key="annotate_skip").label == "Next"
    at.button(key="annotate_skip").click().run()
    no_errors(at)
    assert shown_pair(at) == second
    said = texts(at)
    assert f"Moved on from #{first}" in said and "stays done" in said
    assert "Skipped" not in said
    assert status_of(ws, "ann") == {first: "done", second: "pending", third: "pending"}

    assert at.button(key="annotate_skip").label == "Skip"
    at.button(key="annotate_skip").click().run()
    assert f"Skipped #{second}" in texts(at)
    assert status_of(ws, "ann")[second] == "skipped"


def test_back_and_skip_on_a_skipped_item_change_no_status(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Back only moves; skipping an item that is already skipped keeps it skipped and says so."""
    first, second, third = queue_of_three
    at = session("ann")
    at.button(key="annotate_skip").click().run()
    at.button(key="annotate_back").click().run()
    assert shown_pair(at) == first
    assert status_of(ws, "ann") == {first: "skipped", second: "pending", third: "pending"}
    at.button(key="annotate_skip").click().run()
    assert shown_pair(at) == second
    assert f"#{first} stays skipped" in texts(at)
    assert status_of(ws, "ann")[first] == "skipped"


def test_my_items_lists_items_by_status_and_opens_one(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """ "My items" lists the person's items of one status with counts; picking one opens it and
    changes no status."""
    first, second, third = queue_of_three
    at = session("ann")
    at.button(key="annotate_overall_1").click().run()
    at.button(key="annotate_submit").click().run()
    at.button(key="annotate_skip").click().run()
    # closed: nothing about the list is read
    assert "annotate_items_pick" not in {s.key for s in at.selectbox}
    at.session_state["annotate_items"] = True
    at.run()
    statuses = at.button_group(key="annotate_items_status")
    assert statuses.options == ["pending (1)", "done (1)", "skipped (1)"]
    pick = at.selectbox(key="annotate_items_pick")
    assert pick.options == [f"#{third} (on screen) · prompt 2: what is 2 + 2?"]
    statuses.set_value("done").run()
    assert at.selectbox(key="annotate_items_pick").options == [
        f"#{first} · prompt 0: what is 0 + 0?"
    ]
    at.selectbox(key="annotate_items_pick").select_index(0).run()
    no_errors(at)
    assert shown_pair(at) == first
    assert at.button(key="annotate_overall_1").proto.type == "primary"
    assert at.selectbox(key="annotate_items_pick").value is None
    assert status_of(ws, "ann") == {first: "done", second: "skipped", third: "pending"}


def test_every_move_asks_the_browser_to_scroll_up_and_the_message_is_above_the_prompt(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Submit, skip and a refused submit each hand the page script a new move count (it
    scrolls to the top), and the message shows before the prompt."""
    at = session("ann")
    moves = [page_script_data(at)["moved"]]
    at.button(key="annotate_submit").click().run()  # no overall yet: refused
    moves.append(page_script_data(at)["moved"])
    at.button(key="annotate_overall_3").click().run()
    moves.append(page_script_data(at)["moved"])
    at.button(key="annotate_submit").click().run()
    moves.append(page_script_data(at)["moved"])
    at.button(key="annotate_skip").click().run()
    moves.append(page_script_data(at)["moved"])
    assert moves[1] > moves[0] and moves[2] == moves[1] and moves[4] > moves[3] > moves[2]
    shown = [str(getattr(e, "value", "")) for e in in_page_order(at.main)]
    message = next(i for i, v in enumerate(shown) if v.startswith("Skipped #"))
    prompt = next(i for i, v in enumerate(shown) if v.startswith("prompt 2"))
    assert message < prompt


def test_the_keys_legend_names_every_aspect_and_confidence(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """The page lists a key for each aspect and confidence, and hands the same keys and the
    size of each row of buttons to its page script."""
    at = session("ann")
    legend = texts(at)
    for key, name in (("O", "overall"), ("H", "helpfulness"), ("J", "harmlessness")):
        assert f"**{key}** {name}" in legend
    assert "**T** truthfulness" in legend and "**L** confidence" in legend
    data = page_script_data(at)
    assert data["letters"] == {
        "o": "overall", "h": "helpful", "j": "harmless", "t": "truthful", "l": "confidence"
    }  # fmt: skip
    assert data["sizes"] == {
        "overall": 5, "helpful": 5, "harmless": 5, "truthful": 5, "confidence": 3
    }  # fmt: skip
    for aspect, size in data["sizes"].items():
        assert at.button(key=f"annotate_{aspect}_{size}")


def test_a_draft_is_restored_when_the_item_comes_back_and_submit_discards_it(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """A justification saved as a draft comes back when the item is shown again (after a skip
    and back); submitting turns the draft into the label, leaving no draft behind."""
    first, second, _ = queue_of_three
    at = session("ann")
    box = f"ann_justification_{first}"
    at.text_area(key=box).input("B is off by one").run()
    assert label_of(ws, first, "ann")["status"] == "draft"
    at.button(key="annotate_skip").click().run()
    assert shown_pair(at) == second
    at.button(key="annotate_back").click().run()
    assert at.text_area(key=box).value == "B is off by one"
    assert page_script_data(at)["draft_box"] == f".st-key-{box}"

    at.button(key="annotate_overall_4").click().run()
    at.button(key="annotate_submit").click().run()
    with Store.open(ws) as store:
        mine = [
            (a["status"], a["justification"])
            for a in store.annotations_for(first, include_drafts=True)
            if a["annotator"] == "ann"
        ]
    assert mine == [("submitted", "B is off by one")]


def test_a_draft_survives_a_page_reload(ws: Workspace, queue_of_three: list[int]) -> None:
    """Every change is saved as a draft; a fresh session (a reload) shows the form as it was."""
    first = queue_of_three[0]
    at = session("ann")
    at.button(key="annotate_overall_1").click().run()
    at.button(key="annotate_harmless_3").click().run()
    at.text_area(key=f"ann_justification_{first}").input("half-way thoughts").run()
    draft = label_of(ws, first, "ann")
    assert draft["status"] == "draft" and draft["overall"] == -2

    reloaded = session("ann")
    no_errors(reloaded)
    assert shown_pair(reloaded) == first
    assert reloaded.button(key="annotate_overall_1").proto.type == "primary"
    assert reloaded.button(key="annotate_harmless_3").proto.type == "primary"
    assert reloaded.text_area(key=f"ann_justification_{first}").value == "half-way thoughts"
    assert reloaded.get("progress")[0].proto.text == "0 of 3 done"


def test_a_half_done_label_survives_a_visit_to_another_page(ws: Workspace, ids: list[int]) -> None:
    """A curator with a queue who looks at Explore mid-item comes back to the form as it was
    (Streamlit drops unrendered widgets' values; the page refills them from the draft)."""
    with Store.open(ws) as store:
        queues.assign(store, "prefs", ["cora"], instance_ids=ids[:2])
    at = session("cora")
    at.switch_page("views/annotate.py").run()
    at.button(key="annotate_overall_4").click().run()
    at.text_area(key=f"ann_justification_{ids[0]}").input("keep me").run()
    at.switch_page("views/explore.py").run()
    at.switch_page("views/annotate.py").run()
    no_errors(at)
    assert at.text_area(key=f"ann_justification_{ids[0]}").value == "keep me"
    assert at.button(key="annotate_overall_4").proto.type == "primary"


def test_a_finished_queue_says_so(ws: Workspace, ids: list[int]) -> None:
    """When every item has a label, the page says the queue is done."""
    with Store.open(ws) as store:
        queues.assign(store, "prefs", ["ann"], instance_ids=ids[:1])
    at = session("ann")
    at.button(key="annotate_overall_3").click().run()
    at.button(key="annotate_submit").click().run()
    no_errors(at)
    assert any("queue is done" in s.value for s in at.success)


def test_an_annotator_reports_a_flaw_from_the_annotate_page(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Report a flaw: category and note become an open flag by that person."""
    at = session("ann")
    at.selectbox(key="flag_annotate_category").set_value("broken text")
    at.text_area(key="flag_annotate_note").input("response B is cut off")
    at.button(key="flag_annotate_send").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        [flag] = flags.open_flags(store)
    assert flag["instance_id"] == queue_of_three[0]
    assert (flag["category"], flag["note"], flag["flagged_by"]) == (
        "broken text",
        "response B is cut off",
        "ann",
    )


def test_a_curator_reports_a_flaw_from_the_explore_page(ws: Workspace, ids: list[int]) -> None:
    """Explore offers the same control for the pair on screen."""
    at = session("cora")
    at.switch_page("views/explore.py").run()
    at.selectbox(key="flag_explore_category").set_value("wrong label")
    at.button(key="flag_explore_send").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        [flag] = flags.open_flags(store)
    assert (flag["instance_id"], flag["flagged_by"]) == (ids[0], "cora")


# ---- curators: team and flags ------------------------------------------------------------------


def test_a_curator_adds_a_person_on_the_team_page(ws: Workspace, ids: list[int]) -> None:
    """The add form checks the password twice and creates the account."""
    at = session("cora")
    at.switch_page("views/team.py").run()
    no_errors(at)
    assert set(at.tabs[0].dataframe[0].value["name"]) == {"cora", "ann", "ben", "carol"}
    at.text_input(key="team_new_name").input("dora")
    at.selectbox(key="team_new_role").set_value("annotator")
    at.text_input(key="team_new_password").input("a long password")
    at.text_input(key="team_new_password2").input("another password")
    at.button(key="team_add").click().run()
    assert any("passwords differ" in e.value for e in at.error)
    at.text_input(key="team_new_name").input("dora")
    at.text_input(key="team_new_password").input("a long password")
    at.text_input(key="team_new_password2").input("a long password")
    at.button(key="team_add").click().run()
    no_errors(at)
    assert any("Added annotator dora" in s.value for s in at.success)
    with Store.open(ws) as store:
        assert users.authenticate(store, "dora", "a long password").role == "annotator"


def test_the_local_curator_creates_the_first_account_as_a_curator(ws: Workspace) -> None:
    """Without accounts the Team page makes the first one a curator; then everyone signs in."""
    build_store(ws, accounts=False)
    at = session()
    at.switch_page("views/team.py").run()
    assert not [s for s in at.selectbox if s.key == "team_new_role"]  # no choice of role
    at.text_input(key="team_new_name").input("cora")
    at.text_input(key="team_new_password").input(PASSWORD)
    at.text_input(key="team_new_password2").input(PASSWORD)
    at.button(key="team_add").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        assert [(u.name, u.role) for u in users.list_users(store)] == [("cora", "curator")]
    assert session().text_input(key="login_password")


def test_a_curator_assigns_from_a_filter_with_overlap(ws: Workspace, ids: list[int]) -> None:
    """Assign: the math pairs to ann and ben, two labels each; the load table follows."""
    at = session("cora")
    at.switch_page("views/team.py").run()
    at.multiselect(key="team_assign_people").set_value(["ann", "ben"]).run()
    at.number_input(key="team_assign_overlap").set_value(2).run()
    at.multiselect(key="team_domain_prefs").set_value(["math"]).run()
    assert any("4 instances match" in c.value for c in at.caption)
    at.button(key="team_assign").click().run()
    no_errors(at)
    assert any("Assigned 8 new items over 4 instances" in s.value for s in at.success)
    with Store.open(ws) as store:
        ann = users.get_user(store, "ann")
        assert [i.instance_id for i in queues.queue(store, ann)] == ids[:4]
        assert queues.progress(store, users.get_user(store, "ben")) == (0, 4)
    load = at.tabs[1].dataframe[0].value.set_index("name")
    assert load.loc["ann", "assigned"] == 4 and load.loc["ben", "pending"] == 4


def test_a_curator_resolves_a_flag_and_excludes_its_instance(ws: Workspace, ids: list[int]) -> None:
    """The Flags page lists open flags with the prompt; resolving with exclude closes it."""
    with Store.open(ws) as store:
        flag_id = flags.flag_instance(
            store, ids[2], users.get_user(store, "ann"), "privacy", "has a phone number"
        )
    at = session("cora")
    at.switch_page("views/flags.py").run()
    no_errors(at)
    assert "prompt 2: what is 2 + 2?" in texts(at) and "has a phone number" in texts(at)
    at.text_input(key=f"flags_resolution_{flag_id}").input("removed from the set")
    at.checkbox(key=f"flags_exclude_{flag_id}").check()
    at.button(key=f"flags_resolve_{flag_id}").click().run()
    no_errors(at)
    assert any(f"Resolved flag #{flag_id}" in s.value for s in at.success)
    assert any("No open flags" in s.value for s in at.success)
    with Store.open(ws) as store:
        assert flags.open_flags(store) == []
        assert flags.excluded_instance_ids(store, "prefs") == {ids[2]}


def test_a_curator_edits_the_guidelines_annotators_read(
    ws: Workspace, queue_of_three: list[int]
) -> None:
    """Saved guidelines go to the workspace copy, which the Annotate page then shows."""
    at = session("cora")
    at.switch_page("views/team.py").run()
    at.text_area(key="team_guidelines").input("# House rules\n\nPrefer the shorter answer.")
    at.button(key="team_guidelines_save").click().run()
    no_errors(at)
    assert guidelines.read_guidelines(ws) == ("# House rules\n\nPrefer the shorter answer.\n", True)
    annotator = session("ann")
    assert "Prefer the shorter answer." in texts(annotator)
