"""Ingest (the `ingest horizon|datalake|files`, `demo` and Ingest-page use cases): plan, run, follow.

- `plan_ingest`: the one planner of a Horizon or data-lake ledger range (the CLI, a new
  run from the page and a resumed run all call it);
- `ingest_range` / `ingest_paths`: run a plan or files into a store (the CLI's road);
- `range_work`, `files_work`, `demo_work`: the same work for a background job (engine.services.jobs:
  progress, retries, cancel, per browser session) the Ingest page polls; messages in the app's words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from engine.ingest.files import ingest_files
from engine.ingest.runner import IngestSummary, run_ingest
from engine.progress import Progress, no_progress
from engine.services.jobs import JOBS, BusyError, Cancelled, IngestJob, JobOutcome, JobStatus
from storage.errors import BadInput, UserFacingError

__all__ = ["JOBS", "BusyError", "IngestJob", "JobStatus", "app_wording", "demo_work", "files_work", "ingest_paths",
           "ingest_range", "plan_ingest", "plan_recorded", "range_work"]  # the jobs are re-exported for the pages
log = logging.getLogger(__name__)
RANGE_SOURCES = ("horizon", "datalake")
# Engine messages written for the command line, and what the app says instead (the app holds the store open,
# so "run the same command" cannot work while it runs; the page has a Retry button)
CLI_WORDING = {
    "Run the same command again: it resumes from there.": "Press Retry: it resumes from there.",
    "LedgerLens `export trades` output": "a LedgerLens trades export",
    "--start-ledger": "start ledger",
    "--end-ledger": "end ledger",
    "`": "",
}


def plan_ingest(source: str, *, start_ledger: int, end_ledger: int, settings, horizon_url: str | None = None,
                pair: str | None = None, lake: str | None = None, workers: int | None = None) -> tuple:
    """(IngestRequest, batches) of a Horizon or data-lake ledger range; settings fill what is not given.

    BadInput for an empty range, or for a source that has no ledger range (files resume by re-running them)."""
    if source not in RANGE_SOURCES:
        raise BadInput(f"cannot resume a {source!r} run from the app; re-run the same files to resume them")
    start, end = int(start_ledger), int(end_ledger)
    if start < 1 or end < start:
        raise BadInput(f"ledger range {start}..{end} is empty: give 1 <= A <= B")
    common = dict(start_ledger=start, end_ledger=end, http_timeout_s=settings.http_timeout_s,
                  max_retries=settings.http_max_retries)  # fmt: skip
    # the network sources import stellar-sdk (a quarter second): only a ledger range needs them
    if source == "horizon":
        from engine.ingest import horizon

        return horizon.plan(horizon_url=horizon_url or settings.horizon_url, pair=pair or None, **common)
    from engine.ingest import datalake

    return datalake.plan(source=lake or settings.datalake_url, workers=workers or settings.decode_workers, **common)


def plan_recorded(source: str, params: dict, settings) -> tuple:
    """plan_ingest of a run's recorded params (start_ledger, end_ledger, horizon_url + pair or source)."""
    return plan_ingest(source, start_ledger=params["start_ledger"], end_ledger=params["end_ledger"],
                       settings=settings, horizon_url=params.get("horizon_url"), pair=params.get("pair"),
                       lake=params.get("source"))  # fmt: skip


def ingest_range(store, request, batches, *, progress: Progress = no_progress) -> IngestSummary:
    """Run a plan into `store` (resumable: the runner continues after the last committed batch)."""
    return run_ingest(store, request, batches, progress=progress)


def ingest_paths(store, paths: list[Path], *, batch_size: int, progress: Progress = no_progress) -> list:
    """Ingest files (Horizon / Hubble / LedgerLens exports) into `store`; one summary per file."""
    return ingest_files(store, paths, batch_size=batch_size, progress=progress)


def app_wording(message: str, names: dict[str, str] | None = None) -> str:
    """An engine message as the app says it: the user's file names instead of the server's paths, no CLI advice."""
    for path, name in sorted((names or {}).items(), key=lambda kv: -len(kv[0])):
        message = message.replace(path, name)
    for cli, app in CLI_WORDING.items():
        message = message.replace(cli, app)
    return message


UPLOAD_PREFIX = "upload-"  # uploads are copied to <home>/upload-XXXX/<the browser's file name>


def runs_for_display(runs: pl.DataFrame, *, home: Path) -> pl.DataFrame:
    """Store.runs rows as the app shows them: an uploaded file by its own name (not the server's copy path),
    errors in the app's words. Shapes: the columns of `runs`, `error` and `params` rewritten."""
    copies = re.escape(str(home / UPLOAD_PREFIX)) + r"[^/\\\"]+/"
    out = runs.with_columns(pl.col("error").str.replace_all(copies, ""), pl.col("params").str.replace_all(copies, ""))
    for cli, app in CLI_WORDING.items():
        out = out.with_columns(pl.col("error").str.replace_all(cli, app, literal=True))
    return out


def range_work(store, request, batches) -> Callable[..., str]:
    """`work(progress)` for IngestJob running one plan into `store` (writes are serialised by it)."""
    return lambda progress: app_wording(ingest_range(store, request, batches, progress=progress).describe())


def files_work(store, paths: list[Path], *, batch_size: int, names: dict[Path, str] | None = None
               ) -> Callable[..., JobOutcome]:  # fmt: skip
    """`work(progress)` ingesting files (Horizon / Hubble / canonical exports) into `store` one by one: a file
    that cannot be read (empty, unknown format) is reported by the name the user gave it (`names`; the
    uploaded copy's path otherwise) and the others are still ingested. Fails only when no file could be."""

    def work(progress: Progress) -> JobOutcome:
        done, problems = [], []
        for path in paths:
            name = (names or {}).get(path, path.name)
            try:
                summaries = ingest_paths(store, [path], batch_size=batch_size, progress=progress)
            except Cancelled:
                raise
            except UserFacingError as exc:
                problems.append(app_wording(str(exc), {str(path): name, str(path.parent): "(upload)"}))
                continue
            done += [f"{name}: {s.describe()}" for s in summaries]
        if not done:
            raise BadInput(" ".join(problems) + " Nothing was ingested: fix the file(s) and upload them again.")
        return JobOutcome("; ".join(done), tuple(f"Not ingested: {p}" for p in problems))

    return work


def demo_work(store, settings, *, seed: int, scale: float) -> Callable[..., str]:
    """`work(progress)` loading the demo market (engine.services.demo.load_demo) into the open store."""
    from engine.services.demo import load_demo  # here: it brings the models (3 s of imports) an ingest never needs

    return lambda progress: load_demo(store, settings, seed=seed, scale=scale, progress=progress).describe()
