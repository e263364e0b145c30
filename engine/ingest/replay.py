"""A loopback Horizon that serves recorded trade and operation records.

`ReplayServer(directory)` loads Horizon records from JSON Lines files (one record a
line, as the simulator writes `trades.jsonl` / `operations.jsonl`) and from Horizon
page files (`{"_embedded": {"records": [...]}}`), and serves them the way Horizon
does, so the real stellar-sdk client (call builders, `.next()`, `.stream()`) runs
against it unchanged:

- `/trades`, `/ledgers/{seq}/trades`: paging by `cursor` (a paging token, exclusive),
  `limit` (default 10, at most 200), `order` asc|desc; filters `base_asset_*` /
  `counter_asset_*` (a pair, either orientation; trades stored the other way round
  are served flipped, as Horizon does) and `trade_type` (orderbook|liquidity_pool|all).
- `/operations`, `/ledgers/{seq}/operations`, `/operations/{id}`: the same paging,
  `include_failed` (default false).
- HAL pages whose `_links.self/next/prev` point at this server (absolute hrefs: the
  sdk's `.next()` follows `_links.next.href`); past the end an empty page whose
  next link keeps the same cursor.
- `Accept: text/event-stream`: Horizon's SSE (`retry:`, an `open` event with data
  "hello", then `id: <paging_token>` / `data: <record>` per record). After
  `stream_idle_s` without new records it says "byebye" and closes; clients
  reconnect from `Last-Event-ID` (or `cursor`).
- `/`: a minimal root document; anything else is a 404 in Horizon's problem+json.

`Faults` makes chosen requests fail (429 with Retry-After, 503, ...) to test
backoff and resume. Requests are numbered from 1 in arrival order.
`stream_events_per_connection` drops SSE connections after N events (to test
reconnection from Last-Event-ID).

`live_rate` (records per second) plays the records as if live: trades and operations
together are released in paging-token order (ledger order, so close-time order) at
that rate from `start()`; pages, streams and the root's latest ledger show only what
has been released, and an SSE connection waits for new records instead of closing.
`released_at(token)` says when a record was (or will be) released (latency tests).

This is a test and offline tool: loading parses each record once in Python (a few
seconds per million records); pages are served from pre-serialised record texts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from storage.errors import BadInput

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 200
_AFTER_ALL = 1 << 62  # second half of a one-number trade cursor: past every fill of that operation
_TOKEN = re.compile(r"^(\d+)(?:-(\d+))?$")
_SIDE_FIELDS = ("offer_id", "account", "amount", "liquidity_pool_id", "asset_type", "asset_code", "asset_issuer")
_PROBLEMS = {
    400: ("bad_request", "Bad Request"),
    404: ("not_found", "Resource Missing"),
    429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
    500: ("server_error", "Internal Server Error"),
    503: ("service_unavailable", "Service Unavailable"),
    504: ("timeout", "Timeout"),
}


@dataclass(frozen=True)
class Faults:
    """Which requests fail, and how (requests are numbered from 1 as they arrive).

    The first `first` requests fail, and so do `count` requests from number `at`.
    A failing request waits `delay_s` (to provoke client timeouts), then answers
    `status` in Horizon's problem+json, with `Retry-After: retry_after_s` if set.
    """

    status: int = 503
    first: int = 0
    at: int | None = None
    count: int = 1
    retry_after_s: int | None = None
    delay_s: float = 0.0

    def fails(self, n: int) -> bool:
        return n <= self.first or (self.at is not None and self.at <= n < self.at + self.count)


@dataclass(frozen=True)
class RequestLog:
    """One request as the server saw it (for tests: what did the client ask for?)."""

    n: int
    path: str
    query: dict[str, str]
    last_event_id: str | None
    stream: bool
    status: int


@dataclass
class _Collection:
    """Records of one kind sorted by paging key, with their served JSON text."""

    keys: list[tuple[int, int]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    views: dict[tuple, tuple[list[tuple[int, int]], list[int]]] = field(default_factory=dict)
    flipped: dict[int, str] = field(default_factory=dict)


# -- loading --------------------------------------------------------------------------------


def load_records(directory: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """Trade and operation records found under `directory`, and what was skipped.

    Reads `*.jsonl` (a record a line) and `*.json` (a Horizon page, a list or one
    record), recursively, in name order. A record with `trade_type` is a trade, one
    with `type` an operation. Returns (trades, operations, skipped) where skipped
    names `file:line` and why (unparsable, no paging token, unknown kind).
    """
    root = Path(directory)
    if not root.is_dir():
        raise BadInput(f"replay directory {root} does not exist: give a folder of Horizon .jsonl/.json records")
    trades: list[dict] = []
    operations: list[dict] = []
    skipped: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file()):
        for where, record in _records_in(path, skipped):
            kind = _kind(record)
            if kind == "trade":
                trades.append(record)
            elif kind == "operation":
                operations.append(record)
            else:
                skipped.append(f"{where}: {kind}")
    return trades, operations, skipped


def _kind(record) -> str:
    """'trade', 'operation', or why the record is neither (effects, accounts, ...)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    m = _TOKEN.match(str(record.get("paging_token", "")))
    if m is None:
        return "no numeric paging_token"
    if "trade_type" in record and m.group(2) is not None:
        return "trade"
    if "type" in record and m.group(2) is None:
        return "operation"
    return "neither a trade (trade_type, op-index token) nor an operation (type, numeric token)"


def _records_in(path: Path, skipped: list[str]):
    """(location, record) pairs of one file; unparsable text goes to `skipped`."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"{path}:{line_no}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        skipped.append(f"{path}:{line_no}: not JSON ({exc.msg})")
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        skipped.append(f"{path}: not JSON ({exc})")
        return
    if isinstance(doc, dict) and isinstance(doc.get("_embedded"), dict):
        doc = doc["_embedded"].get("records", [])
    for i, record in enumerate(doc if isinstance(doc, list) else [doc]):
        yield f"{path} record {i}", record


def paging_key(token: str, *, trade: bool) -> tuple[int, int]:
    """Sort key of a paging token or cursor: trades `op-index`, operations `op`.

    A one-number trade cursor sorts after every fill of that operation, as Horizon's.
    """
    m = _TOKEN.match(token)
    if m is None:
        raise ValueError(f"not a paging token: {token!r}")
    if m.group(2) is not None:
        return int(m.group(1)), int(m.group(2))
    return int(m.group(1)), (_AFTER_ALL if trade else 0)


def asset_of(record: dict, prefix: str) -> str | None:
    """Asset id (`XLM:native` / `CODE:ISSUER`) of `{prefix}_asset_type/_code/_issuer`."""
    kind = record.get(f"{prefix}_asset_type")
    if kind == "native":
        return "XLM:native"
    if kind in ("credit_alphanum4", "credit_alphanum12"):
        return f"{record.get(f'{prefix}_asset_code')}:{record.get(f'{prefix}_asset_issuer')}"
    return None


def _ledger_of(key: tuple[int, int]) -> int:
    return key[0] >> 32


def _build(records: list[dict], *, trade: bool, base_url: str) -> _Collection:
    order = sorted(range(len(records)), key=lambda i: paging_key(records[i]["paging_token"], trade=trade))
    col = _Collection()
    seen: set[tuple[str, str]] = set()
    for i in order:
        record = _with_links(records[i], base_url=base_url, trade=trade)
        text = json.dumps(record, separators=(",", ":"))
        if (record["paging_token"], text) in seen:  # the same record in two files (e.g. operations and payments pages)
            continue
        seen.add((record["paging_token"], text))
        col.keys.append(paging_key(record["paging_token"], trade=trade))
        col.records.append(record)
        col.texts.append(text)
    return col


def _with_links(record: dict, *, base_url: str, trade: bool) -> dict:
    """The record with its `_links` pointing at this server (added when absent)."""
    links = record.get("_links")
    if not isinstance(links, dict):
        op = str(record["paging_token"]).split("-")[0]
        links = {"self": {"href": "" if trade else f"{base_url}/operations/{op}"}}
        links["operation" if trade else "effects"] = {
            "href": f"{base_url}/operations/{op}" if trade else f"{base_url}/operations/{op}/effects"
        }
        return {"_links": links, **record}
    rebased = {
        name: ({**link, "href": rebase(link.get("href", ""), base_url)} if isinstance(link, dict) else link)
        for name, link in links.items()
    }
    return {**record, "_links": rebased}


def rebase(href: str, base_url: str) -> str:
    """`href` with its scheme and host replaced by `base_url`'s (relative hrefs kept)."""
    if not href:
        return href
    parts = urlsplit(href)
    if not parts.netloc:
        return href
    own = urlsplit(base_url)
    return urlunsplit((own.scheme, own.netloc, parts.path, parts.query, parts.fragment))


def flip_trade(record: dict) -> dict:
    """A trade seen from the other side of its pair: base and counter swapped, price inverted.

    Horizon answers a pair query asked in the opposite orientation this way.
    """
    out = dict(record)
    for name in _SIDE_FIELDS:
        b, c = record.get(f"base_{name}"), record.get(f"counter_{name}")
        out.pop(f"base_{name}", None)
        out.pop(f"counter_{name}", None)
        if c is not None:
            out[f"base_{name}"] = c
        if b is not None:
            out[f"counter_{name}"] = b
    if isinstance(record.get("base_is_seller"), bool):
        out["base_is_seller"] = not record["base_is_seller"]
    price = record.get("price")
    if isinstance(price, dict):
        out["price"] = {"n": price.get("d"), "d": price.get("n")}
    links = record.get("_links")
    if isinstance(links, dict) and "base" in links and "counter" in links:
        out["_links"] = {**links, "base": links["counter"], "counter": links["base"]}
    return out


# -- queries ------------------------------------------------------------------------------


class QueryError(ValueError):
    """A bad query parameter (served as 400 with the parameter name)."""

    def __init__(self, param: str, detail: str):
        super().__init__(detail)
        self.param = param


@dataclass(frozen=True)
class PageQuery:
    cursor: str
    limit: int
    desc: bool


def parse_page_query(params: dict[str, str], *, trade: bool) -> PageQuery:
    """`cursor`, `limit`, `order` as Horizon validates them."""
    cursor = params.get("cursor", "")
    if cursor not in ("", "now") and not _TOKEN.match(cursor):
        raise QueryError("cursor", f"cursor {cursor!r} is not a paging token" + (" (op-index)" if trade else ""))
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        raise QueryError("limit", "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", f"limit must be between 1 and {MAX_LIMIT}")
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise QueryError("order", "order must be asc or desc")
    return PageQuery(cursor, limit, order == "desc")


def _requested_asset(params: dict[str, str], prefix: str) -> str | None:
    kind = params.get(f"{prefix}_asset_type")
    if not kind:
        return None
    if kind == "native":
        return "XLM:native"
    code, issuer = params.get(f"{prefix}_asset_code"), params.get(f"{prefix}_asset_issuer")
    if kind not in ("credit_alphanum4", "credit_alphanum12") or not code or not issuer:
        raise QueryError(f"{prefix}_asset_type", f"{prefix} asset needs a valid type, code and issuer")
    return f"{code}:{issuer}"


def trade_filter(params: dict[str, str], ledger: int | None) -> tuple:
    """View signature of a trades query: ('t', ledger, trade_type, base, counter)."""
    base, counter = _requested_asset(params, "base"), _requested_asset(params, "counter")
    if (base is None) != (counter is None):
        raise QueryError("base_asset_type", "give both the base and the counter asset of the pair")
    trade_type = params.get("trade_type") or "all"
    if trade_type not in ("orderbook", "liquidity_pool", "all"):
        raise QueryError("trade_type", "trade_type must be orderbook, liquidity_pool or all")
    return ("t", ledger, trade_type, base, counter)


def operation_filter(params: dict[str, str], ledger: int | None) -> tuple:
    """View signature of an operations query: ('o', ledger, include_failed)."""
    include_failed = params.get("include_failed", "false")
    if include_failed not in ("true", "false"):
        raise QueryError("include_failed", "include_failed must be true or false")
    return ("o", ledger, include_failed == "true")


def _matches(record: dict, key: tuple[int, int], signature: tuple) -> bool:
    ledger = signature[1]
    if ledger is not None and _ledger_of(key) != ledger:
        return False
    if signature[0] == "o":
        return signature[2] or record.get("transaction_successful", True) is not False
    _, _, trade_type, base, counter = signature
    if trade_type != "all" and record.get("trade_type") != trade_type:
        return False
    return base is None or {asset_of(record, "base"), asset_of(record, "counter")} == {base, counter}


def view(col: _Collection, signature: tuple) -> tuple[list[tuple[int, int]], list[int]]:
    """(keys, record indexes) of the records a filter keeps, cached per filter."""
    if signature in col.views:
        return col.views[signature]
    if signature in (("o", None, True), ("t", None, "all", None, None)):
        kept = list(range(len(col.keys)))
    else:
        kept = [i for i, (r, k) in enumerate(zip(col.records, col.keys, strict=True)) if _matches(r, k, signature)]
    result = ([col.keys[i] for i in kept], kept)
    col.views[signature] = result
    return result


def select_page(keys: list[tuple[int, int]], query: PageQuery, *, trade: bool) -> list[int]:
    """Positions (into `keys`) of the page `query` asks for, in serving order."""
    if query.cursor == "now":
        return []
    if query.desc:
        end = len(keys) if not query.cursor else bisect_left(keys, paging_key(query.cursor, trade=trade))
        return list(range(end - 1, max(end - query.limit, 0) - 1, -1))
    start = 0 if not query.cursor else bisect_right(keys, paging_key(query.cursor, trade=trade))
    return list(range(start, min(start + query.limit, len(keys))))


# -- the server ---------------------------------------------------------------------------


class ReplayServer:
    """A loopback Horizon over the records in `directory` (see module doc).

    Use as a context manager (`with ReplayServer(d) as server: server.url`), or
    `start()` / `stop()`; `serve_forever()` blocks (the CLI). Port 0 = a free port.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        latest_ledger: int | None = None,
        stream_idle_s: float = 0.5,
        stream_retry_ms: int = 1000,
        stream_events_per_connection: int | None = None,
        live_rate: float | None = None,
    ):
        trades, operations, self.skipped = load_records(directory)
        self.faults = faults or Faults()
        self.stream_idle_s, self.stream_retry_ms = stream_idle_s, stream_retry_ms
        self.stream_events_per_connection = stream_events_per_connection  # drop the connection after N (tests)
        self._requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self._n_requests = 0
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.replay = self  # type: ignore[attr-defined]
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self.trades = _build(trades, trade=True, base_url=self.url)
        self.operations = _build(operations, trade=False, base_url=self.url)
        ledgers = [_ledger_of(c.keys[-1]) for c in (self.trades, self.operations) if c.keys]
        self.latest_ledger = latest_ledger if latest_ledger is not None else max(ledgers, default=0)
        if live_rate is not None and live_rate <= 0:
            raise BadInput(f"--live-rate {live_rate} must be a positive number of records per second")
        self.live_rate = live_rate
        self._live = _LiveOrder(self.trades.keys, self.operations.keys) if live_rate else None
        self._started_at: float | None = None
        self._thread: threading.Thread | None = None

    def n_released(self) -> int:
        """Records (trades + operations) released so far; all of them when not live."""
        if self._live is None:
            return self._live_total()
        if self._started_at is None:
            return 0
        return min(self._live_total(), int((time.monotonic() - self._started_at) * self.live_rate))

    def _live_total(self) -> int:
        return self.n_trades + self.n_operations

    def released(self, col: _Collection) -> int:
        """How many records of `col` (a prefix, in key order) are released."""
        if self._live is None:
            return len(col.keys)
        return self._live.prefix(col is self.trades, self.n_released())

    def released_at(self, token: str, *, trade: bool) -> float | None:
        """time.monotonic() at which the record with this paging token is released (None: not live / unknown)."""
        if self._live is None or self._started_at is None:
            return None
        position = self._live.position(paging_key(token, trade=trade), trade)
        return None if position is None else self._started_at + (position + 1) / self.live_rate

    def current_latest_ledger(self) -> int:
        """The latest ledger as the root document reports it (the last released one when live)."""
        if self._live is None:
            return self.latest_ledger
        return self._live.ledger_at(self.n_released())

    @property
    def n_trades(self) -> int:
        return len(self.trades.keys)

    @property
    def n_operations(self) -> int:
        return len(self.operations.keys)

    def start(self) -> ReplayServer:
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="replay-horizon", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._started_at = self._started_at or time.monotonic()
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next_request_number(self) -> int:
        with self._lock:
            self._n_requests += 1
            return self._n_requests

    def _log(self, entry: RequestLog) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[RequestLog]:
        """The requests answered so far, in arrival order (each is logged once answered, and a
        request that arrived later may be answered first)."""
        with self._lock:
            return sorted(self._requests, key=lambda r: r.n)

    def root_document(self) -> dict:
        """A minimal Horizon root: versions, ledgers held, the main templated links."""
        links = {
            "self": {"href": f"{self.url}/"},
            "operations": {"href": f"{self.url}/operations{{?cursor,limit,order,include_failed}}", "templated": True},
            "trades": {
                "href": f"{self.url}/trades{{?base_asset_type,base_asset_code,base_asset_issuer,"
                "counter_asset_type,counter_asset_code,counter_asset_issuer,trade_type,"
                "cursor,limit,order}",
                "templated": True,
            },
        }
        return {
            "_links": links,
            "horizon_version": "ledgerlens-replay",
            "core_version": "ledgerlens-replay",
            "ingest_latest_ledger": self.current_latest_ledger(),
            "history_latest_ledger": self.current_latest_ledger(),
            "history_elder_ledger": 2,
            "core_latest_ledger": self.current_latest_ledger(),
            "network_passphrase": "Public Global Stellar Network ; September 2015",
            "current_protocol_version": 22,
            "supported_protocol_version": 22,
            "core_supported_protocol_version": 22,
        }


_LEDGER_PATH = re.compile(r"^/ledgers/(\d+)/(trades|operations)$")
_OPERATION_PATH = re.compile(r"^/operations/(\d+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LedgerLensReplay/1"

    @property
    def replay(self) -> ReplayServer:
        return self.server.replay  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("replay %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        replay = self.replay
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        stream = "text/event-stream" in (self.headers.get("Accept") or "")
        n = replay._next_request_number()
        status = self._fault(n) if replay.faults.fails(n) else None
        if status is None:
            try:
                status = self._route(parts.path.rstrip("/") or "/", params, stream)
            except (BrokenPipeError, ConnectionResetError):
                status = 499
        replay._log(RequestLog(n, parts.path, params, self.headers.get("Last-Event-ID"), stream, status))

    def _fault(self, n: int) -> int:
        faults = self.replay.faults
        if faults.delay_s:
            time.sleep(faults.delay_s)
        headers = {} if faults.retry_after_s is None else {"Retry-After": str(faults.retry_after_s)}
        try:
            self._problem(faults.status, f"injected fault on request {n}", headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            return 499
        return faults.status

    def _route(self, path: str, params: dict[str, str], stream: bool) -> int:
        replay = self.replay
        try:
            if path == "/":
                return self._json(200, replay.root_document())
            if path in ("/trades", "/operations"):
                return self._collection(path[1:], params, None, stream)
            m = _LEDGER_PATH.match(path)
            if m:
                return self._collection(m.group(2), params, int(m.group(1)), stream)
            m = _OPERATION_PATH.match(path)
            if m:
                return self._one_operation(m.group(1))
        except QueryError as exc:
            return self._problem(400, str(exc), extras={"invalid_field": exc.param, "reason": str(exc)})
        return self._problem(404, "The resource at the url requested was not found.")

    def _one_operation(self, op_id: str) -> int:
        col = self.replay.operations
        i = bisect_left(col.keys, (int(op_id), 0))
        if i < len(col.keys) and col.keys[i] == (int(op_id), 0):
            return self._send(200, col.texts[i].encode(), "application/hal+json; charset=utf-8")
        return self._problem(404, f"operation {op_id} is not in this replay")

    def _collection(self, kind: str, params: dict[str, str], ledger: int | None, stream: bool) -> int:
        trade = kind == "trades"
        col = self.replay.trades if trade else self.replay.operations
        signature = trade_filter(params, ledger) if trade else operation_filter(params, ledger)
        query = parse_page_query(params, trade=trade)
        keys, indexes = view(col, signature)
        if self.replay._live is not None:
            keys, indexes = _released_view(keys, indexes, self.replay.released(col))
        if stream:
            return self._stream(col, keys, indexes, signature, params)
        positions = select_page(keys, query, trade=trade)
        texts = [self._text(col, indexes[p], signature) for p in positions]
        tokens = [col.records[indexes[p]]["paging_token"] for p in positions]
        path = self.path.split("?", 1)[0]
        links = _page_links(self.replay.url + path, params, query, tokens)
        body = '{"_links":' + json.dumps(links) + ',"_embedded":{"records":[' + ",".join(texts) + "]}}"
        return self._send(200, body.encode(), "application/hal+json; charset=utf-8")

    def _text(self, col: _Collection, index: int, signature: tuple) -> str:
        """Record text, flipped when a pair query names the pair the other way round."""
        if signature[0] != "t" or signature[3] is None:
            return col.texts[index]
        if asset_of(col.records[index], "base") == signature[3]:
            return col.texts[index]
        if index not in col.flipped:
            col.flipped[index] = json.dumps(flip_trade(col.records[index]), separators=(",", ":"))
        return col.flipped[index]

    def _stream(self, col, keys, indexes, signature, params) -> int:
        """Server-sent events from the cursor (or Last-Event-ID) onwards, ascending."""
        cursor = self.headers.get("Last-Event-ID") or params.get("cursor", "")
        trade = signature[0] == "t"
        query = parse_page_query({"cursor": cursor}, trade=trade)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._event(f'retry: {self.replay.stream_retry_ms}\nevent: open\ndata: "hello"\n\n')
        start = (
            len(keys)
            if query.cursor == "now"
            else (0 if not query.cursor else bisect_right(keys, paging_key(query.cursor, trade=trade)))
        )
        cap = self.replay.stream_events_per_connection
        stop = len(keys) if cap is None else min(len(keys), start + cap)
        for p in range(start, stop):
            token = col.records[indexes[p]]["paging_token"]
            self._event(f"id: {token}\ndata: {self._text(col, indexes[p], signature)}\n\n")
        if self.replay._live is not None:
            full_keys = view(col, signature)[0]
            after = bisect_right(full_keys, paging_key(query.cursor, trade=trade)) if query.cursor not in ("", "now") else 0
            self._stream_live(col, signature, max(start, stop, after))
        elif stop < len(keys):
            return 200  # a dropped connection: the client reconnects with Last-Event-ID
        time.sleep(self.replay.stream_idle_s)  # no new ledgers arrive in a replay
        self._event('event: close\ndata: "byebye"\n\n')
        return 200

    def _stream_live(self, col: _Collection, signature: tuple, sent: int) -> None:
        """Keep the connection open and send records as they are released, until all are sent."""
        replay = self.replay
        while True:
            keys, indexes = _released_view(*view(col, signature), replay.released(col))
            for p in range(sent, len(keys)):
                token = col.records[indexes[p]]["paging_token"]
                self._event(f"id: {token}\ndata: {self._text(col, indexes[p], signature)}\n\n")
            sent = max(sent, len(keys))
            if replay.n_released() >= replay._live_total():
                return
            time.sleep(min(0.02, 1.0 / replay.live_rate))

    def _event(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()

    def _json(self, status: int, doc: dict) -> int:
        return self._send(status, json.dumps(doc).encode(), "application/hal+json; charset=utf-8")

    def _problem(self, status: int, detail: str, *, headers: dict | None = None, extras: dict | None = None) -> int:
        kind, title = _PROBLEMS.get(status, ("server_error", "Error"))
        doc = {"type": f"https://stellar.org/horizon-errors/{kind}", "title": title, "status": status, "detail": detail}
        if extras:
            doc["extras"] = extras
        return self._send(status, json.dumps(doc).encode(), "application/problem+json; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status


class _LiveOrder:
    """Trades and operations merged in paging-key order: which prefix of each is released after k records."""

    def __init__(self, trade_keys: list[tuple[int, int]], operation_keys: list[tuple[int, int]]):
        merged = sorted([(k, 0) for k in trade_keys] + [(k, 1) for k in operation_keys])
        self.keys = merged
        self.n_trades = [0]
        for _, kind in merged:
            self.n_trades.append(self.n_trades[-1] + (kind == 0))

    def prefix(self, trade: bool, k: int) -> int:
        return self.n_trades[k] if trade else k - self.n_trades[k]

    def position(self, key: tuple[int, int], trade: bool) -> int | None:
        i = bisect_left(self.keys, (key, 0 if trade else 1))
        return i if i < len(self.keys) and self.keys[i] == (key, 0 if trade else 1) else None

    def ledger_at(self, k: int) -> int:
        return _ledger_of(self.keys[k - 1][0]) if k else 0


def _released_view(keys: list, indexes: list, n_released: int) -> tuple[list, list]:
    """The part of a filtered view whose records are released (a prefix: both are in key order)."""
    cut = bisect_left(indexes, n_released)
    return keys[:cut], indexes[:cut]


def _page_links(href: str, params: dict[str, str], query: PageQuery, tokens: list[str]) -> dict:
    """self/next/prev links of a page; an empty page's next keeps the same cursor."""
    keep = {k: v for k, v in params.items() if k not in ("cursor", "limit", "order") and not k.startswith("X-Client")}

    def link(cursor: str, desc: bool) -> dict:
        q = urlencode({**keep, "cursor": cursor, "limit": query.limit, "order": "desc" if desc else "asc"})
        return {"href": f"{href}?{q}"}

    last = tokens[-1] if tokens else query.cursor
    first = tokens[0] if tokens else query.cursor
    return {"self": link(query.cursor, query.desc), "next": link(last, query.desc), "prev": link(first, not query.desc)}
