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


# Pinned figures of the feature matrix and the Benford table on a seeded random
# market, computed by the pre-optimisation code (the version before the speed
# work of issue 4): a faster implementation must give the same results. Sums
# agree to ~1e-15 relative (polars sums in a thread-dependent order), so 1e-9.
PINNED_MATRIX = {  # feature: (null count, sum of non-null values)
    "benford_excess_mad_1h": (5861, 0),
    "benford_neglog_p_1h": (5861, 0),
    "benford_ks_1h": (5861, 0),
    "benford_excess_mad_4h": (5861, 0),
    "benford_neglog_p_4h": (5861, 0),
    "benford_ks_4h": (5861, 0),
    "benford_excess_mad_24h": (5861, 0),
    "benford_neglog_p_24h": (5861, 0),
    "benford_ks_24h": (5861, 0),
    "benford_excess_mad_7d": (5763, 0.68989181315),
    "benford_neglog_p_7d": (5763, 526.233140622),
    "benford_ks_7d": (5763, 8.06484188626),
    "benford_excess_mad_30d": (5723, 0.786016015393),
    "benford_neglog_p_30d": (5723, 798.995119245),
    "benford_ks_30d": (5723, 10.9086892824),
    "n_trades": (0, 57173),
    "counterparty_hhi": (0, 1706.82609874),
    "volume_per_counterparty": (0, 420388469.446),
    "net_flow_ratio": (0, 57.3756096898),
    "flow_balance": (0, 1394.59789923),
    "fixed_lot_share": (2710, 391.082655271),
    "round_number_share": (2710, 319.326488769),
    "off_hours_ratio": (2710, 763.658691889),
    "intra_minute_share": (418, 26.9645592685),
    "inter_arrival_cv": (1131, 4022.04977177),
    "volume_spike_ratio": (563, 196545780.621),
    "size_tail_exponent": (4617, 986.422714192),
    "round_trip_rate": (0, 0.145747316015),
    "offer_cancel_rate": (5055, 188.166666667),
    "account_age_days": (0, 146147.4225),
    "same_controller_rate": (26, 27.0822303419),
    "funding_similarity": (26, 21.811438555),
    "pagerank": (0, 5939.14984911),
    "pair_diversity": (0, 16774.7327597),
    "cross_pair_synchrony": (0, 130.710181488),
    "cross_pair_cp_overlap": (0, 235.829742775),
    "cross_pair_volume_corr": (0, 423.205767211),
    "cross_pair_mad_spread": (5602, 4.20477073759),
    "ring_size": (5861, 0),
    "ring_cp_share": (5861, 0),
}
PINNED_BENFORD = [  # scope, test, rows, sum n, chi2, mad, ks, z_max, excess_mad, p_value,
    # nonconforming, insufficient data, flags, distinct MAD classes
    ('asset', 'first', 105, 109272, 1764.6713595, 0.948277345208, 2.84685953472, 187.75178885, 0.252483119395, 16.5819240413, 6, 40, 6, 5),
    ('asset', 'first_two', 105, 109272, 20676.1607804, 0.135916161758, 2.02320547667, 338.283307946, 0.0286490082502, 14.4494398949, 6, 59, 6, 5),
    ('asset', 'second', 105, 109272, 3670.21734638, 0.950907603653, 2.98305580126, 226.402402966, 0.243148140148, 25.9355569274, 6, 40, 6, 5),
    ('pair', 'first', 100, 54636, 1716.66719937, 0.907209775209, 2.77565263041, 179.222137543, 0.249768238969, 14.5046116914, 6, 40, 6, 5),
    ('pair', 'first_two', 100, 54636, 20289.913014, 0.129724469609, 1.97786263343, 327.550301885, 0.0285392568, 13.2697364775, 6, 58, 6, 3),
    ('pair', 'second', 100, 54636, 3629.45857093, 0.918347139238, 2.89128575041, 216.106619784, 0.249619411979, 23.3274601625, 6, 40, 6, 5),
    ('wallet', 'first', 1269, 104175, 10459.6313344, 13.4630155688, 39.9061916607, 1084.7500257, 1.68070954522, 204.221825554, 16, 762, 16, 5),
    ('wallet', 'first_two', 1269, 104175, 89986.3068803, 0.509658364327, 7.09166897701, 848.232064806, 0.125184013832, 35.4284093653, 8, 1172, 8, 4),
    ('wallet', 'second', 1269, 104175, 21113.2018847, 13.8100436747, 40.5075893081, 1216.49104918, 1.82311950078, 232.11811624, 12, 762, 12, 5),
    ('wallet_pair', 'first', 15079, 104175, 7937.24372936, 7.22828206792, 18.9735311687, 608.901839132, 1.47590782854, 99.5505979849, 16, 14843, 16, 4),
    ('wallet_pair', 'first_two', 15079, 104175, 92859.4102105, 0.424611000895, 5.87646000691, 949.202348404, 0.243383500792, 6.45767393341, 16, 15042, 16, 2),
    ('wallet_pair', 'second', 15079, 104175, 19412.3175458, 8.17803551563, 24.8005114608, 845.829577026, 2.32571874538, 98.5218881649, 16, 14843, 16, 5),
]


def test_results_match_the_pinned_pre_optimisation_figures():
    from engine.features import build_benford_table
    from engine.features.random_market import START, random_market

    trades, ops, accounts = random_market(n_trades=30_000, n_wallets=300, days=10, seed=5)
    as_of = START + timedelta(days=10)
    m = build_feature_matrix(trades, ops, accounts, as_of=as_of)
    assert m.height == 5861
    for name, (nulls, total) in PINNED_MATRIX.items():
        assert (m[name].null_count(), m[name].sum()) == (nulls, pytest.approx(total, rel=1e-9, abs=1e-12)), name
    table = build_benford_table(trades, as_of=as_of)
    assert table.height == 49659
    got = table.group_by("scope", "test").agg(
        rows=pl.len(), n=pl.col("n").sum(), chi2=pl.col("chi2").sum(), mad=pl.col("mad").sum(), ks=pl.col("ks").sum(),
        z=pl.col("z_max").sum(), em=pl.col("excess_mad").sum(), p=pl.col("p_value").sum(),
        nonconf=(pl.col("verdict") == "nonconforming").sum(), insuff=(pl.col("verdict") == "insufficient data").sum(),
        flags=pl.col("flag").sum(), classes=pl.col("mad_class").n_unique(),
    ).sort("scope", "test")  # fmt: skip
    for row, pinned in zip(got.iter_rows(), PINNED_BENFORD, strict=True):
        assert row[:4] == pinned[:4] and row[10:] == pinned[10:], (row, pinned)
        assert row[4:10] == pytest.approx(pinned[4:10], rel=1e-9), (row, pinned)
