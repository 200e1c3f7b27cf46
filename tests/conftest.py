"""Shared fixtures for the test suite.

The benchmark data lives in the repository (``data/``, provenance in data/README.md). The fast engine is
session-scoped because its first call loads (or, on a cold cache, compiles) the numba kernels.
Hypothesis runs the ``ci`` profile unless ``--hypothesis-profile`` picks another one (``thorough`` for a
long bug hunt): no deadline, because a shared 2-core machine makes per-example timing meaningless.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fpgacspd.engine import FastEngine
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SUDOKU_DIR = DATA_DIR / "sudoku"

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data in the repository; a missing folder is an error, never a skip."""
    assert DATA_DIR.is_dir(), f"benchmark data not found at {DATA_DIR} (the repository's data/ folder)"
    return DATA_DIR


@pytest.fixture(scope="session")
def engine() -> Iterator[FastEngine]:
    """One fast engine for the whole session (kernels loaded once, thread pool reused)."""
    eng = FastEngine()
    yield eng
    eng.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``tensorflow`` tests last: TensorFlow, once imported, crashes OR-Tools' CP-SAT in the same process
    (its bundled protobuf and abseil), so nothing may run after it loads (see tests/client/cross_framework.py)."""
    items.sort(key=lambda item: item.get_closest_marker("tensorflow") is not None)  # stable: otherwise as collected


def pytest_collection_finish(session: pytest.Session) -> None:
    # the guard that keeps the ordering meaningful: a module that imports TensorFlow at collection would load it
    # before every other test
    if "tensorflow" in sys.modules:
        raise pytest.UsageError(
            "TensorFlow was imported while collecting tests; import it inside the test (cross_framework."
            "tensorflow_modules) so that the tests marked tensorflow, run last, are the first to load it"
        )
