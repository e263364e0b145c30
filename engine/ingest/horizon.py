"""The Horizon source: trades and funding/offer operations of a ledger range.

`plan(...)` returns an `IngestRequest` and a `batches(resume_from)` function for
`engine.ingest.runner.run_ingest`. It walks Horizon with stellar-sdk's `Server`
call builders: `/trades` (optionally one pair) and then `/operations`, each from
the cursor TOID(start_ledger) = start_ledger << 32 with `limit(200)` ascending,
following `_links.next` until a record lies past `end_ledger`. Records become
canonical frames through `engine.ingest.horizon_records` (bad ones go to
quarantine with the page URL and index).

Position (the stored cursor) is `trades:<paging token>` while trades are walked,
then `operations:<paging token>`: a rerun resumes within the stream it stopped in,
and a finished request is not fetched again. Rows are upserted on their ids, so a
second run over the same range changes nothing.

Faults: 429, 5xx, timeouts and connection errors are retried with exponential
backoff and full jitter, waiting at least Retry-After; after `max_retries` the
batches read so far are written and `SourceUnavailable` says where it stopped.

`plan_tail(...)` follows new trades with `.stream()` (server-sent events);
`live_batch(...)` decodes what the live watch's trade and operation streams brought.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl
from stellar_sdk import Asset, Server
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import BadRequestError, BaseHorizonError, BaseRequestError, ConnectionError, NotFoundError

from engine.assets import split_pair
from engine.ingest.horizon_records import decode_operations, decode_trades
from engine.ingest.runner import Batch, IngestRequest
from engine.schemas import FUNDING_TYPES, OFFER_TYPES
from storage.errors import BadInput, SourceUnavailable

log = logging.getLogger(__name__)

SOURCE = "horizon"
STREAMS = ("trades", "operations")
WANTED_OPERATION_TYPES = frozenset(FUNDING_TYPES + OFFER_TYPES)
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def toid_of(ledger: int) -> int:
    """TOID of a ledger's start (transaction 0, operation 0): `ledger << 32`."""
    return int(ledger) << 32


def ledger_of_token(token: str) -> int:
    """Ledger of a trade (`op-index`) or operation (`op`) paging token."""
    return int(str(token).split("-", 1)[0]) >> 32


@dataclass(frozen=True)
class Backoff:
    """Retry policy: delay = uniform(0, min(cap, base * 2**attempt)), at least Retry-After."""

    max_retries: int = 8
    base_s: float = 0.5
    cap_s: float = 60.0
    seed: int | None = None  # None: jitter differs per process (spreads concurrent clients)


@dataclass(frozen=True)
class _Walk:
    """One stream's walk over the range: what to call and where it starts."""

    stream: str
    cursor: str
    start_ledger: int
    end_ledger: int
    page_limit: int
    batch_pages: int


def plan(
    *,
    start_ledger: int,
    end_ledger: int,
    horizon_url: str,
    pair: str | None = None,
    http_timeout_s: float = 30.0,
    max_retries: int = 8,
    page_limit: int = 200,
    batch_pages: int = 10,
    backoff_base_s: float = 0.5,
    backoff_cap_s: float = 60.0,
    seed: int | None = None,
) -> tuple[IngestRequest, Callable[[str | None], Iterator[Batch]]]:
    """The request and batch source for trades + operations of ledgers A..B.

    `pair` (`BASE/COUNTER` asset ids) restricts trades to that pair; operations are
    never pair-filtered (Horizon cannot; funding lineage needs them all). Progress
    units are ledgers walked, counted once per stream (total = 2 x ledgers).
    """
    if start_ledger < 1 or end_ledger < start_ledger:
        raise BadInput(f"ledger range {start_ledger}..{end_ledger} is empty: give 1 <= --start-ledger <= --end-ledger")
    if not 1 <= page_limit <= 200:
        raise BadInput(f"page limit {page_limit} must be between 1 and 200 (Horizon's maximum)")
    assets = _pair_assets(pair) if pair else None
    backoff = Backoff(max_retries=max_retries, base_s=backoff_base_s, cap_s=backoff_cap_s, seed=seed)
    n_ledgers = end_ledger - start_ledger + 1
    request = IngestRequest(
        source=SOURCE,
        stream="trades+operations",
        scope=f"ledgers {start_ledger}-{end_ledger}" + (f" pair={pair}" if pair else ""),
        params={"horizon_url": horizon_url, "start_ledger": start_ledger, "end_ledger": end_ledger, "pair": pair},
        total_units=2 * n_ledgers,
        unit="ledgers",
    )

    def batches(resume_from: str | None) -> Iterator[Batch]:
        fetch = _Fetcher(horizon_url, timeout_s=http_timeout_s, backoff=backoff)
        _check_history(fetch, start_ledger, end_ledger)
        first, cursor = parse_position(resume_from, start_ledger=start_ledger)
        for stream in STREAMS[STREAMS.index(first) :]:
            start = cursor if stream == first else str(toid_of(start_ledger))
            walk = _Walk(stream, start, start_ledger, end_ledger, page_limit, batch_pages)
            yield from _walk_batches(fetch, walk, assets, last=stream == STREAMS[-1])

    return request, batches


def parse_position(position: str | None, *, start_ledger: int) -> tuple[str, str]:
    """(stream, cursor) of a stored position; None = trades from TOID(start_ledger)."""
    if not position:
        return STREAMS[0], str(toid_of(start_ledger))
    stream, _, cursor = position.partition(":")
    if stream not in STREAMS or not cursor:
        raise BadInput(f"stored Horizon cursor {position!r} is not 'trades:<token>' or 'operations:<token>'")
    return stream, cursor


def _pair_assets(pair: str) -> tuple[Asset, Asset]:
    try:
        return tuple(_asset(a) for a in split_pair(pair))  # type: ignore[return-value]
    except ValueError as exc:
        raise BadInput(f"--pair {pair!r}: {exc}") from exc


def _asset(asset_id: str) -> Asset:
    """`XLM:native` / `CODE:ISSUER` -> stellar_sdk Asset (raises ValueError on a bad id)."""
    if asset_id == "XLM:native":
        return Asset.native()
    code, sep, issuer = asset_id.partition(":")
    if not sep:
        raise ValueError(f"asset id {asset_id!r} is not CODE:ISSUER or XLM:native")
    return Asset(code, issuer)


# -- HTTP with backoff ----------------------------------------------------------------------


class _Fetcher:
    """stellar-sdk `Server` plus our retry policy (the sdk's own retries are off)."""

    def __init__(self, horizon_url: str, *, timeout_s: float, backoff: Backoff):
        self.url = horizon_url
        self.server = Server(horizon_url, client=RequestsClient(num_retries=0, request_timeout=timeout_s))
        self.backoff = backoff
        self._rng = random.Random(backoff.seed)

    def call(self, fn: Callable[[], dict], *, what: str, reached: int | None) -> dict:
        """`fn()` (a call builder's call/next), retried on 429/5xx/timeouts."""
        for attempt in range(self.backoff.max_retries + 1):
            try:
                return fn()
            except NotFoundError as exc:
                raise SourceUnavailable(f"Horizon {self.url} has no {what} (404: {_detail(exc)})") from exc
            except (BaseHorizonError, ConnectionError) as exc:
                status = getattr(exc, "status", None)
                if isinstance(exc, BadRequestError) and status not in _RETRY_STATUSES:
                    raise BadInput(f"Horizon {self.url} rejected {what}: {status} {_detail(exc)}") from exc
                if attempt == self.backoff.max_retries:
                    raise self._gave_up(exc, what=what, reached=reached) from exc
                delay = self._delay(attempt, exc)
                log.warning("Horizon %s: %s on %s; retry %d in %.2fs", self.url, _short(exc), what, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, exc: BaseRequestError) -> float:
        jittered = self._rng.uniform(0, min(self.backoff.cap_s, self.backoff.base_s * 2**attempt))
        return max(jittered, _retry_after(exc))

    def _gave_up(self, exc: BaseRequestError, *, what: str, reached: int | None) -> SourceUnavailable:
        where = (
            f"everything before that cursor (ledger {reached}) is stored"
            if reached is not None
            else "nothing of it is stored yet"
        )
        return SourceUnavailable(
            f"Horizon {self.url} kept failing on {what} ({_short(exc)}) after {self.backoff.max_retries} retries; "
            f"{where}. Run the same command again: it resumes from there."
        )


def _retry_after(exc: BaseRequestError) -> float:
    """Seconds of the response's Retry-After header (0 when absent or a date)."""
    response = exc.args[0] if exc.args else None
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return 0.0
    return 0.0


def _detail(exc: BaseHorizonError) -> str:
    return exc.detail or exc.title or (exc.message or "")[:200]


def _short(exc: BaseRequestError) -> str:
    if isinstance(exc, BaseHorizonError):
        return f"HTTP {exc.status} {exc.title or ''}".strip()
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _check_history(fetch: _Fetcher, start_ledger: int, end_ledger: int) -> None:
    """Refuse a range Horizon does not hold entirely (it would end early, silently short)."""
    root = fetch.call(fetch.server.root().call, what="the root document", reached=None)
    latest, elder = root.get("history_latest_ledger"), root.get("history_elder_ledger")
    if isinstance(latest, int) and latest < end_ledger:
        raise BadInput(
            f"Horizon {fetch.url} holds ledgers up to {latest}; --end-ledger {end_ledger} is not closed there yet. "
            f"Choose an end ledger <= {latest}, or wait until Horizon has ingested ledger {end_ledger}."
        )
    if isinstance(elder, int) and start_ledger < elder:
        raise BadInput(
            f"Horizon {fetch.url} keeps history from ledger {elder} only; --start-ledger {start_ledger} is older. "
            "Use a full-history Horizon, or `ingest datalake` for old ledgers."
        )


# -- walking a stream ------------------------------------------------------------------------


def _builder(fetch: _Fetcher, walk: _Walk, assets: tuple[Asset, Asset] | None):
    if walk.stream == "trades":
        builder = fetch.server.trades()
        if assets is not None:
            builder = builder.for_asset_pair(*assets)
    else:
        builder = fetch.server.operations().include_failed(False)
    return builder.cursor(walk.cursor).limit(walk.page_limit).order(desc=False)


def _pages(fetch: _Fetcher, walk: _Walk, assets) -> Iterator[tuple[list[dict], str, bool]]:
    """(records within the range, page URL, stream finished) for each page.

    Ascending order: the first record past `end_ledger` ends the walk, and so does
    a page shorter than the limit (the range is closed, so nothing more will come).
    """
    builder = _builder(fetch, walk, assets)
    what = f"{walk.stream} after cursor {walk.cursor}"
    reached = ledger_of_token(walk.cursor) if walk.cursor != str(toid_of(walk.start_ledger)) else None
    page = fetch.call(builder.call, what=what, reached=reached)
    while True:
        records = page.get("_embedded", {}).get("records", [])
        href = page.get("_links", {}).get("self", {}).get("href", fetch.url)
        kept = [r for r in records if _ledger_or_zero(r) <= walk.end_ledger]
        finished = len(kept) < len(records) or len(records) < walk.page_limit
        yield kept, href, finished
        if finished:
            return
        what = f"{walk.stream} after cursor {kept[-1]['paging_token']}"
        page = fetch.call(builder.next, what=what, reached=ledger_of_token(kept[-1]["paging_token"]))


def _ledger_or_zero(record: dict) -> int:
    """Ledger of a record; 0 for a malformed token (kept, so the decoder quarantines it)."""
    try:
        return ledger_of_token(record["paging_token"])
    except (KeyError, ValueError, TypeError):
        return 0


def _walk_batches(fetch: _Fetcher, walk: _Walk, assets, *, last: bool) -> Iterator[Batch]:
    """Batches of `batch_pages` pages; the stream's final batch hands over to the next stream."""
    pending: list[tuple[list[dict], str]] = []
    cursor = walk.cursor
    reached = ledger_of_token(cursor) if cursor != str(toid_of(walk.start_ledger)) else walk.start_ledger - 1
    after = f"{STREAMS[STREAMS.index(walk.stream) + 1]}:{toid_of(walk.start_ledger)}" if not last else None
    try:
        for kept, href, finished in _pages(fetch, walk, assets):
            pending.append((kept, href))
            if kept:
                cursor = kept[-1]["paging_token"]
            if finished or len(pending) >= walk.batch_pages:
                now = walk.end_ledger if finished else ledger_of_token(cursor)
                position = (after or f"{walk.stream}:{cursor}") if finished else f"{walk.stream}:{cursor}"
                yield _batch(walk.stream, pending, position, done=finished and last, n_units=now - reached)
                pending, reached = [], now
    except SourceUnavailable:
        if pending:  # keep what was read before the source gave up
            now = ledger_of_token(cursor) if cursor != walk.cursor else reached
            yield _batch(walk.stream, pending, f"{walk.stream}:{cursor}", done=False, n_units=now - reached)
        raise


def _batch(stream: str, pages: list[tuple[list[dict], str]], position: str, *, done: bool, n_units: int) -> Batch:
    """Decode the records of some pages into one Batch (quarantine names page URL and index)."""
    raw: list[str] = []
    locations: list[str] = []
    for records, href in pages:
        if stream == "operations":
            records = [r for r in records if r.get("type") in WANTED_OPERATION_TYPES]
        raw += [json.dumps(r, separators=(",", ":")) for r in records]
        locations += [f"{href} record {i}" for i in range(len(records))]
    n_read = sum(len(records) for records, _ in pages)
    if not raw:
        return Batch(position=position, done=done, n_units=n_units, n_records=n_read)
    if stream == "trades":
        trades, quarantine = decode_trades(raw, source=SOURCE, locations=locations)
        return Batch(
            trades=trades, quarantine=quarantine, position=position, done=done, n_units=n_units, n_records=n_read
        )
    operations, quarantine = decode_operations(raw, source=SOURCE, locations=locations)
    return Batch(
        operations=operations, quarantine=quarantine, position=position, done=done, n_units=n_units, n_records=n_read
    )


# -- live tail --------------------------------------------------------------------------------


def plan_tail(
    *,
    horizon_url: str,
    pair: str | None = None,
    start_cursor: str = "now",
    max_records: int | None = None,
    batch_records: int = 100,
    http_timeout_s: float = 30.0,
) -> tuple[IngestRequest, Callable[[str | None], Iterator[Batch]]]:
    """Follow new trades with `.stream()` (SSE) from the stored cursor (first run: `start_cursor`).

    Yields a batch every `batch_records` trades; stops after `max_records` (None:
    never - the sdk reconnects from the last id forever). A stopped tail resumes
    from its last stored trade.
    """
    assets = _pair_assets(pair) if pair else None
    request = IngestRequest(
        source=SOURCE,
        stream="trades-tail",
        scope="tail" + (f" pair={pair}" if pair else ""),
        params={"horizon_url": horizon_url, "pair": pair, "max_records": max_records},
        unit="trades",
    )

    def batches(resume_from: str | None) -> Iterator[Batch]:
        _, cursor = parse_position(resume_from or f"trades:{start_cursor}", start_ledger=1)
        server = Server(horizon_url, client=RequestsClient(num_retries=0, request_timeout=http_timeout_s))
        builder = server.trades() if assets is None else server.trades().for_asset_pair(*assets)
        yield from _tail_batches(builder.cursor(cursor).stream(), max_records=max_records, batch_records=batch_records)

    return request, batches


def _tail_batches(events: Iterator[dict], *, max_records: int | None, batch_records: int) -> Iterator[Batch]:
    pending: list[dict] = []
    n = 0
    try:
        for record in events:
            pending.append(record)
            n += 1
            stop = max_records is not None and n >= max_records
            if stop or len(pending) >= batch_records:
                yield _tail_batch(pending)
                pending = []
            if stop:
                return
    except BaseRequestError as exc:
        if pending:
            yield _tail_batch(pending)
        raise SourceUnavailable(
            f"Horizon stream failed ({_short(exc)}); run again to resume from the last trade"
        ) from exc
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _tail_batch(records: list[dict]) -> Batch:
    """A tail batch is never `done`: the next run continues from its last trade."""
    raw = [json.dumps(r, separators=(",", ":")) for r in records]
    locations = [f"stream event id {r.get('paging_token')}" for r in records]
    trades, quarantine = decode_trades(raw, source=SOURCE, locations=locations)
    position = f"trades:{records[-1].get('paging_token')}"
    return Batch(trades=trades, quarantine=quarantine, position=position, n_units=len(records), n_records=len(records))


def live_batch(trades: list[dict], operations: list[dict], *, position: str, where: str) -> Batch:
    """Trade and operation records from `.stream()` decoded exactly as a range's pages are (only
    funding and offer operations kept; bad records to quarantine, located at `where` + stream)."""
    parts = [
        _batch(stream, [(records, f"{where}/{stream} stream")], position, done=False, n_units=0)
        for stream, records in (("trades", trades), ("operations", operations))
        if records
    ]
    quarantine = [b.quarantine for b in parts if b.quarantine is not None and b.quarantine.height]
    return Batch(
        trades=next((b.trades for b in parts if b.trades is not None), None),
        operations=next((b.operations for b in parts if b.operations is not None), None),
        quarantine=pl.concat(quarantine, how="vertical_relaxed") if quarantine else None,
        position=position,
        n_records=len(trades) + len(operations),
    )
