"""Ingest ledger-exporter (Galexie) data-lake objects: zstd `LedgerCloseMetaBatch` files.

Objects are named as the exporter writes them, `{0xFFFFFFFF - first:08X}--{first}[-{last}]`
+ `.xdr.zst` (also `.xdr.zstd`), either inside partition folders of 64,000 ledgers
(`FFFFFFFF--0-63999/FCD285FF--53312000.xdr.zst`) or flat in one folder. The source is
a local folder or an `https://` prefix (e.g. the public bucket); over HTTP the layout
comes from the store's `.config.json` (SEP-54) when there is one, else it is probed.

`plan()` returns the request and the resumable batch function `engine.ingest.runner`
drives: objects are fetched and decoded in worker processes and come back in ledger
order; a corrupt object goes to quarantine (naming the file and its ledgers) and the
rest loads; a missing object stops the run with `BadInput` naming the first missing
ledger and the object name expected for it.
"""

from __future__ import annotations

import gc
import hashlib
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import polars as pl
import requests
import zstandard
from stellar_sdk import xdr

from engine.ingest.runner import Batch, IngestRequest
from engine.ingest.xdr_decode import decode_ledger, ledger_seq
from engine.schemas import OPERATIONS_SCHEMA, QUARANTINE_SCHEMA, TRADES_SCHEMA, empty
from storage.errors import BadInput, SourceUnavailable

SOURCE = "datalake"
LEDGERS_PER_PARTITION = 64_000
BATCH_LEDGERS = 64  # ledgers per committed batch (one transaction with its cursor)
# Starting a worker process costs about as much as decoding ten ledgers: fewer objects
# than this are decoded in-process.
MIN_PARALLEL_OBJECTS = 16
OBJECT_RE = re.compile(r"^([0-9A-F]{8})--(\d+)(?:-(\d+))?\.xdr\.(zst|zstd)$")
PARTITION_RE = re.compile(r"^([0-9A-F]{8})--(\d+)-(\d+)$")
_EXTENSIONS = (".xdr.zst", ".xdr.zstd")


# -- names -----------------------------------------------------------------------------


def object_name(first: int, last: int | None = None, *, ext: str = ".xdr.zst") -> str:
    """The exporter's object name for ledgers first..last (`last` omitted for one ledger)."""
    span = f"-{last}" if last is not None and last != first else ""
    return f"{0xFFFFFFFF - first:08X}--{first}{span}{ext}"


def partition_name(ledger: int, *, per_partition: int = LEDGERS_PER_PARTITION) -> str:
    """The partition folder holding `ledger`, e.g. `FFFFFFFF--0-63999`."""
    start = (ledger // per_partition) * per_partition
    return f"{0xFFFFFFFF - start:08X}--{start}-{start + per_partition - 1}"


def parse_object_name(name: str) -> tuple[int, int] | None:
    """(first, last) ledger of an object name, or None when it is not one."""
    m = OBJECT_RE.match(name)
    if m is None or int(m.group(1), 16) != 0xFFFFFFFF - int(m.group(2)):
        return None
    first = int(m.group(2))
    return first, int(m.group(3)) if m.group(3) else first


@dataclass(frozen=True)
class LakeObject:
    """One data-lake object: the ledgers it holds and where to read it."""

    first: int
    last: int
    name: str  # path relative to the source root, e.g. "FFFFFFFF--0-63999/FFFFFFFF--0.xdr.zst"
    location: str  # local file path or URL


# -- reading objects -------------------------------------------------------------------


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while XDR is parsed.

    A parsed ledger is ~400k small acyclic objects (freed by reference counting anyway);
    with the collector running, its generation scans double the parse time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decompress(data: bytes) -> bytes:
    """zstd-decompress one whole object; ValueError when it is corrupt or truncated."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd data ({exc})") from exc
    if not dobj.eof:
        raise ValueError(f"truncated zstd data: the frame ends early ({len(data):,} bytes read)")
    return out


def read_object(path_or_bytes: str | Path | bytes) -> list[xdr.LedgerCloseMeta]:
    """The `LedgerCloseMeta`s of one data-lake object (a file path or its bytes).

    Raises BadInput naming the object when the zstd or the XDR cannot be read.
    """
    label = "object bytes" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read data-lake object {label}: {exc}") from exc
    try:
        with paused_gc():
            return list(xdr.LedgerCloseMetaBatch.from_xdr_bytes(decompress(data)).ledger_close_metas)
    except Exception as exc:  # stellar_sdk raises ValueError, IndexError, struct.error...
        raise BadInput(
            f"{label} is not a zstd LedgerCloseMetaBatch ({type(exc).__name__}: {exc}); "
            "download the object again from the data lake"
        ) from exc


def read_base64_lines(path: str | Path) -> list[xdr.LedgerCloseMeta]:
    """`LedgerCloseMeta`s from a text file of base64 XDR, one per line (blank lines skipped).

    Raises BadInput naming the file and line of an undecodable entry.
    """
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(xdr.LedgerCloseMeta.from_xdr(line.strip()))
        except Exception as exc:
            raise BadInput(f"{path}:{number} is not a base64 LedgerCloseMeta ({type(exc).__name__}: {exc})") from exc
    return out


def decode_ledgers(lcms: list[xdr.LedgerCloseMeta]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical (trades, operations) of several ledgers, in ledger order.

    Shapes: TRADES_SCHEMA and OPERATIONS_SCHEMA frames (see `xdr_decode.decode_ledger`).
    """
    frames = [decode_ledger(lcm) for lcm in sorted(lcms, key=ledger_seq)]
    trades = pl.concat([f[0] for f in frames]) if frames else empty(TRADES_SCHEMA)
    ops = pl.concat([f[1] for f in frames]) if frames else empty(OPERATIONS_SCHEMA)
    return trades, ops


# -- decoding one object (runs in worker processes) ------------------------------------


@dataclass(frozen=True)
class Decoded:
    """What one object contributed to the ledgers lo..hi of a request."""

    lo: int
    hi: int
    trades: pl.DataFrame  # TRADES_SCHEMA
    operations: pl.DataFrame  # OPERATIONS_SCHEMA
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA
    unreadable: bool = False  # the whole object could not be read (corrupt, or still being written)


def _quarantine(obj: LakeObject, data: bytes, *, ledgers: str, problem: str, retry: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()[:16]
    return {
        "source": SOURCE,
        "location": f"{obj.name} ledgers {ledgers}",
        "record_id": obj.name,
        "reason": f"{problem}. {retry}",
        "raw": f"{obj.location} ({len(data):,} bytes, sha256 {digest}...)",
    }


def _retry_hint(obj: LakeObject, lo: int, hi: int) -> str:
    return (
        f"Fetch {obj.name} again from the data lake (or replace the file), then re-ingest that range: "
        f"`python -m engine ingest datalake --start-ledger {lo} --end-ledger {hi} --source SOURCE`"
    )


def _parse(obj: LakeObject, data: bytes) -> list[xdr.LedgerCloseMeta]:
    """The object's ledgers; ValueError saying what is wrong with it."""
    try:
        batch = xdr.LedgerCloseMetaBatch.from_xdr_bytes(decompress(data))
    except ValueError:
        raise
    except Exception as exc:  # truncated XDR surfaces as IndexError / struct.error
        raise ValueError(f"corrupt XDR ({type(exc).__name__}: {exc})") from exc
    span = (batch.start_sequence.uint32, batch.end_sequence.uint32)
    seqs = [ledger_seq(lcm) for lcm in batch.ledger_close_metas]
    if span != (obj.first, obj.last) or seqs != list(range(span[0], span[1] + 1)):
        raise ValueError(
            f"the object holds ledgers {seqs[0] if seqs else '-'}..{seqs[-1] if seqs else '-'} "
            f"(batch header {span[0]}-{span[1]}) but its name says {obj.first}-{obj.last}"
        )
    return list(batch.ledger_close_metas)


def decode_object(obj: LakeObject, data: bytes, lo: int, hi: int) -> Decoded:
    """Trades, operations and quarantined ledgers of the ledgers lo..hi of one object.

    A corrupt object quarantines lo..hi as a whole; a ledger that decodes but cannot be
    interpreted quarantines that ledger only. Never raises for bad data.
    """
    with paused_gc():
        return _decode_object(obj, data, lo, hi)


def _decode_object(obj: LakeObject, data: bytes, lo: int, hi: int) -> Decoded:
    hint = _retry_hint(obj, lo, hi)
    try:
        lcms = _parse(obj, data)
    except ValueError as exc:
        bad = [_quarantine(obj, data, ledgers=f"{lo}-{hi}", problem=f"unreadable data-lake object: {exc}", retry=hint)]
        return Decoded(lo, hi, empty(TRADES_SCHEMA), empty(OPERATIONS_SCHEMA),
                       pl.DataFrame(bad, schema=QUARANTINE_SCHEMA), unreadable=True)
    trades, ops, bad = [], [], []
    for lcm in lcms[lo - obj.first : hi - obj.first + 1]:
        try:
            t, o = decode_ledger(lcm)
        except Exception as exc:  # noqa: BLE001 - any failure of one ledger is quarantined, the rest loads
            seq = ledger_seq(lcm)
            problem = f"ledger {seq} could not be decoded into trades ({type(exc).__name__}: {exc})"
            bad.append(_quarantine(obj, data, ledgers=str(seq), problem=problem, retry=hint))
            continue
        trades.append(t)
        ops.append(o)
    fills, zero = _split_zero_fills(pl.concat(trades) if trades else empty(TRADES_SCHEMA), obj)
    quarantine = pl.concat([pl.DataFrame(bad, schema=QUARANTINE_SCHEMA), zero])
    return Decoded(lo, hi, fills, pl.concat(ops) if ops else empty(OPERATIONS_SCHEMA), quarantine)


def _split_zero_fills(trades: pl.DataFrame, obj: LakeObject) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(fills with both amounts > 0, QUARANTINE_SCHEMA rows for the others).

    Core reports garbage-collected offers as 0/0 atoms (already skipped, like Horizon);
    a fill with one zero side would not be a trade and the store refuses it.
    """
    zero = (pl.col("sold_amount") <= 0) | (pl.col("bought_amount") <= 0)
    bad = trades.filter(zero).select(
        pl.lit(SOURCE).alias("source"),
        pl.format("{} ledger {} fill {}", pl.lit(obj.name), pl.col("ledger"), pl.col("id")).alias("location"),
        pl.col("id").alias("record_id"),
        pl.lit("fill with a zero amount: not a trade; nothing to do unless Horizon reports it").alias("reason"),
        pl.format("sold {} {} for {} {}", "sold_amount", "sold_asset", "bought_amount", "bought_asset").alias("raw"),
    )
    return trades.filter(~zero), bad


# -- sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """Read ledgers lo..hi from `obj`."""

    obj: LakeObject
    lo: int
    hi: int


@dataclass(frozen=True)
class LocalLake:
    """A folder holding exporter objects, flat or in partition folders."""

    root: Path

    def tasks(self, start: int, end: int) -> list[Task]:
        """The objects covering start..end in order; BadInput naming the first missing ledger."""
        objects, partitioned = self._scan(start, end)
        tasks, ledger = [], start
        for obj in objects:
            if obj.last < ledger:
                continue
            if obj.first > ledger:
                break
            tasks.append(Task(obj, ledger, min(obj.last, end)))
            ledger = obj.last + 1
            if ledger > end:
                return tasks
        raise BadInput(_missing(ledger, self.root, objects, partitioned))

    def _scan(self, start: int, end: int) -> tuple[list[LakeObject], bool]:
        found, partitioned = [], False
        for child in sorted(self.root.iterdir()):
            span = parse_object_name(child.name)
            if span is not None and child.is_file() and span[1] >= start and span[0] <= end:
                found.append(LakeObject(span[0], span[1], child.name, str(child)))
            m = PARTITION_RE.match(child.name)
            if m and child.is_dir():
                partitioned = True
                if int(m.group(3)) >= start and int(m.group(2)) <= end:
                    found.extend(_objects_in(child, start, end))
        return sorted(found, key=lambda o: (o.first, -o.last)), partitioned

    def fetch(self, obj: LakeObject) -> bytes:
        try:
            return Path(obj.location).read_bytes()
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {obj.location}: {exc}; check the file and run again") from exc


def _objects_in(folder: Path, start: int, end: int) -> list[LakeObject]:
    out = []
    for child in folder.iterdir():
        span = parse_object_name(child.name)
        if span is not None and span[1] >= start and span[0] <= end:
            out.append(LakeObject(span[0], span[1], f"{folder.name}/{child.name}", str(child)))
    return out


def _missing(ledger: int, root: object, objects: list[LakeObject], partitioned: bool) -> str:
    per_object = (objects[0].last - objects[0].first + 1) if objects else 1
    first = ledger - ledger % per_object
    name = object_name(first, first + per_object - 1)
    if partitioned:
        name = f"{partition_name(ledger)}/{name}"
    return (
        f"ledger {ledger} is missing from the data lake at {root}: expected the object {name} "
        f"(or its .xdr.zstd twin). Download it (e.g. from the public bucket) or ingest a range that ends before {ledger}."
    )


@dataclass(frozen=True)
class HttpOptions:
    timeout_s: float = 30.0
    max_retries: int = 8
    backoff_s: float = 0.5  # first wait; doubles per attempt, with jitter
    max_wait_s: float = 60.0


def _wait_s(resp: requests.Response | None, attempt: int, opts: HttpOptions) -> float:
    """Retry-After when the server gave one, else exponential backoff with full jitter."""
    header = resp.headers.get("Retry-After") if resp is not None else None
    if header:
        try:
            return min(max(float(header), 0.0), opts.max_wait_s)
        except ValueError:
            try:
                return min(max(parsedate_to_datetime(header).timestamp() - time.time(), 0.0), opts.max_wait_s)
            except (TypeError, ValueError):
                pass
    return random.uniform(0, min(opts.backoff_s * 2**attempt, opts.max_wait_s))


def http_get(url: str, opts: HttpOptions, *, method: str = "GET") -> requests.Response | None:
    """The response for `url`, or None when the object is not there (404/403, as S3 says).

    Retries timeouts, connection errors, 429 and 5xx; SourceUnavailable when they persist
    or for any other status.
    """
    problem = ""
    for attempt in range(opts.max_retries + 1):
        resp = None
        try:
            resp = requests.request(method, url, timeout=opts.timeout_s)
        except (requests.Timeout, requests.ConnectionError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code == 200:
                return resp
            if resp.status_code in (403, 404):
                return None
            if resp.status_code != 429 and resp.status_code < 500:
                raise SourceUnavailable(f"{url} answered HTTP {resp.status_code}; check the --source URL")
            problem = f"HTTP {resp.status_code}"
        if attempt < opts.max_retries:
            time.sleep(_wait_s(resp, attempt, opts))
    raise SourceUnavailable(
        f"{url} kept failing ({problem}) after {opts.max_retries} retries; check the network or the "
        "--source URL and run the same command again: it resumes after the last committed ledger"
    )


@dataclass(frozen=True)
class HttpLake:
    """A data lake behind an http(s) prefix whose object names are computed, not listed."""

    prefix: str
    opts: HttpOptions
    ledgers_per_object: int = 1
    per_partition: int | None = LEDGERS_PER_PARTITION  # None: objects sit flat under the prefix
    ext: str = ".xdr.zst"

    def object_for(self, ledger: int) -> LakeObject:
        first = ledger - ledger % self.ledgers_per_object
        last = first + self.ledgers_per_object - 1
        name = object_name(first, last, ext=self.ext)
        if self.per_partition is not None:
            name = f"{partition_name(ledger, per_partition=self.per_partition)}/{name}"
        return LakeObject(first, last, name, f"{self.prefix}/{name}")

    def tasks(self, start: int, end: int) -> list[Task]:
        tasks, ledger = [], start
        while ledger <= end:
            obj = self.object_for(ledger)
            tasks.append(Task(obj, ledger, min(obj.last, end)))
            ledger = obj.last + 1
        return tasks

    def fetch(self, obj: LakeObject) -> bytes:
        resp = http_get(obj.location, self.opts)
        if resp is None:
            raise BadInput(
                f"ledger {obj.first} is missing from the data lake: {obj.location} does not exist. "
                f"Check --source, or ingest a range that ends before ledger {obj.first}."
            )
        return resp.content


def open_http_lake(prefix: str, opts: HttpOptions, *, probe_ledger: int) -> HttpLake:
    """An HttpLake with the layout of `.config.json` (SEP-54) when present, else probed
    on the object of `probe_ledger` (partitioned or flat, `.xdr.zst` or `.xdr.zstd`)."""
    prefix = prefix.rstrip("/")
    resp = http_get(f"{prefix}/.config.json", opts)
    per_object, per_partition, exts = 1, LEDGERS_PER_PARTITION, _EXTENSIONS
    if resp is not None:
        try:
            cfg = resp.json()
            per_object = int(cfg.get("ledgersPerBatch", 1))
            per_partition = per_object * int(cfg.get("batchesPerPartition", LEDGERS_PER_PARTITION))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadInput(f"{prefix}/.config.json is not a ledger-exporter config ({exc})") from exc
    candidates = [
        HttpLake(prefix, opts, per_object, part, ext)
        for part in ((per_partition, None) if per_partition > per_object else (None,))
        for ext in exts
    ]
    for lake in candidates:
        if http_get(lake.object_for(probe_ledger).location, opts, method="HEAD") is not None:
            return lake
    tried = ", ".join(c.object_for(probe_ledger).location for c in candidates)
    raise BadInput(f"ledger {probe_ledger} is missing from the data lake at {prefix}: none of {tried} exists")


def open_lake(source: str, *, probe_ledger: int, opts: HttpOptions) -> LocalLake | HttpLake:
    """The data lake named by `source`: an http(s) prefix or a local folder."""
    if source.startswith(("http://", "https://")):
        return open_http_lake(source, opts, probe_ledger=probe_ledger)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise BadInput(f"data-lake source {source} is not a folder or an http(s):// prefix")
    return LocalLake(root)


# -- the request -----------------------------------------------------------------------


def _load(lake: LocalLake | HttpLake, task: Task) -> Decoded:
    """Fetch and decode one object (the unit of work of a worker process)."""
    return decode_object(task.obj, lake.fetch(task.obj), task.lo, task.hi)


def decoded_in_order(
    lake: LocalLake | HttpLake, tasks: list[Task], *, workers: int, min_parallel: int = MIN_PARALLEL_OBJECTS
) -> Iterator[Decoded]:
    """`_load` of each task, in task (ledger) order, on `workers` processes (in this
    process for fewer than `min_parallel` tasks)."""
    if workers <= 1 or len(tasks) < max(min_parallel, 2):
        for task in tasks:
            yield _load(lake, task)
        return
    # spawn, not fork: the parent runs polars / duckdb threads that a fork would copy mid-lock.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    window: deque = deque()
    try:
        for task in tasks:
            window.append(pool.submit(_load, lake, task))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _merge(group: list[Decoded], end: int) -> Batch:
    trades = pl.concat([d.trades for d in group])
    ops = pl.concat([d.operations for d in group])
    quarantine = pl.concat([d.quarantine for d in group])
    last = group[-1].hi
    return Batch(
        trades=trades,
        operations=ops,
        quarantine=quarantine,
        position=str(last),
        done=last >= end,
        n_units=sum(d.hi - d.lo + 1 for d in group),
        n_records=trades.height + ops.height + quarantine.height,
    )


def _resume_start(start: int, end: int, resume_from: str | None) -> int:
    if resume_from is None:
        return start
    try:
        last = int(resume_from)
    except ValueError as exc:
        raise BadInput(f"stored data-lake cursor {resume_from!r} is not a ledger number") from exc
    if not start - 1 <= last <= end:
        raise BadInput(f"stored data-lake cursor {last} lies outside ledgers {start}-{end}")
    return last + 1


def plan(
    *,
    start_ledger: int,
    end_ledger: int,
    source: str,
    workers: int = 2,
    http_timeout_s: float = 30.0,
    max_retries: int = 8,
) -> tuple[IngestRequest, Callable[[str | None], Iterator[Batch]]]:
    """The ingest request for ledgers start..end of a data lake, and its batch function.

    The batch function takes the last committed ledger (or None) and yields one Batch per
    ~BATCH_LEDGERS ledgers, in ledger order, position = the batch's last ledger.
    """
    if start_ledger < 1 or end_ledger < start_ledger:
        raise BadInput(f"ledger range {start_ledger}-{end_ledger} is empty or invalid; give 1 <= start <= end")
    is_http = source.startswith(("http://", "https://"))
    if not is_http and not Path(source).expanduser().is_dir():
        raise BadInput(f"data-lake source {source} is not a folder or an http(s):// prefix")
    request = IngestRequest(
        source=SOURCE,
        stream="ledgers",
        scope=f"{source} ledgers {start_ledger}-{end_ledger}",
        params={"start_ledger": start_ledger, "end_ledger": end_ledger, "source": source, "workers": workers},
        total_units=end_ledger - start_ledger + 1,
        unit="ledgers",
    )
    opts = HttpOptions(timeout_s=http_timeout_s, max_retries=max_retries)
    return request, partial(lake_batches, source, start_ledger, end_ledger, workers=workers, opts=opts)


def lake_batches(
    source: str, start: int, end: int, resume_from: str | None, *, workers: int, opts: HttpOptions
) -> Iterator[Batch]:
    """Batches of ledgers start..end after `resume_from` (the last committed ledger)."""
    first = _resume_start(start, end, resume_from)
    if first > end:
        yield Batch(position=str(end), done=True)
        return
    lake = open_lake(source, probe_ledger=first, opts=opts)
    group: list[Decoded] = []
    for decoded in decoded_in_order(lake, lake.tasks(first, end), workers=workers):
        group.append(decoded)
        if decoded.hi >= end or sum(d.hi - d.lo + 1 for d in group) >= BATCH_LEDGERS:
            yield _merge(group, end)
            group = []


def encode_object(lcms: list[xdr.LedgerCloseMeta], *, level: int = 3) -> bytes:
    """A data-lake object (zstd `LedgerCloseMetaBatch`) holding `lcms`, consecutive ledgers."""
    seqs = [ledger_seq(lcm) for lcm in lcms]
    batch = xdr.LedgerCloseMetaBatch(xdr.Uint32(seqs[0]), xdr.Uint32(seqs[-1]), lcms)
    return zstandard.ZstdCompressor(level=level).compress(batch.to_xdr_bytes())
