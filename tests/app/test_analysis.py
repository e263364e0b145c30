"""The "Run analysis" button: rings -> features -> score inside the app's process, on its own open store."""

from __future__ import annotations

from engine.services.demo import build_demo_store
from engine.services.ingest import JOBS
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, ingest_range_on_page, open_page, settings_for


def _app_store(db) -> Store:
    """The app's own Store of `db` (AppTest runs in this process, which now holds the file open read-write)."""
    from pages._ui import open_store

    return open_store(str(db.resolve()))


def _texts(at, *kinds) -> str:
    return " ".join(e.value for k in kinds for e in getattr(at, k))


def _run_analysis(at, db, key: str):
    at.button(key=key).click().run()
    jobs = JOBS.of(str(db.resolve()))
    assert jobs and jobs[0].label == "analysis"
    status = JOBS.get(str(db.resolve()), jobs[0].job_id).join(timeout=120)
    assert status.state == "done", status.message
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return status


def test_run_analysis_on_ingested_data_computes_rings_and_features_and_says_a_model_is_missing(monkeypatch, tmp_path):
    db = tmp_path / "fresh.duckdb"
    build_demo_store(db, seed=7, scale=0.02, days=3, analysis=False, settings=settings_for(db))
    at = open_page(monkeypatch, db, "overview")
    assert "Rings not computed yet: press **Run analysis** above." in _texts(at, "warning")
    assert at.button(key="overview_analyse").label == "Run analysis"
    status = _run_analysis(at, db, "overview_analyse")
    assert "not scored: no model is trained yet" in status.message
    store = _app_store(db)
    n_rings, n_features = store.rings().height, store.load_derived("features").height
    assert f"{n_rings:,} rings" in status.message and f"features of {n_features:,} (wallet, pair)" in status.message
    assert "Rings not computed yet" not in _texts(at, "warning")
    assert "Analysis done" in _texts(at, "success")
    rings = open_page(monkeypatch, db, "rings")
    assert f"{n_rings:,} rings detected" in _texts(rings, "caption")


def test_run_analysis_rescores_with_the_promoted_model(monkeypatch, tmp_path):
    db = tmp_path / "scored.duckdb"
    s = build_fixture_store(db)
    with Store(db, read_only=True) as store:
        n_history = store.score_history(s.top_wallet).height
        n_latest = store.load_derived("scores_latest").height
    at = open_page(monkeypatch, db, "overview")
    status = _run_analysis(at, db, "overview_analyse")
    assert f"{n_latest:,} scores with model {s.model_version}" in status.message
    store = _app_store(db)
    assert store.load_derived("scores_latest").height == n_latest
    assert store.score_history(s.top_wallet).height == n_history  # same data, same model: scoring is idempotent
    n_flagged = store.overview_counts(threshold=70)["n_flagged"]
    assert {m.label: m.value for m in at.metric}["Flagged wallets"] == f"{n_flagged:,}"


def test_the_ingest_page_offers_run_analysis_after_an_ingest(monkeypatch, tmp_path, horizon_40):
    db = tmp_path / "ingest.duckdb"
    at = open_page(monkeypatch, db, "ingest")
    assert not [b for b in at.button if b.label == "Run analysis"]  # nothing ingested yet
    ingest_range_on_page(at, horizon_40.url).join(timeout=30)
    at.run()
    status = _run_analysis(at, db, "ingest_analyse")
    store = _app_store(db)
    assert store.load_derived("features") is not None and store.rings() is not None
    assert "features of" in status.message
