"""Shared test fixtures: real DuckDB files in tmp dirs, the recorded Stellar data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real recorded Stellar data lives beside the repository, never inside it.
FIXTURES = Path(os.environ.get("LEDGERLENS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_path(*parts: str) -> Path:
    """Path into ../shared/fixtures, skipping the test (with the reason) when absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"recorded Stellar fixture {path} is absent (expected ../shared/fixtures beside the repo)")
    return path


@pytest.fixture
def store(tmp_path):
    from storage.store import Store

    s = Store(tmp_path / "test.duckdb")
    yield s
    s.close()


def pytest_unconfigure(config):
    """After the summary line: silence duckdb's nanobind reference-leak report at
    interpreter exit, so the run's last line is pytest's summary (tests are done).
    atexit runs after pytest has restored its captured file descriptors."""
    import atexit

    def _quiet_stderr() -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

    atexit.register(_quiet_stderr)
