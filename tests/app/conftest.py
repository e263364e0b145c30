"""Fixtures of the app tests: the loopback replay server standing in for Horizon (never a patched function)."""

from __future__ import annotations

import pytest

from tests.factories import horizon_trade, write_jsonl


@pytest.fixture
def horizon_40(tmp_path):
    """A replay server holding 40 factory trades (ledgers 1000-1013)."""
    from engine.ingest.replay import ReplayServer

    folder = tmp_path / "horizon"
    folder.mkdir()
    write_jsonl(folder / "trades.jsonl", [horizon_trade(i) for i in range(40)])
    with ReplayServer(folder) as server:
        yield server
