"""AppTest of the Annotate page: the queue end to end on the demo fixture store (model, features, rings).

One item per wallet with its pairs listed, nothing pre-selected, the annotator chosen once per session,
a label covering the listed pairs, skip. The keys themselves are pressed in Chromium (test_journey.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.active.queue import rank_queue, rank_wallets
from engine.services.label import build_queue, record_label
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, open_page, settings_for


@pytest.fixture
def db(tmp_path) -> Path:
    return build_fixture_store(tmp_path / "fixture.duckdb").db_path


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def _progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def test_rank_wallets_gives_one_item_per_wallet_at_its_best_rows_priority():
    pool = pl.DataFrame({"wallet": ["GA", "GA", "GB", "GC"], "pair_id": ["P2", "P1", "P1", "P3"],
                         "p": [0.9, 0.5, 0.6, 0.52], "p_rf": [None] * 4, "p_xgb": [None] * 4, "p_lgbm": [None] * 4,
                         "ring_id": [None, "ring_x", None, None]}, schema_overrides={c: pl.Float64 for c in
                                                                                     ("p_rf", "p_xgb", "p_lgbm")})
    rows = rank_queue(pool, strategy="uncertainty", size=4)
    items = rank_wallets(pool, strategy="uncertainty", size=2)
    assert items["wallet"].to_list() == ["GA", "GC"] == rows["wallet"].unique(maintain_order=True).head(2).to_list()
    first = items.row(0, named=True)
    assert first["pairs"] == ["P1", "P2"] and first["p"] == 0.5 and items["n_pairs"].to_list() == [2, 1]
    assert first["priority"] == rows.row(0, named=True)["priority"] and first["ring_id"] == "ring_x"
    # diversity: one wallet per ring, a wallet keeps all its pairs
    ring = pool.with_columns(ring_id=pl.lit("ring_x"))
    assert rank_wallets(ring, strategy="diversity", size=3)["wallet"].to_list() == ["GA"]
    assert rank_wallets(ring, strategy="diversity", size=3)["pairs"].to_list() == [["P1", "P2"]]


def test_the_session_annotator_labels_one_wallet_with_its_pairs_then_skips(monkeypatch, db):
    monkeypatch.setenv("LEDGERLENS_AL_QUERY_STRATEGY", "committee")
    with Store(db) as store:
        expected = build_queue(store, settings_for(db), strategy="committee", size=20, by_wallet=True)
        n_scored = store.label_progress()["n_scored"]
    assert expected.source.startswith("model v") and expected.queue["wallet"].is_unique().all()
    first, second, third = (expected.queue.row(i, named=True) for i in range(3))
    at = open_page(monkeypatch, db, "annotate")
    assert at.subheader[0].value == first["wallet"]
    assert any(", ".join(first["pairs"]) in c for c in _texts(at, "caption"))
    assert at.button(key="queue_wash").disabled  # no annotator yet: labelling waits for a name
    at.selectbox(key="al_annotator_pick").set_value("someone new…").run()
    at.text_input(key="al_annotator_new").set_value("ana")
    at.button(key="al_annotator_start").click().run()
    assert not at.button(key="queue_wash").disabled and f"0 of {n_scored:,}" in _progress(at)
    at.text_input(key="queue_note").set_value("an ordinary trader")
    at.button(key="queue_legit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"{first['n_pairs']} of {n_scored:,}" in _progress(at) and "legit " + str(first["n_pairs"]) in _progress(at)
    assert at.subheader[0].value == second["wallet"] and at.text_input(key="queue_note").value == ""
    at.button(key="queue_skip").click().run()
    assert at.subheader[0].value == third["wallet"] and any("1 skipped this session" in c for c in _texts(at, "caption"))
    with Store(db) as store:
        ann = store.annotations()
    assert ann.select("wallet", "pair_id", "label", "note", "annotator_id").rows() == [
        (first["wallet"], p, "legit", "an ordinary trader", "ana") for p in first["pairs"]]


def test_wash_label_raises_ring_mates_in_the_queue(monkeypatch, db):
    s = settings_for(db)
    with Store(db) as store:
        member = store.load_derived("ring_members").sort("ring_id", "account_id").row(0, named=True)
        record_label(store, s, wallet=member["account_id"], label="wash", annotator="ana",
                     now=datetime(2024, 5, 1, tzinfo=UTC))
        expected = build_queue(store, s, strategy="uncertainty", size=20, by_wallet=True).queue
    boosted = expected.filter(expected["evidence"].is_not_null())
    assert boosted.height >= 1 and boosted["priority"].min() >= 0.25
    at = open_page(monkeypatch, db, "annotate")
    at.selectbox(key="al_strategy").set_value("uncertainty").run()
    assert at.subheader[0].value == expected.row(0, named=True)["wallet"]
    table = next(d.value for d in at.dataframe if "evidence" in d.value.columns)
    assert table["wallet"].tolist() == expected["wallet"].to_list()[1:]
    assert table["evidence"].notna().sum() == boosted.height - (expected.row(0, named=True)["evidence"] is not None)
