"""Wallet features on hand-made frames with exact expected values, and the
no-copies check of the correlation matrix on a random and a simulated market."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from engine.features import FEATURE_NAMES, MISSING_INDICATORS, build_feature_matrix
from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA, conform
from storage.errors import BadInput

U = 10_000_000  # stroops per unit
T0 = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
AS_OF = T0 + timedelta(hours=1)
P1, P2 = "X:GISS/XLM:native", "Y:GISS/XLM:native"


def trade(n, ledger, secs, pair, seller, buyer, sold_asset, sold, bought_asset, bought, pool=None):
    return {
        "id": f"{n}-0", "op_id": (ledger << 32) + n, "ledger": ledger, "closed_at": T0 + timedelta(seconds=secs),
        "trade_type": "liquidity_pool" if pool else "orderbook", "pair_id": pair, "seller_account": seller,
        "buyer_account": buyer, "buyer_pool_id": pool, "sold_asset": sold_asset, "sold_amount": int(sold * U),
        "bought_asset": bought_asset, "bought_amount": int(bought * U), "source": "test",
    }  # fmt: skip


TRADES = conform(pl.DataFrame([
    trade(1, 1000, 0, P1, "A", "B", "X:GISS", 100, "XLM:native", 200),
    trade(2, 1010, 50, P1, "B", "A", "X:GISS", 100.5, "XLM:native", 201),  # X back to A (0.5 %), XLM back to B
    trade(3, 1020, 600, P1, "A", "B", "X:GISS", 50, "XLM:native", 110),
    trade(4, 1030, 1200, P1, "A", "C", "X:GISS", 70, "XLM:native", 150),
    trade(5, 1040, 1230, P2, "A", None, "Y:GISS", 10, "XLM:native", 5, pool="pool1"),
    trade(6, 2000, 7200, P1, "A", "B", "X:GISS", 1000, "XLM:native", 2000),  # after as_of
]), TRADES_SCHEMA)  # fmt: skip


def offer(i, secs, offer_id, amount, asset="X:GISS"):
    return {"id": i, "closed_at": T0 + timedelta(seconds=secs), "type": "manage_sell_offer", "successful": True,
            "source_account": "A", "asset": asset, "buying_asset": "XLM:native", "amount": amount, "offer_id": offer_id}


OPERATIONS = conform(pl.DataFrame([
    offer(1, 10, 0, 10 * U), offer(2, 20, 5, 20 * U), offer(3, 30, 5, 0), offer(4, 40, 6, 0),
    offer(5, 9000, 7, 0),  # after as_of: not counted
]), OPERATIONS_SCHEMA)  # fmt: skip

ACCOUNTS = pl.DataFrame({
    "account_id": ["A", "B", "C", "F"],
    "created_at": [T0 - timedelta(days=10), T0 - timedelta(days=5), T0 - timedelta(days=1), T0 - timedelta(days=99)],
    "funder": ["F", "F", "G", "EX"],
})  # fmt: skip


@pytest.fixture(scope="module")
def matrix():
    return build_feature_matrix(TRADES, OPERATIONS, ACCOUNTS, as_of=AS_OF)


def row(m: pl.DataFrame, wallet: str, pair: str) -> dict:
    rows = m.filter((pl.col("wallet") == wallet) & (pl.col("pair_id") == pair)).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_rows_are_account_wallets_per_pair_up_to_as_of(matrix):
    assert matrix.select("wallet", "pair_id").rows() == [("A", P1), ("A", P2), ("B", P1), ("C", P1)]  # no pool row
    assert matrix["as_of"].unique().to_list() == [AS_OF]
    assert row(matrix, "A", P1)["n_trades"] == 4.0  # trade 6 (after as_of) excluded
    assert list(matrix.columns) == ["wallet", "pair_id", "as_of", *FEATURE_NAMES, *MISSING_INDICATORS]


def test_as_of_cutoff_excludes_later_trades():
    early = build_feature_matrix(TRADES, OPERATIONS, ACCOUNTS, as_of=T0 + timedelta(seconds=100))
    assert early.select("wallet", "pair_id").rows() == [("A", P1), ("B", P1)]
    assert row(early, "A", P1)["n_trades"] == 2.0
    assert row(early, "A", P1)["offer_cancel_rate"] == pytest.approx(0.5)  # ops at 10-40 s
    assert row(early, "A", P1)["account_age_days"] == pytest.approx(10 + 100 / 86400)


def test_concentration_round_trips_flow(matrix):
    a = row(matrix, "A", P1)
    assert a["counterparty_hhi"] == pytest.approx(0.75**2 + 0.25**2)  # B three times, C once
    assert a["round_trip_rate"] == pytest.approx(1 / 4)  # only the first X came back
    assert row(matrix, "B", P1)["round_trip_rate"] == pytest.approx(1 / 3)  # B's XLM came back
    assert row(matrix, "C", P1)["round_trip_rate"] == 0.0
    assert a["net_flow_ratio"] == pytest.approx((100.5 - 220) / 320.5)  # bought 100.5 X, sold 220
    assert a["flow_balance"] == pytest.approx(1 - (220 - 100.5) / 320.5)
    assert a["volume_per_counterparty"] == pytest.approx(320.5 / 2)


def test_timing(matrix):
    a = row(matrix, "A", P1)
    gaps = np.array([50, 550, 600.0])
    assert a["inter_arrival_cv"] == pytest.approx(gaps.std(ddof=1) / gaps.mean())
    assert a["intra_minute_share"] == pytest.approx(0.5)
    assert a["cross_pair_synchrony"] == pytest.approx(0.25)  # the trade at 1200 s, 30 s before the P2 one
    assert row(matrix, "A", P2)["cross_pair_synchrony"] == 1.0
    assert a["cross_pair_cp_overlap"] == 0.0  # {B, C} vs {pool1}
    assert a["pair_diversity"] == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))


def test_cancellation_rate_and_missing_is_null_with_indicator(matrix):
    a1, a2, c = row(matrix, "A", P1), row(matrix, "A", P2), row(matrix, "C", P1)
    assert a1["offer_cancel_rate"] == pytest.approx(0.5) and a1["offer_cancel_rate_missing"] is False
    assert a2["offer_cancel_rate"] is None and a2["offer_cancel_rate_missing"] is True  # no offers in P2
    assert c["inter_arrival_cv"] is None and c["inter_arrival_cv_missing"] is True  # one trade
    assert c["fixed_lot_share"] is None and c["shape_missing"] is True
    assert a1["benford_excess_mad_30d"] is None and a1["benford_30d_missing"] is True  # 4 amounts < 50
    assert row(matrix, "B", P1)["cross_pair_synchrony"] is None and row(matrix, "B", P1)["cross_pair_missing"]
    assert a1["ring_size"] is None and a1["ring_missing"] is True  # rings not given
    assert a1["account_age_days"] == pytest.approx(10 + 1 / 24)


def test_funding_lineage(matrix):
    a = row(matrix, "A", P1)  # A, B funded by F (funded by EX); C by G
    assert a["same_controller_rate"] == pytest.approx(0.75)
    assert a["funding_similarity"] == pytest.approx(0.75 * 2 / 4)  # {A,F,EX} vs {B,F,EX}
    assert row(matrix, "C", P1)["same_controller_rate"] == 0.0
    assert row(matrix, "A", P2)["same_controller_rate"] is None  # only a pool counterparty
    # a hub (exchange-like funder) is left out of lineage by engine.graph.funding.ancestors
    no_f = pl.DataFrame({"account_id": ["A", "B"], "ancestor": ["EX", "EX"], "depth": [2, 2]})
    hub = build_feature_matrix(TRADES, OPERATIONS, ACCOUNTS, as_of=AS_OF, ancestors=no_f)
    assert row(hub, "A", P1)["funding_similarity"] == pytest.approx(0.75 * 1 / 3)


def test_given_ancestors_and_ring_members_are_used():
    ancestors = pl.DataFrame({"account_id": ["A", "C"], "ancestor": ["Z", "Z"], "depth": [2, 1]})
    rings = pl.DataFrame({"account_id": ["A", "B"], "ring_id": ["ring_x", "ring_x"]})
    m = build_feature_matrix(TRADES, OPERATIONS, ACCOUNTS, as_of=AS_OF, ancestors=ancestors, ring_members=rings)
    a = row(m, "A", P1)
    assert a["same_controller_rate"] == pytest.approx(0.25)  # only C shares Z
    assert row(m, "B", P1)["same_controller_rate"] is None  # B's lineage unknown
    assert a["ring_size"] == 2.0 and a["ring_cp_share"] == pytest.approx(0.75) and a["ring_missing"] is False
    assert row(m, "C", P1)["ring_size"] == 0.0 and row(m, "C", P1)["ring_cp_share"] == 0.0


def test_bad_input_is_named():
    with pytest.raises(BadInput, match="lacks columns"):
        build_feature_matrix(TRADES.drop("pair_id"), as_of=AS_OF)
    with pytest.raises(BadInput, match="time zone"):
        build_feature_matrix(TRADES, as_of=datetime(2024, 1, 1))


def max_abs_correlation(m: pl.DataFrame, *, min_rows: int = 100) -> tuple[float, str, str]:
    cols = [*FEATURE_NAMES, *MISSING_INDICATORS]
    x = m.select(pl.col(c).cast(pl.Float64) for c in cols).to_numpy()
    best = (0.0, "", "")
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            ok = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
            a, b = x[ok, i], x[ok, j]
            if ok.sum() < min_rows or a.std() == 0 or b.std() == 0:
                continue
            c = abs(np.corrcoef(a, b)[0, 1])
            best = max(best, (c, cols[i], cols[j]))
    return best


def test_no_two_features_are_copies_on_a_random_market():
    from engine.features.random_market import START, random_market

    trades, ops, accounts = random_market(n_trades=60_000, n_wallets=1800, seed=3)
    m = build_feature_matrix(trades, ops, accounts, as_of=START + timedelta(days=40))
    assert m.height > 20_000
    corr, a, b = max_abs_correlation(m)
    assert corr <= 0.98, f"{a} and {b} correlate at {corr:.4f}"


def test_no_two_features_are_copies_on_the_simulated_market(tmp_path):
    market = pytest.importorskip("engine.synthetic.market", reason="the simulator (engine.synthetic) is absent")
    files = pytest.importorskip("engine.ingest.files", reason="engine.ingest.files is absent")
    from storage.store import Store

    summary = market.generate_market(tmp_path / "sim", seed=7, scale=0.05, days=10)
    with Store(tmp_path / "s.duckdb") as store:
        files.ingest_files(store, [summary.trades_path, summary.operations_path])
        trades, ops, accounts = store.trades(), store.operations(), store.accounts()
    m = build_feature_matrix(trades, ops, accounts, as_of=trades["closed_at"].max())
    assert m.height > 500
    corr, a, b = max_abs_correlation(m)
    assert corr <= 0.98, f"{a} and {b} correlate at {corr:.4f}"
