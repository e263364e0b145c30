"""Background jobs of the app (ingest, analysis, watch) on the process's job board, with progress the pages poll.

- `IngestJob` runs `work(progress)` on a daemon thread. It belongs to the browser session that started it
  (`owner`), can be cancelled (at its next progress report, or its next retry), and can be retried (the same
  work again: a ledger range resumes after its last committed batch).
- While a job reads a remote source (`watch_url`), the source client's retry warnings become the job's
  `notice` ("retry 3 …: connection refused"), so an unreachable server shows as retrying, not as a silent
  "0 records". engine.ingest reports retries through logging only; a handler on its logger is how the job
  hears them, and how a cancel reaches a job that is waiting between retries.
- `JobBoard` allows one running job per store (writes to one DuckDB file are serialised).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from engine.progress import Rate
from storage.errors import UserFacingError

log = logging.getLogger(__name__)
SOURCE_LOGGER = "engine.ingest"  # the Horizon and data-lake clients log each retry here (WARNING)


class BusyError(UserFacingError):
    """A second job was asked for while one runs on the same store."""


class Cancelled(UserFacingError):
    """The person who started the job cancelled it."""


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job says: a summary, and problems that did not stop it (a skipped file...)."""

    message: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobStatus:
    """What a page shows about a job: state, counts, rate, ETA, retries and problems."""

    job_id: str
    label: str
    state: str  # running | done | failed | cancelled
    owner: str | None = None  # the browser session that started it
    done: int = 0
    total: int | None = None
    records: int = 0
    unit: str = "ledgers"
    rate: float = 0.0  # units per second
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""  # summary when done, the error when failed
    warnings: tuple[str, ...] = ()
    n_retries: int = 0  # retries of the remote source so far
    notice: str = ""  # the last retry, or "cancelling…"
    incident: str | None = None  # set when the failure was unexpected (see the log)

    @property
    def fraction(self) -> float:
        if not self.total:
            return 1.0 if self.state != "running" else 0.0
        return min(1.0, self.done / self.total)


class IngestJob:
    """Runs `work(progress) -> str | JobOutcome` on a daemon thread; `status()` is safe from any thread."""

    def __init__(self, label: str, work: Callable[..., str | JobOutcome], *, owner: str | None = None,
                 watch_url: str | None = None):  # fmt: skip
        self.job_id = secrets.token_hex(4)
        self.label, self.owner, self.watch_url = label, owner, watch_url
        self._work, self._lock, self._rate, self._cancel = work, threading.Lock(), Rate(), threading.Event()
        self._status = JobStatus(self.job_id, label, "running", owner=owner)
        self._thread = threading.Thread(target=self._run, name=f"job-{self.job_id}", daemon=True)

    def start(self) -> IngestJob:
        self._rate = Rate()
        self._thread.start()
        return self

    def again(self) -> IngestJob:
        """A new job doing the same work for the same session (not started)."""
        return IngestJob(self.label, self._work, owner=self.owner, watch_url=self.watch_url)

    def cancel(self) -> None:
        self._cancel.set()
        self._set(notice="cancelling… (at the next batch or retry)")

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _progress(self, *, done: int, total: int | None, records: int, unit: str = "ledgers") -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self.label}: cancelled; the batches committed before are kept")
        elapsed = time.monotonic() - self._rate.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if total and rate > 0 and done < total else None
        with self._lock:
            self._status = replace(self._status, done=done, total=total, records=records, unit=unit, rate=rate,
                                   eta_s=eta, elapsed_s=elapsed, notice="")  # fmt: skip

    def retried(self, message: str) -> None:
        """Called by the source logger's handler on each retry (see the module docstring)."""
        with self._lock:
            n = self._status.n_retries + 1
            self._status = replace(self._status, n_retries=n, notice=message)
        if self._cancel.is_set():
            raise Cancelled(f"{self.label}: cancelled while retrying; the batches committed before are kept")

    def _run(self) -> None:
        watcher = _RetryWatcher(self) if self.watch_url else None
        if watcher:
            logging.getLogger(SOURCE_LOGGER).addHandler(watcher)
        try:
            outcome = self._work(self._progress)
            outcome = outcome if isinstance(outcome, JobOutcome) else JobOutcome(str(outcome))
            self._set(state="done", message=outcome.message, warnings=outcome.warnings, notice="")
        except Cancelled as exc:
            self._set(state="cancelled", message=str(exc), notice="")
        except UserFacingError as exc:
            self._set(state="failed", message=str(exc), notice="")
        except Exception:  # noqa: BLE001 - a background thread must report, never die silently
            incident = secrets.token_hex(6)
            log.exception("job %s failed (incident %s)", self.job_id, incident)
            self._set(state="failed", message="unexpected error", incident=incident, notice="")
        finally:
            if watcher:
                logging.getLogger(SOURCE_LOGGER).removeHandler(watcher)

    def _set(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, elapsed_s=time.monotonic() - self._rate.started, **changes)

    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    def join(self, timeout: float | None = None) -> JobStatus:
        self._thread.join(timeout)
        return self.status()


class _RetryWatcher(logging.Handler):
    """Hands the source client's retry warnings about this job's URL to the job (which may raise Cancelled:
    deliberately not caught here, so the cancel stops the retry loop that logged)."""

    def __init__(self, job: IngestJob):
        super().__init__(level=logging.WARNING)
        self.job = job

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.job.watch_url and self.job.watch_url.rstrip("/") in message and "retry" in message:
            self.job.retried(message)

    def handle(self, record: logging.LogRecord) -> bool:  # no lock, no handleError: Cancelled must propagate
        if record.levelno >= self.level:
            self.emit(record)
        return True


@dataclass
class JobBoard:
    """The process's jobs per store path (threads are process-wide, so is this board)."""

    jobs: dict[str, list[IngestJob]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, store_key: str, job: IngestJob) -> IngestJob:
        with self.lock:
            busy = next((j for j in self.jobs.get(store_key, []) if j.alive()), None)
            if busy is not None:
                whose = "this session" if busy.owner is not None and busy.owner == job.owner else "another session"
                raise BusyError(f"{busy.label!r}, started by {whose}, is still running on this store; wait for it "
                                "to finish (or cancel it) and start again")  # fmt: skip
            self.jobs.setdefault(store_key, []).append(job.start())
        return job

    def of(self, store_key: str, *, owner: str | None = None) -> list[JobStatus]:
        """The store's jobs, newest first (only `owner`'s when given)."""
        with self.lock:
            jobs = reversed(self.jobs.get(store_key, []))
            return [j.status() for j in jobs if owner is None or j.owner == owner]

    def get(self, store_key: str, job_id: str) -> IngestJob | None:
        with self.lock:
            return next((j for j in self.jobs.get(store_key, []) if j.job_id == job_id), None)


JOBS = JobBoard()  # process-wide; each page shows the jobs of its own browser session
