"""The live watch as a background job of the app (the Live page starts, follows and stops it).

The watch runs on a thread of the app's process, on the app's own open store (the
process holds the store's single-writer lock), as a job of the process's job board
(engine.services.ingest.JOBS): an ingest or an analysis is refused while it runs, and
it is refused while one of them runs. Alerts go to the store's `alerts` table (the Live
page reads them there). One watch per store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import polars as pl

from engine.services.ingest import JOBS, BusyError, IngestJob
from engine.services.watch import WatchOptions, WatchStats, watch
from storage.store import Store


@dataclass(frozen=True)
class WatchState:
    """What the Live page shows of a store's watch."""

    running: bool
    source: str | None = None
    cursor_ledger: int | None = None  # the last ledger written
    ledgers_behind: int | None = None  # the source's newest ledger - cursor (None: the source does not say)
    trades_per_s: float = 0.0
    n_trades: int = 0
    n_alerts: int = 0
    message: str = ""  # how the last watch ended (or "" while it runs)


@dataclass
class WatchJob:
    options: WatchOptions
    stats: WatchStats = field(default_factory=WatchStats)
    stop_event: threading.Event = field(default_factory=threading.Event)
    job: IngestJob | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def state(self) -> WatchState:
        status = self.job.status() if self.job is not None else None
        running = status is not None and status.state == "running"
        s = self.stats
        behind = None if s.latest_ledger is None or not s.ledger else max(0, s.latest_ledger - s.ledger)
        return WatchState(running, self.options.datalake or self.options.horizon_url, s.ledger or None, behind,
                          s.trades_per_s if running else 0.0, s.n_trades, s.n_alerts,
                          "" if running or status is None else f"{status.state}: {status.message}")  # fmt: skip


_WATCHES: dict[str, WatchJob] = {}
_LOCK = threading.Lock()


def start_watch(store: Store, settings, options: WatchOptions, *, store_key: str) -> WatchJob:
    """Start a watch on `store` (the app's open store). BusyError when a watch, ingest or analysis runs on it."""
    with _LOCK:
        current = _WATCHES.get(store_key)
        if current is not None and current.state().running:
            raise BusyError("a watch is already running on this store; stop it first")
        job = WatchJob(options)

        def work(progress) -> str:
            return watch(store, settings, options, [], stop=job.stop_event, stats=job.stats).describe()

        job.job = JOBS.submit(store_key, IngestJob("watch", work))
        _WATCHES[store_key] = job
        return job


def stop_watch(store_key: str, *, wait_s: float = 10.0) -> WatchState | None:
    """Stop the store's watch (it finishes its tick and commits its cursor); its state after, None if none."""
    job = _WATCHES.get(store_key)
    if job is None:
        return None
    job.stop()
    if job.job is not None:
        job.job.join(wait_s)
    return job.state()


def watch_state(store_key: str) -> WatchState:
    job = _WATCHES.get(store_key)
    return job.state() if job is not None else WatchState(False)


def recent_alerts(store: Store, *, limit: int = 50) -> pl.DataFrame:
    """The newest stored alerts (Store.alerts), read fresh: the feed must not wait for a cache."""
    return store.alerts(limit=limit)
