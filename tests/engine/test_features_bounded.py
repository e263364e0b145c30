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



def test_a_slow_partition_holds_one_thread_not_both():
    from engine.services.parallel import two_at_once

    started = {i: threading.Event() for i in range(4)}

    def work(i):
        started[i].set()
        if i == 0:  # the big partition: still at work when the second thread has taken two more
            return started[2].wait(timeout=10) and started[3].wait(timeout=10)
        return True

    assert list(two_at_once(work, iter(range(4)), pending=4)) == [True] * 4


def test_two_at_once_keeps_order_and_ends_the_reads_as_soon_as_a_partition_fails():
    from engine.services.parallel import two_at_once

    closed = []

    def reads():
        try:
            yield from range(6)
        finally:
            closed.append(True)

    assert list(two_at_once(lambda i: i * 10, reads(), pending=4)) == [0, 10, 20, 30, 40, 50]

    def fail_on_three(i):
        if i == 3:
            raise ValueError("partition 3")
        return i

    closed.clear()
    got = []
    try:
        for value in two_at_once(fail_on_three, reads(), pending=4):
            got.append(value)
    except ValueError:
        assert closed == [True]  # the reads ended before the error reached the caller
    assert got == [0, 1, 2]


def test_two_at_once_needs_room_for_two():
    from engine.services.parallel import two_at_once

    with pytest.raises(ValueError, match="at least 2"):
        list(two_at_once(lambda i: i, iter(range(3)), pending=1))
