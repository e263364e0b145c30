"""The "Run analysis" button (Overview, and Ingest after an ingest): rings -> features -> score as a background
job inside this process, on the app's own open store (engine.services.analyse.analyse), with a progress bar.

The job runs on the process's job board (engine.services.ingest.JOBS), so an analysis and an ingest never
write the same store at once; the session remembers its job id (a UI selection) to follow its progress.
"""

from __future__ import annotations

import streamlit as st

from engine.services.analyse import ANALYSIS_STEPS, analysis_work
from engine.services.ingest import JOBS, IngestJob
from pages import _show, _ui

LABEL = "Run analysis"


def run_analysis_button(*, key: str, help: str | None = None) -> None:
    """The button and, once pressed in this session, the job's progress until it finishes."""
    with _show.guard():
        if st.button(LABEL, key=key, type="primary", help=help or "rings -> features -> score on this store"):
            job = JOBS.submit(_ui.db_key(), IngestJob("analysis", analysis_work(_ui.store(), _ui.settings())))
            st.session_state.analysis_job = job.job_id
    job = JOBS.get(_ui.db_key(), st.session_state.get("analysis_job", ""))
    if job is None:
        return
    status = job.status()
    if status.state == "done" and st.session_state.get("analysis_seen") == status.job_id:
        st.success(f"Analysis done: {_show.esc(status.message)}")  # finished and shown: no more polling
    else:
        analysis_progress()


@st.fragment(run_every=1.0)
def analysis_progress() -> None:
    with _show.guard():
        job = JOBS.get(_ui.db_key(), st.session_state.get("analysis_job", ""))
        if job is None:
            return
        status = job.status()
        if status.state == "running":
            step = ANALYSIS_STEPS[min(status.done, len(ANALYSIS_STEPS) - 1)]
            st.progress(status.fraction, text=f"Analysis: step {min(status.done + 1, 3)} of 3 ({step})…")
        elif status.state == "done":
            st.progress(1.0, text="Analysis: done")
            st.success(f"Analysis done: {_show.esc(status.message)}")
            if st.session_state.get("analysis_seen") != status.job_id:
                st.session_state.analysis_seen = status.job_id
                _ui.clear_caches()
                st.rerun(scope="app")
        else:
            incident = f" (incident {status.incident})" if status.incident else ""
            st.error(f"Analysis failed{incident}: {_show.esc(status.message)}")
