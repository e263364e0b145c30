"""AppTest of the Annotate page: the queue end to end on the demo fixture store (model, features, rings)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.services.label import build_queue, record_label
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, open_page, settings_for


@pytest.fixture
def db(tmp_path) -> Path:
    return build_fixture_store(tmp_path / "fixture.duckdb").db_path


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def test_label_from_the_queue_updates_progress_and_next_item(monkeypatch, db):
    # committee ranks each row on its own, so labelling one moves the queue to the next
    monkeypatch.setenv("LEDGERLENS_AL_QUERY_STRATEGY", "committee")
    with Store(db) as store:
        settings = settings_for(db)
        default = settings.al_query_strategy  # the page opens on the configured strategy
        expected = build_queue(store, settings, strategy=default, size=20)
    assert expected.source.startswith("model v")
    first, second = expected.queue.row(0, named=True), expected.queue.row(1, named=True)
    at = open_page(monkeypatch, db, "annotate")
    assert at.selectbox(key="al_strategy").value == default
    assert at.subheader[0].value == first["wallet"]
    assert at.metric[0].value == f"{first['priority']:.3f}"
    assert any(f"of {expected.n_pool:,} unlabelled (wallet, pair), ranked by {default} from model v" in c
               for c in _texts(at, "caption"))
    assert "— wash 0, legit 0, unsure 0" in at.get("progress")[0].proto.text
    at.radio(key="queue_label").set_value("legit")
    at.text_input(key="queue_note").set_value("an ordinary trader")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, [e.value for e in at.exception]
    assert "— wash 0, legit 1, unsure 0" in at.get("progress")[0].proto.text
    assert at.subheader[0].value == second["wallet"]
    at.selectbox(key="al_strategy").set_value("random").run()
    assert any("ranked by random" in c for c in _texts(at, "caption"))
    with Store(db) as store:
        ann = store.annotations()
    assert ann.select("wallet", "pair_id", "label", "note", "annotator_id").rows() == [
        (first["wallet"], first["pair_id"], "legit", "an ordinary trader", "analyst")]


def test_wash_label_raises_ring_mates_in_the_queue(monkeypatch, db):
    s = settings_for(db)
    with Store(db) as store:
        member = store.load_derived("ring_members").sort("ring_id", "account_id").row(0, named=True)
        record_label(store, s, wallet=member["account_id"], label="wash", annotator="ana",
                     now=datetime(2024, 5, 1, tzinfo=UTC))
        expected = build_queue(store, s, strategy="uncertainty", size=20).queue
    boosted = expected.filter(expected["evidence"].is_not_null())
    assert boosted.height >= 1 and boosted["priority"].min() >= 0.25
    at = open_page(monkeypatch, db, "annotate")
    at.selectbox(key="al_strategy").set_value("uncertainty").run()
    assert at.subheader[0].value == expected.row(0, named=True)["wallet"]
    table = next(d.value for d in at.dataframe if "evidence" in d.value.columns)  # non-selectable: no key
    assert table["wallet"].tolist() == expected["wallet"].to_list()[1:]
    assert table["evidence"].notna().sum() == boosted.height - (expected.row(0, named=True)["evidence"] is not None)
