"""The one way into the DuckDB store.

Concurrency model (DuckDB's, documented in README "Store"):
- One process holds the file read-write; a second process that opens it (the app
  while `python -m engine ingest` runs on the same file, or the reverse) gets
  `StoreBusy` naming the file. Run ingestion from the app, or stop the app first.
- Inside a process there is one connection; every read takes its own
  `cursor()`, so Streamlit's per-session threads can read concurrently. Writes are
  serialised by a lock and each batch is one transaction: its rows, its quarantined
  records and the ingest cursor that covers them commit together or not at all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from storage.errors import BadInput, StoreBusy, StoreWriteError
from storage.feature_reads import FeatureReads
from storage.queries import Queries
from storage.ring_reads import RingReads
from storage.schema import MIGRATIONS, SCHEMA_VERSION
from storage.watch_queries import WatchQueries


@dataclass(frozen=True)
class CursorPosition:
    """Where a source/stream/scope stopped; `done` once the request is complete."""

    source: str
    stream: str
    scope: str
    position: str
    done: bool = False


@dataclass(frozen=True)
class BatchResult:
    n_trades: int  # new trade rows (duplicates of stored rows are not counted)
    n_operations: int
    n_quarantined: int


_TRADE_COLUMNS = (
    "id, op_id, ledger, closed_at, trade_type, pair_id, seller_account, seller_offer_id, "
    "seller_pool_id, buyer_account, buyer_offer_id, buyer_pool_id, sold_asset, sold_amount, "
    "bought_asset, bought_amount, price_n, price_d, source"
)
_OPERATION_COLUMNS = (
    "id, ledger, closed_at, type, tx_hash, successful, source_account, from_account, to_account, "
    "asset, amount, source_asset, source_amount, offer_id, buying_asset, price_n, price_d, "
    "balance_id, memo, source"
)

_SCORE_COLUMNS = (
    "wallet, pair_id, score, benford_flag, ml_flag, timestamp, confidence, ring_id, model_version, bft_divergence"
)

_EVICT_TO = "256MB"  # DuckDB's cache after a big read, for a moment (Store._let_go_of_cache)


class Store(Queries, WatchQueries, FeatureReads, RingReads):
    """A DuckDB file holding the canonical Stellar data and everything derived from it.

    Its workbench read queries (storage.queries.Queries) are methods too: `store.top_flagged(threshold=70)`."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusy(
                    f"{self.path} is open read-write in another process (the app or a CLI "
                    "ingest). Stop that process or run this step from it, then retry."
                ) from exc
            raise BadInput(f"cannot open store {self.path}: {exc}") from exc
        self._con.execute("SET TimeZone = 'UTC'")
        # A large append leaves up to two part-filled row groups per batch (one per
        # thread). Merging them when the store checkpoints rewrote the whole append:
        # 0.45 s of a 3.8 s million-trade ingest. Scans do not notice a few extra
        # row groups, and nothing here deletes enough rows to need the space back.
        self._con.execute("SET max_vacuum_tasks = 0")
        self._write_lock = threading.Lock()
        self._cursors_lock = threading.Lock()  # guards _open_cursors; held while the cache is let go
        self._open_cursors = 0
        if not read_only:
            self._migrate()
            self._mark_interrupted()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._cursors_lock:
            cur = self._con.cursor()
            self._open_cursors += 1
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()
            with self._cursors_lock:
                self._open_cursors -= 1

    def _let_go_of_cache(self, cur: duckdb.DuckDBPyConnection) -> None:
        """DuckDB's cached blocks let go (its memory limit lowered to _EVICT_TO for a moment, then
        back to its default: nothing here sets another), only when `cur` is the store's one open
        cursor: the limit is the database's, so a query running beside would fail beyond it. No
        cursor opens meanwhile (the lock)."""
        with self._cursors_lock:
            if self._open_cursors > 1:
                return
            try:
                cur.execute(f"SET memory_limit = '{_EVICT_TO}'")
            except duckdb.Error:
                pass  # more than that is pinned: the cache stays
            finally:
                cur.execute("RESET memory_limit")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on a fresh cursor; rolled back on any error."""
        with self._write_lock, self._cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                _rollback(cur)
                if _is_write_failure(exc):
                    raise StoreWriteError(
                        f"writing to {self.path} failed ({exc}); nothing of this batch was kept. "
                        "Free disk space or memory and run the same command again: it resumes."
                    ) from exc
                raise

    def _migrate(self) -> None:
        with self.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = cur.execute("SELECT max(version) FROM schema_version").fetchall()
            current = rows[0][0] or 0
            if current > SCHEMA_VERSION:
                raise BadInput(
                    f"{self.path} has schema version {current}, newer than this LedgerLens "
                    f"({SCHEMA_VERSION}). Upgrade LedgerLens to open it."
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                cur.execute(MIGRATIONS[version - 1])
                cur.execute("INSERT INTO schema_version VALUES (?)", [version])

    def _mark_interrupted(self) -> None:
        """Runs left 'running' by a process that died (kill -9, power loss) become
        'interrupted'. Only one process holds the file read-write, so a run still
        'running' that this process did not start is not running anywhere: its
        cursor says where it stopped, and running the same request resumes there."""
        live = sorted(_LIVE_RUNS.get(self._key, set())) or [-1]
        with self.transaction() as cur:
            cur.execute(
                "UPDATE ingest_runs SET status = 'interrupted', error = ? WHERE status = 'running' "
                f"AND run_id NOT IN ({', '.join('?' for _ in live)})",
                [_INTERRUPTED, *live],
            )

    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    @property
    def schema_version(self) -> int:
        return self._scalar("SELECT max(version) FROM schema_version")

    # -- generic reads ---------------------------------------------------------------

    def _frame(self, sql: str, params: list | dict | None = None) -> pl.DataFrame:
        """Rows of `sql` (positional ? or named $name parameters) as a polars frame, via Arrow (UTC-aware)."""
        with self._cursor() as cur:
            return pl.from_arrow(cur.sql(sql, params=params or None).to_arrow_table())

    def _scalar(self, sql: str, params: list | None = None):
        with self._cursor() as cur:
            return cur.execute(sql, params or []).fetchall()[0][0]

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables."""
        tables = ("trades", "operations", "accounts", "assets", "liquidity_pools", "quarantine", "ingest_runs")
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {_STORED.get(t, t)}" for t in tables)
        with self._cursor() as cur:
            return {name: n for name, n in cur.execute(sql).fetchall()}

    # -- ingestion writes ---------------------------------------------------------------

    def start_run(self, source: str, params: dict) -> int:
        """Record a new ingest run; returns its id."""
        with self.transaction() as cur:
            rows = cur.execute(
                "INSERT INTO ingest_runs (source, params, started_at, status) "
                "VALUES (?, ?, ?, 'running') RETURNING run_id",
                [source, json.dumps(params, sort_keys=True, default=str), _now()],
            ).fetchall()
        _LIVE_RUNS.setdefault(self._key, set()).add(rows[0][0])
        return rows[0][0]

    def finish_run(self, run_id: int, *, status: str, n_ledgers: int = 0, error: str | None = None) -> None:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE ingest_runs SET status = ?, finished_at = ?, n_ledgers = ?, error = ? WHERE run_id = ?",
                [status, _now(), n_ledgers, error, run_id],
            )
        _LIVE_RUNS.get(self._key, set()).discard(run_id)

    def write_batch(
        self,
        *,
        run_id: int | None,
        trades: pl.DataFrame | None = None,
        operations: pl.DataFrame | None = None,
        quarantine: pl.DataFrame | None = None,
        cursor: CursorPosition | None = None,
    ) -> BatchResult:
        """Write one batch and the cursor that covers it in a single transaction.

        Rows whose natural key is already stored are left as they are (idempotent
        re-runs); accounts, assets and pools are upserted from the batch.
        """
        with self.transaction() as cur:
            n_trades = n_ops = 0
            quarantined_before = cur.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
            if trades is not None and trades.height:
                n_trades = _insert(cur, "trades", _TRADE_COLUMNS, trades, run_id, _UPSERT_FROM_TRADES)
            if operations is not None and operations.height:
                n_ops = _insert(cur, "operations", _OPERATION_COLUMNS, operations, run_id, _UPSERT_FROM_OPERATIONS)
            _insert_quarantine(cur, quarantine, run_id)
            n_quar = cur.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] - quarantined_before
            if cursor is not None:
                _set_cursor(cur, cursor)
            if run_id is not None:
                cur.execute(
                    "UPDATE ingest_runs SET n_trades = n_trades + ?, n_operations = n_operations + ?, "
                    "n_quarantined = n_quarantined + ? WHERE run_id = ?",
                    [n_trades, n_ops, n_quar, run_id],
                )
        return BatchResult(n_trades, n_ops, n_quar)

    def record_alerts(self, alerts: pl.DataFrame | None, *, cursor: CursorPosition | None = None) -> int:
        """Store alerts (ALERT_COLUMNS; one per (wallet, pair, ledger): a repeat is ignored) and the watch's
        cursor in one transaction, so a killed watch neither loses nor repeats them. Returns rows added."""
        with self.transaction() as cur:
            added = 0
            if alerts is not None and alerts.height:
                cur.register("alert_rows", alerts.select(ALERT_COLUMNS.split(", ")).to_arrow())
                try:
                    before = cur.execute("SELECT count(*) FROM alerts").fetchall()[0][0]
                    cur.execute(f"INSERT OR IGNORE INTO alerts ({ALERT_COLUMNS}) SELECT {ALERT_COLUMNS} FROM alert_rows")
                    added = cur.execute("SELECT count(*) FROM alerts").fetchall()[0][0] - before
                finally:
                    _unregister(cur, "alert_rows")
            if cursor is not None:
                _set_cursor(cur, cursor)
        return added

    def mark_alerts_delivered(self, ids: list[int]) -> None:
        """Stamp alerts as delivered (a channel accepted them, or they went to its dead-letter file)."""
        if ids:
            with self.transaction() as cur:
                cur.execute("UPDATE alerts SET delivered_at = ? WHERE list_contains(?, id)", [_now(), list(ids)])

    def get_cursor(self, source: str, stream: str, scope: str) -> CursorPosition | None:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT position, done FROM ingest_cursors WHERE source = ? AND stream = ? AND scope = ?",
                [source, stream, scope],
            ).fetchall()
        if not rows:
            return None
        return CursorPosition(source, stream, scope, rows[0][0], rows[0][1])

    # -- reads ---------------------------------------------------------------------------

    def trades(
        self,
        *,
        ledger_from: int | None = None,
        ledger_to: int | None = None,
        pair_id: str | None = None,
        account: str | None = None,
    ) -> pl.DataFrame:
        """Stored trades in canonical form (engine.schemas.TRADES_SCHEMA), by id."""
        where, params = _ledger_where(ledger_from, ledger_to)
        if pair_id is not None:
            where.append("pair_id = ?")
            params.append(pair_id)
        if account is not None:
            where.append("(seller_account = ? OR buyer_account = ?)")
            params += [account, account]
        sql = f"SELECT {_TRADE_COLUMNS} FROM trades {_where(where)} ORDER BY op_id, id"
        return self._frame(sql, params)

    def operations(
        self, *, types: tuple[str, ...] | None = None, ledger_from: int | None = None, ledger_to: int | None = None
    ) -> pl.DataFrame:
        """Stored operations (engine.schemas.OPERATIONS_SCHEMA), by id."""
        where, params = _ledger_where(ledger_from, ledger_to)
        if types:
            where.append(f"type IN ({', '.join('?' for _ in types)})")
            params += list(types)
        return self._frame(f"SELECT {_OPERATION_COLUMNS} FROM operations {_where(where)} ORDER BY id", params)

    def funding_edges(self, *, ledger_to: int | None = None) -> pl.DataFrame:
        """Funding edges: id, ledger, closed_at, type, from_account, to_account, asset, amount."""
        where, params = _ledger_where(None, ledger_to)
        return self._frame(f"SELECT * FROM funding_edges {_where(where)} ORDER BY id", params)

    def accounts(self) -> pl.DataFrame:
        """account_id, created_at, funder, starting_balance, first_seen_ledger, last_seen_ledger."""
        return self._frame("SELECT * FROM accounts ORDER BY account_id")

    def runs(self, *, limit: int = 50) -> pl.DataFrame:
        """Ingest runs, newest first: the columns of `ingest_runs` plus `resumable`
        (interrupted or failed, and no later run of the same request finished)."""
        return self._frame(_RUNS, [limit])

    def quarantined(self, *, run_id: int | None = None, limit: int = 1000) -> pl.DataFrame:
        where, params = ([], []) if run_id is None else (["run_id = ?"], [run_id])
        sql = (
            "SELECT id, run_id, source, location, record_id, reason, raw, quarantined_at "
            f"FROM quarantine {_where(where)} ORDER BY id LIMIT ?"
        )
        return self._frame(sql, params + [limit])

    def save_derived(self, name: str, frame: pl.DataFrame) -> None:
        """Replace derived table `name` (one of DERIVED_TABLES) with `frame`, atomically."""
        table = _derived_name(name)
        with self.transaction() as cur:
            cur.register("derived_rows", frame.to_arrow())
            try:
                cur.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM derived_rows")
            finally:
                cur.unregister("derived_rows")

    def save_derived_files(self, name: str, files: list[Path]) -> None:
        """Replace derived table `name` with the rows of Parquet `files` (same columns, rows in file
        order), atomically. DuckDB streams them in: a table bigger than memory never passes
        through Python (the features step's Benford table, written one partition at a time)."""
        table = _derived_name(name)
        with self.transaction() as cur:
            cur.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet($files)",
                        {"files": [str(f) for f in files]})  # fmt: skip

    def load_derived(self, name: str, *, where: dict[str, object] | None = None) -> pl.DataFrame | None:
        """Derived table `name` (None if never computed), filtered by column = value pairs."""
        table = _derived_name(name)
        with self._cursor() as cur:
            exists = cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchall()[0][0]
            if not exists:
                return None
            columns = {r[0] for r in cur.execute(f"DESCRIBE {table}").fetchall()}
            clauses, params = [], []
            for column, value in (where or {}).items():
                if column not in columns:
                    raise BadInput(f"{name} has no column {column!r}")
                clauses.append(f'"{column}" = ?')
                params.append(value)
            return pl.from_arrow(
                cur.sql(f"SELECT * FROM {table} {_where(clauses)}", params=params or None).to_arrow_table()
            )

    # -- scores, annotations, reports -------------------------------------------------------

    def append_scores(self, scores: pl.DataFrame) -> int:
        """Append RiskScore rows (columns of the `scores` table minus scored_at); returns rows added."""
        with self.transaction() as cur:
            cur.register("score_rows", scores.select(_SCORE_COLUMNS.split(", ")).to_arrow())
            try:
                before = cur.execute("SELECT count(*) FROM scores").fetchall()[0][0]
                cur.execute(
                    f"INSERT OR REPLACE INTO scores ({_SCORE_COLUMNS}, scored_at) SELECT {_SCORE_COLUMNS}, ? "
                    "FROM score_rows",
                    [_now()],
                )
                return cur.execute("SELECT count(*) FROM scores").fetchall()[0][0] - before
            finally:
                _unregister(cur, "score_rows")

    def latest_scores(self, *, wallet: str | None = None, pair_id: str | None = None) -> pl.DataFrame:
        """The most recent score of each (wallet, pair), optionally for one wallet / pair."""
        where, params = [], []
        if wallet is not None:
            where.append("wallet = ?")
            params.append(wallet)
        if pair_id is not None:
            where.append("pair_id = ?")
            params.append(pair_id)
        sql = (
            f"SELECT {_SCORE_COLUMNS}, scored_at FROM scores {_where(where)} "
            "QUALIFY row_number() OVER (PARTITION BY wallet, pair_id ORDER BY scored_at DESC, timestamp DESC) = 1 "
            "ORDER BY score DESC, wallet, pair_id"
        )
        return self._frame(sql, params)

    def score_history(self, wallet: str, *, pair_id: str | None = None) -> pl.DataFrame:
        where, params = ["wallet = ?"], [wallet]
        if pair_id is not None:
            where.append("pair_id = ?")
            params.append(pair_id)
        return self._frame(f"SELECT * FROM scores {_where(where)} ORDER BY scored_at, timestamp", params)

    def append_annotations(self, rows: pl.DataFrame) -> int:
        """Append annotation rows (wallet, pair_id, label, note, annotator_id, annotated_at, label_source, hmac)."""
        cols = "wallet, pair_id, label, note, annotator_id, annotated_at, label_source, hmac"
        with self.transaction() as cur:
            cur.register("annotation_rows", rows.select(cols.split(", ")).to_arrow())
            try:
                cur.execute(f"INSERT INTO annotations ({cols}) SELECT {cols} FROM annotation_rows")
            finally:
                _unregister(cur, "annotation_rows")
        return rows.height

    def annotations(self, *, wallet: str | None = None) -> pl.DataFrame:
        """Every annotation row (the audit trail), oldest first."""
        where, params = ([], []) if wallet is None else (["wallet = ?"], [wallet])
        return self._frame(f"SELECT * FROM annotations {_where(where)} ORDER BY id", params)

    def record_report(
        self, *, fingerprint: str, wallet: str, pair_id: str, fmt: str, path: str, model_version: str | None
    ) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?, ?, ?, ?)",
                [fingerprint, wallet, pair_id, fmt, path, _now(), model_version],
            )

    def reports(self) -> pl.DataFrame:
        return self._frame("SELECT * FROM reports ORDER BY generated_at DESC")

    def ledger_span(self) -> tuple[int | None, int | None]:
        """(first, last) ledger holding a stored trade or operation."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT min(l), max(l) FROM (SELECT ledger AS l FROM trade_rows UNION ALL SELECT ledger FROM operation_rows)"
            ).fetchall()
        return rows[0][0], rows[0][1]

    def export_trades(self, out: Path, *, ledger_from: int | None = None, ledger_to: int | None = None,
                      fmt: str = "json") -> int:  # fmt: skip
        """Write stored trades by op_id: canonical JSON Lines (amounts as 7-decimal strings), or with
        fmt="parquet" canonical Parquet (engine.schemas.TRADES_SCHEMA: UTC timestamps, amounts in
        stroops) that an engine reading files (Spark) takes as it is. Returns the rows written."""
        where, params = _ledger_where(ledger_from, ledger_to)
        amount = "printf('%d.%07d', {c} // 10000000, {c} % 10000000)"
        select = f"SELECT * EXCLUDE (run_id) FROM trades {_where(where)} ORDER BY op_id, id" if fmt == "parquet" else (
            "SELECT id, ledger, strftime(closed_at, '%Y-%m-%dT%H:%M:%SZ') AS closed_at, trade_type, "
            "seller_account, seller_offer_id, seller_pool_id, buyer_account, buyer_offer_id, buyer_pool_id, "
            f"sold_asset, {amount.format(c='sold_amount')} AS sold_amount, bought_asset, "
            f"{amount.format(c='bought_amount')} AS bought_amount, price_n, price_d "
            f"FROM trades {_where(where)} ORDER BY op_id, id"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        with self._cursor() as cur:
            n = cur.execute(f"SELECT count(*) FROM trades {_where(where)}", params).fetchall()[0][0]
            cur.execute(f"COPY ({select}) TO ? (FORMAT {'parquet' if fmt == 'parquet' else 'json'})", params + [str(out)])
        return n


# Run ids this process started and has not finished, per store file: the runs that
# are really running when the file is opened again in the same process.
_LIVE_RUNS: dict[str, set[int]] = {}
ALERT_COLUMNS = "wallet, pair_id, score, ring_id, ledger, closed_at, detected_at, reasons, model_version"


def _set_cursor(cur, cursor: CursorPosition) -> None:
    cur.execute(
        "INSERT INTO ingest_cursors VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
        "SET position = excluded.position, done = excluded.done, updated_at = excluded.updated_at",
        [cursor.source, cursor.stream, cursor.scope, cursor.position, cursor.done, _now()],
    )
_INTERRUPTED = (
    "interrupted: the process stopped before the run finished (killed or crashed); "
    "run the same ingest again to resume from the last committed batch"
)
# A request is its source and params without `resume_from` (which each run of it records).
_RUNS = """
SELECT r.*, r.status IN ('interrupted', 'failed') AND NOT EXISTS (
    SELECT 1 FROM ingest_runs l WHERE l.run_id > r.run_id AND l.status = 'done' AND l.source = r.source
    AND json_merge_patch(l.params, '{"resume_from": null}') = json_merge_patch(r.params, '{"resume_from": null}')
) AS resumable
FROM ingest_runs r ORDER BY r.run_id DESC LIMIT ?
"""


def _is_write_failure(exc: BaseException) -> bool:
    """Disk full, file too large, I/O or memory failure while writing or committing."""
    if isinstance(exc, (duckdb.IOException, duckdb.OutOfMemoryException)):
        return True
    return isinstance(exc, duckdb.TransactionException) and "Failed to commit" in str(exc)


def _unregister(cur, name: str) -> None:
    try:
        cur.unregister(name)
    except duckdb.Error:  # an aborted transaction refuses it; the cursor is closed anyway
        pass


def _rollback(cur) -> None:
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:  # the transaction may already be aborted
        pass


# Derived results the engine computes and persists whole (replaced on each run).
DERIVED_TABLES = frozenset(
    {"features", "benford", "rings", "ring_members", "closed_loops", "snapshots", "embeddings", "scores_latest"}
)


def _derived_name(name: str) -> str:
    if name not in DERIVED_TABLES:
        raise BadInput(f"unknown derived table {name!r}; known: {sorted(DERIVED_TABLES)}")
    return f"derived_{name}"


def _now() -> datetime:
    return datetime.now(UTC)


def _ledger_where(ledger_from: int | None, ledger_to: int | None) -> tuple[list[str], list]:
    where, params = [], []
    if ledger_from is not None:
        where.append("ledger >= ?")
        params.append(int(ledger_from))
    if ledger_to is not None:
        where.append("ledger <= ?")
        params.append(int(ledger_to))
    return where, params


def _where(clauses: list[str]) -> str:
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


# Table names and the statements below are constants: no outside text reaches an f-string.
def _insert(cur, table: str, columns: str, frame: pl.DataFrame, run_id, upserts: tuple[str, ...]) -> int:
    """Insert the frame's new ids (registered as `batch_rows`), then run the upserts. The batch's
    accounts are gathered first (`account_batch`), and those without a key get one from there,
    so the rows are written with their accounts' keys.

    A row whose id is stored with other content (another source, or a later chunk of
    the same file, disagreeing) is not written over: it goes to quarantine. An id
    names its ledger, so both checks look only at the batch's ledger range.
    """
    cur.register("batch_rows", frame.select(columns.split(", ")).to_arrow(compat_level=pl.CompatLevel.newest()))
    span = [frame.get_column("ledger").min(), frame.get_column("ledger").max()]
    stored = _STORED[table]
    try:
        overlap = _any_stored(cur, stored, span)
        if overlap:
            _quarantine_conflicts(cur, table, columns, run_id, span)
        cur.execute(_ACCOUNT_BATCH[table])
        cur.execute(_NEW_ACCOUNT_KEYS)
        before = cur.execute(f"SELECT count(*) FROM {stored}").fetchall()[0][0]
        # Ids are unique: the decoders drop repeats inside a batch and, when some batch id is
        # stored, this anti-join drops those. (An ART primary key made inserts 4x slower; one
        # writer per process, under the write lock, keeps the check race-free.)
        if overlap:
            cur.execute(_INSERT_NEW[table] + _NOT_STORED.format(stored=stored), [run_id, *span])
        else:
            cur.execute(_INSERT_NEW[table], [run_id])
        after = cur.execute(f"SELECT count(*) FROM {stored}").fetchall()[0][0]
        for sql in upserts:
            cur.execute(sql)
        return after - before
    finally:
        _unregister(cur, "batch_rows")


_STORED = {"trades": "trade_rows", "operations": "operation_rows"}  # the physical table behind each name
# The batch's accounts not keyed yet get their keys (trades and operations share them), in id
# order, from the batch's accounts as the account upsert gathers them (`_ACCOUNT_BATCH`). Keying
# them from a gathering of their own took 7.4 s of a 10M-trade ingest's writes, this about 2 s.
_NEW_ACCOUNT_KEYS = """
INSERT INTO account_keys (account_id)
SELECT account_id FROM account_batch
WHERE account_id IS NOT NULL AND account_id NOT IN (SELECT account_id FROM account_keys) ORDER BY account_id
"""
_INSERT_NEW = {
    "trades": """
INSERT INTO trade_rows
SELECT b.id, b.op_id, b.ledger, b.closed_at, b.trade_type, b.pair_id, s.account_key, b.seller_offer_id,
       b.seller_pool_id, k.account_key, b.buyer_offer_id, b.buyer_pool_id, b.sold_asset, b.sold_amount,
       b.bought_asset, b.bought_amount, b.price_n, b.price_d, b.source, ?
FROM batch_rows b
LEFT JOIN account_keys s ON s.account_id = b.seller_account
LEFT JOIN account_keys k ON k.account_id = b.buyer_account
""",
    "operations": """
INSERT INTO operation_rows
SELECT b.id, b.ledger, b.closed_at, b.type, b.tx_hash, b.successful, s.account_key, f.account_key, t.account_key,
       b.asset, b.amount, b.source_asset, b.source_amount, b.offer_id, b.buying_asset, b.price_n, b.price_d,
       b.balance_id, b.memo, b.source, ?
FROM batch_rows b
LEFT JOIN account_keys s ON s.account_id = b.source_account
LEFT JOIN account_keys f ON f.account_id = b.from_account
LEFT JOIN account_keys t ON t.account_id = b.to_account
""",
}
_NOT_STORED = "WHERE b.id NOT IN (SELECT id FROM {stored} WHERE ledger BETWEEN ? AND ?)"


def _any_stored(cur, stored: str, span: list[int]) -> bool:
    """Whether a batch id is already stored. A first load stores none, and this reads ids alone;
    the conflict check compares whole rows through the `trades` view (two account joins), and
    its cost grew with the store (0.2 s of a 1M-trade ingest, 6.9 s of a 10M one)."""
    sql = f"SELECT EXISTS (SELECT 1 FROM batch_rows WHERE id IN (SELECT id FROM {stored} WHERE ledger BETWEEN ? AND ?))"
    return cur.execute(sql, span).fetchall()[0][0]


def _quarantine_conflicts(cur, table: str, columns: str, run_id, span: list[int]) -> None:
    """Quarantine batch rows whose id is already stored with different content. The
    location names what this run reads (its file, URL or folder) and the stored row's run."""
    compared = [c for c in columns.split(", ") if c not in ("id", "source")]
    differs = " OR ".join(f"b.{c} IS DISTINCT FROM t.{c}" for c in compared)
    reading = (
        "coalesce((SELECT coalesce(json_extract_string(params, '$.path'), json_extract_string(params, '$.horizon_url'), "
        "json_extract_string(params, '$.source')) FROM ingest_runs WHERE run_id = ?), b.source)"
    )
    cur.execute(
        "INSERT OR IGNORE INTO quarantine (key, run_id, source, location, record_id, reason, raw, quarantined_at) "
        "SELECT md5(concat_ws('|', b.source, 'stored ' || t.source, 'conflict', to_json(b)::VARCHAR)), ?, b.source, "
        f"{reading} || ': id ' || b.id::VARCHAR || ', a {table} row already stored from ' || t.source "
        "|| ' (run ' || coalesce(t.run_id::VARCHAR, '?') || ')', "
        "b.id::VARCHAR, 'duplicate id ' || b.id::VARCHAR || ' with different content than the stored row: "
        "the stored row is kept; compare the two sources', to_json(b)::VARCHAR, ? "
        f"FROM batch_rows b JOIN (SELECT * FROM {table} WHERE ledger BETWEEN ? AND ?) t ON b.id = t.id "
        f"WHERE {differs}",
        [run_id, run_id, _now(), *span],
    )


def _insert_quarantine(cur, frame: pl.DataFrame | None, run_id: int | None) -> int:
    if frame is None or frame.height == 0:
        return 0
    rows = frame.select("source", "location", "record_id", "reason", "raw")
    cur.register("quarantine_rows", rows.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        before = cur.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
        cur.execute(
            "INSERT OR IGNORE INTO quarantine (key, run_id, source, location, record_id, reason, raw, "
            "quarantined_at) SELECT md5(concat_ws('|', source, location, reason, coalesce(raw, ''))), "
            "?, source, location, record_id, reason, raw, ? FROM quarantine_rows",
            [run_id, _now()],
        )
        return cur.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] - before
    finally:
        _unregister(cur, "quarantine_rows")


# `account_batch`: every account of the batch (the rows of the query `seen`, a constant) with what
# the batch says of it, made before the rows are inserted (`_ACCOUNT_BATCH`); their keys come from
# it (`_NEW_ACCOUNT_KEYS`), and so does the account upsert.
_ACCOUNT_BATCH_OF = """
CREATE OR REPLACE TEMP TABLE account_batch AS
SELECT account_id, min(created_at) AS created_at, arg_min(funder, created_at) AS funder,
       arg_min(starting_balance, created_at) AS starting_balance, min(ledger) AS first_seen_ledger,
       max(ledger) AS last_seen_ledger
FROM ({seen}) GROUP BY account_id
"""
# Accounts seen in a batch: an UPDATE of the stored ones, then an INSERT of the new ones.
# (INSERT ... ON CONFLICT DO UPDATE runs as a MERGE whose update cost grew with the stored
# table: 0.8 s per batch at first, 5.8 s by 4M trades; UPDATE ... FROM joins only the batch's
# accounts: 0.1-0.2 s.) One writer under the write lock, so nothing comes between the two.
_ACCOUNT_UPSERT = (
    """
UPDATE accounts SET
    created_at = coalesce(accounts.created_at, b.created_at),
    funder = coalesce(accounts.funder, b.funder),
    starting_balance = coalesce(accounts.starting_balance, b.starting_balance),
    first_seen_ledger = least(accounts.first_seen_ledger, b.first_seen_ledger),
    last_seen_ledger = greatest(accounts.last_seen_ledger, b.last_seen_ledger)
FROM account_batch b WHERE accounts.account_id = b.account_id
""",
    """
INSERT INTO accounts (account_id, created_at, funder, starting_balance, first_seen_ledger, last_seen_ledger)
SELECT * FROM account_batch b WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = b.account_id)
""",
    "DROP TABLE account_batch",
)
_ASSET_UPSERT = """
INSERT INTO assets (asset, code, issuer, first_seen_ledger)
SELECT asset, split_part(asset, ':', 1), nullif(split_part(asset, ':', 2), 'native'), min(ledger)
FROM ({seen}) WHERE asset IS NOT NULL GROUP BY asset
ON CONFLICT (asset) DO UPDATE SET first_seen_ledger = least(assets.first_seen_ledger, excluded.first_seen_ledger)
"""


_NO_CREATION = "NULL::TIMESTAMPTZ AS created_at, NULL AS funder, NULL::BIGINT AS starting_balance"

# The batch's accounts (`account_batch`) from the rows of each table
_ACCOUNT_BATCH = {
    "trades": _ACCOUNT_BATCH_OF.format(
        seen=f"SELECT seller_account AS account_id, {_NO_CREATION}, ledger FROM batch_rows "
        f"WHERE seller_account IS NOT NULL UNION ALL "
        f"SELECT buyer_account, {_NO_CREATION}, ledger FROM batch_rows WHERE buyer_account IS NOT NULL"
    ),
    "operations": _ACCOUNT_BATCH_OF.format(
        seen="SELECT to_account AS account_id, closed_at AS created_at, from_account AS funder, "
        "amount AS starting_balance, ledger FROM batch_rows "
        "WHERE type = 'create_account' AND coalesce(successful, TRUE) UNION ALL "
        # one SELECT per column, not unnest([...]) of a list per row: 5x faster per batch
        + " UNION ALL ".join(
            f"SELECT {c}, {_NO_CREATION}, ledger FROM batch_rows WHERE {c} IS NOT NULL"
            for c in ("source_account", "from_account", "to_account")
        )
    ),
}
_UPSERT_FROM_TRADES = (
    *_ACCOUNT_UPSERT,
    _ASSET_UPSERT.format(
        seen="SELECT sold_asset AS asset, ledger FROM batch_rows UNION ALL SELECT bought_asset, ledger FROM batch_rows"
    ),
    """
INSERT INTO liquidity_pools (pool_id, pair_id, first_seen_ledger)
SELECT pool_id, any_value(pair_id), min(ledger) FROM (
    SELECT coalesce(seller_pool_id, buyer_pool_id) AS pool_id, pair_id, ledger FROM batch_rows
) WHERE pool_id IS NOT NULL GROUP BY pool_id
ON CONFLICT (pool_id) DO UPDATE SET
    first_seen_ledger = least(liquidity_pools.first_seen_ledger, excluded.first_seen_ledger)
""",
)
_UPSERT_FROM_OPERATIONS = (
    *_ACCOUNT_UPSERT,
    _ASSET_UPSERT.format(
        seen="SELECT asset, ledger FROM batch_rows UNION ALL SELECT source_asset, ledger FROM batch_rows "
        "UNION ALL SELECT buying_asset, ledger FROM batch_rows"
    ),
)
