"""The annotation queue: which unlabelled (wallet, pair) an analyst should label next.

Strategies (each gives a priority, higher = ask first):
- uncertainty: 1 - |2p - 1| of the ensemble probability p (closest to the boundary first);
- committee: the vote entropy of the three members (RF, XGBoost, LightGBM; each votes
  p_m >= 0.5), normalised to [0, 1], plus 0.1 x the spread of their probabilities as
  a tie-break (three binary votes give only two entropy values);
- diversity: committee priority, then at most one pick per ring (a wallet outside
  rings is its own group) in one batch, so a batch is not spent on one ring;
- random: a seeded uniform draw (the baseline; no evidence boost, to stay a baseline).

Evidence: a wallet whose latest verified label is wash raises the priority of its
ring mates (+RING_BOOST) and funding siblings (+SIBLING_BOOST: accounts created by
the same funder). Their risk scores are untouched; only the queue order changes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.active.config import STRATEGIES
from storage.errors import BadInput

MEMBER_COLUMNS: tuple[str, ...] = ("p_rf", "p_xgb", "p_lgbm")
QUEUE_COLUMNS: tuple[str, ...] = ("wallet", "pair_id", "strategy", "priority")
RING_BOOST = 0.5
SIBLING_BOOST = 0.25
MAX_FUNDER_CHILDREN = 50  # a funder creating more accounts than this is a hub (exchange), not a lineage
COMMITTEE_TIEBREAK = 0.1


def uncertainty(p: np.ndarray) -> np.ndarray:
    """1 - |2p - 1|: 1 at p = 0.5, 0 at p in {0, 1}."""
    return 1.0 - np.abs(2.0 * np.asarray(p, dtype=np.float64) - 1.0)


def vote_entropy(members: np.ndarray) -> np.ndarray:
    """Entropy (bits, so in [0, 1] for two classes) of the members' hard votes (p_m >= 0.5); (n, m) -> (n,)."""
    members = np.asarray(members, dtype=np.float64)
    share = (members >= 0.5).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(share * np.log2(share) + (1 - share) * np.log2(1 - share))
    return np.nan_to_num(h, nan=0.0)


def committee(members: np.ndarray) -> np.ndarray:
    """Vote entropy + COMMITTEE_TIEBREAK x the members' probability spread (max - min)."""
    members = np.asarray(members, dtype=np.float64)
    return vote_entropy(members) + COMMITTEE_TIEBREAK * (members.max(axis=1) - members.min(axis=1))


def base_priority(pool: pl.DataFrame, strategy: str, *, seed: int = 0) -> np.ndarray:
    """Priority of every pool row under `strategy` (before evidence).

    pool: wallet, pair_id, p (ensemble probability), p_rf, p_xgb, p_lgbm (null when
    unknown: the committee then uses 1 - confidence / 100 when the pool has `confidence`)."""
    if strategy not in STRATEGIES:
        raise BadInput(f"unknown query strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "random":
        return np.random.default_rng(seed).random(pool.height)
    if strategy == "uncertainty":
        return uncertainty(pool.get_column("p").to_numpy())
    members = pool.select([pl.col(c).cast(pl.Float64) for c in MEMBER_COLUMNS]).to_numpy()
    known = ~np.isnan(members).any(axis=1)
    out = np.zeros(pool.height)
    out[known] = committee(members[known])
    if (~known).any():
        proxy = 1.0 - pool.get_column("confidence").cast(pl.Float64).fill_null(0).to_numpy() / 100.0 \
            if "confidence" in pool.columns else uncertainty(pool.get_column("p").to_numpy())
        out[~known] = proxy[~known]
    return out


def evidence_boost(wash_wallets: list[str], *, ring_members: pl.DataFrame | None,
                   funding_edges: pl.DataFrame | None) -> pl.DataFrame:  # fmt: skip
    """Queue-priority boosts earned by wallets labelled wash.

    ring_members: account_id, ring_id; funding_edges: type, from_account, to_account.
    Shapes: -> [wallet: str, boost: f64, evidence: str] (ring mates +RING_BOOST, funding
    siblings +SIBLING_BOOST; both add up; the labelled wallets themselves are excluded)."""
    schema = {"wallet": pl.String, "boost": pl.Float64, "evidence": pl.String}
    if not wash_wallets:
        return pl.DataFrame(schema=schema)
    wash = pl.DataFrame({"account_id": wash_wallets}, schema={"account_id": pl.String})
    parts = []
    if ring_members is not None and ring_members.height:
        rm = ring_members.select("account_id", "ring_id").unique()
        rings = rm.join(wash, on="account_id").select("ring_id").unique()
        parts.append(rm.join(rings, on="ring_id").select(wallet="account_id", boost=pl.lit(RING_BOOST),
                                                         evidence=pl.lit("ring mate of a wash label")))  # fmt: skip
    if funding_edges is not None and funding_edges.height:
        created = funding_edges.filter(pl.col("type") == "create_account").select("from_account", "to_account")
        created = created.unique().filter(pl.len().over("from_account") <= MAX_FUNDER_CHILDREN)
        funders = created.join(wash.rename({"account_id": "to_account"}), on="to_account").select("from_account")
        parts.append(created.join(funders.unique(), on="from_account").select(
            wallet="to_account", boost=pl.lit(SIBLING_BOOST), evidence=pl.lit("funding sibling of a wash label")))
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts).filter(~pl.col("wallet").is_in(wash_wallets)).unique(["wallet", "evidence"])
    return out.group_by("wallet").agg(pl.sum("boost"), pl.col("evidence").sort().str.join("; ")).cast(schema)


def _prioritised(pool: pl.DataFrame, strategy: str, *, seed: int, evidence: pl.DataFrame | None) -> pl.DataFrame:
    """The pool with `strategy`, `priority` (base + evidence boost, rounded to 6 places) and `evidence`."""
    prio = base_priority(pool, strategy, seed=seed)
    frame = pool.with_columns(priority=pl.Series(prio, dtype=pl.Float64), strategy=pl.lit(strategy))
    if evidence is not None and evidence.height and strategy != "random":
        frame = frame.join(evidence, on="wallet", how="left").with_columns(
            priority=pl.col("priority") + pl.col("boost").fill_null(0.0))
    else:
        frame = frame.with_columns(evidence=pl.lit(None, dtype=pl.String))
    return frame.with_columns(pl.col("priority").round(6))


def rank_queue(pool: pl.DataFrame, *, strategy: str, size: int, seed: int = 0,
               evidence: pl.DataFrame | None = None) -> pl.DataFrame:  # fmt: skip
    """The next `size` rows of the pool to label, highest priority first.

    pool: wallet, pair_id, p, p_rf, p_xgb, p_lgbm, ring_id (null outside rings), optional confidence;
    evidence: evidence_boost output (ignored by `random`).
    Shapes: -> [wallet, pair_id, strategy, priority (f64, rounded to 6 places), evidence, ring_id, p]."""
    if size < 1:
        raise BadInput(f"queue size must be at least 1, got {size}")
    frame = _prioritised(pool, strategy, seed=seed, evidence=evidence).sort(
        ["priority", "wallet", "pair_id"], descending=[True, False, False], nulls_last=True)
    if strategy == "diversity":
        group = pl.coalesce(pl.col("ring_id"), pl.col("wallet"))
        frame = frame.with_columns(_group=group).unique("_group", keep="first", maintain_order=True).drop("_group")
    return frame.head(size).select(*QUEUE_COLUMNS, "evidence", "ring_id", "p")


def rank_wallets(pool: pl.DataFrame, *, strategy: str, size: int, seed: int = 0,
                 evidence: pl.DataFrame | None = None) -> pl.DataFrame:  # fmt: skip
    """The next `size` wallets to label, one item each at its best row's priority, with its pairs listed
    (an analyst judges a wallet once). Same priorities as rank_queue; diversity keeps one wallet per ring.

    Only the wallets' best rows are sorted (a wallet-sized sort, not a row-sized one), then the chosen
    wallets' rows give their pairs. Shapes: -> [wallet, pairs (list[str], highest priority first), n_pairs,
    strategy, priority, evidence, ring_id, p]."""
    if size < 1:
        raise BadInput(f"queue size must be at least 1, got {size}")
    rows = _prioritised(pool, strategy, seed=seed, evidence=evidence)
    top = pl.col("priority").fill_null(-1.0).arg_max()
    best = rows.group_by("wallet").agg(
        pl.max("priority"), pl.col("p").get(top), pl.col("evidence").drop_nulls().first(),
        pl.col("ring_id").drop_nulls().first(), pl.len().cast(pl.Int64).alias("n_pairs"),
    ).sort(["priority", "wallet"], descending=[True, False], nulls_last=True)  # fmt: skip
    if strategy == "diversity":
        group = pl.coalesce(pl.col("ring_id"), pl.col("wallet"))
        best = best.with_columns(_group=group).unique("_group", keep="first", maintain_order=True).drop("_group")
    best = best.head(size)
    pairs = rows.filter(pl.col("wallet").is_in(best.get_column("wallet").implode())).sort(
        "priority", "pair_id", descending=[True, False], nulls_last=True).group_by("wallet").agg(
        pl.col("pair_id").alias("pairs"))  # fmt: skip
    return best.join(pairs, on="wallet", how="left", maintain_order="left").select(
        "wallet", "pairs", "n_pairs", pl.lit(strategy).alias("strategy"), "priority", "evidence", "ring_id", "p")
