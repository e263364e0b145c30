"""Report sections computed from the frames and records they are given (pure: frames in, dicts out).

A section that cannot be computed says so: ``{"available": False, "reason": ...}``
with what to run; no number is ever invented.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from engine import benford
from engine.features.dictionary import FEATURE_DICTIONARY
from engine.graph.funding import DEFAULT_MAX_FANOUT, ancestors, exchange_like
from reports.trades import HORIZON_OPERATION_URL, units

BENFORD_WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("4h", timedelta(hours=4)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
LINEAGE_DEPTH = 4
STELLAR_LAUNCH = datetime(2015, 9, 30, tzinfo=UTC)  # the public network's first ledger
MAX_FUNDING_ROWS = 20
MAX_FEATURE_ROWS = 15


def not_available(reason: str) -> dict:
    return {"available": False, "reason": reason}


def benford_section(view: pl.DataFrame) -> dict:
    """First-digit Benford test of the wallet's base amounts over the five windows.

    `view`: reports.trades.wallet_view rows. Windows are (end - width, end] with
    `end` the wallet's last trade in the pair at or before as_of (so a report on
    old data is not empty).
    """
    if view.height == 0:
        return not_available("the wallet has no trades in the pair as of the report time")
    end = view.get_column("closed_at").max()
    rows = []
    for name, width in BENFORD_WINDOWS:
        inside = view.filter(pl.col("closed_at") > end - width)
        r = benford.benford_test(inside.get_column("base_amount").to_numpy(), test="first")
        rows.append({
            "window": name, "start": end - width, "end": end, "n": r.n, "mad": r.mad, "mad_class": r.mad_class,
            "expected_mad": r.expected_mad, "excess_mad": r.excess_mad, "chi2": r.chi2, "p_value": r.p_value,
            "verdict": r.verdict, "flag": r.flag, "counts": r.counts.tolist(),
        })  # fmt: skip
    return {
        "available": True,
        "test": "first digit (1-9), chi-square df 8; flag = p < 0.001 and MAD above chance by > 0.015",
        "amounts": "base-asset amount of each of the wallet's trades in the pair (stroops, integer digits)",
        "digits": list(range(1, 10)),
        "expected": benford.expected_proportions("first").tolist(),
        "min_n": benford.MIN_N["first"],
        "windows": rows,
    }


def lineage_section(edges: pl.DataFrame, funding_ops: pl.DataFrame, accounts: pl.DataFrame, *,
                    wallet: str, members: list[str], as_of: datetime) -> dict:
    """Funding lineage: the wallet's account record, direct funding and ancestors; shared ring ancestors.

    `edges`: Store.funding_edges(); `funding_ops`: Store.operations(types=FUNDING_TYPES);
    `accounts`: Store.accounts().
    """
    edges = edges.filter(pl.col("closed_at") <= as_of)
    hubs = exchange_like(edges).get_column("account_id")
    anc = ancestors(edges, depth=LINEAGE_DEPTH, keep_exchange=True).filter(
        pl.col("account_id").is_in(pl.Series([wallet, *members], dtype=pl.String).implode())
    ).with_columns(exchange_like=pl.col("ancestor").is_in(hubs.implode()))
    own = anc.filter(pl.col("account_id") == wallet).sort("depth", "ancestor").select("ancestor", "depth", "exchange_like")
    shared = (
        anc.filter(pl.col("account_id").is_in(pl.Series(members, dtype=pl.String).implode()))
        .group_by("ancestor").agg(pl.col("account_id").n_unique().alias("n_members"), pl.col("depth").min(),
                                  pl.col("exchange_like").first())
        .filter(pl.col("n_members") >= 2).sort(["n_members", "depth", "ancestor"], descending=[True, False, False])
    )  # fmt: skip
    record = accounts.filter(pl.col("account_id") == wallet).select(
        # a date before the network existed is a placeholder, not a creation date: unknown, said so
        pl.when(pl.col("created_at") >= STELLAR_LAUNCH).then(pl.col("created_at")).alias("created_at"),
        "funder", units("starting_balance").alias("starting_balance"))
    return {
        "available": True,
        "rule": f"ancestors up to {LINEAGE_DEPTH} hops (at most 3 funders per account: creator first, then "
        f"earliest payers); exchange_like = funded more than {DEFAULT_MAX_FANOUT} accounts (walk stops there)",
        "account": record.to_dicts()[0] if record.height else None,
        "incoming_funding": _incoming(funding_ops, wallet=wallet, as_of=as_of),
        "ancestors": own.to_dicts(),
        "shared_ring_ancestors": shared.to_dicts(),
        "n_funding_edges": edges.height,
    }


def _incoming(ops: pl.DataFrame, *, wallet: str, as_of: datetime) -> list[dict]:
    """The first MAX_FUNDING_ROWS successful funding operations into the wallet, with memos."""
    into = ops.filter(
        (pl.col("to_account") == wallet) & (pl.col("closed_at") <= as_of) & pl.col("successful").fill_null(True)
    ).sort("id").head(MAX_FUNDING_ROWS)
    return into.select(
        pl.col("id").cast(pl.String).alias("op_id"), "closed_at", "type", "from_account", "asset",
        units("amount").alias("amount"), "memo",
        pl.format(HORIZON_OPERATION_URL.replace("{op_id}", "{}"), pl.col("id")).alias("horizon_url"),
    ).to_dicts()  # fmt: skip


def ring_section(ring_id: str | None, ring: pl.DataFrame | None, members: pl.DataFrame | None,
                 member_trades: pl.DataFrame, edges: pl.DataFrame, *, wallet: str) -> dict:
    """The wallet's ring: stats, members and the graph edges among members (for the drawing).

    `ring`: derived `rings` rows of the ring; `members`: derived `ring_members` rows;
    `member_trades`: the pair's trades between two members; `edges`: funding edges.
    """
    if members is None:
        return not_available("ring detection has not been run on this store: press Run analysis in the app (or, with the app closed, `python -m engine rings`)")
    if ring_id is None or members.height == 0:
        return {"available": True, "ring_id": None, "note": "the wallet is in no detected ring"}
    ids = sorted(members.get_column("account_id").to_list())
    id_list = pl.Series(ids, dtype=pl.String).implode()
    trade_edges = (
        member_trades.select(a=pl.min_horizontal("seller_account", "buyer_account"),
                             b=pl.max_horizontal("seller_account", "buyer_account"))
        .group_by("a", "b").agg(pl.len().alias("n_trades")).sort("a", "b")
    )  # fmt: skip
    funding = (
        edges.filter(pl.col("from_account").is_in(id_list) & pl.col("to_account").is_in(id_list))
        .group_by("from_account", "to_account").agg(pl.len().alias("n_edges")).sort("from_account", "to_account")
    )
    stats_cols = [c for c in ("size", "n_trades", "internal_density", "reciprocity", "closed_loop_share",
                              "funding_share", "funding_depth", "internal_share", "n_pairs", "pairs") if ring is not None
                  and c in ring.columns]  # fmt: skip
    stats = ring.select(stats_cols).to_dicts()[0] if ring is not None and ring.height else None
    member_cols = [c for c in ("account_id", "n_trades") if c in members.columns]
    volumes = _member_pair_volumes(member_trades)
    return {
        "available": True,
        "ring_id": ring_id,
        "stats": stats if stats is not None else not_available("derived table `rings` has no row for this ring: "
                                                                "run the analysis again (Run analysis in the app)"),
        "members": members.select(member_cols).join(volumes, on="account_id", how="left").sort("account_id").to_dicts(),
        "pair_base": member_trades.get_column("pair_id").str.split("/").list.first()[0] if member_trades.height else None,
        "wallet_is_member": wallet in ids,
        "trade_edges": trade_edges.to_dicts(),
        "funding_edges": funding.to_dicts(),
    }


def _member_pair_volumes(member_trades: pl.DataFrame) -> pl.DataFrame:
    """Per member: the base-asset volume of its trades with other members in the report's pair, as exact units
    text (one asset, so it can be added up; the rings table's own `volume` adds base units of every pair).

    Shapes: [account_id, pair_volume (units text, e.g. "12.5000000")]."""
    if member_trades.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "pair_volume": pl.String})
    base = pl.col("pair_id").str.split("/").list.first()
    amount = pl.when(pl.col("sold_asset") == base).then("sold_amount").otherwise("bought_amount")
    return (
        member_trades.select(account_id=pl.concat_list("seller_account", "buyer_account"), amount=amount)
        .explode("account_id").group_by("account_id").agg(pl.col("amount").sum())
        .select("account_id", pair_volume=units("amount"))
    )  # fmt: skip


def features_snapshot(features: pl.DataFrame | None, *, as_of: datetime) -> pl.DataFrame | None:
    """The latest feature-matrix snapshot at or before as_of (the table may hold several `as_of`s)."""
    if features is None or "as_of" not in features.columns:
        return features
    features = features.filter(pl.col("as_of") <= as_of)
    return features.filter(pl.col("as_of") == features.get_column("as_of").max())


def features_section(features: pl.DataFrame | None, *, wallet: str) -> dict:
    """The wallet's feature values against the pair's population (`features_snapshot` rows).

    Percentile = share of the population below the wallet's value plus half the ties, x 100.
    """
    if features is None or features.height == 0:
        return not_available("no feature matrix is stored for this pair: press Run analysis in the app (or, with the app closed, `python -m engine features`)")
    mine = features.filter(pl.col("wallet") == wallet)
    if mine.height == 0:
        return not_available("the wallet has no row in the stored feature matrix as of the report time")
    rows = []
    for name in (n for n in FEATURE_DICTIONARY if n in features.columns):  # one vectorised pass per column
        value = mine.get_column(name)[0]
        population = features.get_column(name).drop_nulls().cast(pl.Float64).to_numpy()
        if value is None or population.size == 0:
            continue
        pct = 100.0 * (np.mean(population < value) + 0.5 * np.mean(population == value))
        info = FEATURE_DICTIONARY[name]
        rows.append({"feature": name, "value": float(value), "population_median": float(np.median(population)),
                     "percentile": pct, "n_population": int(population.size), "description": info.description,
                     "unit": info.unit, "direction": info.direction})  # fmt: skip
    rows.sort(key=lambda r: (-abs(r["percentile"] - 50.0), r["feature"]))
    snapshot = features.get_column("as_of").max() if "as_of" in features.columns else None
    return {"available": True, "as_of": snapshot, "n_population": features.height,
            "population": "every wallet with a feature row in the same pair", "rows": rows[:MAX_FEATURE_ROWS]}


def shap_section(explanation, *, model_version: str) -> dict:
    """SHAP top factors of the wallet's score: an engine.explain.WalletExplanation, given (see
    engine.services.explain: the one SHAP path the Wallet page shares)."""
    return {"available": True, "model_version": model_version, "score": explanation.score,
            "base_value": explanation.base_value, "member_scores": list(explanation.member_scores),
            "unit": "points of the 0-100 score", "contributions": [c._asdict() for c in explanation.contributions]}  # fmt: skip
