from __future__ import annotations

import json

import duckdb
import polars as pl
import pytest

from engine.ingest.horizon_records import decode_trades
from storage.schema import MIGRATIONS, SCHEMA_VERSION
from storage.store import CursorPosition, Store
from tests.factories import horizon_trade


def _trades(n: int) -> pl.DataFrame:
    raw = [json.dumps(horizon_trade(i)) for i in range(n)]
    trades, bad = decode_trades(raw, source="files", locations=[str(i) for i in range(n)])
    assert bad.height == 0
    return trades


def _file_at_version(path, version: int) -> duckdb.DuckDBPyConnection:
    """A connection to a new file with the schema as of `version` (an older LedgerLens's)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, sql in enumerate(MIGRATIONS[:version], start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_version VALUES (?)", [number])
    return con


def test_new_store_is_at_current_schema_version(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store.counts()["trades"] == 0


def test_older_file_is_upgraded_on_open(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")  # a file from before migration 1
    con.close()
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.counts()["trades"] == 0


def test_version_2_file_with_trades_upgrades_to_account_keys_without_changing_a_row(tmp_path):
    from storage.store import _TRADE_COLUMNS

    trades = _trades(40).with_columns(  # a pool side: one account is null
        buyer_account=pl.when(pl.col("op_id") % 5 == 0).then(None).otherwise(pl.col("buyer_account"))
    )
    path = tmp_path / "v2.duckdb"
    con = _file_at_version(path, 2)
    con.register("old_rows", trades.select(_TRADE_COLUMNS.split(", ")).to_arrow())
    con.execute(f"INSERT INTO trades ({_TRADE_COLUMNS}, run_id) SELECT {_TRADE_COLUMNS}, 7 FROM old_rows")
    con.close()

    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        upgraded = s.trades()
        assert upgraded.equals(trades.sort("op_id", "id").select(upgraded.columns))
        n_accounts = s._scalar("SELECT count(*) FROM account_keys")
        assert n_accounts == len(set(trades["seller_account"].drop_nulls()) | set(trades["buyer_account"].drop_nulls()))
        assert (
            s._scalar("SELECT count(*) FROM trades WHERE buyer_account IS NULL")
            == trades["buyer_account"].null_count()
            > 0
        )
        # new writes go through the keys too, and the earlier rows keep theirs
        s.write_batch(run_id=None, trades=_trades(60))
        assert s.counts()["trades"] == 60
        assert s._scalar("SELECT count(*) FROM trade_rows WHERE seller_key IS NULL") == 0


def _operations(ids: list[int]) -> pl.DataFrame:
    """Funding, offer and memo-only operations of accounts 1..5 and 900 (900 only ever pays: it
    never trades), one with no counterparty at all, in the order of `ids`."""
    from datetime import UTC, datetime, timedelta

    from engine.schemas import OPERATIONS_SCHEMA
    from tests.factories import account

    kinds = [("create_account", 1, 2), ("payment", 900, 3), ("manage_sell_offer", None, None), ("payment", 2, 2),
             ("create_account", 3, 4), ("bump_sequence", None, None)]  # fmt: skip
    rows = []
    for n, i in enumerate(ids):
        kind, frm, to = kinds[n % len(kinds)]
        rows.append({"id": i, "ledger": 100 + n, "closed_at": datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=5 * n),
                     "type": kind, "tx_hash": f"{n:064x}", "successful": n != 7, "source_account": account(5 if frm is None else frm),
                     "from_account": None if frm is None else account(frm), "to_account": None if to is None else account(to),
                     "asset": "XLM:native", "amount": 10**7 * (n + 1), "memo": f"m{n}", "source": "files"})  # fmt: skip
    return pl.DataFrame(rows).with_columns(
        pl.lit(None).alias(c) for c in OPERATIONS_SCHEMA if c not in rows[0]).select(
        pl.col(c).cast(t) for c, t in OPERATIONS_SCHEMA.items())  # fmt: skip


def test_version_5_file_with_operations_upgrades_to_account_keys_without_changing_a_row(tmp_path):
    from storage.store import _OPERATION_COLUMNS

    ops = _operations([90 - 3 * i for i in range(24)])  # stored out of id order: the rows keep theirs
    path = tmp_path / "v5.duckdb"
    con = _file_at_version(path, 5)
    con.register("old_rows", ops.to_arrow())
    con.execute(f"INSERT INTO operations ({_OPERATION_COLUMNS}, run_id) SELECT {_OPERATION_COLUMNS}, 7 FROM old_rows")
    edges_before = pl.from_arrow(con.sql("SELECT * FROM funding_edges ORDER BY id").to_arrow_table()).with_columns(
        pl.col("closed_at").dt.convert_time_zone("UTC"))  # (this connection's zone is named Etc/UTC)
    con.close()

    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.operations().equals(ops.sort("id"))
        assert s.funding_edges().equals(edges_before) and edges_before.height > 0
        # the rows' order is kept (the live watch reads them past a rowid), and every account has a key,
        # 900 too, which only ever paid
        assert s._frame("SELECT id FROM operation_rows ORDER BY rowid").get_column("id").to_list() == ops["id"].to_list()
        assert set(s.account_keys().get_column("account_id")) == set(
            pl.concat([ops[c] for c in ("source_account", "from_account", "to_account")]).drop_nulls())
        assert s._scalar("SELECT count(*) FROM operation_rows WHERE from_key IS NULL") == ops["from_account"].null_count() > 0
        # new writes go through the keys too
        more = _operations(list(range(1000, 1012)))
        s.write_batch(run_id=None, operations=more)
        assert s.operations().equals(pl.concat([ops, more]).sort("id"))


def test_every_account_of_a_batch_gets_one_key_in_id_order_and_its_rows_read_back(store):
    trades = _trades(30)
    store.write_batch(run_id=None, trades=trades)
    keys = store.account_keys().sort("account_key")
    traded = pl.concat([trades["seller_account"], trades["buyer_account"]]).drop_nulls().unique()
    # a batch's new accounts are keyed in the order of their ids, each once
    assert keys["account_id"].to_list() == sorted(traded.to_list())
    # operations key the accounts they add (900 only pays, 4 is created) after the traders,
    # keep the traders' keys, and both tables read back their ids through the keys
    ops = _operations(list(range(1, 13)))
    store.write_batch(run_id=None, operations=ops)
    after = store.account_keys().sort("account_key")
    assert after.head(keys.height).equals(keys)
    seen = pl.concat([ops[c] for c in ("source_account", "from_account", "to_account")]).drop_nulls().unique()
    added = sorted(set(seen) - set(traded))
    assert added and after["account_id"].to_list()[keys.height:] == added
    assert store.trades().sort("id").equals(trades.sort("id"))
    assert store.operations().equals(ops.sort("id"))
    # an account a batch creates gets its creation, whatever else the batch says of it
    created = store.accounts().filter(pl.col("created_at").is_not_null())
    assert created.height and set(created["account_id"]) <= set(ops.filter(pl.col("type") == "create_account")["to_account"])


def test_batch_and_cursor_commit_together_and_repeat_is_idempotent(store):
    trades = _trades(30)
    run = store.start_run("files", {"x": 1})
    cursor = CursorPosition("files", "file", "scope", "30", done=True)
    first = store.write_batch(run_id=run, trades=trades, cursor=cursor)
    again = store.write_batch(run_id=run, trades=trades, cursor=cursor)
    assert (first.n_trades, again.n_trades) == (30, 0)
    assert store.get_cursor("files", "file", "scope") == cursor
    assert store.trades().height == 30
    # accounts seen on both sides are registered with first/last ledgers
    accounts = store.accounts()
    assert accounts.height == 7 + 5
    assert accounts["first_seen_ledger"].min() == 1000


def test_failed_batch_leaves_no_rows_and_no_cursor(store):
    trades = _trades(10)
    broken = trades.with_columns(
        sold_amount=pl.when(pl.col("id") == trades["id"][5]).then(0).otherwise(pl.col("sold_amount"))
    )
    with pytest.raises(duckdb.ConstraintException):
        store.write_batch(run_id=None, trades=broken, cursor=CursorPosition("s", "t", "x", "10"))
    assert store.counts()["trades"] == 0
    assert store.get_cursor("s", "t", "x") is None


def test_second_writer_process_gets_store_busy(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "busy.duckdb"
    with Store(path):
        code = f"from storage.store import Store\nStore({str(path)!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=".")
    assert proc.returncode != 0
    assert "StoreBusy" in proc.stderr and "another process" in proc.stderr


def test_export_round_trips_exact_amounts(store, tmp_path):
    trades = _trades(12)
    store.write_batch(run_id=None, trades=trades)
    out = tmp_path / "export.jsonl"
    assert store.export_trades(out) == 12
    lines = out.read_text().splitlines()
    first = __import__("json").loads(lines[0])
    assert first["sold_amount"] == "1.0000000" and first["bought_amount"] == "2.5000000"
    assert set(first) == {
        "id", "ledger", "closed_at", "trade_type", "seller_account", "seller_offer_id", "seller_pool_id",
        "buyer_account", "buyer_offer_id", "buyer_pool_id", "sold_asset", "sold_amount", "bought_asset",
        "bought_amount", "price_n", "price_d",
    }  # fmt: skip


def test_derived_tables_are_replaced_whole(store):
    store.save_derived("features", pl.DataFrame({"wallet": ["a", "b"], "x": [1.0, None]}))
    store.save_derived("features", pl.DataFrame({"wallet": ["c"], "x": [2.0]}))
    assert store.load_derived("features")["wallet"].to_list() == ["c"]
    assert store.load_derived("rings") is None


def test_a_stored_id_arriving_with_other_content_is_quarantined_not_overwritten(store):
    trades = _trades(5)
    store.write_batch(run_id=None, trades=trades)
    changed = trades.with_columns(
        sold_amount=pl.when(pl.col("id") == trades["id"][2])
        .then(pl.col("sold_amount") + 1)
        .otherwise(pl.col("sold_amount")),
        source=pl.lit("horizon"),
    )
    run = store.start_run("files", {"path": "/exports/<b>second.jsonl"})
    result = store.write_batch(run_id=run, trades=changed)
    assert (result.n_trades, result.n_quarantined) == (0, 1)  # identical repeats are not conflicts
    row = store.quarantined().row(0, named=True)
    assert row["record_id"] == trades["id"][2] and "different content than the stored row" in row["reason"]
    stored_id = trades["id"][2]
    assert row["location"] == f"/exports/<b>second.jsonl: id {stored_id}, a trades row already stored from files (run ?)"
    assert store.trades().sort("id").equals(trades.sort("id").select(store.trades().columns))  # stored row kept
    again = store.write_batch(run_id=None, trades=changed)
    assert again.n_quarantined == 0  # the same conflict is recorded once


def test_the_cache_is_let_go_only_when_no_other_cursor_reads(tmp_path, monkeypatch):
    # DuckDB's memory limit is the database's: lowering it for a moment to free the blocks a
    # big read cached would make a query running on another cursor fail beyond it.
    import storage.store

    monkeypatch.setattr(storage.store, "_EVICT_TO", "1MB")
    path = tmp_path / "cache.duckdb"
    with Store(path) as store, store._cursor() as cur:
        cur.execute("CREATE TABLE big AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(1000000)")
        cur.execute("CHECKPOINT")
    with Store(path) as store, store._cursor() as cur:

        def cached() -> int:
            return dict(cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall()).get("BASE_TABLE", 0)

        limit = cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]  # the default
        cur.execute("SELECT count(DISTINCT s) FROM big").fetchall()
        before = cached()
        assert before > 10_000_000
        with store._cursor():  # another reader
            store._let_go_of_cache(cur)
            assert cached() == before
        store._let_go_of_cache(cur)
        assert cached() < before / 10
        assert cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit


def test_lean_reads_leave_the_memory_limit_as_it_was(store):
    # DuckDB shows its limit rounded down: set back from that text, it fell a little each time.
    from storage.routing import lean

    with store._cursor() as cur:
        before = cur.execute("SELECT current_setting('memory_limit')").fetchall()
        for _ in range(3):
            with lean(cur, let_go=store._let_go_of_cache):
                cur.execute("SELECT 1").fetchall()
        assert cur.execute("SELECT current_setting('memory_limit')").fetchall() == before


def test_scatter_writes_each_part_its_rows_from_every_batch(tmp_path):
    import polars as pl

    from storage.routing import scatter

    rows = pl.DataFrame({"part": [2, 0, 2, 1, 0, 2], "v": [1, 2, 3, 4, 5, 6]})
    batches = [rows.slice(0, 4).to_arrow().to_batches()[0], rows.slice(4).to_arrow().to_batches()[0]]
    files = scatter(iter(batches), tmp_path, "t")
    assert sorted(files) == [0, 1, 2]
    got = {part: pl.read_ipc(path) for part, path in files.items()}
    assert got[0].columns == ["v"]  # the key is left out
    assert {part: sorted(frame["v"].to_list()) for part, frame in got.items()} == {0: [2, 5], 1: [4], 2: [1, 3, 6]}


def test_scatter_writes_a_duckdb_stream_and_passes_its_errors_on(tmp_path):
    import duckdb
    import polars as pl

    from storage.routing import scatter

    with duckdb.connect() as con:  # many batches, written compressed
        reader = con.sql("SELECT i % 3 AS part, i AS v FROM range(10000) t(i)").arrow(batch_size=1000)
        files = scatter(reader, tmp_path, "t")
    assert {part: sorted(pl.read_ipc(path)["v"].to_list()) for part, path in files.items()} == {
        p: list(range(p, 10000, 3)) for p in range(3)
    }

    def broken():
        yield pl.DataFrame({"part": [0], "v": [1]}).to_arrow().to_batches()[0]
        raise OSError("the store went away")

    with pytest.raises(OSError, match="went away"):
        scatter(broken(), tmp_path, "u")


def test_routed_reads_give_each_trade_its_assets_back_and_refuse_a_trade_outside_its_pair(store, tmp_path):
    # The routed reads carry a pair key and whether the trade sold the base, not the asset ids.
    from datetime import timedelta

    from storage.errors import BadInput

    raw = [json.dumps(horizon_trade(i, base_is_seller=i % 2 == 0)) for i in range(40)]
    trades, _ = decode_trades(raw, source="files", locations=[str(i) for i in range(40)])
    store.write_batch(run_id=None, trades=trades)
    stored = store.trades().select("id", "pair_id", "sold_asset", "bought_asset").sort("id")
    assert stored.get_column("sold_asset").n_unique() == 2  # both directions
    times = store.trades().get_column("closed_at")
    window = {"since": times.min() - timedelta(seconds=1), "until": times.max()}

    def routed() -> pl.DataFrame:
        parts = [t for _, t, _ in store.wallet_partitions(n_parts=3, offer_types=("manage_sell_offer",), **window)]
        return pl.concat(parts).select(stored.columns).unique("id").sort("id")

    assert routed().equals(stored)
    pair = stored.item(0, "pair_id")
    with store.pair_batch_reader([[pair], ["none/none"]], tmp_path / "batches") as read:
        assert read(0).select(stored.columns).sort("id").equals(stored)

    wrong = stored.item(0, "id")
    with store._cursor() as cur:
        cur.execute("UPDATE trade_rows SET sold_asset = 'EUR:' || split_part(sold_asset, ':', 2) WHERE id = ?", [wrong])
    with pytest.raises(BadInput, match=f"trade {wrong} does not trade the two assets of its pair {pair}"):
        routed()
    with pytest.raises(BadInput, match=f"trade {wrong} does not"), \
            store.pair_batch_reader([[pair], ["none/none"]], tmp_path / "batches") as read:  # fmt: skip
        read(0)
