"""The Live page in Debian chromium: a person starts a watch against the loopback replay server playing
the demo market as if live, sees an alert appear in the feed on its own, follows its links, stops the watch.

The app runs (`streamlit run app.py`) on an empty store with the fixture's trained model; the watch is a
background job of the app's process writing that store. Screenshot: test-artifacts/live.png."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.ingest.replay import ReplayServer
from tests.app.fixture_store import build_fixture_store
from tests.app.test_browser import ARGS, ARTIFACTS, CHROMIUM, ROOT, _free_port, _wait_healthy

pytestmark = pytest.mark.browser


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
