"""Hostile, broken and odd input files for `ingest files`, all generated here (small;
nothing is committed): a record missing each field of each format, bytes that are
not UTF-8, garbage tails, hostile asset codes, bad issuers and pool ids, empty,
corrupt and truncated files, nesting, JSON of the wrong type; then kill -9 and resume.

Every case asserts one of two outcomes. Either the file is refused with a `BadInput`
naming it (and nothing stored), or the good records are stored exactly as a clean
file of them stores them, each bad record is quarantined at its line with a reason
naming what is wrong, and no trade is invented (no pair X/X, no self-trade).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import pytest
import zstandard

from engine.assets import split_pair
from engine.ingest.files import ingest_files
from storage.errors import BadInput
from storage.store import Store
from tests.conftest import ROOT
from tests.engine.ingest.test_horizon import horizon_operation
from tests.factories import ISSUER, account, horizon_trade, kill_after_batches

GOOD = 5  # good records in every generated file: trades 0..4 (operations 0..4)
BAD = 100  # bad records are numbered from here, so their ids never clash with good ones
POOL = "ab" * 32

# -- records of each format --------------------------------------------------------------------


def hubble_trade(i: int) -> dict:
    """Trade i of `horizon_trade` as stellar-etl's history_trades writes it."""
    h = horizon_trade(i)
    op_id, order = h["id"].split("-")
    return {
        "history_operation_id": int(op_id), "order": int(order), "ledger_closed_at": h["ledger_close_time"],
        "trade_type": 1, "selling_account_address": h["base_account"], "selling_amount": float(h["base_amount"]),
        "selling_asset_type": "native", "selling_asset_code": "", "selling_asset_issuer": "",
        "selling_offer_id": int(h["base_offer_id"]), "selling_liquidity_pool_id": None,
        "buying_account_address": h["counter_account"], "buying_amount": 2.5,
        "buying_asset_type": "credit_alphanum4", "buying_asset_code": "USD", "buying_asset_issuer": ISSUER,
        "buying_offer_id": int(h["counter_offer_id"]), "buying_liquidity_pool_id": None, "price_n": 4, "price_d": 1,
    }  # fmt: skip


def canonical_trade(i: int) -> dict:
    """Trade i of `horizon_trade` as `export trades` writes it."""
    h = horizon_trade(i)
    return {
        "id": h["id"], "ledger": int(h["id"].split("-")[0]) >> 32, "closed_at": h["ledger_close_time"],
        "trade_type": "orderbook", "seller_account": h["base_account"], "seller_offer_id": int(h["base_offer_id"]),
        "seller_pool_id": None, "buyer_account": h["counter_account"], "buyer_offer_id": int(h["counter_offer_id"]),
        "buyer_pool_id": None, "sold_asset": "XLM:native", "sold_amount": h["base_amount"],
        "bought_asset": f"USD:{ISSUER}", "bought_amount": "2.5000000", "price_n": 4, "price_d": 1,
    }  # fmt: skip


def operation(i: int) -> dict:
    return horizon_operation(i, 1001)  # ledger 1001: a payment each


RECORD: dict[str, Callable[[int], dict]] = {
    "horizon": horizon_trade, "page": horizon_trade, "hubble_jsonl": hubble_trade, "hubble_csv": hubble_trade,
    "hubble_parquet": hubble_trade, "canonical": canonical_trade, "operations": operation,
}  # fmt: skip


def without(record: dict, field: str) -> dict:
    return {k: v for k, v in record.items() if k != field}


# -- writers ----------------------------------------------------------------------------------------


def _line(item) -> bytes:
    if isinstance(item, bytes):
        return item
    return (item if isinstance(item, str) else json.dumps(item)).encode()


def write(path: Path, fmt: str, items: list) -> Path:
    """Write `items` (dicts, or str / bytes lines kept verbatim) in the file format `fmt`."""
    if fmt == "page":
        path.write_text(json.dumps({"_links": {}, "_embedded": {"records": items}}))
    elif fmt in ("hubble_csv", "hubble_parquet"):
        frame = pl.DataFrame(items, infer_schema_length=None)
        frame.write_csv(path) if fmt == "hubble_csv" else frame.write_parquet(path)
    else:
        data = b"".join(_line(r) + b"\n" for r in items)
        if path.name.endswith(".gz"):
            data = gzip.compress(data)
        elif path.name.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        path.write_bytes(data)
    return path


SUFFIX = {"page": ".json", "hubble_csv": ".csv", "hubble_parquet": ".parquet"}


def good(fmt: str) -> list[dict]:
    return [RECORD[fmt](i) for i in range(GOOD)]


@cache
def reference(fmt: str, tmp: Path) -> pl.DataFrame:
    """What a clean file of the good records of `fmt` stores (the rows every case must keep)."""
    path = write(tmp / f"clean_{fmt}{SUFFIX.get(fmt, '.jsonl')}", fmt, good(fmt))
    with Store(tmp / f"clean_{fmt}.duckdb") as store:
        ingest_files(store, [path])
        table = store.operations() if fmt == "operations" else store.trades()
        return table.drop("source").sort("id")


# -- cases --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One generated file and what ingesting it must do.

    `items` is written in format `fmt` (to a file named `name`, default by format);
    then either `error` is in the BadInput raised, or every good record is stored as a
    clean file stores it, plus `extra` rows, and `bad` lists each quarantined record
    as (where: end of its location, why: part of its reason).
    """

    id: str
    fmt: str
    items: list
    bad: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    extra: int = 0
    name: str = ""
    raw: str | None = None  # a part of the quarantined raw text (escaped bytes)
    data: bytes | None = None  # write these bytes instead of `items`


def with_bad(fmt: str, bad_record, *, at: int = 2) -> list:
    """The good records of `fmt` with `bad_record` inserted as record `at` (0-based)."""
    items = good(fmt)
    return items[:at] + [bad_record] + items[at:]


LOC = {"page": "record {}", "hubble_csv": "row {}", "hubble_parquet": "row {}"}


def where(fmt: str, n: int) -> str:
    return ":" + LOC.get(fmt, "{}").format(n)


# Every field for the line formats; the formats that share a decoder with one of
# them try the fields whose absence each format spells differently (keeps the suite fast).
FIELDS_TRIED = {
    "page": ("ledger_close_time", "trade_type", "base_is_seller", "base_asset_type", "counter_asset_code",
             "base_amount", "price", "id"),
    "hubble_csv": ("history_operation_id", "trade_type", "selling_asset_type", "buying_asset_issuer",
                   "selling_amount", "price_d", "buying_account_address", "ledger_closed_at"),
    "hubble_parquet": ("order", "trade_type", "buying_asset_type", "buying_amount", "price_n",
                       "selling_account_address"),
}  # fmt: skip


def missing_field_cases() -> list[Case]:
    """A record without each field, per format. Required fields quarantine it naming
    the field; optional ones keep it (an id falls back on paging_token, and so on)."""
    optional = {
        "horizon": {"id", "paging_token", "base_offer_id", "counter_offer_id"},
        "hubble": {"selling_offer_id", "buying_offer_id", "selling_liquidity_pool_id", "buying_liquidity_pool_id",
                   "selling_asset_code", "selling_asset_issuer"},
        "canonical": {"ledger", "seller_offer_id", "buyer_offer_id", "seller_pool_id", "buyer_pool_id"},
        "operations": {"id", "paging_token", "transaction_successful", "source_account", "type_i", "transaction_hash",
                       "from", "to", "asset_type"},
    }  # fmt: skip
    cases = []
    for fmt in ("horizon", "page", "hubble_jsonl", "hubble_csv", "hubble_parquet", "canonical", "operations"):
        family = {"page": "horizon", "hubble_csv": "hubble", "hubble_jsonl": "hubble", "hubble_parquet": "hubble"}
        skip = optional[family.get(fmt, fmt)]
        record = RECORD[fmt](BAD)
        at = 0 if fmt == "page" else 2  # a page's first record decides nothing for the others
        for field in record:
            if field not in FIELDS_TRIED.get(fmt, record):
                continue
            if fmt in ("hubble_csv", "hubble_parquet"):
                bad = {**record, field: None}  # a table has every column: an empty cell
            else:
                bad = without(record, field)
            kept = field in skip or (fmt == "operations" and field in ("from", "to"))
            expect = () if kept else ((where(fmt, at + 1), field),)
            cases.append(Case(f"{fmt}-no-{field}", fmt, with_bad(fmt, bad, at=at), expect, extra=int(kept)))
    return cases


def _trade(**changes) -> dict:
    return {**horizon_trade(BAD), **changes}


def asset_cases() -> list[Case]:
    """Stellar's rules for codes, issuers and pool ids: anything else is quarantined."""
    codes = {
        "script": ("<script>", "credit_alphanum12"), "img": ("<img", "credit_alphanum4"),
        "slash": ("US/D", "credit_alphanum4"), "colon": ("U:D", "credit_alphanum4"),
        "13-chars": ("ABCDEFGHIJKLM", "credit_alphanum12"), "empty": ("", "credit_alphanum4"),
        "space": ("US D", "credit_alphanum4"), "non-ascii": ("ÜSD", "credit_alphanum4"),
        "5-in-alphanum4": ("USDCX", "credit_alphanum4"), "3-in-alphanum12": ("USD", "credit_alphanum12"),
        "nul": ("US\u0000", "credit_alphanum4"),
    }  # fmt: skip
    cases = [
        Case(f"code-{name}", "horizon",
             with_bad("horizon", _trade(counter_asset_code=code, counter_asset_type=kind)),
             ((":3", "field counter_asset_code"),))
        for name, (code, kind) in codes.items()
    ]  # fmt: skip
    issuers = {
        "checksum": account(1)[:-1] + ("A" if account(1)[-1] != "A" else "B"), "lowercase": ISSUER.lower(),
        "short": ISSUER[:40], "seed": "S" + ISSUER[1:], "native": "native", "with-slash": ISSUER[:20] + "/" + ISSUER[21:],
    }  # fmt: skip
    cases += [
        Case(f"issuer-{name}", "horizon", with_bad("horizon", _trade(counter_asset_issuer=issuer)),
             ((":3", "field counter_asset_issuer"),))
        for name, issuer in issuers.items()
    ]  # fmt: skip
    pools = {"63-hex": POOL[:-1], "uppercase": POOL.upper(), "not-hex": "zz" * 32, "account": account(3)}
    cases += [
        Case(f"pool-{name}", "horizon",
             with_bad("horizon", _trade(trade_type="liquidity_pool", base_account=None, base_offer_id=None,
                                        base_liquidity_pool_id=pool)),
             ((":3", "field base_liquidity_pool_id"),))
        for name, pool in pools.items()
    ]  # fmt: skip
    cases += [
        Case("pool-good", "horizon",
             with_bad("horizon", _trade(trade_type="liquidity_pool", base_account=None, base_liquidity_pool_id=POOL)),
             extra=1),
        Case("csv-utf8-row", "hubble_csv", [], ((":row 3", "not UTF-8"),), raw="\ufffd",
             data=_csv_with_undecodable_row()),
        Case("canonical-asset-script", "canonical",
             with_bad("canonical", {**canonical_trade(BAD), "bought_asset": f"<script>:{ISSUER}"}),
             ((":3", "field bought_asset"),)),
        Case("canonical-asset-slash", "canonical",
             with_bad("canonical", {**canonical_trade(BAD), "sold_asset": f"A/B:{ISSUER}"}),
             ((":3", "field sold_asset"),)),
        Case("canonical-self-pair", "canonical",
             with_bad("canonical", {**canonical_trade(BAD), "bought_asset": "XLM:native"}),
             ((":3", "sold_asset/bought_asset"),)),
        Case("horizon-self-pair", "horizon",
             with_bad("horizon", _trade(counter_asset_type="native", counter_asset_code=None,
                                        counter_asset_issuer=None)),
             ((":3", "base_asset/counter_asset"),)),
        Case("hubble-code-script", "hubble_jsonl",
             with_bad("hubble_jsonl", {**hubble_trade(BAD), "buying_asset_code": "<b>x"}),
             ((":3", "field buying_asset_code"),)),
        Case("operation-code-script", "operations",
             with_bad("operations", {**operation(BAD), "asset_type": "credit_alphanum4", "asset_code": "<s>",
                                     "asset_issuer": ISSUER}),
             ((":3", "field asset"),)),
    ]  # fmt: skip
    return cases


def _csv_with_undecodable_row() -> bytes:
    """Good Hubble CSV rows with bytes that are not UTF-8 in the third data row."""
    rows = with_bad("hubble_csv", {**hubble_trade(BAD), "buying_asset_code": "MARKER"})
    return pl.DataFrame(rows, infer_schema_length=None).write_csv().encode().replace(b"MARKER", b"\xffUS\xfe")


def _lines(fmt: str = "horizon") -> list[bytes]:
    return [_line(r) for r in good(fmt)]


def byte_cases() -> list[Case]:
    """Bytes that are not UTF-8, garbage, and lines that are not records."""
    g = _lines()
    bad_utf8 = b'{"id": "\xff\xfe", "x": "\xc3"}'
    items = {
        "utf8-start": ([bad_utf8, *g], ":1"),
        "utf8-middle": ([*g[:2], bad_utf8, *g[2:]], ":3"),
        "utf8-end": ([*g, bad_utf8], ":6"),
        "utf8-inside-a-good-record": ([*g[:2], _line(horizon_trade(BAD)).replace(b"orderbook", b"order\xe9ook"),
                                       *g[2:]], ":3"),
    }  # fmt: skip
    cases = [Case(name, "horizon", lines, ((loc, "not UTF-8"),), raw="\\xff" if "inside" not in name else "\\xe9")
             for name, (lines, loc) in items.items()]  # fmt: skip
    cases += [
        Case("utf8-gz", "horizon", [*g[:2], bad_utf8, *g[2:]], ((":3", "not UTF-8"),), name="t.jsonl.gz"),
        Case("utf8-zst", "horizon", [*g[:2], bad_utf8, *g[2:]], ((":3", "not UTF-8"),), name="t.jsonl.zst"),
        Case("garbage-tail", "horizon", [*g, b"\x00\x01\x02garbage\xff\xfe\x80"], ((":6", "not UTF-8"),)),
        Case("html-tail", "horizon", [*g, b"<html><body>502 Bad Gateway</body></html>"], ((":6", "not valid JSON"),)),
        Case("truncated-last-line", "horizon", [*g, _line(horizon_trade(BAD))[:40]], ((":6", "not valid JSON"),)),
        Case("control-byte", "horizon", [*g[:1], _line(horizon_trade(BAD)) + b"\x01tail", *g[1:]],
             ((":2", "not valid JSON"),)),
        Case("empty-object-first", "horizon", ["{}", *g], ((":1", "missing field id"),)),
        Case("incomplete-first", "horizon", ['{"id": "1-0", "base_amount"', *g], ((":1", "not valid JSON"),)),
        Case("array-first", "horizon", ["[1, 2]", *g], ((":1", "a JSON array, not an object"),)),
        Case("string-line", "horizon", [*g[:2], '"hello"', *g[2:]], ((":3", "a JSON string, not an object"),)),
        Case("null-line", "horizon", [*g[:2], "null", *g[2:]], ((":3", "not an object"),)),
        Case("blank-lines", "horizon", ["", *g[:2], "   ", "", *g[2:], ""]),
        Case("crlf", "horizon", [line + b"\r" for line in g]),
        Case("price-as-text", "horizon", with_bad("horizon", _trade(price="1/4")), ((":3", "field price"),)),
        Case("base-is-seller-yes", "horizon", with_bad("horizon", _trade(base_is_seller="yes")),
             ((":3", "field base_is_seller: 'yes'"),)),
        Case("base-is-seller-null", "horizon", with_bad("horizon", _trade(base_is_seller=None)),
             ((":3", "missing field base_is_seller"),)),
        Case("trade-type-number", "horizon", with_bad("horizon", _trade(trade_type=1)),
             ((":3", "field trade_type: '1'"),)),
        Case("amounts-as-numbers", "horizon", with_bad("horizon", _trade(base_amount=1.5, counter_amount=3)), extra=1),
        Case("amount-exponent", "horizon", with_bad("horizon", _trade(base_amount="1e5")),
             ((":3", "field base_amount"),)),
        Case("deep-line", "horizon", [*g[:2], "[" * 200_000 + "]" * 200_000, *g[2:]], ((":3", "not an object"),)),
        Case("deep-field", "horizon", with_bad("horizon", _trade(price={"n": [[[[["1"]]]]], "d": "1"})),
             ((":3", "field price"),)),
        Case("object-for-text", "horizon", with_bad("horizon", _trade(id={"a": 1}, paging_token=None)),
             ((":3", "field id"),)),
    ]  # fmt: skip
    return cases


def refused_cases() -> list[Case]:
    """Files that cannot be read at all: a BadInput naming the file, nothing stored."""
    g = b"".join(line + b"\n" for line in _lines())
    deep = '{"_embedded": {"records": ' + "[" * 200_000 + "]" * 200_000 + "}}"
    return [
        Case("empty-jsonl", "horizon", [], error="is empty", data=b""),
        Case("whitespace-jsonl", "horizon", [], error="is empty", data=b"\n \n\t\n"),
        Case("empty-csv", "hubble_csv", [], error="is empty", data=b""),
        Case("empty-gz", "horizon", [], error="is empty", data=gzip.compress(b""), name="e.jsonl.gz"),
        Case("truncated-gz", "horizon", [], error="truncated or corrupt", data=gzip.compress(g)[:-40],
             name="t.jsonl.gz"),
        Case("truncated-zst", "horizon", [], error="truncated or corrupt",
             data=zstandard.ZstdCompressor().compress(g)[:-40], name="t.jsonl.zst"),
        Case("not-gzip", "horizon", [], error="truncated or corrupt", data=b"\x1f\x8bnot gzip", name="n.jsonl.gz"),
        Case("corrupt-parquet", "hubble_parquet", [], error="cannot be read as Parquet", data=b"PAR1 nonsense PAR1"),
        Case("truncated-parquet", "hubble_parquet", [], error="cannot be read as Parquet", data=b"truncated"),
        Case("nested-parquet", "hubble_parquet", [], error="nested"),
        Case("binary-file", "horizon", [], error="no JSON object", data=bytes(range(256)) * 8),
        Case("unknown-records", "horizon", [{"hello": 1}, {"world": 2}], error="unrecognised records"),
        Case("page-records-int", "page", [], error="_embedded.records is a JSON int", data=b'{"_embedded": {"records": 5}}'),
        Case("page-records-dict", "page", [], error="_embedded.records is a JSON dict",
             data=b'{"_embedded": {"records": {"id": "1-0"}}}'),
        Case("page-records-missing", "page", [], error="_embedded.records is missing", data=b'{"_embedded": {}}'),
        Case("page-deep", "page", [], error="nested too deeply", data=deep.encode()),
        Case("page-bad-utf8", "page", [], error="not valid UTF-8", data=b'{"_embedded": {"records": ["\xff"]}}'),
        Case("page-truncated", "page", [], error="not valid UTF-8 JSON", data=b'{"_embedded": {"records": [{"id": '),
    ]  # fmt: skip


def page_cases() -> list[Case]:
    """Records of a page that are not trade objects: each quarantined, the rest kept."""
    return [
        Case("page-int-record", "page", [5, *good("page")], ((":record 1", "not an object"),)),
        Case("page-null-record", "page", [*good("page")[:2], None, *good("page")[2:]], ((":record 3", "not an object"),)),
        Case("page-empty-record-first", "page", [{}, *good("page")], ((":record 1", "missing field id"),)),
    ]  # fmt: skip


CASES = missing_field_cases() + asset_cases() + byte_cases() + refused_cases() + page_cases()


def make_file(case: Case, tmp: Path) -> Path:
    path = tmp / (case.name or f"in{SUFFIX.get(case.fmt, '.jsonl')}")
    if case.id == "nested-parquet":
        pl.DataFrame({"history_operation_id": [1], "selling_account_address": [{"a": [1, 2]}]}).write_parquet(path)
    elif case.data is not None:
        path.write_bytes(case.data)
    else:
        write(path, case.fmt, case.items)
    return path


def assert_nothing_invented(trades: pl.DataFrame) -> None:
    """No trade of an asset for itself, every pair id parses back, no self-trade."""
    for pair in trades.get_column("pair_id").unique().to_list():
        base, counter = split_pair(pair)
        assert base != counter, pair
    assert (trades["sold_asset"] != trades["bought_asset"]).all()
    assert (trades["seller_account"] != trades["buyer_account"]).fill_null(True).all()


def test_at_least_sixty_generated_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case: Case, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(case.id[:40])
    path = make_file(case, tmp)
    with Store(tmp / "s.duckdb") as store:
        if case.error:
            with pytest.raises(BadInput, match=case.error) as info:
                ingest_files(store, [path])
            assert path.name in str(info.value)
            assert store.counts()["trades"] == store.counts()["operations"] == 0
            return
        [summary] = ingest_files(store, [path])
        is_ops = case.fmt == "operations"
        stored = (store.operations() if is_ops else store.trades()).drop("source").sort("id")
        ref = reference(case.fmt, tmp_path_factory.getbasetemp())
        assert stored.filter(pl.col("id").is_in(ref["id"].implode())).equals(ref), "good rows changed or lost"
        assert stored.height == ref.height + case.extra
        if not is_ops:
            assert_nothing_invented(stored)
        quarantined = store.quarantined()
        assert summary.n_quarantined == quarantined.height == len(case.bad), quarantined.select("location", "reason")
        for loc, why in case.bad:
            rows = quarantined.filter(pl.col("location").str.ends_with(f"{path.name}{loc}"))
            assert rows.height == 1 and why in rows["reason"][0], (loc, why, quarantined.rows())
        if case.raw:
            assert case.raw in quarantined["raw"][0]


# -- the command line: exit status and message, never a traceback --------------------------------------

CLI_CASES = ["horizon-no-base_is_seller", "utf8-middle", "truncated-gz", "page-records-int", "empty-csv"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_exit_status_and_message(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    path = make_file(case, tmp_path)
    cmd = [sys.executable, "-m", "engine", "ingest", "files", "--db", str(tmp_path / "c.duckdb"), str(path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr
    if case.error:
        assert proc.returncode == 1 and "error:" in proc.stderr and path.name in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert f"{GOOD} new trades" in proc.stdout and "1 quarantined" in proc.stdout
        (loc, why) = case.bad[0]
        assert f"quarantined {path}{loc}: " in proc.stdout and why in proc.stdout


# -- kill -9 mid-ingest of a partly bad file, then resume --------------------------------------------------


def test_killed_run_is_marked_interrupted_and_resume_equals_an_uninterrupted_run(tmp_path):
    records: list = [horizon_trade(i, ledger=1000 + i) for i in range(30_000)]
    for n in range(0, 30_000, 997):  # a bad record in most batches
        records[n] = without(records[n], "base_is_seller")
    path = write(tmp_path / "big.jsonl", "horizon", records)
    env = {**os.environ, "LEDGERLENS_BATCH_SIZE": "2000"}

    def cmd(db: str) -> list[str]:
        return [sys.executable, "-m", "engine", "ingest", "files", "--db", str(tmp_path / db), str(path)]

    kill_after_batches(cmd("killed.duckdb"), env=env, cwd=ROOT)  # kill -9 once a few batches have committed
    with Store(tmp_path / "killed.duckdb") as s:
        [run] = s.runs().to_dicts()
        assert (run["status"], run["resumable"]) == ("interrupted", True) and "resume" in run["error"]
        assert 0 < s.counts()["trades"] < 30_000 - 31
    subprocess.run(cmd("killed.duckdb"), env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run(cmd("clean.duckdb"), env=env, cwd=ROOT, check=True, capture_output=True)
    with Store(tmp_path / "killed.duckdb") as a, Store(tmp_path / "clean.duckdb") as b:
        assert a.trades().drop("source").equals(b.trades().drop("source"))
        assert a.counts()["trades"] == 30_000 - 31
        assert_nothing_invented(a.trades())
        bad = a.quarantined().select("location", "reason").sort("location")
        assert bad.equals(b.quarantined().select("location", "reason").sort("location")) and bad.height == 31
        assert set(bad["reason"]) == {"missing field base_is_seller"}
        assert [(r["status"], r["resumable"]) for r in a.runs().to_dicts()] == [("done", False), ("interrupted", False)]


# -- operation amounts in spellings other than Horizon's 7 decimals ---------------------------------------


def test_operation_amounts_off_the_canonical_form_are_parsed_exactly_or_quarantined(tmp_path):
    """Most operations skip the exact-decimal parse (their amounts have Horizon's 7 decimals); the
    rest must still be stored to the stroop, or quarantined naming what is wrong, at their line."""
    spelled = {2001: "12.5", 2005: " 2.25 ", 2009: "-1.0000000", 2013: "1.5000000", 2017: "7"}  # payments
    records = [{**horizon_operation(0, ledger), "amount": amount} for ledger, amount in spelled.items()]
    records += [{**horizon_operation(0, 2002), "amount": "0"},  # an offer may sell nothing (a cancel)
                {**horizon_operation(0, 2000), "starting_balance": "1.12345678"}]  # fmt: skip
    path = tmp_path / "ops.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with Store(tmp_path / "s.duckdb") as store:
        ingest_files(store, [path])
        stored = {row["ledger"]: row["amount"] for row in store.operations().to_dicts()}
        bad = store.quarantined().select("location", "reason").sort("location").rows()
    assert stored == {2001: 125_000_000, 2005: 22_500_000, 2013: 15_000_000, 2017: 70_000_000, 2002: 0}
    assert [(loc.rsplit(":", 1)[1], reason) for loc, reason in bad] == [
        ("3", "field amount: negative amount -1.0000000"),
        ("7", "field starting_balance: 1.12345678 has more than 7 decimals (Stellar amounts are whole stroops)"),
    ]
