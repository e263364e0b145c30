"""Ingest: start a background ingest (Horizon, data lake, files, demo) owned by this browser session, follow its
progress and retries, cancel or retry it, browse the run history and the quarantined records."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import polars as pl
import streamlit as st

from engine.drawing import fmt_seconds
from engine.services.ingest import (
    JOBS,
    UPLOAD_PREFIX,
    IngestJob,
    app_wording,
    demo_work,
    files_work,
    plan_recorded,
    range_work,
    runs_for_display,
)
from engine.services.jobs import JobStatus
from pages import _analysis, _show, _ui
from storage.store import Store

_ui.frame()
st.title("Ingest")
settings = _ui.settings()
store = _ui.store()
key = _ui.db_key()
first, last = _ui.read(Store.ledger_span)
counts = _ui.read(Store.counts)
st.caption(f"Store holds {counts['trades']:,} trades, {counts['operations']:,} operations, "
           f"{counts['accounts']:,} accounts; ledgers {first or '–'}–{last or '–'}.")


owner = st.session_state.setdefault("session_owner", uuid.uuid4().hex)  # this browser session's jobs
BACKGROUND = ("analysis", "watch")  # jobs other pages follow


def start(label: str, work, *, watch_url: str | None = None) -> None:
    with _show.guard():
        JOBS.submit(key, IngestJob(label, work, owner=owner, watch_url=watch_url))
    st.toast(f"Started: {_show.esc(label)}")


source = st.radio("Source", ["Horizon", "Data lake", "Files", "Demo market"], horizontal=True, key="ingest_source")
if source in ("Horizon", "Data lake"):
    with st.form("ingest_range"):
        if source == "Horizon":
            url = st.text_input("Horizon URL", value=settings.horizon_url, key="ingest_url")
        else:
            url = st.text_input("Data lake (folder or https:// prefix)", value=settings.datalake_url, key="ingest_lake")
        c1, c2 = st.columns(2)
        start_ledger = c1.number_input("Start ledger", min_value=1, value=int(last or 1), step=1, key="ingest_start")
        end_ledger = c2.number_input("End ledger", min_value=1, value=int(last or 1) + 100, step=1, key="ingest_end")
        pair = st.text_input("Pair (optional, BASE/COUNTER)", key="ingest_pair") if source == "Horizon" else ""
        if st.form_submit_button("Start ingest"):
            kind = "horizon" if source == "Horizon" else "datalake"
            params = {"start_ledger": start_ledger, "end_ledger": end_ledger, "pair": pair.strip() or None,
                      "horizon_url" if kind == "horizon" else "source": url.strip()}
            with _show.guard():
                request, batches = plan_recorded(kind, params, settings)
            start(f"{kind} ledgers {start_ledger}-{end_ledger}", range_work(store, request, batches),
                  watch_url=url.strip())
elif source == "Files":
    uploads = st.file_uploader("Horizon JSON Lines / pages, Hubble exports (JSONL, CSV, Parquet), LedgerLens exports",
                               accept_multiple_files=True, key="ingest_files")
    if uploads and st.button("Ingest files", key="ingest_files_go"):
        settings.home.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=settings.home))
        names = {}
        for up in uploads:
            path = folder / Path(up.name).name  # the browser's file name, never a path
            path.write_bytes(up.getvalue())
            names[path] = Path(up.name).name
        label = next(iter(names.values())) if len(names) == 1 else f"{len(names)} files"
        start(label, files_work(store, list(names), batch_size=settings.batch_size, names=names))
else:
    st.markdown("A simulated market with injected, labelled wash-trading rings, served by the loopback replay "
                "server and ingested with stellar-sdk; then rings, features, a model trained on its ground truth "
                "and scores, so every page has something to show.")
    scale = st.select_slider("Market size", [0.02, 0.05, 0.1, 0.25], value=0.05, key="demo_scale",
                             help="0.05 ≈ 5,000 trades (a few seconds); 1.0 ≈ 100,000")
    if counts["trades"]:
        st.caption("The demo market loads into an empty store only: this one already holds trades. Point "
                   "LEDGERLENS_DB at a new file to try it.")
    elif st.button("Load the demo market", key="demo_go", type="primary"):
        start(f"demo market (scale {scale})", demo_work(store, settings, seed=settings.seed, scale=scale))


def running(job: JobStatus) -> None:
    if job.records == 0 and job.n_retries:
        st.progress(0.0, text=f"{_show.esc(job.label)}: waiting for the source · {job.n_retries} "
                    f"retr{'y' if job.n_retries == 1 else 'ies'} so far · {fmt_seconds(job.elapsed_s)} elapsed")
    else:
        st.progress(job.fraction, text=f"{_show.esc(job.label)}: {job.records:,} records · {job.done:,}"
                    f"{'/' + format(job.total, ',') if job.total else ''} {job.unit} · {job.rate:,.1f} {job.unit}/s "
                    f"· ETA {fmt_seconds(job.eta_s) if job.eta_s is not None else 'after the first batch'}")
    if job.notice:
        st.caption(f"Retrying: {_show.esc(job.notice)}" if job.n_retries and "cancelling" not in job.notice
                   else _show.esc(job.notice))  # fmt: skip
    if st.button("Cancel", key=f"cancel_{job.job_id}", icon=":material/cancel:"):
        JOBS.get(key, job.job_id).cancel()


def finished(job: JobStatus) -> None:
    if job.state == "done":
        st.success(f"{_show.esc(job.label)}: done in {fmt_seconds(job.elapsed_s)} — {_show.esc(job.message)}")
        for warning in job.warnings:
            st.warning(_show.esc(warning))
    elif job.state == "cancelled":
        st.info(_show.esc(job.message))
    else:
        incident = f" (incident {job.incident}: the details are in the server log)" if job.incident else ""
        st.error(f"{_show.esc(job.label)} failed{incident}: {_show.esc(job.message)}")
    if job.state != "done" and st.button("Retry", key=f"retry_{job.job_id}", icon=":material/replay:"):
        with _show.guard():
            JOBS.submit(key, JOBS.get(key, job.job_id).again())
        st.rerun(scope="fragment")


@st.fragment(run_every=1.0)
def progress_panel() -> None:
    with _show.guard():
        others = [j for j in JOBS.of(key) if j.state == "running" and j.owner != owner]
        for job in others:
            st.caption(f"Another browser session is running {_show.esc(job.label)} on this store; new jobs wait "
                       "for it.")
        jobs = [j for j in JOBS.of(key, owner=owner) if j.label not in BACKGROUND]
        if not jobs:
            st.caption("No ingest started from this browser session.")
            return
        job = jobs[0]
        if job.state == "running":
            running(job)
        else:
            finished(job)
        if job.state != "running" and st.session_state.get("ingest_seen") != job.job_id:
            st.session_state.ingest_seen = job.job_id
            _ui.clear_caches()
            st.rerun(scope="app")


progress_panel()
if any(j.state == "done" and j.label not in BACKGROUND for j in JOBS.of(key, owner=owner)):
    st.caption("New data is in: analyse it (rings, features, scores) so every page shows it.")
    _analysis.run_analysis_button(key="ingest_analyse")

st.subheader("Run history")
runs = runs_for_display(_ui.read(Store.runs, limit=50), home=settings.home)
if runs.height == 0:
    st.caption("No runs yet.")
    st.stop()
st.dataframe(runs.select("run_id", "source", "status", "resumable", "started_at", "finished_at", "n_trades",
                         "n_operations", "n_quarantined", "n_ledgers", "error", "params"), hide_index=True,
             key="runs_table", column_config={"error": st.column_config.TextColumn("error", width="large")})
# keyed by the newest run: a new run (this session's or another's) opens with its own quarantined rows shown
run_id = st.selectbox("Run", runs.get_column("run_id").to_list(), key=f"run_pick_{runs.item(0, 'run_id')}")
run = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
bad = _ui.read(Store.quarantined, run_id=run_id, limit=1000)
st.markdown(f"**Quarantined records of run {run_id}: {run['n_quarantined']:,}**")
if run["error"]:
    st.error(f"Run {run_id} stopped: {_show.esc(app_wording(run['error']))}")
if bad.height:
    st.caption("Each row says where the record was, why it was set aside and what it held; nothing else of the "
               "file was lost.")
    st.dataframe(bad.select("location", "record_id", "reason", "raw"), hide_index=True, key="quarantine_table",
                 column_config={"reason": st.column_config.TextColumn("reason", width="large")})
if run["resumable"]:  # interrupted (killed, crashed) or failed, and not finished by a later run
    params = json.loads(run["params"])
    st.info(f"Run {run_id} stopped before the end ({_show.esc(run['status'])}); its committed batches are kept "
            "and resuming starts after the last one.")
    if run["source"] in ("horizon", "datalake") and st.button(f"Resume run {run_id}", key="resume_run"):
        request, batches = plan_recorded(run["source"], params, settings)
        start(f"resume {run['source']} ledgers {params['start_ledger']}-{params['end_ledger']}",
              range_work(store, request, batches), watch_url=params.get("horizon_url") or params.get("source"))
    elif run["source"] == "files" and st.button(f"Resume run {run_id}", key="resume_run"):
        path = Path(params["path"])
        start(f"resume {path.name}", files_work(store, [path], batch_size=settings.batch_size))
