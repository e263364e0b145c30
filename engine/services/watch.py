"""Live watch (the `watch` use case): follow new ledgers, score what they touch, alert.

Two stellar-sdk `.stream()` tails (trades, operations) feed a queue. Every tick the
watch takes what arrived and:

1. decodes it exactly as a Horizon range is decoded (`engine.ingest.horizon.live_batch`)
   and writes it through the batch writer with its storability check
   (`engine.ingest.runner.write_checked`): same validation, quarantine and upserts;
2. updates the evidence of what the new trades touched, incrementally
   (engine.services.watch_evidence): rings, features and scores by the batch
   analysis's functions over the touched pairs' recent window only, rings counting
   once confirmed over `confirm_s` of ledger time;
3. raises an alert for each (wallet, pair) at or above the threshold with at least
   `min_trades` trades, unless it was alerted less than `cooldown_s` ago (ledger
   time), says how its score is made as the Wallet page does, stores the alerts together with the
   cursor (one transaction), then delivers them and marks them delivered. A ring confirmed in
   the tick is first added to the rings tables the Rings and Wallet pages read (the alert's
   ring link opens it).

The cursor (`ingest_cursors`: horizon / watch / live) holds both streams' paging
tokens and the rings seen so far, and is committed only with step 3, so a killed
watch re-reads at most one tick: rows are upserted (no duplicates), alerts are unique
per (wallet, pair, ledger) and checked against the stored ones (no duplicates), and
alerts stored but not yet delivered are delivered on restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from engine.ingest.runner import Batch, write_checked
from engine.scoring import SCORE_COLUMNS, score_breakdown
from engine.services import models
from engine.services.alerting import Channel
from engine.services.watch_evidence import (
    CONFIRM_S,
    LINEAGE_CHILDREN,
    WINDOW_LEDGERS,
    EvidenceOptions,
    touched_evidence,
)
from engine.services.watch_sources import HorizonSource, LakeSource
from models.training import design_matrix
from storage.errors import BadInput
from storage.store import CursorPosition, Store

log = logging.getLogger(__name__)
STREAM, SCOPE = "watch", "live"


@dataclass(frozen=True)
class WatchOptions:
    horizon_url: str | None = None
    datalake: str | None = None  # a data-lake folder or http(s) prefix to poll instead of Horizon
    poll_s: float = 1.0  # data lake: wait between looks for the next object
    settle_s: float = 30.0  # data lake: how long an unreadable object is read again before it is quarantined
    from_ledger: int | None = None  # first run only; None = "now" (a stored cursor always wins)
    threshold: int = 70
    min_trades: int = 20
    cooldown_s: int = 3600
    tick_s: float = 0.25
    max_seconds: float | None = None  # stop after this long (tests, benchmarks); None = forever
    idle_exit_s: float | None = None  # stop after this long with nothing new; None = never
    seed: int = 42
    window_ledgers: int = WINDOW_LEDGERS  # the recent history a tick reads of the touched pairs
    confirm_s: int = CONFIRM_S  # ledger time a ring must hold before it counts as evidence


@dataclass
class WatchStats:
    n_trades: int = 0
    n_operations: int = 0
    n_quarantined: int = 0
    n_alerts: int = 0
    n_ticks: int = 0
    ledger: int = 0
    latest_ledger: int | None = None  # the source's newest ledger when it says (Horizon's root)
    trades_per_s: float = 0.0  # new trades per second since the tick before
    last_tick_at: float = 0.0  # time.monotonic() of the last tick
    # (seconds, ledgers) of the last ticks that scored: bounded, a watch runs for days
    tick_costs: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=100_000))

    def describe(self) -> str:
        return (f"watch stopped at ledger {self.ledger}: {self.n_ticks} ticks, {self.n_trades:,} new trades, "
                f"{self.n_operations:,} new operations, {self.n_quarantined:,} quarantined, {self.n_alerts} alerts")


# -- where to start ---------------------------------------------------------------------------------


def start_position(store: Store, source: HorizonSource | LakeSource, from_ledger: int | None) -> dict:
    """The stored cursor of this kind of source, else the source's first position for `from_ledger`."""
    stored = store.get_cursor(source.kind, STREAM, SCOPE)
    return json.loads(stored.position) if stored is not None else type(source).first_position(from_ledger)


# -- alerts ---------------------------------------------------------------------------------------


def new_alerts(scored: pl.DataFrame, last: pl.DataFrame, *, threshold: int, min_trades: int, cooldown_s: int,
               detected_at: datetime) -> pl.DataFrame:  # fmt: skip
    """Rows of `scored` that alert: at or over the threshold, with enough trades, not alerted within
    `cooldown_s` of ledger time (`last`: wallet, pair_id, closed_at). Shapes: -> wallet, pair_id, score,
    ring_id, ledger, closed_at, model_version, detected_at."""
    if scored.height == 0:
        return pl.DataFrame()
    hot = scored.filter((pl.col("score") >= threshold) & (pl.col("n_trades") >= min_trades))
    hot = hot.join(last.rename({"closed_at": "last_at"}), on=["wallet", "pair_id"], how="left").filter(
        pl.col("last_at").is_null() | ((pl.col("closed_at") - pl.col("last_at")).dt.total_seconds() >= cooldown_s))
    return hot.select("wallet", "pair_id", "score", "ring_id", "ledger", "closed_at", "model_version").with_columns(
        detected_at=pl.lit(detected_at))


def alert_reasons(loaded, matrix: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """`alerts` with `reasons` (JSON list): how each score is made, as the Wallet page's "How the risk score
    is made" table shows it (engine.scoring.score_breakdown, one road): the parts worth a point or more,
    strongest first. The model's probability of all rows comes from one call (the page's SHAP view costs
    ~0.1 s an alert, too much for a burst of alerts within one ledger; the wallet link shows it)."""
    rows = alerts.select("wallet", "pair_id").join(matrix, on=["wallet", "pair_id"], how="left", maintain_order="left")
    model_score = loaded.model.combined(design_matrix(rows, loaded.feature_columns))[0]
    reasons = []
    for i, score in enumerate(model_score):
        parts = score_breakdown(float(score) / 100.0, rows.slice(i, 1)).filter(~pl.col("part").is_in(["total", "score"]))
        strongest = parts.filter(pl.col("points") >= 1).sort("points", descending=True, maintain_order=True)
        reasons.append(json.dumps([f"{part}: {points:.0f} points ({reading})" for part, points, reading in strongest.iter_rows()]))
    return alerts.with_columns(reasons=pl.Series(reasons, dtype=pl.String))


# -- the loop -------------------------------------------------------------------------------------


def deliver(store: Store, alerts: list[dict], channels: list[Channel]) -> None:
    for alert in alerts:
        for channel in channels:
            channel.send(alert)
    store.mark_alerts_delivered([a["id"] for a in alerts])


def _public(row: dict) -> dict:
    """An alerts-table row as the JSON alert (pair, times in ISO 8601, reasons as a list)."""
    out = {k: row[k] for k in ("id", "wallet", "score", "ring_id", "ledger", "model_version")}
    out["pair"] = row["pair_id"]
    out["closed_at"] = row["closed_at"].isoformat()
    out["detected_at"] = row["detected_at"].isoformat()
    out["reasons"] = json.loads(row["reasons"])
    return out


def pending_alerts(store: Store) -> list[dict]:
    """Stored alerts no channel has taken yet, oldest first."""
    return [_public(r) for r in reversed(store.alerts(limit=100_000, undelivered=True).to_dicts())]


def open_source(options: WatchOptions, store: Store) -> HorizonSource | LakeSource:
    """The source `options` names, positioned at its stored cursor (or `from_ledger` on a first run)."""
    if options.datalake:
        source = LakeSource(options.datalake, {}, poll_s=options.poll_s, settle_s=options.settle_s)
    elif options.horizon_url:
        source = HorizonSource(options.horizon_url, {})
    else:
        raise BadInput("watch needs a source: --horizon-url URL or --datalake SOURCE")
    source.position = start_position(store, source, options.from_ledger)
    return source


def watch(store: Store, settings, options: WatchOptions, channels: list[Channel], *, stop: threading.Event | None = None,
          stats: WatchStats | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> WatchStats:  # fmt: skip
    """Follow the source of `options` into `store` until `stop` is set, `max_seconds` pass or it is idle for
    `idle_exit_s` (see the module doc); `stats` (returned) is updated after each tick for a caller watching
    from another thread. BadInput without a model or a source."""
    version = models.model_version(settings)
    if version is None:
        raise BadInput("watch scores with the promoted model and there is none: train one first (python -m engine train)")
    loaded = models.load_model(settings, version=version)
    deliver(store, pending_alerts(store), channels)  # stored by a watch that was killed before sending them
    store.sync_funding_links(max_children=LINEAGE_CHILDREN)  # a new store's whole copy is made before following
    source, stop, stats = open_source(options, store), stop or threading.Event(), stats or WatchStats()
    where = options.datalake or options.horizon_url
    run_id = store.start_run(source.kind, {"source": where, "watch": True, "resume_from": source.position})
    source.start(stop)
    started = last_new = time.monotonic()
    status, error = "interrupted", None
    try:
        while not (stop.is_set() or _should_stop(options, started, last_new)):
            batch = source.take(options.tick_s)
            if batch is not None:
                _tick(store, loaded, settings, options, channels, batch, source, run_id, stats, now)
                last_new = time.monotonic()  # idle counts from the end of the work, not its start
        status = "done"
    except BaseException as exc:
        status, error = ("interrupted", "stopped") if isinstance(exc, KeyboardInterrupt) else ("failed", str(exc))
        raise
    finally:
        stop.set()
        store.finish_run(run_id, status=status, n_ledgers=stats.n_ticks, error=error)
    return stats


def _should_stop(options: WatchOptions, started: float, last_new: float) -> bool:
    t = time.monotonic()
    return (options.max_seconds is not None and t - started >= options.max_seconds) or (
        options.idle_exit_s is not None and t - last_new >= options.idle_exit_s)


def _tick(store, loaded, settings, options, channels, batch: Batch, source, run_id, stats, now) -> None:
    started = time.perf_counter()
    where = options.datalake or options.horizon_url
    result = write_checked(store, batch, run_id=run_id, where=where)
    stats.n_trades += result.n_trades
    stats.n_operations += result.n_operations
    stats.n_quarantined += result.n_quarantined
    stats.n_ticks += 1
    position, alerts = source.position, pl.DataFrame()
    if batch.trades is not None and batch.trades.height:
        evidence = touched_evidence(store, loaded, batch.trades, position.get("rings", {}), threshold=options.threshold,
                                    options=EvidenceOptions(window_ledgers=options.window_ledgers,
                                                            confirm_s=options.confirm_s, seed=options.seed))  # fmt: skip
        if evidence is not None:
            position["rings"] = evidence.rings_seen
            store.record_live_rings(evidence.rings, evidence.ring_members)  # before the alerts that link to them
            alerts = new_alerts(evidence.scores, store.last_alerts(), threshold=options.threshold,
                                min_trades=options.min_trades, cooldown_s=options.cooldown_s, detected_at=now())  # fmt: skip
            if alerts.height:
                alerts = alert_reasons(loaded, evidence.matrix, alerts)
        stats.ledger = int(batch.trades["ledger"].max())
        stats.tick_costs.append((time.perf_counter() - started, batch.trades["ledger"].n_unique()))
    stats.latest_ledger = source.latest_ledger() if stats.n_ticks % 20 == 1 else stats.latest_ledger
    at = time.monotonic()
    stats.trades_per_s = result.n_trades / max(at - stats.last_tick_at, 1e-3) if stats.last_tick_at else 0.0
    stats.last_tick_at = at
    cursor = CursorPosition(source.kind, STREAM, SCOPE, json.dumps(position), False)
    stats.n_alerts += store.record_alerts(alerts if alerts.height else None, cursor=cursor)
    if alerts.height:
        store.record_live_scores(evidence.scores.join(alerts, on=["wallet", "pair_id"], how="semi").select(SCORE_COLUMNS))
        deliver(store, pending_alerts(store), channels)
