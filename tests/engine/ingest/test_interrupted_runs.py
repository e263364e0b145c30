"""A run whose process died (kill -9, power loss) stays 'running' in the store until
the store is next opened read-write: then it is 'interrupted', listed as resumable,
and the Ingest page offers to resume it (for files as for ledger ranges)."""

from __future__ import annotations

import time

import storage.store as store_module
from engine.ingest.files import ingest_files, plan
from storage.store import CursorPosition, Store
from tests.app.fixture_store import open_page
from tests.factories import horizon_trade, write_jsonl


def _half_ingested(tmp_path, n: int = 30) -> tuple:
    """A store with the first batch of a file written by a run whose process is gone."""
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(n)])
    db = tmp_path / "p.duckdb"
    with Store(db) as store:
        request, batches = plan(path, batch_size=10)
        run_id = store.start_run(request.source, {**request.params, "resume_from": None})
        first = next(batches(None))
        cursor = CursorPosition(request.source, request.stream, request.scope, first.position)
        store.write_batch(run_id=run_id, trades=first.trades, quarantine=first.quarantine, cursor=cursor)
    store_module._LIVE_RUNS.pop(str(db.resolve()), None)  # as if its process had been killed
    return path, db


def test_a_dead_run_is_interrupted_on_the_next_open_and_resumable_until_a_run_finishes(tmp_path):
    path, db = _half_ingested(tmp_path)
    with Store(db, read_only=True) as ro:  # a reader does not touch the runs
        assert ro.runs()["status"].to_list() == ["running"]
    with Store(db) as store:
        [run] = store.runs().to_dicts()
        assert (run["status"], run["resumable"]) == ("interrupted", True)
        assert "run the same ingest again to resume" in run["error"]
        [summary] = ingest_files(store, [path], batch_size=10)
        assert summary.resumed_from == "10" and summary.n_trades == 20
        runs = store.runs()
        assert runs.select("status", "resumable").rows() == [("done", False), ("interrupted", False)]
        assert store.counts()["trades"] == 30


def test_a_live_run_of_this_process_is_not_marked_when_the_file_is_opened_again(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        run_id = store.start_run("files", {"path": "x"})
        with Store(tmp_path / "s.duckdb") as again:
            assert again.runs()["status"].to_list() == ["running"]
        store.finish_run(run_id, status="done")


def test_ingest_page_offers_to_resume_an_interrupted_files_run(monkeypatch, tmp_path):
    from engine.services.ingest import JOBS

    _, db = _half_ingested(tmp_path)
    at = open_page(monkeypatch, db, "ingest")
    runs = next(d.value for d in at.dataframe if "resumable" in d.value.columns)
    assert runs["status"].to_list() == ["interrupted"] and runs["resumable"].to_list() == [True]
    assert any("stopped before the end" in i.value for i in at.info)
    at.button(key="resume_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    deadline = time.monotonic() + 60
    while any(j.state == "running" for j in JOBS.of(str(db.resolve()))) and time.monotonic() < deadline:
        time.sleep(0.1)
    [job] = JOBS.of(str(db.resolve()))
    assert job.state == "done", job.message
    at.run()
    runs = next(d.value for d in at.dataframe if "resumable" in d.value.columns)
    assert runs["status"].to_list() == ["done", "interrupted"] and runs["resumable"].to_list() == [False, False]
