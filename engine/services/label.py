"""Store-level active-learning steps: fill the queue, record a label (what the CLI and the page call).

The pool of candidates is every unlabelled (wallet, pair) of the latest feature
snapshot scored by the current model's three members; without a model (or
features matching it) it falls back to the latest stored scores, and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from engine.active.annotations import annotation_row, settings_key, verified_store_annotations
from engine.active.config import active_settings
from engine.active.queue import MEMBER_COLUMNS, evidence_boost, rank_queue, rank_wallets
from engine.scoring import ring_of
from engine.services.models import load_model
from models.registry import check_feature_schema
from models.training import design_matrix, feature_columns
from storage.errors import ModelIntegrityError, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueResult:
    queue: pl.DataFrame  # rank_queue output (rank_wallets output when asked by wallet)
    source: str  # what the priorities were computed from
    n_pool: int  # unlabelled candidates
    n_rejected: int  # stored annotations whose HMAC failed (ignored as evidence)


def model_pool(features: pl.DataFrame, loaded, ring_members: pl.DataFrame | None) -> pl.DataFrame:
    """Latest snapshot rows scored by the model's members.

    Shapes: -> [wallet, pair_id, p, p_rf, p_xgb, p_lgbm, ring_id]."""
    check_feature_schema(loaded.feature_columns, feature_columns(features))
    if "as_of" in features.columns:
        features = features.filter(pl.col("as_of") == pl.col("as_of").max())
    X = design_matrix(features, loaded.feature_columns)
    members = loaded.model.member_probas(X)
    p = loaded.model.predict_proba(X)[:, 1]
    out = features.select("wallet", "pair_id").with_columns(
        pl.Series("p", p), *[pl.Series(c, members[:, j]) for j, c in enumerate(MEMBER_COLUMNS)])
    return out.join(ring_of(ring_members), on="wallet", how="left")


def scores_pool(scores: pl.DataFrame) -> pl.DataFrame:
    """Latest stored scores as a pool (members unknown: the committee uses 1 - confidence).

    Shapes: -> [wallet, pair_id, p, p_rf, p_xgb, p_lgbm, ring_id, confidence]."""
    return scores.select(
        "wallet", "pair_id", p=pl.col("score").cast(pl.Float64) / 100.0,
        **{c: pl.lit(None, dtype=pl.Float64) for c in MEMBER_COLUMNS}, ring_id="ring_id", confidence="confidence",
    )  # fmt: skip


def unlabelled(pool: pl.DataFrame, annotations: pl.DataFrame) -> pl.DataFrame:
    """Pool rows without any label yet (a wallet-wide label, pair_id null, covers every pair)."""
    if annotations.height == 0:
        return pool
    by_pair = annotations.filter(pl.col("pair_id").is_not_null()).select("wallet", "pair_id").unique()
    wide = annotations.filter(pl.col("pair_id").is_null()).select("wallet").unique()
    return pool.join(by_pair, on=["wallet", "pair_id"], how="anti").join(wide, on="wallet", how="anti")


def current_model(settings):
    """The current verified model, or None when there is none (integrity failures propagate: fail closed)."""
    try:
        return load_model(settings)
    except NotFound:
        return None


def candidate_pool(store, settings) -> tuple[pl.DataFrame, str]:
    """(pool, source description) for the queue."""
    features = store.load_derived("features")
    loaded = current_model(settings)
    if loaded is not None and features is not None and features.height:
        try:
            return model_pool(features, loaded, store.load_derived("ring_members")), f"model {loaded.version}"
        except ModelIntegrityError as exc:  # the stored features do not fit the model: fall back, and say why
            log.warning("queue falls back to stored scores: %s", exc)
    return scores_pool(store.latest_scores()), "stored scores (no current model over the stored features)"


def build_queue(store, settings, *, strategy: str | None = None, size: int | None = None,
                by_wallet: bool = False) -> QueueResult:  # fmt: skip
    """The next batch to label (strategy / size default to the AL settings), with evidence from wash labels.

    by_wallet: `size` wallets, one item each with its unlabelled pairs listed (engine.active.queue.rank_wallets),
    as the Annotate page asks; otherwise `size` (wallet, pair) rows (the CLI)."""
    a = active_settings(settings)
    pool, source = candidate_pool(store, settings)
    ann = store.annotations()
    verified = verified_store_annotations(store, settings_key(settings))
    pool = unlabelled(pool, ann)
    evidence = evidence_boost(wash_wallets(verified.valid), ring_members=store.load_derived("ring_members"),
                              funding_edges=store.funding_edges())  # fmt: skip
    rank = rank_wallets if by_wallet else rank_queue
    queue = rank(pool, strategy=strategy or a.strategy, size=size or a.batch_size, seed=settings.seed,
                 evidence=evidence)  # fmt: skip
    return QueueResult(queue, source, pool.height, verified.rejected.height)


def wash_wallets(valid: pl.DataFrame) -> list[str]:
    """Wallets whose latest verified label (on any pair) is wash."""
    if valid.height == 0:
        return []
    latest = valid.sort("annotated_at").group_by("wallet", "pair_id", maintain_order=True).last()
    return sorted(latest.filter(pl.col("label") == "wash").get_column("wallet").unique().to_list())


def record_wallet_label(store, settings, *, wallet: str, pairs: list[str], label: str, annotator: str,
                        now: datetime, note: str | None = None) -> pl.DataFrame:  # fmt: skip
    """One signed label of a queue item: a row for each of the wallet's listed pairs (same label, note, time),
    appended at once; returns the rows written."""
    rows = pl.concat([annotation_row(wallet=wallet, pair_id=pair_id, label=label, note=note, annotator_id=annotator,
                                     key=settings_key(settings), now=now) for pair_id in pairs])  # fmt: skip
    store.append_annotations(rows)
    return rows


def record_label(store, settings, *, wallet: str, label: str, annotator: str, now: datetime,
                 note: str | None = None, pair_id: str | None = None) -> pl.DataFrame:  # fmt: skip
    """Append one signed label (a relabel is a new row); returns the row written."""
    row = annotation_row(wallet=wallet, pair_id=pair_id, label=label, note=note, annotator_id=annotator,
                         key=settings_key(settings), now=now)  # fmt: skip
    store.append_annotations(row)
    return row
