"""The forensic report read from the wallet's side: trade legs as the wallet traded them, UTC times, asset
units on the ring tables, never "-0" (issue #16)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl
import pytest

from engine.services.report import assemble_report
from reports import tables
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, settings_for


@pytest.fixture(scope="module")
def report_and_trades(tmp_path_factory):
    s = build_fixture_store(tmp_path_factory.mktemp("report") / "fixture.duckdb")
    with Store(s.db_path, read_only=True) as store:
        report = assemble_report(store, wallet=s.top_wallet, pair_id=s.top_pair, settings=settings_for(s.db_path))
        trades = store.trades().filter(pl.col("pair_id") == s.top_pair)
        score = store.wallet_scores(s.top_wallet).filter(pl.col("pair_id") == s.top_pair).row(0, named=True)
    return s, report.content, trades, score


def _units(stroops: int) -> str:
    return f"{stroops // 10**7}.{stroops % 10**7:07d}"


def test_trade_table_reads_from_the_wallets_side(report_and_trades):
    s, content, trades, _ = report_and_trades
    table = tables.trades_table(content)
    assert table.headers[2:6] == ("Wallet", "Counterparty", "Wallet gave", "Wallet got")
    by_op = {str(t["op_id"]): t for t in trades.iter_rows(named=True)}
    base_code = s.top_pair.split("/")[0].split(":")[0]
    sides = set()
    for row in table.rows:
        t = by_op[row[-1].rsplit("/", 1)[1]]
        wallet_sold = t["seller_account"] == s.top_wallet
        gave = (t["sold_amount"], t["sold_asset"]) if wallet_sold else (t["bought_amount"], t["bought_asset"])
        got = (t["bought_amount"], t["bought_asset"]) if wallet_sold else (t["sold_amount"], t["sold_asset"])
        assert row[4].startswith(_units(gave[0])) and row[5].startswith(_units(got[0]))
        assert row[2] == ("sold " if gave[1] == s.top_pair.split("/")[0] else "bought ") + base_code
        sides.add(row[2].split()[0])
    assert sides == {"sold", "bought"}  # the ring's round trips: both directions appear


def test_score_as_of_is_a_utc_date_and_no_cell_reads_minus_zero(report_and_trades):
    _, content, _, score = report_and_trades
    header = dict(tables.header_table(content).rows)
    when = datetime.fromtimestamp(score["timestamp"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert header["Score as of (ledger close, UTC)"] == when
    every = [tables.header_table(content), tables.trades_table(content), tables.shap_table(content),
             tables.feature_table(content), tables.benford_table(content), *tables.lineage_tables(content),
             *tables.ring_tables(content), *tables.provenance_tables(content)]  # fmt: skip
    cells = [c for t in every for r in t.rows for c in r]
    assert cells and not [c for c in cells if re.fullmatch(r"[-+]0(\.0+)?", c) and c.startswith("-")]
    assert tables.cell(-0.0) == "0" and tables.cell(-1e-9) == "-1e-09"


def test_ring_tables_give_member_volumes_in_asset_units_of_the_pair(report_and_trades):
    s, content, trades, _ = report_and_trades
    stats, members = tables.ring_tables(content)
    assert not any("stroops" in h for h in members.headers) and "volume" not in dict(stats.rows)
    ids = {r[0] for r in members.rows}
    base = s.top_pair.split("/")[0]
    inside = trades.filter(pl.col("seller_account").is_in(list(ids)) & pl.col("buyer_account").is_in(list(ids)))
    for account_id, _, volume in members.rows:
        mine = inside.filter((pl.col("seller_account") == account_id) | (pl.col("buyer_account") == account_id))
        stroops = sum(t["sold_amount"] if t["sold_asset"] == base else t["bought_amount"] for t in mine.iter_rows(named=True))
        assert volume == _units(stroops)
    assert members.headers[2].endswith(f"({tables.short_asset(base)})")
