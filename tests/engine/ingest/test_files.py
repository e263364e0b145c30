from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from engine.ingest.files import detect_format, ingest_files, load_file
from storage.errors import BadInput
from storage.store import Store
from tests.conftest import ROOT, fixture_path
from tests.factories import account, horizon_trade, kill_after_batches, write_jsonl


def _table(store: Store) -> pl.DataFrame:
    return store.trades().sort("id")


def test_bad_records_are_quarantined_with_reasons_and_good_ones_land(store, tmp_path):
    good = [horizon_trade(i) for i in range(6)]
    bad = {
        "malformed": '{"id": "1-0", ',
        "missing": {k: v for k, v in horizon_trade(100).items() if k != "base_amount"},
        "zero": {**horizon_trade(101), "counter_amount": "0.0000000"},
        "negative": {**horizon_trade(102), "base_amount": "-1.0000000"},
        "precise": {**horizon_trade(103), "base_amount": "1.00000001"},
        "account": {**horizon_trade(104), "base_account": account(1)[:-1] + "A"},
        "asset": {**horizon_trade(105), "counter_asset_type": "credit_alphanum99"},
        "duplicate": {**horizon_trade(0), "counter_amount": "9.0000000"},
        "padded id": {**horizon_trade(106), "id": "0" + horizon_trade(106)["id"], "paging_token": None},
        "id past int64": {**horizon_trade(107), "id": "99999999999999999999-0", "paging_token": None},
    }
    path = write_jsonl(tmp_path / "trades.jsonl", good + list(bad.values()))
    [summary] = ingest_files(store, [path])
    assert (summary.n_trades, summary.n_quarantined) == (6, 10)
    reasons = store.quarantined().select("location", "reason").rows()
    text = "\n".join(f"{loc} {why}" for loc, why in reasons)
    for expected in (
        "trades.jsonl:7 not valid JSON",
        "trades.jsonl:8 missing field base_amount",
        "trades.jsonl:9 field counter_amount: zero amount",
        "trades.jsonl:10 field base_amount: negative amount",
        "trades.jsonl:11 field base_amount: 1.00000001 has more than 7 decimals",
        "trades.jsonl:12 field base_account:",
        "trades.jsonl:13 field counter_asset_type: 'credit_alphanum99' is not an asset type",
        "trades.jsonl:14 duplicate id",
        "trades.jsonl:15 field id: '0",
        "trades.jsonl:16 field id: '99999999999999999999-0' is not a trade id",
    ):
        assert expected in text, f"{expected!r} not in\n{text}"
    assert "StrKey checksum" in text


def test_clean_file_is_read_by_duckdb_read_json_without_the_line_reader(store, tmp_path, monkeypatch):
    import engine.ingest.files as files

    def no_line_reader(*args, **kwargs):
        raise AssertionError("a clean file should not need the line-by-line reader")

    monkeypatch.setattr(files, "iter_json_lines", no_line_reader)
    path = write_jsonl(tmp_path / "clean.jsonl", [horizon_trade(i) for i in range(25)])
    [summary] = ingest_files(store, [path], batch_size=10)  # three batches, the last marks the file done
    assert (summary.n_trades, summary.n_records, summary.n_quarantined) == (25, 25, 0)
    assert ingest_files(store, [path], batch_size=10)[0].already_done


def _line_by_line_only(monkeypatch) -> None:
    """Make `ingest files` skip the DuckDB read_json reader (the reference to compare with)."""
    import engine.ingest.files as files

    def no_fast_reader(*args, **kwargs):
        return False, 0
        yield  # a generator that yields nothing

    monkeypatch.setattr(files, "_fast_chunks", no_fast_reader)


def _both_ways(tmp_path, monkeypatch, path, batch_size=10) -> tuple[Store, Store]:
    fast = Store(tmp_path / "fast.duckdb")
    ingest_files(fast, [path], batch_size=batch_size)
    with monkeypatch.context() as m:
        _line_by_line_only(m)
        lines = Store(tmp_path / "lines.duckdb")
        ingest_files(lines, [path], batch_size=batch_size)
    return fast, lines


def test_blank_and_bad_lines_after_clean_chunks_give_true_line_numbers_and_no_lost_rows(tmp_path, monkeypatch):
    """The fast reader counts rows, not lines: a blank line shifts its ordinals. When a
    later chunk has a bad record, reading goes on line by line from the ordinal
    reached; the result must equal a line-by-line ingest of the same file."""
    records: list = [horizon_trade(i) for i in range(12)]
    records[3:3] = ["", "   "]  # blank lines inside the first chunk
    records += [horizon_trade(i) for i in range(12, 27)]
    records[24] = {**horizon_trade(200), "base_amount": "-1.0000000"}  # in the third chunk
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    expected_line = 25
    assert json.loads(path.read_text().splitlines()[expected_line - 1])["base_amount"] == "-1.0000000"

    fast, lines = _both_ways(tmp_path, monkeypatch, path)
    with fast, lines:
        assert _table(fast).equals(_table(lines))
        assert _table(fast).height == 26
        [(location, reason)] = fast.quarantined().select("location", "reason").rows()
        assert location.endswith(f"mixed.jsonl:{expected_line}") and "negative amount" in reason
        assert fast.quarantined().select("location", "reason").equals(lines.quarantined().select("location", "reason"))


def test_odd_but_parseable_records_decode_the_same_by_either_reader(tmp_path, monkeypatch):
    """Numbers where Horizon writes strings, objects in text fields, escapes and
    non-ASCII text, keys in another order: both readers go through DuckDB's JSON
    transform and must agree, row for row."""
    from tests.engine.ingest.test_horizon import horizon_operation

    odd_trades = [  # lines 11-13: in clean chunks, so the fast reader takes them
        {**horizon_trade(1), "base_offer_id": 17, "price": {"n": 3, "d": 7}},
        {**horizon_trade(2), "counter_asset_code": "\u00e9\"<x>", "base_liquidity_pool_id": {"not": "text"}},
        dict(reversed(list(horizon_trade(3).items()))),
    ]
    not_an_object = {**horizon_trade(4), "price": "1/2"}  # line 17: quarantined by both
    records = [horizon_trade(i) for i in range(10, 20)] + odd_trades + [horizon_trade(i) for i in range(20, 23)]
    path = write_jsonl(tmp_path / "odd_trades.jsonl", [*records, not_an_object])
    fast, lines = _both_ways(tmp_path, monkeypatch, path, batch_size=4)
    with fast, lines:
        # line 12's code and pool id break Stellar's rules: quarantined by both, naming the field
        assert _table(fast).equals(_table(lines)) and _table(fast).height == 15
        assert fast.quarantined()["location"].to_list() == [f"{path.resolve()}:12", f"{path.resolve()}:17"]
        assert "field counter_asset_code" in fast.quarantined()["reason"][0]
        assert fast.quarantined().select("location", "reason").equals(lines.quarantined().select("location", "reason"))

    ops = [horizon_operation(i, 2000 + i) for i in range(8)]
    ops[1] = {**ops[1], "transaction_successful": "true", "claimants": "not a list"}
    ops[2] = {**ops[2], "type_i": "0", "transaction": {"memo": "<script>alert(1)</script>"}}
    ops_path = write_jsonl(tmp_path / "odd_ops.jsonl", ops)
    (tmp_path / "fast.duckdb").unlink()
    (tmp_path / "lines.duckdb").unlink()
    fast, lines = _both_ways(tmp_path, monkeypatch, ops_path, batch_size=3)
    with fast, lines:
        assert fast.operations().equals(lines.operations()) and fast.operations().height == 8
        assert fast.quarantined().height == lines.quarantined().height == 0


def test_batches_stream_chunk_by_chunk_not_the_whole_file(tmp_path, monkeypatch):
    import engine.ingest.files as files

    read = []
    original = files.iter_file

    def counting(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            read.append(chunk.last_line)
            yield chunk

    monkeypatch.setattr(files, "iter_file", counting)
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(50)])
    _, batches = files.plan(path, batch_size=10)
    stream = batches(None)
    first = next(stream)
    assert (first.position, first.done, read) == ("10", False, [10])  # handed on as soon as it is read
    rest = list(stream)
    assert [(b.position, b.done) for b in rest] == [("20", False), ("30", False), ("40", False), ("50", False), ("50", True)]
    assert rest[-1].trades is None and read == [10, 20, 30, 40, 50]


def test_second_run_changes_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(20)])
    ingest_files(store, [path])
    before = (_table(store), store.counts())
    [again] = ingest_files(store, [path])
    assert again.already_done
    assert _table(store).equals(before[0]) and store.counts() == before[1]


def test_seller_buyer_orientation_follows_base_is_seller(store, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(0, base_is_seller=False)])
    ingest_files(store, [path])
    row = store.trades().row(0, named=True)
    assert row["seller_account"] == account(10)  # the counter side sold
    assert row["sold_asset"].startswith("USD:") and row["sold_amount"] == 25_000_000
    assert row["bought_asset"] == "XLM:native" and row["bought_amount"] == 10_000_000
    assert (row["price_n"], row["price_d"]) == (4, 1)  # bought per sold


def test_unknown_file_gets_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"hello": 1}])
    with pytest.raises(BadInput, match="unrecognised records"):
        detect_format(path)


def _ingest_cmd(db, path, env_extra=None):
    env = {**os.environ, "LEDGERLENS_BATCH_SIZE": "2000", **(env_extra or {})}
    return [sys.executable, "-m", "engine", "ingest", "files", "--db", str(db), str(path)], env


def test_killed_mid_ingest_then_rerun_equals_uninterrupted(tmp_path):
    records = [horizon_trade(i, ledger=1000 + i) for i in range(60_000)]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    cmd, env = _ingest_cmd(tmp_path / "killed.duckdb", path)
    kill_after_batches(cmd, env=env, cwd=ROOT)  # kill -9 once a few batches have committed
    with Store(tmp_path / "killed.duckdb") as s:
        partial = s.counts()["trades"]
    assert 0 < partial < 60_000, "the kill should land mid-file"
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    clean, env2 = _ingest_cmd(tmp_path / "clean.duckdb", path)
    subprocess.run(clean, env=env2, cwd=ROOT, check=True, capture_output=True)
    with Store(tmp_path / "killed.duckdb") as a, Store(tmp_path / "clean.duckdb") as b:
        assert _table(a).drop("source").equals(_table(b).drop("source"))
        assert a.counts()["trades"] == 60_000


def test_disk_full_write_fails_clearly_and_rerun_completes(tmp_path):
    """RLIMIT_FSIZE makes the store file unable to grow, as a full disk does."""
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i, ledger=1000 + i) for i in range(30_000)])
    cmd, env = _ingest_cmd(tmp_path / "full.duckdb", path)
    limit = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); " \
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))"
    proc = subprocess.run(
        [sys.executable, "-c", f"{limit}; import runpy, sys; sys.argv = {['engine', *cmd[3:]]!r}; "
         "runpy.run_module('engine', run_name='__main__')"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "nothing of this batch was kept" in proc.stderr and "resumes" in proc.stderr
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    with Store(tmp_path / "full.duckdb") as s:
        assert s.counts()["trades"] == 30_000


def test_stellar_etl_trades_load_with_the_trades_they_list(store):
    path = fixture_path("stellar-etl-golden", "trades", "10_ledgers_trades.golden")
    listed = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ingest_files(store, [path])
    stored = {r["id"]: r for r in store.trades().to_dicts()}
    assert len(stored) == len(listed) == 5
    for rec in listed:
        row = stored[f"{rec['history_operation_id']}-{rec['order']}"]
        assert row["seller_account"] == rec["selling_account_address"]
        assert row["buyer_account"] == rec["buying_account_address"]
        assert row["sold_amount"] == round(rec["selling_amount"] * 10**7)
        assert row["bought_amount"] == round(rec["buying_amount"] * 10**7)
        assert (row["price_n"], row["price_d"]) == (rec["price_n"], rec["price_d"])


def test_stellar_etl_operations_give_funding_edges(store):
    path = fixture_path("stellar-etl-golden", "operations", "10_ledgers_ops.golden")
    [summary] = ingest_files(store, [path])
    assert summary.n_quarantined == 0 and summary.n_operations == 2085
    edges = store.funding_edges()
    assert set(edges["type"].unique()) >= {"create_account", "payment"}
    created = store.accounts().filter(pl.col("funder").is_not_null())
    assert created.height == 4  # five create_account operations; one account was created twice


def test_hubble_operations_parquet_with_nested_details_ingest_as_their_json_lines(store, tmp_path):
    source = fixture_path("stellar-etl-golden", "operations", "10_ledgers_ops.golden")
    path = tmp_path / "history_operations.parquet"
    pl.read_ndjson(source, infer_schema_length=None).write_parquet(path)  # `details` a struct, as BigQuery exports it
    loaded, want = load_file(path), load_file(source)
    assert loaded.kind == "operations" and loaded.quarantine.height == 0
    assert loaded.frame.sort("id").equals(want.frame.sort("id")) and loaded.frame.height == 2085
    [summary] = ingest_files(store, [path])
    assert summary.n_operations == 2085 and store.accounts().filter(pl.col("funder").is_not_null()).height == 4


def test_horizon_pages_load(store):
    page = fixture_path("java-sdk-horizon", "pages", "trades.json")
    loaded = load_file(page)
    records = json.loads(page.read_text())["_embedded"]["records"]
    assert loaded.kind == "trades" and loaded.frame["id"].to_list() == [r["id"] for r in records]
    ingest_files(store, [page, fixture_path("java-sdk-horizon", "pages", "operations.json")])
    assert store.counts()["trades"] == 3 and store.counts()["operations"] == 3


def test_canonical_export_round_trips(store, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(25)])
    ingest_files(store, [path])
    out = tmp_path / "export.jsonl"
    store.export_trades(out)
    with Store(tmp_path / "second.duckdb") as other:
        [summary] = ingest_files(other, [out])
        assert summary.n_quarantined == 0
        assert _table(other).drop("source").equals(_table(store).drop("source"))


def test_cli_progress_reports_counts_and_rate(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(50)])
    cmd, env = _ingest_cmd(tmp_path / "p.duckdb", path)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "50 records" in proc.stderr and "records/s" in proc.stderr
    assert "50 new trades" in proc.stdout

