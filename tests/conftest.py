"""Shared fixtures: a real workspace store on disk, and the real public data beside the checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from tiny_models import save_tiny_llama

from curation.store import Store
from curation.workspace import Workspace

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Ray 2.60 turns token authentication on for a cluster that a bare ray.init() starts, and writes
# the token to ~/.ray/auth_token; every later `ray start` then requires it. The tests start their
# own clusters without tokens, so that one test's cluster never changes how the next one behaves.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# Fuzz tests draw the same examples on every run: a verdict must not depend on the run's luck.
# Searching wider for new bugs is a deliberate act: HYPOTHESIS_PROFILE=explore pytest ...
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_configure(config):
    """Under pytest-xdist every worker gets one compute thread (and so do the job processes it
    spawns): two workers with two OpenMP threads each on two cores spin against each other."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


# The longest files in CI's durations (a minute or more each, mostly one fixture or server start),
# longest first: started at once on the two workers, none of them is left running alone at the end.
LONGEST_FILES = (
    "test_routing_demo.py",
    "test_trainers.py",
    "test_openai_server.py",
    "test_journey.py",
    "test_coverage.py",
    "test_judges.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest files first, then the other files with slow tests, then the rest (each group
    in its own order): pytest-xdist hands out whole files in this order, so the long ones start
    at once and the quick ones fill the gaps, and both workers end at about the same time."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        if item.path.name in LONGEST_FILES:
            return (0, LONGEST_FILES.index(item.path.name))
        return (1 if item.path in slow_files else 2, 0)

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def app_listens_locally():
    """App tests run the app as `curator ui` starts it: listening on 127.0.0.1 only (with no
    accounts that means the local curator). Tests of sign-in set ``server.address`` themselves."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


# pytest's own __main__, taken before any test (or module fixture) ran a Streamlit page.
PYTEST_MAIN = sys.modules.get("__main__")


@pytest.fixture(autouse=True)
def main_module_restored():
    """Streamlit's script runner (AppTest included) replaces ``sys.modules['__main__']`` with the
    page it ran; a later test that spawns processes would then re-run that page in every child.
    Put pytest's own ``__main__`` back before and after each test: a module-scoped fixture that
    ran a page was set up before this fixture could look, so "whatever was there" is not it."""
    if PYTEST_MAIN is not None:
        sys.modules["__main__"] = PYTEST_MAIN
    yield
    if PYTEST_MAIN is not None:
        sys.modules["__main__"] = PYTEST_MAIN


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def store(workspace: Workspace):
    s = Store.open(workspace)
    yield s
    s.close()


PREFS_PAIRS = 6


@pytest.fixture
def prefs(store: Store) -> Store:
    """The store with a small labelled preference dataset ``prefs`` (as sqlite-utils' tests
    share ``fresh_db``): pairs ``p0``..``p5`` (prompt ``prompt i``, responses ``Ai`` / ``Bi``,
    domains math and chat in turn), each labelled by ``ann`` and ``bob`` (A clearly better on
    even pairs, B clearly better on odd ones) and by the judge ``judge`` (A slightly better on
    every pair, confidence 0.8)."""
    from curation.records import Annotation, Instance

    dataset = store.create_dataset("prefs", "preference")
    ids = store.insert_instances(
        dataset["id"],
        [
            Instance(uid=f"p{i}", prompt=f"prompt {i}", response_a=f"A{i}",
                     response_b=f"B{i}", domain=("math", "chat")[i % 2])
            for i in range(PREFS_PAIRS)
        ],
    )  # fmt: skip
    labels = []
    for i, instance_id in enumerate(ids):
        side = -2 if i % 2 == 0 else 2
        labels += [
            (instance_id, Annotation("human", name, overall=side)) for name in ("ann", "bob")
        ]
        labels.append((instance_id, Annotation("lm", "judge", overall=-1, confidence=0.8)))
    store.add_annotations(labels)
    return store


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests using it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def cheap_password_hashing(monkeypatch):
    """argon2 at its cheapest, for tests that need accounts but are not about passwords."""
    from argon2 import PasswordHasher, profiles

    from curation import users

    monkeypatch.setattr(users, "_HASHER", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama whose vocabulary holds the option letters A and B (see tests/tiny_models.py)."""
    words = ["<pad>", "<unk>", "<s>", "</s>", "A", "B", "user", "assistant", ":"]
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-judge"), words)


@pytest.fixture(scope="session")
def smollm2_workspace(tmp_path_factory) -> Workspace:
    """A workspace whose cache holds the converted SmolLM2 (converted once per test session)."""
    from routing.models import ensure_default_model

    workspace = Workspace(tmp_path_factory.mktemp("smollm2") / "ws").ensure()
    ensure_default_model(workspace)
    return workspace
