"""The features step on a store gives exactly what the whole-market implementation
gave (frozen in tests/engine/golden by tests.engine.feature_market), however many
wallet partitions it reads the market in."""

from __future__ import annotations

import threading

import pytest

from engine.services.features import compute_features
from tests.engine.feature_market import AS_OF, BENFORD_KEY, MATRIX_KEY, assert_same_frame, build_store, golden


@pytest.mark.parametrize("trades_per_partition", [1_000_000, 700], ids=["one-partition", "ten-partitions"])
def test_features_step_equals_the_whole_market_implementation(tmp_path, trades_per_partition):
    want_matrix, want_benford = golden()
    seen = []
    with build_store(tmp_path / "s.duckdb") as store:
        run = compute_features(store, as_of=AS_OF, trades_per_partition=trades_per_partition,
                               progress=lambda **kw: seen.append(kw))  # fmt: skip
        stored, benford = store.load_derived("features"), store.load_derived("benford")
    assert want_matrix.height > 400 and want_benford.height > 6000  # a real market, not an empty one
    assert seen[-1]["done"] == seen[-1]["total"] == (1 if trades_per_partition > 8000 else 10)
    assert_same_frame(run.matrix, want_matrix, key=MATRIX_KEY)
    assert_same_frame(stored, want_matrix, key=MATRIX_KEY)
    assert_same_frame(benford, want_benford, key=BENFORD_KEY)
    assert (run.benford_tests, run.benford_flagged) == (benford.height, benford["flag"].sum())


def test_market_digit_tables_of_batches_add_up_to_the_whole_markets():
    import polars as pl

    from engine.features import DEFAULT_CONFIG, build_benford_table
    from engine.features.benford_features import market_benford, market_digits
    from engine.features.random_market import random_market

    trades, _, _ = random_market(n_trades=6_000, n_wallets=60, n_pairs=5, days=4, seed=3)
    whole = build_benford_table(trades, as_of=AS_OF).filter(pl.col("scope").is_in(["pair", "asset"]))
    batches = [market_digits(b, as_of=AS_OF, cfg=DEFAULT_CONFIG) for b in trades.sample(fraction=1.0, seed=1).iter_slices(997)]
    by_batch = market_benford(pl.concat(batches[::-1]), as_of=AS_OF, cfg=DEFAULT_CONFIG)
    assert whole.height > 100 and whole["flag"].drop_nulls().len() > 0
    assert_same_frame(by_batch, whole, key=BENFORD_KEY)


def test_read_ahead_keeps_order_and_closes_the_reads_when_the_caller_stops():
    from engine.services.features import _read_ahead

    threads, closed = set(), []

    def reads():
        try:
            for i in range(5):
                threads.add(threading.get_ident())
                yield i
        finally:
            closed.append(threading.get_ident())

    assert list(_read_ahead(reads())) == [0, 1, 2, 3, 4]
    ahead = _read_ahead(reads())
    assert next(ahead) == 0
    ahead.close()  # the caller stops early: the reads are closed, on the thread that read them
    assert len(closed) == 2 and set(closed) == threads
    assert threading.get_ident() not in threads
