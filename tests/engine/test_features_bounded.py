"""The features step on a store gives exactly what the whole-market implementation
gave (frozen in tests/engine/golden by tests.engine.feature_market)."""

from __future__ import annotations

from engine.services.analyse import compute_features
from tests.engine.feature_market import AS_OF, BENFORD_KEY, MATRIX_KEY, assert_same_frame, build_store, golden


def test_features_step_equals_the_whole_market_implementation(tmp_path):
    want_matrix, want_benford = golden()
    with build_store(tmp_path / "s.duckdb") as store:
        run = compute_features(store, as_of=AS_OF)
        stored = store.load_derived("features")
    assert want_matrix.height > 400 and want_benford.height > 6000  # a real market, not an empty one
    assert_same_frame(run.matrix, want_matrix, key=MATRIX_KEY)
    assert_same_frame(stored, want_matrix, key=MATRIX_KEY)
    assert_same_frame(run.benford, want_benford, key=BENFORD_KEY)
