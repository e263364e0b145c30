"""The Live page in Debian chromium: a person starts a watch against the loopback replay server playing
the demo market as if live, sees an alert appear in the feed on its own, follows its links, stops the watch.

The app runs (`streamlit run app.py`) on an empty store with the fixture's trained model; the watch is a
background job of the app's process writing that store. Screenshot: test-artifacts/live.png."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from engine.ingest.replay import ReplayServer
from storage.store import Store
from tests.app.fixture_store import EVIL_PAIR, build_fixture_store, open_page
from tests.app.test_browser import ARGS, ARTIFACTS, CHROMIUM, ROOT, _free_port, _wait_healthy
from tests.factories import account


def test_live_page_on_an_empty_store_says_there_is_no_alert_yet(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path / "empty.duckdb", "live")
    assert {m.label: m.value for m in at.metric} == {"Watch": "stopped", "Cursor (ledger)": "–",
                                                     "Ledgers behind": "–", "Trades/s": "0", "Alerts this run": "0"}
    assert "no alert yet" in [c.value for c in at.caption]
    assert at.button(key="FormSubmitter:watch_form-Start watch") is not None


def test_live_page_shows_stored_alerts_escaped_with_links(monkeypatch, tmp_path):
    """AppTest: a stored alert (its pair's code is markup) in the feed, the watch stopped, nothing running."""
    db = tmp_path / "alerts.duckdb"
    alert = {"wallet": account(7), "pair_id": EVIL_PAIR, "score": 91, "ring_id": "ring_0123456789ab", "ledger": 4242,
             "closed_at": datetime(2024, 3, 2, 12, tzinfo=UTC), "detected_at": datetime(2024, 3, 2, 12, tzinfo=UTC),
             "reasons": json.dumps(["closed loops: 60 points (90% of its trades in closed loops)"]),
             "model_version": "v1"}  # fmt: skip
    with Store(db) as store:
        assert store.record_alerts(pl.DataFrame([alert])) == 1
    at = open_page(monkeypatch, db, "live")
    assert {m.label: m.value for m in at.metric}["Watch"] == "stopped"
    assert any(h.value == "Alerts (1 newest)" for h in at.subheader)
    card = next(m.value for m in at.markdown if "ledger 4242" in m.value)
    assert card.startswith("**91**") and "&lt;img" in card and "<img" not in card  # ledger text shown as text
    assert any("closed loops: 60 points" in c.value for c in at.caption)




@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """(app url, replay server url)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make system-deps)")
    d = tmp_path_factory.mktemp("live_browser")
    fx = build_fixture_store(d / "fixture.duckdb")
    db = d / "live.duckdb"
    port = _free_port()
    env = {**os.environ, "LEDGERLENS_DB": str(db), "LEDGERLENS_HOME": str(fx.home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        with ReplayServer(fx.home / "demo_market", live_rate=2000) as server:
            yield f"http://127.0.0.1:{port}", server.url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.browser
def test_live_page_starts_a_watch_and_shows_its_alerts(live_app):
    from playwright.sync_api import sync_playwright

    app_url, horizon_url = live_app
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{app_url}/live")
        page.get_by_text("no alert yet").wait_for()
        page.get_by_label("Horizon URL").fill(horizon_url)
        page.get_by_label("From ledger (0 = now)").fill("1")
        page.get_by_role("button", name="Start watch").click()
        page.get_by_text("running", exact=True).first.wait_for()
        wallet_link = page.get_by_role("link", name="Open wallet").first
        wallet_link.wait_for(timeout=120_000)  # the feed refreshes on its own: no click, no reload
        ring_link = page.get_by_role("link", name="Open ring_").first
        assert "wallet=G" in (wallet_link.get_attribute("href") or "")
        assert "ring=ring_" in (ring_link.get_attribute("href") or "")
        page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
        page.get_by_role("button", name="Stop watch").click()
        page.get_by_text("stopped", exact=True).first.wait_for()
        page.get_by_text("last watch done", exact=False).first.wait_for()
        browser.close()
