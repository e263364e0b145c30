"""Analyse a store: rings -> features -> scores (the `rings`, `features`, `score` use cases).

Each step reads what it needs from the store, runs the pure engine functions and
persists its results; the CLI, the demo, training and the pages all go through here.

    ensure_rings                          derived closed_loops, rings, ring_members
                                          (engine.services.rings.compute_rings)
    compute_features / ensure_features    derived features, benford (rings first)
    compute_scores                        appends to `scores` (history) and refreshes
                                          derived `scores_latest` (the pages read it)
    analyse / analysis_work               all three in order with progress (the app's
                                          "Run analysis" button, inside the app's own store)
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from engine.graph.rings import RingOptions
from engine.progress import Progress, no_progress
from engine.scoring import BENFORD_FLAG_ROWS, score_features, score_wallet
from engine.services import models
from engine.services.features import compute_features, last_close
from engine.services.rings import compute_rings
from storage.store import Store

ANALYSIS_STEPS = ("rings", "features", "score")


# -- rings and features ------------------------------------------------------------------------------------


def ensure_rings(store: Store, *, seed: int | None = None) -> pl.DataFrame | None:
    """ring_members from the store, computing rings first when absent (None when the store holds no trades)."""
    members = store.load_derived("ring_members")
    if members is not None:
        return members
    if store.counts()["trades"] == 0:
        return None
    return compute_rings(store, options=RingOptions() if seed is None else RingOptions(seed=seed)).ring_members


def ensure_features(store: Store, *, as_of: datetime | None = None, seed: int | None = None) -> pl.DataFrame:
    """The stored feature matrix, computed (rings first) as of the last stored trade when absent.

    Raises BadInput when the store holds no trades (ingest first)."""
    features = store.load_derived("features")
    if features is not None and features.height:
        return features
    last_close(store)  # BadInput on an empty store, before any work
    ensure_rings(store, seed=seed)
    return compute_features(store, as_of=as_of).matrix


# -- scores --------------------------------------------------------------------------------------------------


def compute_scores(store: Store, loaded, *, flag_threshold: int = 70, wallet: str | None = None,
                   pair_id: str | None = None) -> pl.DataFrame:  # fmt: skip
    """Score every stored (wallet, pair) (or one wallet's rows) with `loaded` (a registry LoadedModel),
    features and rings computed first if absent; appends to the `scores` history and refreshes the
    derived `scores_latest` (the latest row per (wallet, pair), the `scores` table's columns).

    Returns the new rows (engine.scoring.SCORE_COLUMNS)."""
    features = ensure_features(store)
    options = dict(flag_threshold=flag_threshold, benford=store.load_derived("benford", where=BENFORD_FLAG_ROWS),
                   ring_members=store.load_derived("ring_members"))  # fmt: skip
    if wallet is not None:
        scores = score_wallet(loaded, features, wallet, pair_id=pair_id, **options)
    else:
        scores = score_features(loaded, features, **options)
    store.append_scores(scores)
    refresh_latest_scores(store)
    return scores


def refresh_latest_scores(store: Store) -> int:
    """Rebuild derived `scores_latest` from the history (after any append_scores); returns its rows."""
    latest = store.latest_scores()
    store.save_derived("scores_latest", latest)
    return latest.height


# -- the whole analysis ------------------------------------------------------------------------------------


def analyse(store: Store, settings, *, progress: Progress = no_progress) -> str:
    """Rings -> features -> scores on `store` (the open store: the app's process holds its lock), scored
    with the promoted model; without a model the scores step is skipped and the message says how to get one.

    progress(done=steps done, total=3, records=rows written so far, unit="steps"). Returns a one-line summary."""
    total = len(ANALYSIS_STEPS)
    last_close(store)  # BadInput on an empty store, before any work
    progress(done=0, total=total, records=0, unit="steps")
    rings = compute_rings(store, options=RingOptions(seed=settings.seed))
    progress(done=1, total=total, records=rings.rings.height, unit="steps")
    run = compute_features(store)
    progress(done=2, total=total, records=rings.rings.height + run.matrix.height, unit="steps")
    parts = [f"{rings.rings.height:,} rings", f"features of {run.matrix.height:,} (wallet, pair)"]
    version = models.model_version(settings)
    if version is None:
        parts.append("not scored: no model is trained yet (train one on the Models page)")
    else:
        scores = compute_scores(store, models.load_model(settings, version=version),
                                flag_threshold=settings.risk_score_flag_threshold)  # fmt: skip
        parts.append(f"{scores.height:,} scores with model {version}")
    progress(done=total, total=total, records=rings.rings.height + run.matrix.height, unit="steps")
    return "; ".join(parts)


def analysis_work(store: Store, settings):
    """`work(progress)` for a background job (engine.services.ingest.IngestJob) running `analyse`."""
    return lambda progress: analyse(store, settings, progress=progress)
