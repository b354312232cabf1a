"""The app's main journeys in a real browser: `curator ui` on a small demo workspace with a
curator and an annotator account, driven by headless Chromium, checked against the SQLite store.

One server and one browser serve the whole module, and one signed-in curator session serves the
curator's tests. A tiny reward-model job is launched from the Jobs page when the module starts and
trains in the app's own background worker while the other tests run; the last test watches it
finish and compares its run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from browser import (
    MAIN,
    add_accounts,
    app_server,
    assert_no_exception,
    assign,
    choose,
    chromium,
    click_table_row,
    close_dialog,
    curator,
    expect,
    main_text,
    menu_titles,
    new_page,
    open_page,
    press,
    require_browser,
    screenshot,
    sign_in,
    table_rows,
    wait_for_content,
    wait_for_text,
)

from app.state import PAGES
from curation.store import InstanceFilter, Store
from curation.workspace import Workspace
from routing.features import FeatureConfig, compute_features
from routing.ppm import PPMConfig, train_ppm
from routing.sweeps import SweepConfig, run_sweep
from training.worker import NO_AUTO_WORKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PAIRS = 80  # enough for the demo judge to be certified at alpha 0.3
QUEUE = 5  # pairs assigned to the annotator
ROUTING_RUNS = 30  # sweep runs behind the Route page's predictor
CURATOR_PAGES = {p.title for p in PAGES if p.roles == ("curator",)}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """`curator demo` with 80 pairs, a curator (boss) and an annotator (ana) with 5 queued, and
    the routing steps done (features, a 30-run sweep, a predictor) so the Route page has a fit to
    show."""
    require_browser()
    root = tmp_path_factory.mktemp("journey") / "ws"
    curator("demo", "--no-ui", "--pairs", str(PAIRS), workspace=root)
    add_accounts(root, boss="curator", ana="annotator")
    assign(root, "demo-prefs", "ana", limit=QUEUE)
    with Store.open(Workspace(root), create=False) as store:
        compute_features(store, "demo-prefs", FeatureConfig())
        sweep_id = run_sweep(store, "demo-prefs", None, SweepConfig(runs=ROUTING_RUNS))
        train_ppm(store, sweep_id, PPMConfig())
    return root


@pytest.fixture(scope="module")
def app(demo_root):
    # The Jobs tests want the app's own worker, whatever the surrounding tests set.
    with app_server(demo_root, env={NO_AUTO_WORKER_ENV: None}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(app):
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def curator_page(app, browser):
    """One curator session (boss) for the module's curator tests."""
    with new_page(browser) as page:
        sign_in(page, app.url, "boss")
        assert_no_exception(page)
        screenshot(page, "home")
        yield page


@pytest.fixture(scope="module")
def launched_job(curator_page) -> str:
    """A one-step reward model queued from the Jobs page's form; the page's notice."""
    page = curator_page
    open_page(page, "Jobs", "Launch")
    page.get_by_label("Name", exact=True).fill("e2e-reward")
    for label, value in (("Max steps", "1"), ("Batch size", "2"), ("Max length", "32")):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Launch").click()
    notice = re.compile(r"Queued job 1 \(Reward model\); worker pid \d+")
    wait_for_text(page, notice)
    return page.locator(MAIN).get_by_text(notice).inner_text()


def query(root: Path, sql: str, *params) -> list[tuple]:
    with Store.open(Workspace(root), create=False) as store:
        return [tuple(row) for row in store.conn.execute(sql, params).fetchall()]


def count_line(page, *, changed_from: str | None = None) -> str:
    """Explore's "N of M instances" line (once it no longer reads ``changed_from``)."""
    line = page.locator(MAIN).get_by_text("instances · page")
    if changed_from is not None:
        expect(line).not_to_have_text(changed_from, timeout=60_000)
        wait_for_content(page)
    return line.inner_text()


def test_a_training_job_launched_from_the_jobs_page_is_queued_for_the_apps_worker(
    launched_job, curator_page, demo_root
):
    assert_no_exception(curator_page)
    worker_pid = int(launched_job.rsplit(" ", 1)[1])
    assert (demo_root / "logs" / "worker.pid").read_text().split() == [str(worker_pid)]
    [(kind, spec, by)] = query(demo_root, "SELECT kind, spec, created_by FROM jobs")
    assert (kind, by) == ("reward", "boss")
    assert '"max_steps": 1' in spec and '"name": "e2e-reward"' in spec


def test_a_curator_searches_filters_and_opens_a_pair(curator_page, demo_root):
    """The search box and a domain facet narrow the table to what the store says matches;
    clicking a row opens that pair with its labels."""
    page = curator_page
    open_page(page, "Explore", "instances · page")
    everything = count_line(page)
    assert everything.startswith(f"{PAIRS} of {PAIRS}")
    search = page.get_by_label("Search prompts and responses")
    search.fill("help")
    search.press("Enter")
    searched_line = count_line(page, changed_from=everything)
    searched = int(searched_line.split()[0])
    assert 0 < searched < PAIRS
    choose(page, page.get_by_test_id("stSidebar").get_by_label("Domain", exact=True), "math")
    filtered = count_line(page, changed_from=searched_line)
    flt = InstanceFilter(dataset="demo-prefs", domains=["math"], search="help")
    with Store.open(Workspace(demo_root), create=False) as store:
        matching = [r["id"] for r in store.page_instances(flt, limit=50)]
    assert 1 < len(matching) < searched
    assert filtered.startswith(f"{len(matching)} of {PAIRS}"), filtered
    header, *rows = table_rows(page)
    assert [int(r[0]) for r in rows] == matching
    # the verdicts lead (issue 16); the domain follows them
    assert header[:6] == ["id", "prompt", "human_verdict", "lm_verdict", "agreement", "domain"]
    assert {r[header.index("domain")] for r in rows} == {"math"}
    click_table_row(page, 1)
    wait_for_text(page, f"#{rows[1][0]} · ")
    pair = main_text(page)
    assert "Response A" in pair and "Response B" in pair and "Labels (4)" in pair
    assert_no_exception(page)
    screenshot(page, "explore")


def test_a_curator_runs_a_judge_and_escalates_what_it_cannot_be_trusted_on(
    curator_page, demo_root, tiny_model
):
    """Three pairs labelled in the page by a (tiny, local) transformers judge; the demo judge
    calibrated at alpha 0.3; the pairs below its threshold queued for a person."""
    page = curator_page
    open_page(page, "Judge", "Escalate to annotators")
    page.get_by_text("Run a judge on this dataset").click()
    # the page loads local models only from the workspace (or CURATOR_MODEL_ROOTS)
    shutil.copytree(tiny_model, demo_root / "models" / "tiny-judge")
    page.get_by_label("Model", exact=True).fill("models/tiny-judge")
    page.get_by_label("Label name", exact=True).fill("tiny-judge")
    page.get_by_label("Pairs to judge", exact=True).fill("3")
    page.get_by_role("button", name="Run judge").click()
    wait_for_text(page, "tiny-judge: judged 3 pairs", timeout_ms=180_000)
    assert_no_exception(page)
    page.get_by_text("tiny-judge: judged 3 pairs").scroll_into_view_if_needed()
    screenshot(page, "judge-run")
    labelled = query(
        demo_root,
        "SELECT count(DISTINCT instance_id), count(*) FROM annotations "
        "WHERE annotator = 'tiny-judge' AND annotator_kind = 'lm'",
    )
    assert labelled == [(3, 3)]

    # the judge just run is the one shown (three labels: it abstains); calibrate the demo's
    assert "abstains" in main_text(page)
    choose(page, page.get_by_label("Judge", exact=True), "demo-judge")
    alpha = page.get_by_label("alpha", exact=True)
    alpha.fill("0.3")
    alpha.press("Enter")
    threshold = page.get_by_test_id("stMetric").filter(has_text="Threshold")
    expect(threshold).to_have_text(re.compile(r"Threshold\s*0\.\d{3}"), timeout=60_000)
    wait_for_content(page)
    page.get_by_text("Escalate to annotators").scroll_into_view_if_needed()
    escalating = int(re.search(r"([\d,]+) instances of", main_text(page))[1])
    assert 0 < escalating < PAIRS
    choose(page, page.get_by_label("Annotators", exact=True), "boss")
    page.get_by_text(f"Yes, queue all {escalating:,} escalated items").click()  # asked first
    page.get_by_role("button", name="Send escalated items").click()
    wait_for_text(page, re.compile(r"queued \d+ assignments"))
    assert_no_exception(page)
    page.get_by_text("Threshold", exact=True).scroll_into_view_if_needed()
    screenshot(page, "judge")
    queued = query(
        demo_root,
        "SELECT count(*) FROM assignments a JOIN users u ON u.id = a.user_id "
        "WHERE u.name = 'boss' AND a.origin = 'escalation'",
    )
    assert queued == [(escalating,)]


def test_an_annotator_labels_three_pairs_with_the_keyboard(app, browser, demo_root):
    """Keys 1, 3 and 5 pick the overall choice and Ctrl+Enter submits: exactly those three
    labels land in the store, in queue order, and the progress bar counts them."""
    choices = {"1": (-2, "A clearly"), "3": (0, "Tie"), "5": (2, "B clearly")}
    submitted = []
    with new_page(browser) as page:
        sign_in(page, app.url, "ana")
        wait_for_text(page, f"0 of {QUEUE} done")
        for key, (value, button) in choices.items():
            pair = int(re.search(r"Pair #(\d+)", main_text(page))[1])
            press(page, key)
            page.get_by_test_id("stBaseButton-primary").filter(has_text=button).wait_for()
            wait_for_content(page)
            if value == -2:
                page.get_by_text("Response A", exact=True).evaluate("e => e.scrollIntoView()")
                screenshot(page, "annotate")
            press(page, "Control+Enter")
            wait_for_text(page, f"Saved your label on #{pair}")
            assert_no_exception(page)
            submitted.append((pair, value))
        wait_for_text(page, f"3 of {QUEUE} done")
    labels = query(
        demo_root,
        "SELECT instance_id, overall, status FROM annotations WHERE annotator = 'ana' "
        "AND annotator_kind = 'human' ORDER BY id",
    )
    assert labels == [(pair, value, "submitted") for pair, value in submitted]
    done = query(
        demo_root,
        "SELECT count(*) FROM assignments a JOIN users u ON u.id = a.user_id "
        "WHERE u.name = 'ana' AND a.status = 'done'",
    )
    assert done == [(3,)]


def test_every_page_in_the_menu_opens_for_a_curator(curator_page):
    """Every page is in view (no "View N more"), and the one open is marked as current."""
    page = curator_page
    more = page.get_by_test_id("stSidebarNavViewButton")
    assert not more.count() or "more" not in more.inner_text().lower()
    titles = menu_titles(page)
    assert set(titles) == {p.title for p in PAGES if p.exists()}
    for title in titles:
        open_page(page, title)
        assert_no_exception(page)
        screenshot(page, f"curator-{title.lower()}")
        if title == "Mix":
            screenshot(page, "mix")


def test_the_route_page_shows_the_predictors_fit_on_the_sweep(curator_page):
    page = curator_page
    open_page(page, "Route", "Predictor fit")
    wait_for_text(page, re.compile(r"fitted on sweep \d+: 30 runs scored on cross-fitted"))
    expect(page.get_by_text("CV Spearman")).to_be_visible()
    assert_no_exception(page)
    page.get_by_text("Predictor fit", exact=True).scroll_into_view_if_needed()
    screenshot(page, "route")


def test_a_link_to_a_page_opened_before_signing_in_opens_it_after(app, browser):
    """A colleague's link to /compare: the sign-in form shows there (no "Page not found"), and
    signing in opens Compare, not the first page of the menu."""
    with new_page(browser) as page:
        page.goto(f"{app.url}/compare")
        page.get_by_label("User name", exact=True).wait_for()
        assert close_dialog(page) is None
        sign_in(page, None, "boss")
        expect(page.get_by_role("heading", name="Compare", exact=True)).to_be_visible()
        assert page.url.rstrip("/").endswith("/compare")
        assert page.get_by_text("page you opened is for").count() == 0
        assert_no_exception(page)


def test_an_annotator_gets_the_annotate_page_only(app, browser):
    """The menu offers no curator page, and a curator page's URL opened directly is refused:
    once signed in, the annotator is taken to their own page instead, and told why."""
    with new_page(browser) as page:
        page.goto(f"{app.url}/jobs")
        page.get_by_label("User name", exact=True).wait_for()
        sign_in(page, None, "ana")
        close_dialog(page)
        expect(page.get_by_text("The Jobs page you opened is for curators")).to_be_visible()
        expect(page.get_by_role("heading", name="Annotate", exact=True)).to_be_visible()
        assert not page.url.rstrip("/").endswith("/jobs")
        assert not set(menu_titles(page)) & CURATOR_PAGES
        for title in CURATOR_PAGES | {"Judges"}:
            assert page.get_by_role("heading", name=title, exact=True).count() == 0
        assert_no_exception(page)
        screenshot(page, "annotator-annotate")


def test_the_job_succeeds_in_the_apps_worker_and_its_run_is_compared(
    launched_job, curator_page, demo_root
):
    """The page follows the job to the end (it polls while a job is unfinished) and the
    finished run shows on the Compare page."""
    page = curator_page
    open_page(page, "Jobs", "Launch")
    wait_for_text(page, "Job 1: Reward model, succeeded", timeout_ms=240_000)
    wait_for_text(page, "Recorded as run 1 (e2e-reward)")
    assert_no_exception(page)
    assert query(demo_root, "SELECT status FROM jobs WHERE id = 1") == [("succeeded",)]
    page.get_by_text("Job 1: Reward model, succeeded").scroll_into_view_if_needed()
    screenshot(page, "jobs")

    open_page(page, "Compare", "Runs are recorded")
    assert any("e2e-reward" in cell for row in table_rows(page) for cell in row)
    assert_no_exception(page)
    screenshot(page, "compare")
