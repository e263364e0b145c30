"""Drift: population stability index (PSI) per feature against the training reference,
and NSGA-II ensemble weight calibration (precision, recall, SHAP stability).

PSI = sum_b (cur_b - ref_b) * ln(cur_b / ref_b) over the reference's decile bins
plus one bin for missing values (a feature that starts going missing drifts too).
Conventional reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 drifted.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models.ensemble import combine_scores

PSI_MODERATE = 0.1
PSI_DRIFT = 0.25
_EPS = 1e-4


def reference_bins(X: np.ndarray, columns: list[str], *, bins: int = 10) -> dict:
    """The drift reference of a training matrix: {feature: {"edges": [...], "props": [...]}}.

    edges are the inner quantile cut points of the non-missing values; props the
    share of rows in each bin, the last entry being the missing share.
    """
    ref = {}
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    for j, name in enumerate(columns):
        col = X[:, j]
        ok = col[~np.isnan(col)]
        edges = np.unique(np.quantile(ok, qs)) if ok.size else np.array([])
        ref[name] = {"edges": edges.tolist(), "props": _bin_props(col, edges).tolist()}
    return ref


def _bin_props(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    missing = np.isnan(col)
    which = np.searchsorted(edges, col[~missing], side="left")
    counts = np.append(np.bincount(which, minlength=edges.size + 1), missing.sum()).astype(float)
    return counts / max(col.size, 1)


def psi(ref_props: np.ndarray, cur_props: np.ndarray) -> float:
    """Population stability index of two bin-share vectors (empty bins floored at 1e-4)."""
    a = np.maximum(np.asarray(ref_props, dtype=float), _EPS)
    b = np.maximum(np.asarray(cur_props, dtype=float), _EPS)
    return float(np.sum((b - a) * np.log(b / a)))


def psi_table(reference: dict, frame: pl.DataFrame) -> pl.DataFrame:
    """PSI of each reference feature in `frame` (features absent from frame get null psi).

    Shapes: feature (str), psi (f64), missing_ref (f64), missing_now (f64), status
    ('stable' | 'moderate' | 'drifted' | 'absent'), sorted by psi descending.
    """
    rows = []
    for name, ref in reference.items():
        if name not in frame.columns:
            rows.append((name, None, ref["props"][-1], None, "absent"))
            continue
        col = frame.get_column(name).cast(pl.Float64).fill_nan(None).to_numpy().astype(float)
        cur = _bin_props(col, np.asarray(ref["edges"], dtype=float))
        value = psi(ref["props"], cur)
        status = "drifted" if value > PSI_DRIFT else "moderate" if value > PSI_MODERATE else "stable"
        rows.append((name, value, ref["props"][-1], float(cur[-1]), status))
    schema = {"feature": pl.String, "psi": pl.Float64, "missing_ref": pl.Float64, "missing_now": pl.Float64,
              "status": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row").sort("psi", descending=True, nulls_last=True)


def is_drifted(table: pl.DataFrame, *, threshold: float = PSI_DRIFT) -> bool:
    """True when any feature's PSI exceeds `threshold` or a reference feature is absent."""
    return bool(
        ((table.get_column("psi") > threshold).fill_null(False) | (table.get_column("status") == "absent")).any()
    )


def pareto_weights(
    points: np.ndarray, y: np.ndarray, member_shap: list[np.ndarray], *, threshold: float = 70.0,
    pop_size: int = 24, n_gen: int = 20, seed: int = 0,
) -> pl.DataFrame:  # fmt: skip
    """NSGA-II over ensemble member weights: maximise precision, recall (at score >= threshold)
    and SHAP stability; returns the Pareto front for an operator to pick from.

    points: member scores (n, m) 0-100; member_shap: per member (n, f) SHAP values of the
    same rows. SHAP stability is the Spearman correlation of the weighted global feature
    importance (mean |SHAP|) between the two halves of the rows.

    Shapes: w_<i> for each member (sum 1), precision, recall, shap_stability.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    m = points.shape[1]
    halves = np.arange(y.size) % 2 == 0
    imp = [(np.abs(s[halves]).mean(axis=0), np.abs(s[~halves]).mean(axis=0)) for s in member_shap]

    class WeightProblem(Problem):
        def __init__(self):
            super().__init__(n_var=m, n_obj=3, xl=0.01, xu=1.0)

        def _evaluate(self, W, out, *args, **kwargs):
            out["F"] = np.array([[-v for v in _objectives(w / w.sum(), points, y, imp, threshold)] for w in W])

    res = minimize(WeightProblem(), NSGA2(pop_size=pop_size), ("n_gen", n_gen), seed=seed, verbose=False)
    W = np.atleast_2d(res.X)
    W = W / W.sum(axis=1, keepdims=True)
    F = -np.atleast_2d(res.F)
    data = {f"w_{i}": W[:, i] for i in range(m)}
    data.update(precision=F[:, 0], recall=F[:, 1], shap_stability=F[:, 2])
    return pl.DataFrame(data).unique().sort("precision", descending=True)


def _objectives(w: np.ndarray, points: np.ndarray, y: np.ndarray, imp, threshold: float) -> tuple[float, float, float]:
    from scipy.stats import spearmanr

    flagged = combine_scores(points, weights=w)[0] >= threshold
    tp = float((flagged & (y == 1)).sum())
    precision = tp / max(flagged.sum(), 1)
    recall = tp / max((y == 1).sum(), 1)
    a = sum(wi * i[0] for wi, i in zip(w, imp, strict=True))
    b = sum(wi * i[1] for wi, i in zip(w, imp, strict=True))
    rho = spearmanr(a, b).statistic if np.std(a) > 0 and np.std(b) > 0 else 0.0
    return precision, recall, float(np.nan_to_num(rho))
