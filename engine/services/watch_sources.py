"""Where the live watch reads new ledgers: Horizon's SSE streams or a ledger-exporter data lake.

Both give the watch `take(wait_s) -> Batch | None`: what arrived since the last call,
decoded as batch ingest decodes it (engine.ingest.horizon.live_batch, or
engine.ingest.datalake.decode_object), with `position` (a JSON-able dict) saying where
to resume. The watch commits that position with the batch's alerts.

- `HorizonSource`: two stellar-sdk `.stream()` tails (trades, operations) from their
  paging tokens, reconnecting with backoff from the last token.
- `LakeSource`: polls the lake (a local folder or an http(s) prefix, as `ingest
  datalake` reads it) for the object holding the next ledger, every `poll_s` seconds
  until it appears. An object that cannot be read may still be being written (a
  folder lake sees a file grow): it is read again every `poll_s` until it reads or has
  stayed unreadable for `settle_s`; then it is quarantined like in batch ingest, and
  the watch moves on to the next ledger.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import polars as pl
import requests
from stellar_sdk import Server
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import BaseRequestError, StreamClientError

from engine.ingest import datalake
from engine.ingest.horizon import live_batch, toid_of
from engine.ingest.runner import Batch
from storage.errors import BadInput, SourceUnavailable

log = logging.getLogger(__name__)
TAILS = ("trades", "operations")


@dataclass(frozen=True)
class _Failed:
    """Put on a source's queue by a reader thread that died, for the watch to raise."""

    reader: str
    error: BaseException


def _reader(name: str, target, out: queue.Queue, *args) -> threading.Thread:
    """A daemon thread running `target(*args)`; if it dies the next `_drain` of `out` raises, so a
    watch never idles on a reader that is gone."""

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:
            out.put(_Failed(name, exc))

    return threading.Thread(target=run, name=name, daemon=True)


def _drain(out: queue.Queue, wait_s: float, limit: int = 50_000) -> list:
    got = []
    try:
        got.append(out.get(timeout=wait_s))
        while len(got) < limit:
            got.append(out.get_nowait())
    except queue.Empty:
        pass
    for item in got:
        if isinstance(item, _Failed):
            raise RuntimeError(f"the watch's reader {item.reader} stopped: {item.error!r}") from item.error
    return got


@dataclass
class HorizonSource:
    """Follow Horizon's trade and operation streams from `position` ({stream: paging token or "now"})."""

    url: str
    position: dict
    kind: str = "horizon"
    _records: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=100_000))

    @staticmethod
    def first_position(from_ledger: int | None) -> dict:
        first = "now" if from_ledger is None else str(toid_of(from_ledger))
        return {name: first for name in TAILS}

    def start(self, stop: threading.Event) -> None:
        for name in TAILS:
            _reader(f"watch-{name}", self._tail, self._records, name, self.position[name], stop).start()

    def _tail(self, name: str, cursor: str, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            server = Server(self.url, client=RequestsClient(num_retries=0))
            builder = server.trades() if name == "trades" else server.operations().include_failed(False)
            try:
                for record in builder.cursor(cursor).stream():
                    self._records.put((name, record))
                    cursor, delay = record.get("paging_token", cursor), 0.5
                    if stop.is_set():
                        return
            except (StreamClientError, BaseRequestError) as exc:
                log.warning("%s stream from %s failed (%s); reconnecting in %.1fs from %s", name, self.url, exc,
                            delay, cursor)  # fmt: skip
                stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def take(self, wait_s: float) -> Batch | None:
        got = _drain(self._records, wait_s)
        if not got:
            return None
        for name, record in got:
            self.position[name] = str(record.get("paging_token", self.position[name]))
        trades = [r for name, r in got if name == "trades"]
        operations = [r for name, r in got if name == "operations"]
        return live_batch(trades, operations, position="", where=self.url)

    def latest_ledger(self) -> int | None:
        """The newest ledger Horizon has (its root document), None when it does not answer."""
        try:
            root = requests.get(self.url, timeout=5).json()
            return int(root.get("history_latest_ledger") or root.get("core_latest_ledger"))
        except (requests.RequestException, ValueError, TypeError):
            return None


@dataclass
class LakeSource:
    """Poll a data lake for the object of the ledger after `position["ledger"]`."""

    source: str
    position: dict
    poll_s: float = 1.0
    settle_s: float = 30.0  # how long an unreadable object is read again before it is quarantined
    kind: str = "datalake"
    _batches: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=64))

    @staticmethod
    def first_position(from_ledger: int | None) -> dict:
        if from_ledger is None:
            raise BadInput("--datalake needs --from-ledger N (a data lake has no 'now'): the first ledger to read")
        return {"ledger": from_ledger - 1}

    def start(self, stop: threading.Event) -> None:
        _reader("watch-datalake", self._poll, self._batches, stop).start()

    def _poll(self, stop: threading.Event) -> None:
        ledger, lake = self.position["ledger"] + 1, None
        opts, unreadable_since = datalake.HttpOptions(), None  # when `ledger`'s object was first found unreadable
        while not stop.is_set():
            try:
                lake = lake or datalake.open_lake(self.source, probe_ledger=ledger, opts=opts)
                task = lake.tasks(ledger, ledger)[0]
                task = datalake.Task(task.obj, ledger, task.obj.last)  # the whole object from `ledger` on
                decoded = datalake.decode_object(task.obj, lake.fetch(task.obj), task.lo, task.hi)
            except (BadInput, SourceUnavailable) as exc:  # not exported yet (or the lake is away): wait
                log.debug("ledger %d not in %s yet (%s)", ledger, self.source, exc)
                stop.wait(self.poll_s)
                continue
            if decoded.unreadable:
                unreadable_since = unreadable_since or time.monotonic()
                if time.monotonic() - unreadable_since < self.settle_s:
                    stop.wait(self.poll_s)  # perhaps still being written: read it again
                    continue
            unreadable_since = None
            self._batches.put(decoded)
            ledger = decoded.hi + 1

    def take(self, wait_s: float) -> Batch | None:
        got = _drain(self._batches, wait_s)
        if not got:
            return None
        self.position["ledger"] = got[-1].hi
        frames = {name: pl.concat([getattr(d, name) for d in got]) for name in ("trades", "operations", "quarantine")}
        return Batch(**frames, position="", n_records=sum(f.height for f in frames.values()))

    def latest_ledger(self) -> int | None:
        return None  # a lake says nothing of ledgers not exported yet
