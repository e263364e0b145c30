"""The ensemble estimator, its combination rule, splits, metrics and training on a seeded stand-in matrix."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.baseline import RuleOfThumb, baseline_indices
from models.ensemble import WashEnsemble, combine_scores
from models.training import (
    evaluate,
    join_labels,
    labels_from_annotations,
    labels_from_simulator,
    synthetic_feature_frame,
    time_group_split,
    train_model,
)


# Every scikit-learn check passes; none needs to be marked as an expected failure.
@parametrize_with_checks(
    [WashEnsemble(n_estimators=5, n_jobs=1), RuleOfThumb(feature_indices=(0, 1))],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_combine_median_trim_and_no_forced_100():
    score, divergent, spread = combine_scores(
        np.array([[10, 20, 90], [40, 50, 60], [0, 50, 100], [10, 95, 100.0]]), divergence=30
    )
    assert score.tolist() == [15.0, 50.0, 50.0, 97.5]  # 90 trimmed; plain median; tie: median stands; 10 trimmed
    assert divergent.tolist() == [True, False, True, True]
    assert spread.tolist() == [10.0, 20.0, 100.0, 5.0]


def test_combine_weighted_mean_of_kept():
    score, divergent, _ = combine_scores(np.array([[20, 40, 50.0]]), weights=np.array([1, 1, 2]))
    assert score.tolist() == [40.0] and divergent.tolist() == [False]


def test_evaluate_hand_computed():
    m = evaluate(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1]), wallets=np.array(["a", "b", "c", "d"]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["prevalence"] == 0.5
    assert m["brier"] == pytest.approx(0.2875)
    assert m["f1_at_threshold"] == pytest.approx(0.5)
    assert m["precision_at_0.5pct"] == 1.0 and m["n_wallets"] == 4


def test_time_group_split_never_leaks():
    features, labels = synthetic_feature_frame(n_wallets=200, n_snapshots=2, seed=3)
    data = join_labels(features, labels_from_simulator(labels))
    groups = data.get_column("group").to_numpy()
    as_of = data.get_column("as_of").dt.epoch("s").to_numpy()
    y = data.get_column("label").to_numpy()
    tr, te, kind = time_group_split(as_of, groups, y, seed=0)
    assert kind == "time+group"
    assert not set(groups[tr]) & set(groups[te])
    assert as_of[tr].max() < as_of[te].min()
    assert y[te].sum() > 0 and y[tr].sum() > 0


def test_labels_sources_and_relabel():
    ann = pl.DataFrame({
        "wallet": ["A", "A", "B", "C"], "pair_id": [None, None, "P1", None],
        "label": ["legit", "wash", "legit", "unsure"], "annotator_id": ["x", "y", "x", "x"],
        "annotated_at": [1, 2, 1, 1], "label_source": ["analyst", "analyst", None, "analyst"],
    })  # fmt: skip
    rings = pl.DataFrame({"account_id": ["A"], "ring_id": ["ring_1"]})
    out = labels_from_annotations(ann, rings).sort("wallet")
    assert out.select("wallet", "label", "label_source", "group").rows() == [
        ("A", 1, "analyst", "ring_1"), ("B", 0, "analyst", "B")
    ]  # fmt: skip
    features = pl.DataFrame({"wallet": ["A", "B", "B"], "pair_id": ["P1", "P1", "P2"], "x": [1.0, 2.0, 3.0]})
    joined = join_labels(features, out).sort("wallet", "pair_id")
    assert joined.select("wallet", "pair_id", "label").rows() == [("A", "P1", 1), ("B", "P1", 0)]


def test_baseline_rank_score():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, np.nan], [3.0, 3.0]])
    base = RuleOfThumb(feature_indices=(0, 1)).fit(X, np.array([0, 0, 1, 1]))
    # ranks of column 0: 1/4..4/4; column 1 (3 values): 2/3, 1/3, missing 0.5, 3/3
    assert base.rank_score(X).tolist() == pytest.approx([(0.25 + 2 / 3) / 2, (0.5 + 1 / 3) / 2, 0.625, 1.0])
    assert baseline_indices(["a", "flow_balance", "counterparty_hhi"]) == (2, 1)


def test_train_model_records_everything_and_beats_noise():
    features, labels = synthetic_feature_frame(n_wallets=300, seed=1)
    result = train_model(features, labels_from_simulator(labels), seed=0, n_estimators=25, n_jobs=1)
    meta = result.metadata
    assert meta["label_distribution"] == {"wash": 112, "legit": 1088}
    assert meta["label_sources"] == {"simulator": 1200}
    assert meta["split"]["kind"] == "time+group"
    assert meta["split"]["n_train"] + meta["split"]["n_test"] == 600  # each side keeps one snapshot
    assert set(meta["imbalance"]["validation_pr_auc"]) == {"class_weight", "smote"}
    assert meta["imbalance"]["chosen"] in ("class_weight", "smote")
    assert set(meta["metrics"]) == {"ensemble", "baseline", "rf", "xgb", "lgbm"}
    ens = meta["metrics"]["ensemble"]
    assert ens["roc_auc"] > 0.8 and ens["pr_auc"] > 2 * ens["prevalence"]
    assert len(meta["feature_columns"]) == len(result.columns) == features.width - 3
    assert result.test_rows.height == meta["split"]["n_test"] == result.test_X.shape[0]
    p = result.model.predict_proba(result.test_X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
