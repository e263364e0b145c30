"""The Live page in Debian chromium: a person starts a watch against the loopback replay server playing
the demo market as if live, sees an alert appear in the feed on its own, follows its links, stops the watch.

The app runs (`streamlit run app.py`) on an empty store with the fixture's trained model; the watch is a
background job of the app's process writing that store. Screenshot: test-artifacts/live.png."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from engine.ingest.replay import ReplayServer
from storage.store import Store
from tests.app.chromium import browser_page, off_loopback, open_view, running_app, shot
from tests.app.fixture_store import EVIL_PAIR, build_fixture_store, open_page
from tests.factories import account


def test_live_page_on_an_empty_store_says_there_is_no_alert_yet(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path / "empty.duckdb", "live")
    assert {m.label: m.value for m in at.metric} == {"Watch": "stopped", "Cursor (ledger)": "–",
                                                     "Ledgers behind": "–", "Trades/s": "0", "Alerts this run": "0"}
    assert "no alert yet" in [c.value for c in at.caption]
    assert any("train one on the Models page" in w.value for w in at.warning)  # no model: nothing to score with
    assert at.button(key="FormSubmitter:watch_form-Start watch").disabled


def test_live_page_asks_a_data_lake_watch_where_to_start(monkeypatch, tmp_path):
    fx = build_fixture_store(tmp_path / "fixture.duckdb")  # a trained model
    at = open_page(monkeypatch, fx.db_path, "live")
    at.radio(key="live_kind").set_value("Data lake")
    at.button(key="FormSubmitter:watch_form-Start watch").click().run()
    assert any("give the first ledger to read" in e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["Watch"] == "stopped"


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
    assert card.startswith("**91.0**") and "&lt;img" in card and "<img" not in card  # ledger text shown as text
    assert any("closed loops: 60 points" in c.value for c in at.caption)




@pytest.mark.browser
def test_live_page_starts_a_watch_and_shows_its_alerts(tmp_path):
    fx = build_fixture_store(tmp_path / "fixture.duckdb")  # its trained model; the app's store starts empty
    with ReplayServer(fx.home / "demo_market", live_rate=2000) as server, \
            running_app(tmp_path / "live.duckdb", fx.home) as app_url, browser_page() as page:  # fmt: skip
        open_view(page, f"{app_url}/live", "no alert yet")
        page.get_by_label("Horizon URL").fill(server.url)
        page.get_by_label("From ledger (0 = now)").fill("1")
        page.get_by_role("button", name="Start watch").click()
        page.get_by_text("running", exact=True).first.wait_for()
        wallet_link = page.get_by_role("link", name="Open wallet").first
        wallet_link.wait_for(timeout=120_000)  # the feed refreshes on its own: no click, no reload
        ring_link = page.get_by_role("link", name="Open ring_").first
        ring_link.wait_for(timeout=120_000)  # an alert naming its ring (the first may cross on its loops alone)
        assert "wallet=G" in (wallet_link.get_attribute("href") or "")
        ring_href = ring_link.get_attribute("href") or ""
        assert "ring=ring_" in ring_href
        ring_id = ring_href.split("ring=")[1].split("&")[0]
        shot(page, "live")
        page.get_by_role("button", name="Stop watch").click()
        page.get_by_text("stopped", exact=True).first.wait_for()
        page.get_by_text("last watch done", exact=False).first.wait_for()
        wallet_link = page.get_by_role("link", name="Open wallet").first
        wallet_link.click()  # the alert's wallet opens on the score that raised it
        page.get_by_text("Risk score", exact=True).first.wait_for()
        # the alert's ring link opens the ring the watch confirmed (no analysis ran on this store)
        open_view(page, f"{app_url}/rings?ring={ring_id}", "funding edges. Click a wallet")  # its graph drawn
        assert page.url.endswith(f"ring={ring_id}")  # the page keeps a ring it lists (else it picks the first)
        shot(page, "live_ring")
        assert not off_loopback(page.requests) and not page.dialogs
