"""Ingest (the `ingest horizon|datalake|files`, `demo` and Ingest-page use cases): plan, run, follow.

- `plan_ingest`: the one planner of a Horizon or data-lake ledger range (the CLI, a new
  run from the page and a resumed run all call it);
- `ingest_range` / `ingest_paths`: run a plan or files into a store (the CLI's road);
- `IngestJob` / `JOBS`: the same work in a background thread, with progress (records,
  units/s, ETA) the Ingest page polls; `range_work`, `files_work`, `demo_work` build it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.ingest import datalake, horizon
from engine.ingest.files import ingest_files
from engine.ingest.runner import IngestSummary, run_ingest
from engine.progress import Progress, Rate, no_progress
from engine.services.demo import load_demo
from storage.errors import BadInput, UserFacingError

log = logging.getLogger(__name__)
RANGE_SOURCES = ("horizon", "datalake")


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
    if source == "horizon":
        return horizon.plan(horizon_url=horizon_url or settings.horizon_url, pair=pair or None, **common)
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


@dataclass(frozen=True)
class JobStatus:
    """What a page shows about a job: state, counts, rate and ETA."""

    job_id: str
    label: str
    state: str  # running | done | failed
    done: int = 0
    total: int | None = None
    records: int = 0
    unit: str = "ledgers"
    rate: float = 0.0  # units per second
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""  # summary when done, the error when failed
    incident: str | None = None  # set when the failure was unexpected (see the log)

    @property
    def fraction(self) -> float:
        if not self.total:
            return 1.0 if self.state != "running" else 0.0
        return min(1.0, self.done / self.total)


class IngestJob:
    """Runs `work(progress)` on a daemon thread; `status()` is safe to call from any thread."""

    def __init__(self, label: str, work: Callable[..., str]):
        self.job_id = secrets.token_hex(4)
        self._work, self._lock, self._rate = work, threading.Lock(), Rate()
        self._status = JobStatus(self.job_id, label, "running")
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.job_id}", daemon=True)

    def start(self) -> IngestJob:
        self._rate = Rate()
        self._thread.start()
        return self

    def _progress(self, *, done: int, total: int | None, records: int, unit: str = "ledgers") -> None:
        elapsed = time.monotonic() - self._rate.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if total and rate > 0 and done < total else None
        with self._lock:
            self._status = replace(self._status, done=done, total=total, records=records, unit=unit, rate=rate,
                                   eta_s=eta, elapsed_s=elapsed)

    def _run(self) -> None:
        try:
            message = self._work(self._progress)
            self._set(state="done", message=message)
        except UserFacingError as exc:
            self._set(state="failed", message=str(exc))
        except Exception:  # noqa: BLE001 - a background thread must report, never die silently
            incident = secrets.token_hex(6)
            log.exception("ingest job %s failed (incident %s)", self.job_id, incident)
            self._set(state="failed", message="unexpected error", incident=incident)

    def _set(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, elapsed_s=time.monotonic() - self._rate.started, **changes)

    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    def join(self, timeout: float | None = None) -> JobStatus:
        self._thread.join(timeout)
        return self.status()


@dataclass
class JobBoard:
    """The process's ingest jobs per store path (threads are process-wide, so is this board)."""

    jobs: dict[str, list[IngestJob]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, store_key: str, job: IngestJob) -> IngestJob:
        with self.lock:
            if any(j.status().state == "running" for j in self.jobs.get(store_key, [])):
                raise BusyError("an ingest or an analysis is already running on this store; wait for it to finish")
            self.jobs.setdefault(store_key, []).append(job.start())
        return job

    def of(self, store_key: str) -> list[JobStatus]:
        with self.lock:
            return [j.status() for j in reversed(self.jobs.get(store_key, []))]

    def get(self, store_key: str, job_id: str) -> IngestJob | None:
        with self.lock:
            return next((j for j in self.jobs.get(store_key, []) if j.job_id == job_id), None)


class BusyError(UserFacingError):
    """A second ingest was asked for while one runs on the same store."""


JOBS = JobBoard()  # process-wide: a job started by one session shows on every session's Ingest page


def range_work(store, request, batches) -> Callable[..., str]:
    """`work(progress)` for IngestJob running one plan into `store` (writes are serialised by it)."""
    return lambda progress: ingest_range(store, request, batches, progress=progress).describe()


def files_work(store, paths: list[Path], *, batch_size: int) -> Callable[..., str]:
    """`work(progress)` ingesting files (Horizon / Hubble / canonical exports) into `store`."""
    return lambda progress: "; ".join(
        s.describe() for s in ingest_paths(store, paths, batch_size=batch_size, progress=progress))


def demo_work(store, settings, *, seed: int, scale: float) -> Callable[..., str]:
    """`work(progress)` loading the demo market (engine.services.demo.load_demo) into the open store."""
    return lambda progress: load_demo(store, settings, seed=seed, scale=scale, progress=progress).describe()
