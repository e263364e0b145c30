"""The features step on a store gives exactly what the whole-market implementation
gave (frozen in tests/engine/golden by tests.engine.feature_market), however many
wallet partitions it reads the market in."""

from __future__ import annotations

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
        stored = store.load_derived("features")
    assert want_matrix.height > 400 and want_benford.height > 6000  # a real market, not an empty one
    assert seen[-1]["done"] == seen[-1]["total"] == (1 if trades_per_partition > 8000 else 10)
    assert_same_frame(run.matrix, want_matrix, key=MATRIX_KEY)
    assert_same_frame(stored, want_matrix, key=MATRIX_KEY)
    assert_same_frame(run.benford, want_benford, key=BENFORD_KEY)
