"""A rule of thumb to beat: mean population percentile of three telling features.

Counterparty concentration (wash traders trade with few partners), flow balance
(they end with no net position) and the round-trip rate (the asset comes back).
The mean percentile rank is mapped to a probability by isotonic regression on the
training rows, so its Brier score is comparable with the ensemble's.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

BASELINE_FEATURES: tuple[str, ...] = ("counterparty_hhi", "flow_balance", "round_trip_rate")


def baseline_indices(columns: list[str], features: tuple[str, ...] = BASELINE_FEATURES) -> tuple[int, ...]:
    """Positions of the baseline features in `columns` (those present)."""
    return tuple(columns.index(f) for f in features if f in columns)


class RuleOfThumb(ClassifierMixin, BaseEstimator):
    """Mean percentile rank of the columns `feature_indices` (missing = median rank 0.5)."""

    def __init__(self, *, feature_indices: tuple[int, ...] = (0,)):
        self.feature_indices = feature_indices

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.poor_score = True  # a fixed rule of thumb, not a learner: no 83% on arbitrary blobs
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size > 2:
            raise ValueError(f"Only binary classification is supported; got {self.classes_.size} classes")
        cols = [i for i in self.feature_indices if i < X.shape[1]]
        self.columns_ = tuple(cols)
        self.reference_ = [np.sort(X[:, i][~np.isnan(X[:, i])]) for i in cols]
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            self.rank_score(X), (y == self.classes_[-1]).astype(float)
        )
        return self

    def rank_score(self, X) -> np.ndarray:
        """Mean percentile rank (0-1) of the wallet's values among the training rows."""
        X = np.asarray(X, dtype=float)
        ranks = []
        for i, ref in zip(self.columns_, self.reference_, strict=True):
            r = np.searchsorted(ref, X[:, i], side="right") / max(ref.size, 1)
            ranks.append(np.where(np.isnan(X[:, i]), 0.5, r))
        return np.mean(ranks, axis=0) if ranks else np.full(X.shape[0], 0.5)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        p = self.isotonic_.predict(self.rank_score(X))
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int) if self.classes_.size > 1 else 0]
