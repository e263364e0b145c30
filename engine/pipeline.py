"""The analysis pipeline over a store: rings -> features -> scores.

Each step reads what it needs from the store, runs the pure engine functions and
persists its derived tables; the CLI commands, the demo builder and `score` (which
computes whatever is missing first) all go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from engine.features import build_benford_table, build_feature_matrix
from engine.graph.rings import RingOptions, RingResult, detect_rings
from storage.errors import BadInput
from storage.store import Store


@dataclass(frozen=True)
class FeatureRun:
    as_of: datetime
    matrix: pl.DataFrame  # wallet, pair_id, as_of, features...
    benford: pl.DataFrame  # one row per Benford test (see engine.features.build_benford_table)


def last_close(store: Store) -> datetime:
    """Close time of the last stored trade: the default "as of"."""
    trades = store.trades()
    if trades.height == 0:
        raise BadInput("the store holds no trades; ingest some first (python -m engine ingest ... or demo)")
    return trades["closed_at"].max()


def compute_rings(store: Store, *, options: RingOptions | None = None) -> RingResult:
    """Closed loops, communities and rings from all stored trades and funding edges;
    replaces the derived tables `closed_loops`, `rings` and `ring_members`."""
    result = detect_rings(store.trades(), store.funding_edges(), options=options or RingOptions())
    store.save_derived("closed_loops", result.closed_loops)
    store.save_derived("rings", result.rings)
    store.save_derived("ring_members", result.ring_members)
    return result


def compute_features(store: Store, *, as_of: datetime | None = None) -> FeatureRun:
    """The feature matrix and Benford table as of `as_of` (default: the last trade),
    with ring membership when rings were computed; replaces `features` and `benford`."""
    trades = store.trades()
    as_of = as_of or last_close(store)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    ring_members = store.load_derived("ring_members")
    matrix = build_feature_matrix(
        trades, store.operations(), store.accounts(), as_of=as_of,
        ring_members=ring_members.select("account_id", "ring_id") if ring_members is not None else None,
    )  # fmt: skip
    benford = build_benford_table(trades, as_of=as_of)
    store.save_derived("features", matrix)
    store.save_derived("benford", benford)
    return FeatureRun(as_of, matrix, benford)
