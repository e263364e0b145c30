"""Incremental evidence for the live watch: rings, features and scores of what a batch touched.

A tick's new trades touch some pairs. Their evidence is recomputed by the batch analysis's
own functions (engine.graph.rings.detect_rings, engine.features.build_feature_matrix,
engine.scoring.score_features) over only the part of the store it depends on:

- trades: the recent window (`window_ledgers`) of every account that traded in a touched
  pair, in all its pairs (Store.pair_window_trades): closed loops and rings of the
  touched pairs, and whether a member's trading is inward-looking;
- operations and accounts: those accounts' funding lineage, looked up by account in the
  watch's indexed copy of the funding edges (Store.sync_funding_links, lineage_operations:
  never a scan of every operation), their offer operations and their accounts rows
  (Store.accounts_of);

so a tick costs what the touched pairs' recent market holds, whatever the store's size.
Only the touched (wallet, pair)s, and the members of a ring a touched wallet is in, are
scored. Wallet-level features (PageRank, pair diversity) are computed on that
neighbourhood, not on the whole market: they can differ slightly from a batch run.

A ring counts as evidence once it is confirmed: the same members (same ring_id) detected
over at least `confirm_s` of ledger time. On a partial history Louvain proposes
short-lived communities of market makers, arbitrage bots and their clients that pass the
ring rules for an hour or two and are gone at the next ledgers (measured on the demo
market: such rings lived at most 6 hours, the planted rings days); the model weighs ring
membership heavily, so scoring with unconfirmed rings alerted those traps mid-stream.
A watch catching up a backlog looks at the market in a few large ticks, so a ring first
seen in a tick is also looked for in the same data as of `confirm_s` earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from engine.features import build_feature_matrix
from engine.graph.funding import DEFAULT_DEPTH, DEFAULT_MAX_FANOUT, funding_edges
from engine.graph.rings import RingOptions, detect_rings
from engine.scoring import score_features
from storage.store import Store

WINDOW_LEDGERS = 30 * 17_280  # ~30 days of 5-second ledgers: the features' lookback
CONFIRM_S = 12 * 3600  # a ring is evidence once it held 12 h of ledger time (2x the longest-lived false ring seen)
LINEAGE_DEPTH = DEFAULT_DEPTH + 2  # pass-through hops are collapsed by the lineage walk: read two more
LINEAGE_CHILDREN = DEFAULT_MAX_FANOUT + 1  # accounts funded read per ancestor: one more than an exchange-like funder's


@dataclass(frozen=True)
class EvidenceOptions:
    window_ledgers: int = WINDOW_LEDGERS
    confirm_s: int = CONFIRM_S
    seed: int = 42


@dataclass(frozen=True)
class Evidence:
    """What one tick computed: the scored rows and the feature matrix they came from."""

    scores: pl.DataFrame  # SCORE_COLUMNS + n_trades, ledger, closed_at
    matrix: pl.DataFrame  # the feature rows scored (the alerts' reasons are explained from them)
    rings_seen: dict[str, list[str]]  # ring_id -> [first seen, last seen] (ISO closed_at), updated
    rings: pl.DataFrame  # the confirmed rings, as detect_rings gives them (RingResult.rings)
    ring_members: pl.DataFrame  # their members, as RingResult.ring_members


def touched_keys(batch_trades: pl.DataFrame) -> pl.DataFrame:
    """(wallet, pair_id) of both sides of the batch's trades (pool sides have no account)."""
    sides = [batch_trades.select(wallet=pl.col(c), pair_id="pair_id") for c in ("seller_account", "buyer_account")]
    return pl.concat(sides).drop_nulls().unique()


def confirm_rings(ring_ids: list[str], seen: dict[str, list[str]], *, as_of: datetime, confirm_s: int,
                  keep_s: int) -> tuple[set[str], dict[str, list[str]]]:  # fmt: skip
    """(the confirmed ring ids among `ring_ids`, the updated first/last-seen record).

    A ring is confirmed when first seen at least `confirm_s` before `as_of`; rings not seen
    for `keep_s` are forgotten (the record stays the size of the recent window)."""
    now = as_of.isoformat()
    out = {rid: span for rid, span in seen.items() if as_of - datetime.fromisoformat(span[1]) <= timedelta(seconds=keep_s)}
    for rid in ring_ids:
        out[rid] = [out[rid][0] if rid in out else now, now]
    confirmed = {rid for rid in ring_ids if (as_of - datetime.fromisoformat(out[rid][0])).total_seconds() >= confirm_s}
    return confirmed, out


def touched_evidence(store: Store, loaded, batch_trades: pl.DataFrame, seen: dict[str, list[str]], *,
                     threshold: int, options: EvidenceOptions) -> Evidence | None:  # fmt: skip
    """Score the (wallet, pair)s `batch_trades` touched from their neighbourhood (module doc);
    None when there is nothing to score."""
    pairs = sorted(batch_trades["pair_id"].unique().to_list())
    last_ledger = int(batch_trades["ledger"].max())
    ledger_from = max(1, last_ledger - options.window_ledgers)
    trades = store.pair_window_trades(pairs, ledger_from=ledger_from)
    if trades.height == 0:
        return None
    as_of = trades["closed_at"].max()
    accounts = sorted(set(trades["seller_account"].drop_nulls()) | set(trades["buyer_account"].drop_nulls()))
    store.sync_funding_links(max_children=LINEAGE_CHILDREN)
    operations = store.lineage_operations(accounts, depth=LINEAGE_DEPTH, ledger_from=ledger_from)
    funding = funding_edges(operations)
    rings = detect_rings(trades, funding, options=RingOptions(seed=options.seed))
    confirmed, seen = _confirmed_rings(trades, funding, rings.ring_members, seen, as_of=as_of, options=options)
    kept = pl.col("ring_id").is_in(sorted(confirmed))
    confirmed_rings, confirmed_members = rings.rings.filter(kept), rings.ring_members.filter(kept)
    members = confirmed_members.select("account_id", "ring_id")
    matrix = build_feature_matrix(trades, operations, store.accounts_of(accounts), as_of=as_of,
                                  ring_members=members, loops=rings.closed_loops)  # fmt: skip
    matrix = matrix.join(_scored_keys(batch_trades, members, pairs), on=["wallet", "pair_id"], how="semi")
    if matrix.height == 0:
        return Evidence(pl.DataFrame(), matrix, seen, confirmed_rings, confirmed_members)
    # Benford flags from the features' 30-day tests (engine.scoring.benford_flags: the batch's rule) rather
    # than a Benford table of the neighbourhood: the same flag for a tenth of a tick less
    scores = score_features(loaded, matrix, flag_threshold=threshold, ring_members=members)
    scores = scores.join(matrix.select("wallet", "pair_id", "n_trades"), on=["wallet", "pair_id"], how="left")
    return Evidence(scores.with_columns(ledger=pl.lit(last_ledger), closed_at=pl.lit(as_of)), matrix, seen,
                    confirmed_rings, confirmed_members)  # fmt: skip


def _confirmed_rings(trades: pl.DataFrame, funding: pl.DataFrame, ring_members: pl.DataFrame,
                     seen: dict[str, list[str]], *, as_of: datetime,
                     options: EvidenceOptions) -> tuple[set[str], dict[str, list[str]]]:  # fmt: skip
    """`confirm_rings` over the ticks, and for a ring first seen now, the same detection on the data of
    `confirm_s` earlier: a watch catching up a backlog in a few large ticks never looks at the market
    `confirm_s` apart, so the history in the store is asked instead (one more detection, once per new ring)."""
    ids = ring_members["ring_id"].unique().to_list()
    confirmed, seen = confirm_rings(ids, seen, as_of=as_of, confirm_s=options.confirm_s,
                                    keep_s=int(options.window_ledgers * 5))  # fmt: skip
    before = as_of - timedelta(seconds=options.confirm_s)
    new = _could_be_older([rid for rid in ids if seen[rid][0] == as_of.isoformat()], trades, ring_members, before)
    if new and options.confirm_s > 0:
        then = detect_rings(trades, funding, options=RingOptions(seed=options.seed), as_of=before)
        for rid in set(new) & set(then.ring_members["ring_id"].to_list()):
            seen[rid][0] = before.isoformat()
            confirmed.add(rid)
    return confirmed, seen


def _could_be_older(ring_ids: list[str], trades: pl.DataFrame, ring_members: pl.DataFrame, before: datetime) -> list[str]:
    """The rings of `ring_ids` whose every member traded at or before `before`: only those can have been
    detected then (a ring id names its members), so the second detection runs only when one is left."""
    early = trades.filter(pl.col("closed_at") <= before)
    active = pl.concat([early.get_column("seller_account"), early.get_column("buyer_account")]).drop_nulls().unique()
    late = ring_members.filter(pl.col("ring_id").is_in(ring_ids) & ~pl.col("account_id").is_in(active.implode()))
    return sorted(set(ring_ids) - set(late.get_column("ring_id").to_list()))


def _scored_keys(batch_trades: pl.DataFrame, members: pl.DataFrame, pairs: list[str]) -> pl.DataFrame:
    """The touched (wallet, pair)s, plus the members of a touched wallet's confirmed ring in the touched pairs."""
    touched = touched_keys(batch_trades)
    rings = members.join(touched.select(account_id="wallet"), on="account_id", how="semi").select("ring_id").unique()
    mates = members.join(rings, on="ring_id", how="semi").select(wallet="account_id").unique()
    mates = mates.join(pl.DataFrame({"pair_id": pairs}), how="cross")
    return pl.concat([touched, mates]).unique()
