"""SHAP explanations of risk scores: per member (TreeExplainer) and for the ensemble.

Each member is explained in its own raw output (RF probability, booster log-odds)
with shap.TreeExplainer, then mapped onto the 0-100 score scale through that
member's isotonic calibrator: contributions are scaled by
(calibrated(x) - calibrated(base)) / (raw(x) - raw(base)), so a member's points sum
to its calibrated score minus its calibrated base. The ensemble's contributions are
the (weighted) mean over members; base_value + sum(contributions) equals the mean of
the member scores (the reported score is their median, usually within a few points).

Privacy (public use): the Gaussian mechanism on the whole contribution vector, each
feature's noise scaled by its sensitivity (the 1st-99th percentile range of that
feature's contribution over the population), sigma = sens_f * sqrt(F) *
sqrt(2 ln(1.25/delta)) / epsilon; raw values and percentiles are withheld; every
query spends epsilon from the wallet's budget. Internal use is exact.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl

from engine.features import FEATURE_DICTIONARY
from models.ensemble import tree_of
from models.training import design_matrix, feature_columns
from storage.errors import BadInput, NotFound


class Contribution(NamedTuple):
    feature: str
    value: float | None  # the wallet's value (None: missing, or withheld in private mode)
    shap: float  # points of the 0-100 score
    description: str
    population_percentile: float | None  # share of the population (0-100) at or below the value


@dataclass(frozen=True)
class WalletExplanation:
    wallet: str
    pair_id: str
    score: float  # the ensemble's score (median of members), 0-100
    base_value: float  # mean member base score, 0-100
    contributions: tuple[Contribution, ...]
    member_scores: tuple[float, ...]
    private: bool = False


@dataclass(frozen=True)
class PrivacyOptions:
    epsilon: float = 1.0
    delta: float = 1e-5
    seed: int = 0


@dataclass
class QueryBudget:
    """Per-wallet privacy budget: each private explanation spends its epsilon."""

    total_epsilon: float = 3.0
    spent: dict[str, float] = field(default_factory=dict)

    def spend(self, wallet: str, epsilon: float) -> float:
        """Record a query; BadInput when it would exceed the wallet's budget. Returns what is left."""
        used = self.spent.get(wallet, 0.0) + epsilon
        if used > self.total_epsilon + 1e-12:
            raise BadInput(f"privacy budget of wallet {wallet} is spent ({self.total_epsilon} epsilon); "
                           "no further public explanation of it")  # fmt: skip
        self.spent[wallet] = used
        return self.total_epsilon - used


def tree_explainers(model) -> list:
    """One shap.TreeExplainer per member (build once, reuse across wallets)."""
    import shap

    return [shap.TreeExplainer(tree_of(m)[1]) for m in model.members_]


def member_shap(model, X: np.ndarray, *, explainers: list | None = None) -> list[tuple[float, np.ndarray]]:
    """Per member (raw base value, raw SHAP values (n, f)) in the member's own output units."""
    explainers = explainers or tree_explainers(model)
    out = []
    for member, explainer in zip(model.members_, explainers, strict=True):
        pre, _ = tree_of(member)
        Xp = pre.transform(X) if pre is not None else X
        with warnings.catch_warnings():  # shap notes LightGBM's list output; handled below
            warnings.simplefilter("ignore", UserWarning)
            sv = explainer.shap_values(Xp, check_additivity=False)
        sv = np.asarray(sv[-1] if isinstance(sv, list) else sv, dtype=float)
        if sv.ndim == 3:
            sv = sv[..., -1]
        out.append((float(np.atleast_1d(explainer.expected_value)[-1]), sv))
    return out


def ensemble_shap(model, X: np.ndarray, *, explainers: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base points (n,), contributions in score points (n, f), member points (n, m))."""
    raws = member_shap(model, X, explainers=explainers)
    weights = np.ones(len(raws)) if model.weights is None else np.asarray(model.weights, dtype=float)
    weights = weights / weights.sum()
    base = np.zeros(X.shape[0])
    contrib = np.zeros(X.shape)
    points = []
    for j, (ev, phi) in enumerate(raws):
        is_margin = tree_of(model.members_[j])[1].__class__.__name__ != "RandomForestClassifier"
        margin = ev + phi.sum(axis=1)
        to_p = (lambda z: 1.0 / (1.0 + np.exp(-z))) if is_margin else (lambda z: np.clip(z, 0, 1))
        cal = model.calibrators_[j]
        calp = (lambda p: p) if cal is None else cal.predict
        s_x, s_b = calp(to_p(margin)) * 100, calp(to_p(np.full(1, ev)))[0] * 100
        diff = margin - ev
        k = np.where(np.abs(diff) > 1e-9, (s_x - s_b) / np.where(np.abs(diff) > 1e-9, diff, 1.0), 0.0)
        contrib += weights[j] * phi * k[:, None]
        base += weights[j] * s_b
        points.append(s_x)
    return base, contrib, np.column_stack(points)


def explain_wallet(
    model, features_frame: pl.DataFrame, wallet: str, pair_id: str, *, top: int = 10,
    explainers: list | None = None, privacy: PrivacyOptions | None = None, budget: QueryBudget | None = None,
) -> WalletExplanation:  # fmt: skip
    """The top factors of one (wallet, pair) score, described, beside the population.

    model: a registry LoadedModel (or a fitted WashEnsemble; its columns are then the
    frame's feature columns). features_frame: the feature matrix the population
    percentiles are taken from. privacy: None = exact (internal use).
    """
    est, cols = (
        (model.model, list(model.feature_columns))
        if hasattr(model, "model")
        else (model, feature_columns(features_frame))
    )
    row = features_frame.filter((pl.col("wallet") == wallet) & (pl.col("pair_id") == pair_id))
    if row.height == 0:
        raise NotFound(f"no feature row for wallet {wallet} in pair {pair_id}")
    x = design_matrix(row.head(1), cols)
    base, contrib, points = ensemble_shap(est, x, explainers=explainers)
    phi = contrib[0]
    if privacy is not None:
        if budget is not None:
            budget.spend(wallet, privacy.epsilon)
        phi = _noisy(phi, _sensitivity(est, features_frame, cols, explainers), privacy)
    order = np.argsort(-np.abs(phi), kind="stable")[:top]
    items = tuple(_contribution(cols[i], x[0, i], phi[i], features_frame, private=privacy is not None) for i in order)
    score = float(est.combined(x)[0][0])
    return WalletExplanation(
        wallet, pair_id, score, float(base[0]), items, tuple(points[0].tolist()), privacy is not None
    )


def _contribution(name: str, value: float, shap_points: float, frame: pl.DataFrame, *, private: bool) -> Contribution:
    missing = np.isnan(value)
    pct = None
    if not (missing or private):
        col = frame.get_column(name).cast(pl.Float64).drop_nulls().drop_nans()
        pct = float((col <= value).sum() / max(col.len(), 1) * 100)
    return Contribution(name, None if (missing or private) else float(value), float(shap_points), describe(name), pct)


def describe(name: str) -> str:
    """Plain-English description from engine.features.FEATURE_DICTIONARY (the name itself when unknown)."""
    info = FEATURE_DICTIONARY.get(name)
    if info is not None:
        return f"{info.description} ({info.direction})"
    if name.endswith("_missing"):
        return f"True when the {name.removesuffix('_missing').replace('_', ' ')} features are missing for this wallet."
    return name


def _sensitivity(est, frame: pl.DataFrame, cols: list[str], explainers, *, sample: int = 200) -> np.ndarray:
    """Per feature: 1st-99th percentile range of its contribution over (a seeded sample of) the population."""
    rows = frame.sample(min(sample, frame.height), seed=0) if frame.height > sample else frame
    _, contrib, _ = ensemble_shap(est, design_matrix(rows, cols), explainers=explainers)
    lo, hi = np.percentile(contrib, [1, 99], axis=0)
    return np.maximum(hi - lo, 1e-6)


def _noisy(phi: np.ndarray, sens: np.ndarray, privacy: PrivacyOptions) -> np.ndarray:
    if privacy.epsilon <= 0 or not 0 < privacy.delta < 1:
        raise BadInput(f"privacy needs epsilon > 0 and 0 < delta < 1, got {privacy.epsilon}, {privacy.delta}")
    scale = np.sqrt(phi.size) * np.sqrt(2 * np.log(1.25 / privacy.delta)) / privacy.epsilon
    return phi + np.random.default_rng(privacy.seed).normal(0.0, sens * scale)
