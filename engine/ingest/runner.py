"""Drive one ingest request from a source into the store, resumably.

A source is a function `batches(resume_from) -> Iterator[Batch]`: given the cursor
position stored by an earlier, interrupted run (or None), it yields batches of
canonical frames, each with the position that follows it. Each batch and its
position commit in one transaction, so a run killed at any point resumes exactly
where the store says it stopped, and a finished request is not fetched again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import polars as pl

from engine.ingest.validate import unstorable_reason
from engine.progress import Progress, no_progress
from storage.errors import UserFacingError
from storage.store import CursorPosition, Store


@dataclass(frozen=True)
class Batch:
    """Canonical rows from one slice of a source (frames may be None or empty)."""

    trades: pl.DataFrame | None = None  # engine.schemas.TRADES_SCHEMA
    operations: pl.DataFrame | None = None  # engine.schemas.OPERATIONS_SCHEMA
    quarantine: pl.DataFrame | None = None  # engine.schemas.QUARANTINE_SCHEMA
    position: str = ""  # where the next batch starts
    done: bool = False  # True on the request's last batch
    n_units: int = 0  # ledgers / lines / pages this batch covered (progress)
    n_records: int = 0  # records read (good and bad)


@dataclass(frozen=True)
class IngestRequest:
    source: str  # horizon | datalake | files | synthetic
    stream: str  # what is walked: trades, operations, ledgers, file
    scope: str  # stable text naming the request, e.g. "ledgers 100-200 pair=..."
    params: dict  # recorded with the run
    total_units: int | None = None
    unit: str = "ledgers"


@dataclass(frozen=True)
class IngestSummary:
    run_id: int | None
    n_trades: int
    n_operations: int
    n_quarantined: int
    n_records: int
    n_units: int
    seconds: float
    already_done: bool = False
    resumed_from: str | None = None

    def describe(self) -> str:
        if self.already_done:
            return "already ingested: nothing to do (the stored cursor says this request is complete)"
        resumed = f" (resumed from {self.resumed_from})" if self.resumed_from else ""
        return (
            f"run {self.run_id}{resumed}: {self.n_records:,} records read, {self.n_trades:,} new trades, "
            f"{self.n_operations:,} new operations, {self.n_quarantined:,} quarantined, "
            f"{self.n_units:,} units in {self.seconds:.1f}s"
        )


def run_ingest(
    store: Store,
    request: IngestRequest,
    batches: Callable[[str | None], Iterator[Batch]],
    *,
    progress: Progress = no_progress,
) -> IngestSummary:
    """Run `request` to completion (or resume it); returns what was written."""
    started = time.monotonic()
    stored = store.get_cursor(request.source, request.stream, request.scope)
    if stored is not None and stored.done:
        return IngestSummary(None, 0, 0, 0, 0, 0, 0.0, already_done=True)
    resume_from = stored.position if stored is not None else None
    run_id = store.start_run(request.source, {**request.params, "resume_from": resume_from})
    totals = {"t": 0, "o": 0, "q": 0, "r": 0, "u": 0}
    try:
        for batch in prefetch(_storable_batches(batches(resume_from), _where(request))):
            result = store.write_batch(
                run_id=run_id,
                trades=batch.trades,
                operations=batch.operations,
                quarantine=batch.quarantine,
                cursor=CursorPosition(request.source, request.stream, request.scope, batch.position, batch.done),
            )
            totals["t"] += result.n_trades
            totals["o"] += result.n_operations
            totals["q"] += result.n_quarantined
            totals["r"] += batch.n_records
            totals["u"] += batch.n_units
            progress(done=totals["u"], total=request.total_units, records=totals["r"], unit=request.unit)
    except KeyboardInterrupt:
        _finish(store, run_id, "interrupted", totals["u"], "interrupted by the user; run again to resume")
        raise
    except UserFacingError as exc:
        _finish(store, run_id, "failed", totals["u"], str(exc))
        raise
    except Exception as exc:
        _finish(store, run_id, "failed", totals["u"], f"{type(exc).__name__}: {exc}")
        raise
    _finish(store, run_id, "done", totals["u"], None)
    return IngestSummary(
        run_id,
        totals["t"],
        totals["o"],
        totals["q"],
        totals["r"],
        totals["u"],
        time.monotonic() - started,
        resumed_from=resume_from,
    )


def write_checked(store: Store, batch: Batch, *, run_id: int | None, where: str,
                  cursor: CursorPosition | None = None):  # fmt: skip
    """Write one batch through the same storability check and writer as `run_ingest` (the live
    watch writes its batches this way); returns the store's BatchResult."""
    batch = _storable(batch, where)
    return store.write_batch(run_id=run_id, trades=batch.trades, operations=batch.operations,
                             quarantine=batch.quarantine, cursor=cursor)  # fmt: skip


def _where(request: IngestRequest) -> str:
    """What a run reads, for quarantine locations: its file, URL or folder."""
    p = request.params
    return str(p.get("path") or p.get("horizon_url") or p.get("source") or request.scope)


def _storable_batches(batches: Iterator[Batch], where: str) -> Iterator[Batch]:
    """Each batch with any row the store could not hold (see `unstorable_reason`)
    moved to its quarantine; runs on the prefetch thread, beside the writes."""
    for batch in batches:
        yield _storable(batch, where)


def _storable(batch: Batch, where: str) -> Batch:
    frames, bad = {}, []
    for table in ("trades", "operations"):
        frame = getattr(batch, table)
        reason = None if frame is None or frame.height == 0 else unstorable_reason(frame, table)
        if reason is None:
            continue
        marked = frame.with_columns(_reason=reason)
        frames[table] = marked.filter(pl.col("_reason").is_null()).drop("_reason")
        rejected = marked.filter(pl.col("_reason").is_not_null())
        bad.append(
            rejected.select(
                source=pl.col("source").fill_null("unknown"),
                location=pl.format(f"{where}: {table[:-1]} {{}}", pl.col("id").cast(pl.String).fill_null("?")),
                record_id=pl.col("id").cast(pl.String),
                reason=pl.format("{}: not stored (the decoder let it through: please report it)", "_reason"),
                raw=pl.struct(pl.all().exclude("_reason")).struct.json_encode(),
            )
        )
    if not bad:
        return batch
    quarantine = pl.concat([q for q in (batch.quarantine, *bad) if q is not None and q.height], how="vertical_relaxed")
    return replace(batch, **frames, quarantine=quarantine)


_DONE = object()


def prefetch(items: Iterator, *, depth: int = 1) -> Iterator:
    """Iterate `items` on a background thread, `depth` ahead of the consumer.

    The source reads and decodes the next batch (polars, DuckDB, HTTP and XDR
    decoding release the GIL) while the store writes the current one, so on two
    cores the run takes about the longer of the two, not their sum. Items and
    exceptions arrive in order; the thread stops when the consumer goes away.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            out.put((_DONE, exc))
        finally:
            close = getattr(items, "close", None)  # a generator's own clean-up runs on this thread
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="ingest-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = out.get()
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def _finish(store: Store, run_id: int, status: str, n_units: int, error: str | None) -> None:
    try:
        store.finish_run(run_id, status=status, n_ledgers=n_units, error=error)
    except UserFacingError:  # e.g. the disk is still full: the run stays "running"
        pass
