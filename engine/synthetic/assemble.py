"""Turning generated flows into a consistent ledger: maker offers (with their
creating and cancelling operations and ids), taker operation amounts that agree
with their fills, merges after an account's last act, then TOIDs.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.synthetic.events import OPS, frame, keys
from engine.synthetic.horizon_records import int32_price
from engine.synthetic.population import World

NS_OFFERS, NS_CANCELS = 1000, 1001
FIRST_OFFER_ID = 1_480_000_000


def maker_offers(rng, world: World, fills: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Offers behind order-book fills: returns (fills with maker_offer, offer ops).

    One offer per (maker, offer_group); it is created shortly before its first fill
    (and after the maker exists) and some are cancelled after their last fill.
    """
    book = fills.filter(pl.col("maker") >= 0)
    offers = (book.group_by("maker", "offer_group").agg(
        first_t=pl.col("t").min(), last_t=pl.col("t").max(), asset=pl.col("maker_asset").first(),
        asset2=pl.col("taker_asset").first(), sold=pl.col("maker_amount").sum(), paid=pl.col("taker_amount").sum(),
    ).sort("first_t", "maker", "offer_group"))
    n = offers.height
    maker = offers["maker"].to_numpy()
    earliest = np.where(np.isnan(world.created_t[maker]), 0.0, world.created_t[maker] + 60)
    created = np.maximum(offers["first_t"].to_numpy() - 1 - rng.exponential(90, n), earliest)
    created = np.minimum(created, offers["first_t"].to_numpy())
    offers = offers.with_columns(created=pl.Series(created)).sort("created", "maker", "offer_group")
    offers = offers.with_columns(offer_id=pl.int_range(FIRST_OFFER_ID, FIRST_OFFER_ID + n, dtype=pl.Int64))
    maker = offers["maker"].to_numpy()
    is_mm = world.role[maker] == "market_maker"
    leftover = np.where(is_mm, rng.uniform(0, 0.6, n), np.where(rng.random(n) < 0.2, rng.uniform(0, 1, n), 0))
    pn, pd = int32_price(offers["paid"].to_numpy(), offers["sold"].to_numpy())
    amount = np.round(offers["sold"].to_numpy() * (1 + leftover)).astype(np.int64)
    op_key = keys(NS_OFFERS, n)
    create = frame({"op_key": op_key, "t": offers["created"], "tx_key": op_key, "op_seq": np.zeros(n, dtype=np.int8),
                    "type": np.full(n, "manage_sell_offer"), "src": offers["maker"], "asset": offers["asset"],
                    "amount": amount, "asset2": offers["asset2"], "offer_id": np.zeros(n, dtype=np.int64),
                    "price_n": pn, "price_d": pd}, OPS_PRICED)
    cancel = (leftover > 0) & (rng.random(n) < np.where(is_mm, 0.7, 0.5))
    ck = keys(NS_CANCELS, int(cancel.sum()))
    t_cancel = np.minimum(offers["last_t"].to_numpy()[cancel] + rng.uniform(20, 3600, ck.size), world.seconds - 1)
    cancels = frame({"op_key": ck, "t": t_cancel, "tx_key": ck, "op_seq": np.zeros(ck.size, dtype=np.int8),
                     "type": np.full(ck.size, "manage_sell_offer"), "src": offers["maker"].filter(pl.Series(cancel)),
                     "asset": offers["asset"].filter(pl.Series(cancel)), "amount": np.zeros(ck.size, dtype=np.int64),
                     "asset2": offers["asset2"].filter(pl.Series(cancel)), "offer_id": offers["offer_id"].filter(pl.Series(cancel)),
                     "price_n": pn[cancel], "price_d": pd[cancel]}, OPS_PRICED)
    fills = fills.join(offers.select("maker", "offer_group", maker_offer="offer_id"), on=["maker", "offer_group"], how="left")
    return fills, pl.concat([create, cancels])


OPS_PRICED = {**OPS, "price_n": pl.Int64, "price_d": pl.Int64}


def taker_amounts(ops: pl.DataFrame, fills: pl.DataFrame) -> pl.DataFrame:
    """Fill in taker operations (amount null) from the sums of their fills.

    manage_sell_offer: sells taker_asset (amount = given), buys maker_asset;
    manage_buy_offer: amount = bought, price = given per bought;
    path payments: amount = delivered maker_asset, source_amount = taker_asset given.
    """
    sums = fills.group_by("op_key").agg(
        given_asset=pl.col("taker_asset").first(), given=pl.col("taker_amount").sum(),
        got_asset=pl.col("maker_asset").first(), got=pl.col("maker_amount").sum())
    takers = ops.filter(pl.col("amount").is_null()).drop("price_n", "price_d", strict=False).join(sums, on="op_key", how="inner")
    is_buy = (takers["type"] == "manage_buy_offer").to_numpy()
    given, got = takers["given"].to_numpy(), takers["got"].to_numpy()
    pn, pd = int32_price(np.where(is_buy, given, got), np.where(is_buy, got, given))
    is_path = takers["type"].str.starts_with("path_payment")
    takers = takers.with_columns(
        asset=pl.when(is_path).then(pl.col("got_asset")).otherwise(pl.col("given_asset")),
        amount=pl.when(is_path | pl.Series(is_buy)).then(pl.col("got")).otherwise(pl.col("given")),
        asset2=pl.when(is_path).then(pl.col("given_asset")).otherwise(pl.col("got_asset")),
        amount2=pl.when(is_path).then(pl.col("given")).otherwise(None),
        price_n=pl.Series(pn), price_d=pl.Series(pd),
    ).select(list(OPS_PRICED))
    others = ops.filter(pl.col("amount").is_not_null())
    if "price_n" not in others.columns:
        others = others.with_columns(price_n=pl.lit(None, pl.Int64), price_d=pl.lit(None, pl.Int64))
    return pl.concat([others.select(list(OPS_PRICED)), takers])


def fix_merges(ops: pl.DataFrame, fills: pl.DataFrame, seconds: int) -> pl.DataFrame:
    """Move each account_merge after the merged account's last act; drop it if that is past the end."""
    acts = pl.concat([
        ops.filter(pl.col("type") != "account_merge").select(acct="src", t="t"),
        ops.filter(pl.col("dst").is_not_null()).select(acct="dst", t="t"),
        fills.select(acct="taker", t="t"), fills.filter(pl.col("maker") >= 0).select(acct="maker", t="t"),
    ]).group_by("acct").agg(last=pl.col("t").max())
    merges = ops.filter(pl.col("type") == "account_merge").join(acts, left_on="src", right_on="acct", how="left")
    merges = merges.with_columns(t=pl.max_horizontal("t", pl.col("last").fill_null(0) + 600)).filter(pl.col("t") < seconds - 1)
    merged = merges["src"]
    # nothing may reach a merged account afterwards either: keep merges of accounts never paid later
    late_in = ops.filter(pl.col("dst").is_in(merged.implode()) & (pl.col("type") != "account_merge"))
    late_in = late_in.join(merges.select("src", mt="t"), left_on="dst", right_on="src").filter(pl.col("t") >= pl.col("mt"))
    merges = merges.filter(~pl.col("src").is_in(late_in["dst"].implode()))
    return pl.concat([ops.filter(pl.col("type") != "account_merge"), merges.drop("last")])
