"""The Ingest page's jobs: per browser session, plain errors naming the user's files, one bad file never
sinks a batch, an unreachable server shows its retries and can be cancelled, then retried."""

from __future__ import annotations

import socket
import time

from streamlit.testing.v1 import AppTest

from engine.ingest import horizon
from engine.services.ingest import JOBS, IngestJob, files_work, range_work
from storage.store import Store
from tests.app.fixture_store import ingest_range_on_page, open_page
from tests.factories import horizon_trade, write_jsonl


def _texts(at: AppTest, *kinds: str) -> str:
    return " ".join(str(e.value) for k in kinds for e in getattr(at, k))


def _closed_port() -> int:
    with socket.socket() as s:  # bound then released: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_empty_or_unknown_file_is_named_as_uploaded_and_the_others_are_ingested(tmp_path):
    upload = tmp_path / "upload-x1y2"
    upload.mkdir()
    write_jsonl(upload / "good.jsonl", [horizon_trade(i) for i in range(5)])
    (upload / "empty.jsonl").write_bytes(b"")
    (upload / "weird.csv").write_text("a,b\n1,2\n")
    names = {upload / "good.jsonl": "march trades.jsonl", upload / "empty.jsonl": "Empty export.jsonl",
             upload / "weird.csv": "notes.csv"}  # fmt: skip
    with Store(tmp_path / "files.duckdb") as store:
        job = IngestJob("3 files", files_work(store, list(names), batch_size=100, names=names)).start()
        status = job.join(timeout=60)
        assert store.counts()["trades"] == 5
    assert status.state == "done" and status.message.startswith("march trades.jsonl: run ")
    problems = " ".join(status.warnings)
    assert "Empty export.jsonl: the file is empty" in problems and "notes.csv: unrecognised records" in problems
    assert str(tmp_path) not in problems + status.message and "`" not in problems and "&#x27;" not in problems


def test_a_batch_where_no_file_reads_fails_in_plain_words(tmp_path):
    (tmp_path / "up").mkdir()
    path = tmp_path / "up" / "a.jsonl"
    path.write_bytes(b"")
    with Store(tmp_path / "none.duckdb") as store:
        status = IngestJob("a.jsonl", files_work(store, [path], batch_size=100, names={path: "mine.jsonl"})).start()
        status = status.join(timeout=30)
    assert status.state == "failed" and status.message.startswith("mine.jsonl: the file is empty")
    assert "Nothing was ingested: fix the file(s) and upload them again." in status.message


def test_an_unreachable_server_shows_retries_and_a_cancel_stops_it(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    request, batches = horizon.plan(start_ledger=1, end_ledger=10, horizon_url=url, max_retries=100,
                                    backoff_base_s=0.02, backoff_cap_s=0.1, http_timeout_s=2)  # fmt: skip
    with Store(tmp_path / "down.duckdb") as store:
        job = IngestJob("horizon ledgers 1-10", range_work(store, request, batches), watch_url=url).start()
        _wait(lambda: job.status().n_retries >= 3)
        status = job.status()
        assert status.state == "running" and status.records == 0 and url in status.notice
        job.cancel()
        status = job.join(timeout=30)
    assert status.state == "cancelled" and "committed before are kept" in status.message


def test_jobs_belong_to_the_browser_session_that_started_them(monkeypatch, tmp_path, horizon_40):
    db = tmp_path / "sessions.duckdb"
    mine = open_page(monkeypatch, db, "ingest")
    theirs = open_page(monkeypatch, db, "ingest")
    status = ingest_range_on_page(mine, horizon_40.url).join(timeout=60)
    assert status.state == "done", status.message
    mine.run()
    theirs.run()
    assert "done in" in _texts(mine, "success") and "Store holds 40 trades" in _texts(mine, "caption")
    runs = next(d.value for d in mine.dataframe if "n_quarantined" in d.value.columns)
    assert runs["status"].tolist() == ["done"] and runs["n_trades"].tolist() == [40]
    assert "done in" not in _texts(theirs, "success") and "No ingest started from this browser session." in \
        _texts(theirs, "caption")  # fmt: skip


def test_the_page_shows_retries_cancels_and_offers_retry(monkeypatch, tmp_path):
    monkeypatch.setenv("LEDGERLENS_HTTP_MAX_RETRIES", "100")
    db = tmp_path / "page-down.duckdb"
    url = f"http://127.0.0.1:{_closed_port()}"
    at = open_page(monkeypatch, db, "ingest")
    at.radio(key="ingest_source").set_value("Horizon").run()
    at.text_input(key="ingest_url").set_value(url)
    at.button[0].click().run()
    [status] = JOBS.of(str(db.resolve()))
    job = JOBS.get(str(db.resolve()), status.job_id)
    _wait(lambda: job.status().n_retries >= 2)
    at.run()
    progress = at.get("progress")[0].proto.text
    assert "waiting for the source" in progress and "retries so far" in progress
    assert "Retrying: Horizon " + url in _texts(at, "caption")
    at.button(key=f"cancel_{job.job_id}").click().run()
    assert job.join(timeout=60).state == "cancelled"
    at.run()
    assert "cancelled" in _texts(at, "info")
    at.button(key=f"retry_{job.job_id}").click().run()
    again = JOBS.of(str(db.resolve()))[0]
    assert again.job_id != job.job_id and again.label == status.label
    JOBS.get(str(db.resolve()), again.job_id).cancel()
    JOBS.get(str(db.resolve()), again.job_id).join(timeout=60)


def test_run_history_names_an_upload_by_its_own_name_in_the_apps_words(tmp_path):
    import polars as pl

    from engine.services.ingest import runs_for_display

    copy = tmp_path / "home" / "upload-k3j2x" / "march trades.jsonl"
    runs = pl.DataFrame({"error": [f"{copy}: the file is empty", "Horizon x kept failing. Run the same command "
                                   "again: it resumes from there.", None],
                         "params": [f'{{"path": "{copy}"}}', None, None]})  # fmt: skip
    shown = runs_for_display(runs, home=tmp_path / "home")
    assert shown["error"].to_list() == ["march trades.jsonl: the file is empty",
                                        "Horizon x kept failing. Press Retry: it resumes from there.", None]
    assert shown["params"][0] == '{"path": "march trades.jsonl"}'
