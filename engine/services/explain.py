"""Explain a score (the Wallet page's and the report's SHAP, one road): one SHAP path, one model cache.

The page and the forensic report both call `explain_stored`: the wallet's row of the
pair's latest feature snapshot (at or before `as_of`) explained by a verified model
from engine.services.models, beside the pair's population. So a wallet shows the same
contributions on screen and in the PDF / JSON.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from engine.drift import psi_table
from engine.explain import WalletExplanation, explain_wallet
from engine.scoring import score_breakdown as breakdown
from engine.services.models import explainers, load_model
from reports.sections import features_snapshot
from storage.errors import BadInput
from storage.store import Store


def pair_features(store: Store, pair_id: str, *, as_of: datetime | None = None) -> pl.DataFrame | None:
    """The pair's latest stored feature snapshot at or before `as_of` (default: the latest); None when
    features were never computed. Shapes: the `features` derived table's columns."""
    try:
        features = store.load_derived("features", where={"pair_id": pair_id})
    except BadInput:  # the table exists but lacks a pair_id column: take it whole
        features = store.load_derived("features")
    if features is None:
        return None
    if as_of is None and "as_of" in features.columns and features.height:
        as_of = features.get_column("as_of").max()
    return features_snapshot(features, as_of=as_of) if as_of is not None else features


def explain(settings, features: pl.DataFrame, *, wallet: str, pair_id: str, version: str,
            top: int | None = None) -> WalletExplanation:  # fmt: skip
    """engine.explain.explain_wallet of (wallet, pair) under the verified `version`, its `top` largest
    contributions (default: every feature, so base + sum = the members' mean score)."""
    loaded = load_model(settings, version=version)
    return explain_wallet(loaded, features, wallet, pair_id, top=top or len(loaded.feature_columns),
                          explainers=explainers(settings, loaded))  # fmt: skip


def explain_stored(store: Store, settings, *, wallet: str, pair_id: str, version: str, as_of: datetime | None = None,
                   top: int | None = None) -> WalletExplanation | None:  # fmt: skip
    """`explain` over the pair's stored feature snapshot as of `as_of`; None when there are no features."""
    features = pair_features(store, pair_id, as_of=as_of)
    if features is None or features.height == 0:
        return None
    return explain(settings, features, wallet=wallet, pair_id=pair_id, version=version, top=top)


def score_breakdown(store: Store, *, wallet: str, pair_id: str, model_score: float) -> pl.DataFrame | None:
    """engine.scoring.score_breakdown of (wallet, pair) from the stored features; None without them."""
    row = store.load_derived("features", where={"wallet": wallet, "pair_id": pair_id})
    if row is None or row.height == 0:
        return None
    return breakdown(model_score / 100.0, row.head(1))


def drift(store: Store, settings, *, version: str) -> pl.DataFrame | None:
    """engine.drift.psi_table of the stored features against `version`'s training reference (None without
    features). Shapes: feature, psi, missing_ref, missing_now, status."""
    features = store.load_derived("features")
    if features is None:
        return None
    return psi_table(load_model(settings, version=version).drift_reference, features)
