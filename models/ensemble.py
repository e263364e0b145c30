"""The risk ensemble: RandomForest + XGBoost + LightGBM behind scikit-learn's contract.

Each member is trained on part of the data (class weights or SMOTE inside its own
pipeline), then calibrated with isotonic regression on a held-out part (grouped
when groups are given, so one ring never sits on both sides). The ensemble's
probability is the median of the three calibrated probabilities; when they spread
more than `divergence` points (of 100) the member farthest from the median is
trimmed and the row is marked divergent (`bft_divergence`). A score is never
forced to 100 because models disagree.
"""

from __future__ import annotations

import os

# OpenMP threads of xgboost/lightgbm spin while waiting; on a shared 2-core machine that
# made a 30-tree fit 10-30x slower. Passive waiting must be chosen before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402
from sklearn.model_selection import StratifiedShuffleSplit  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import check_is_fitted, validate_data  # noqa: E402

MEMBERS: tuple[str, ...] = ("rf", "xgb", "lgbm")
IMBALANCE_METHODS: tuple[str, ...] = ("class_weight", "smote")


def combine_scores(
    points: np.ndarray, *, divergence: float = 30.0, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine member scores (n, m) on a 0-100 scale.

    Returns (score float (n,), divergent bool (n,), kept_spread float (n,)).
    Unweighted: the median, or the mean of the kept members when the spread
    exceeds `divergence` (the member farthest from the median is trimmed; when both
    extremes are equally far, nothing is trimmed and the median stands).
    Weighted: the weighted mean of the kept members.
    """
    points = np.asarray(points, dtype=float)
    n, m = points.shape
    med = np.median(points, axis=1)
    divergent = (points.max(axis=1) - points.min(axis=1)) > divergence
    keep = np.ones((n, m), dtype=bool)
    dev = np.abs(points - med[:, None])
    outlier = dev.argmax(axis=1)
    # two extremes equally far from the median: no outlier to trim, the median stands
    clear = (dev >= dev.max(axis=1, keepdims=True) - 1e-9).sum(axis=1) == 1
    rows = np.flatnonzero(divergent & clear)
    keep[rows, outlier[rows]] = False
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=float)
    wk = keep * w[None, :]
    mean_kept = (points * wk).sum(axis=1) / np.maximum(wk.sum(axis=1), 1e-12)
    score = np.where(divergent & clear, mean_kept, med) if weights is None else mean_kept
    kept_hi = np.where(keep, points, -np.inf).max(axis=1)
    kept_lo = np.where(keep, points, np.inf).min(axis=1)
    return np.clip(score, 0.0, 100.0), divergent, kept_hi - kept_lo


def make_member(
    kind: str, *, n_estimators: int, random_state: int, imbalance: str, pos_weight: float,
    min_child_samples: int, smote_k: int, n_jobs: int = 2,
):  # fmt: skip
    """One unfitted member: the booster/forest, wrapped with imputer + SMOTE when imbalance == 'smote'."""
    weighted = imbalance == "class_weight"
    if kind == "rf":
        clf = RandomForestClassifier(
            n_estimators=n_estimators, min_samples_leaf=2, max_features="sqrt", n_jobs=n_jobs,
            class_weight="balanced_subsample" if weighted else None, random_state=random_state,
        )  # fmt: skip
    elif kind == "xgb":
        from xgboost import XGBClassifier

        clf = XGBClassifier(
            n_estimators=n_estimators, max_depth=5, learning_rate=0.1, subsample=0.9, colsample_bytree=0.8,
            tree_method="hist", n_jobs=n_jobs, random_state=random_state, eval_metric="logloss",
            scale_pos_weight=pos_weight if weighted else 1.0,
        )  # fmt: skip
    elif kind == "lgbm":
        from lightgbm import LGBMClassifier

        clf = LGBMClassifier(
            n_estimators=n_estimators, num_leaves=31, learning_rate=0.08, subsample=0.9, subsample_freq=1,
            colsample_bytree=0.8, min_child_samples=min_child_samples, n_jobs=n_jobs, verbose=-1,
            class_weight="balanced" if weighted else None, random_state=random_state,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown ensemble member {kind!r}; known: {MEMBERS}")
    if imbalance != "smote" or smote_k < 1:
        return clf
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline

    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("smote", SMOTE(k_neighbors=smote_k, random_state=random_state)),
        ("model", clf),
    ])  # fmt: skip


def tree_of(member):
    """(preprocess or None, tree model) of a fitted member (for SHAP)."""
    if hasattr(member, "named_steps"):
        return member.named_steps["impute"], member.named_steps["model"]
    return None, member


class WashEnsemble(ClassifierMixin, BaseEstimator):
    """Binary wash-trading classifier: calibrated RF / XGBoost / LightGBM, median-combined.

    Parameters are stored as given (scikit-learn contract); learned state ends in `_`:
    classes_, members_ (list of fitted members, in MEMBERS order), calibrators_
    (IsotonicRegression or None each), calibration_error_ (held-out ECE of the
    combined score, 0-1), n_features_in_.
    """

    def __init__(
        self, *, n_estimators: int = 150, imbalance: str = "class_weight", calibration_size: float = 0.25,
        divergence: float = 30.0, weights: tuple[float, float, float] | None = None, n_jobs: int = 2,
        random_state: int = 0,
    ):  # fmt: skip
        self.n_estimators = n_estimators
        self.imbalance = imbalance
        self.calibration_size = calibration_size
        self.divergence = divergence
        self.weights = weights
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y, groups=None):
        """Fit members on one part, isotonic calibrators on the held-out part; returns self."""
        if self.imbalance not in IMBALANCE_METHODS:
            raise ValueError(f"imbalance must be one of {IMBALANCE_METHODS}, got {self.imbalance!r}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            raise ValueError(f"Only binary classification is supported; got {self.classes_.size} class(es) in y")
        y01 = (y == self.classes_[1]).astype(int)
        fit_idx, cal_idx = _calibration_split(y01, groups, self.calibration_size, self.random_state)
        self.members_ = [self._fit_member(k, X[fit_idx], y01[fit_idx]) for k in MEMBERS]
        raw = self._raw(X[cal_idx]) if cal_idx.size else None
        self.calibrators_ = [
            None if raw is None else IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw[:, j], y01[cal_idx])
            for j in range(len(MEMBERS))
        ]  # fmt: skip
        self.calibration_error_ = _cross_fitted_ece(raw, y01[cal_idx]) if raw is not None else 0.5
        return self

    def _fit_member(self, kind: str, X: np.ndarray, y: np.ndarray):
        n_pos = int(y.sum())
        n_neg = y.size - n_pos
        member = make_member(
            kind, n_estimators=self.n_estimators, random_state=self.random_state, imbalance=self.imbalance,
            pos_weight=n_neg / max(n_pos, 1), min_child_samples=max(2, min(20, y.size // 20)),
            smote_k=min(5, min(n_pos, n_neg) - 1), n_jobs=self.n_jobs,
        )  # fmt: skip
        return member.fit(X, y)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated positive-class probabilities (n, 3)."""
        return np.column_stack([_positive(m.predict_proba(X)) for m in self.members_])

    def member_probas(self, X) -> np.ndarray:
        """Calibrated positive-class probabilities of each member, (n, 3) in MEMBERS order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        raw = self._raw(X)
        cols = [raw[:, j] if c is None else c.predict(raw[:, j]) for j, c in enumerate(self.calibrators_)]
        return np.column_stack(cols)

    def combined(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(score 0-100 float, divergent bool, kept spread, member points (n, 3)) for X."""
        points = self.member_probas(X) * 100.0
        score, divergent, spread = combine_scores(points, divergence=self.divergence, weights=self.weights)
        return score, divergent, spread, points

    def predict_proba(self, X) -> np.ndarray:
        score = self.combined(X)[0] / 100.0
        return np.column_stack([1.0 - score, score])

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _positive(proba: np.ndarray) -> np.ndarray:
    return proba[:, 1] if proba.ndim == 2 and proba.shape[1] > 1 else np.zeros(proba.shape[0])


def _calibration_split(y: np.ndarray, groups, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, calibration rows); whole groups per side, stratified by group label (a ring is
    a positive group) so both sides hold wash groups. No calibration rows when data is too small."""
    idx = np.arange(y.size)
    if size <= 0 or np.bincount(y, minlength=2).min() < 8:
        return idx, idx[:0]
    if groups is not None:
        fit, cal = stratified_group_split(y, np.asarray(groups), size, seed)
        if np.unique(y[cal]).size == 2 and np.unique(y[fit]).size == 2:
            return fit, cal
    fit, cal = next(StratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed).split(idx, y))
    return fit, cal


def stratified_group_split(y: np.ndarray, groups: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of kept groups, rows of held-out groups): a `size` share of the positive groups and of
    the negative groups is held out (at least one of each kind when there are two or more)."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    positive = np.bincount(inverse, weights=y, minlength=uniq.size) > 0
    held = np.zeros(uniq.size, dtype=bool)
    for mask in (positive, ~positive):
        ids = np.flatnonzero(mask)
        n_held = min(max(1, int(round(size * ids.size))), ids.size - 1) if ids.size > 1 else 0
        held[rng.permutation(ids)[:n_held]] = True
    return np.flatnonzero(~held[inverse]), np.flatnonzero(held[inverse])


def _cross_fitted_ece(raw: np.ndarray, y: np.ndarray, *, bins: int = 10) -> float:
    """Expected calibration error of the median calibrated score, isotonic fitted on one half, scored on the other."""
    if y.size < 20 or np.unique(y).size < 2:
        return 0.5
    half = np.arange(y.size) % 2 == 0
    errs = []
    for a, b in ((half, ~half), (~half, half)):
        cal = [
            IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw[a, j], y[a]) for j in range(raw.shape[1])
        ]
        p = np.median(np.column_stack([c.predict(raw[b, j]) for j, c in enumerate(cal)]), axis=1)
        which = np.minimum((p * bins).astype(int), bins - 1)
        gap = np.abs(np.bincount(which, weights=p - y[b], minlength=bins))
        errs.append(gap.sum() / b.sum())
    return float(np.mean(errs))
