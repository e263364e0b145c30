"""Page-side wrappers of the use cases: models, SHAP, drift, retraining, labels.

Each wrapper calls one engine.services function; query results are cached with
`st.cache_data` keyed on the store's data version. Verified models and their SHAP
explainers are NOT cached here: engine.services.models keeps the one model cache the
reports share, so the Wallet page and a PDF explain a score with the same model.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import streamlit as st

from engine.services import explain as explaining
from engine.services import models
from engine.services.label import record_label
from engine.services.train import retrain_and_promote
from pages import _ui
from storage.store import Store

METRIC_COLUMNS = ("roc_auc", "pr_auc", "prevalence", "f1_at_threshold", "precision_at_0.5pct", "precision_at_1pct",
                  "precision_at_2pct", "brier", "n", "n_wash")  # fmt: skip


def model_version() -> str | None:
    """The promoted model version, None when no model was ever trained."""
    return models.model_version(_ui.settings())


def model_versions() -> list[dict]:
    """Every registry version's metadata, newest first."""
    return models.model_versions(_ui.settings())


def explainable_version(scored_with: str | None) -> str | None:
    """The version that produced a score when the registry still holds it, else the current one."""
    return models.explainable_version(_ui.settings(), scored_with)


def model(version: str | None = None):
    """The verified LoadedModel of `version` (default: the current one); None when there is none.
    ModelIntegrityError (a UserFacingError) propagates: nothing unverified is ever loaded."""
    version = version or models.model_version(_ui.settings())
    if version is None:
        return None
    with st.spinner("Verifying and loading the model…"):
        return models.load_model(_ui.settings(), version=version)


@st.cache_data(ttl=600, show_spinner="Explaining the score…", max_entries=128)
def _explanation(db: str, data_version: str, version: str, trusted: frozenset, wallet: str, pair_id: str, _settings):
    return explaining.explain_stored(_ui.open_store(db), _settings, wallet=wallet, pair_id=pair_id, version=version)


def explanation(*, wallet: str, pair_id: str, version: str):
    """engine.services.explain.explain_stored (the report's road) of (wallet, pair) under `version`,
    every feature's contribution included (base + sum = the members' mean score); None without features."""
    s = _ui.settings()
    return _explanation(_ui.db_key(), _ui.version(), version, models.trusted_fingerprints(s), wallet, pair_id, s)


def score_breakdown(*, wallet: str, pair_id: str, model_score: float) -> pl.DataFrame | None:
    """engine.services.explain.score_breakdown of (wallet, pair) (cached)."""
    return _ui.read(_breakdown, wallet=wallet, pair_id=pair_id, model_score=model_score)


def _breakdown(store: Store, *, wallet: str, pair_id: str, model_score: float) -> pl.DataFrame | None:
    return explaining.score_breakdown(store, wallet=wallet, pair_id=pair_id, model_score=model_score)


@st.cache_data(ttl=600, show_spinner="Computing drift…", max_entries=16)
def _drift(db: str, data_version: str, version: str, trusted: frozenset, _settings):
    return explaining.drift(_ui.open_store(db), _settings, version=version)


def drift(version: str) -> pl.DataFrame | None:
    """engine.services.explain.drift of `version` (cached). Shapes: feature, psi, missing_ref, missing_now, status."""
    s = _ui.settings()
    return _drift(_ui.db_key(), _ui.version(), version, models.trusted_fingerprints(s), s)


def waterfall_rows(explanation, *, top: int = 12) -> pl.DataFrame:
    """The `top` largest contributions and one "other N features" row summing the rest.

    Shapes: [feature, shap (score points), value]; sum(shap) = sum of every contribution."""
    rows = pl.DataFrame(
        [(c.feature, c.shap, c.value) for c in explanation.contributions],
        schema={"feature": pl.String, "shap": pl.Float64, "value": pl.Float64}, orient="row",
    ).sort(pl.col("shap").abs(), descending=True, maintain_order=True)  # fmt: skip
    if rows.height <= top:
        return rows
    rest = rows.slice(top)
    other = pl.DataFrame({"feature": [f"other {rest.height} features"], "shap": [float(rest["shap"].sum())],
                          "value": [None]}, schema=rows.schema)  # fmt: skip
    return pl.concat([rows.head(top), other])


def metrics_frame(metrics: dict) -> pl.DataFrame:
    """Held-out metrics of a version's metadata, one row per model (ensemble, members, baseline)."""
    rows = [{"model": name, **{c: m.get(c) for c in METRIC_COLUMNS}} for name, m in metrics.items()
            if isinstance(m, dict) and "roc_auc" in m]  # fmt: skip
    return pl.DataFrame(rows, schema={"model": pl.String, **{c: pl.Float64 for c in METRIC_COLUMNS}}, strict=False)


def importance_frame(importance: dict | None, *, top: int = 20) -> pl.DataFrame:
    """Shapes: [feature, mean_abs_shap], largest first, `top` rows."""
    items = sorted((importance or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return pl.DataFrame(items, schema={"feature": pl.String, "mean_abs_shap": pl.Float64}, orient="row")


def retrain(*, n_estimators: int, rescore: bool, bar):
    """engine.services.train.retrain_and_promote on the open store, progress shown on `bar` (an st.progress)."""
    def progress(*, done: int, total: int | None, records: int, unit: str = "steps") -> None:
        bar.progress(min(1.0, done / (total or 1)), text=f"training: step {done} of {total}")

    outcome = retrain_and_promote(_ui.store(), _ui.settings(), rescore=rescore, n_estimators=n_estimators,
                                  progress=progress)  # fmt: skip
    _ui.clear_caches()
    return outcome


def label_wallet(*, wallet: str, pair_id: str | None, label: str, note: str, annotator: str) -> None:
    """Append an analyst label (engine.services.label signs it) and drop cached query results."""
    record_label(_ui.store(), _ui.settings(), wallet=wallet, label=label, annotator=annotator or "analyst",
                 now=datetime.now(UTC), note=note, pair_id=pair_id)  # fmt: skip
    _ui.clear_caches()
