"""Which of a wallet's trades a report shows first, and why (vectorised, no per-trade loop).

Each trade of the wallet in the pair earns points for the signals it carries;
the report lists the `top_n` trades by points (ties: larger base amount first,
then trade id), each with the reasons that earned its points:

| signal | points | meaning |
|---|---|---|
| closed_loop | 4 | part of a closed loop (derived `closed_loops`, `python -m engine rings`) |
| self_trade | 4 | the wallet traded with itself |
| ring_counterparty | 3 | the counterparty is in the wallet's ring |
| quick_reversal | 3 | the previous/next trade with the same counterparty went the other way within 1 h |
| repeated_lot | 1 | the same base amount appears in >= 3 of the wallet's trades |
| round_amount | 1 | whole units with at most two significant digits (100, 250, 5000) |
| size_outlier | 1 | base amount >= 10x away from the wallet's median amount |

A trade with no signal is listed only when fewer than `top_n` trades carry one,
with the reason "no signal: among the wallet's largest trades".
"""

from __future__ import annotations

import polars as pl

from engine.schemas import STROOPS_PER_UNIT

HORIZON_OPERATION_URL = "https://horizon.stellar.org/operations/{op_id}"
REVERSAL_SECONDS = 3600
SIGNAL_POINTS: dict[str, int] = {
    "closed_loop": 4,
    "self_trade": 4,
    "ring_counterparty": 3,
    "quick_reversal": 3,
    "repeated_lot": 1,
    "round_amount": 1,
    "size_outlier": 1,
}


def units(col: str | pl.Expr) -> pl.Expr:
    """Stroops -> exact decimal string with 7 places ("12.5000000")."""
    x = pl.col(col) if isinstance(col, str) else col
    frac = (x % STROOPS_PER_UNIT).cast(pl.String).str.zfill(7)
    return pl.concat_str([(x // STROOPS_PER_UNIT).cast(pl.String), pl.lit("."), frac])


def wallet_view(trades: pl.DataFrame, *, wallet: str) -> pl.DataFrame:
    """The wallet's side of each trade.

    Adds: base_amount (stroops of the pair's base asset), wallet_sold_base (bool),
    counterparty (account or pool id).
    """
    base = pl.col("pair_id").str.split("/").list.first()
    sold_base = pl.col("sold_asset") == base
    is_seller = (pl.col("seller_account") == wallet).fill_null(False)  # a pool seller: the wallet bought
    return trades.with_columns(
        base_amount=pl.when(sold_base).then("sold_amount").otherwise("bought_amount"),
        wallet_sold_base=is_seller == sold_base,
        counterparty=pl.when(is_seller)
        .then(pl.coalesce("buyer_account", "buyer_pool_id"))
        .otherwise(pl.coalesce("seller_account", "seller_pool_id")),
    )


def trade_signals(view: pl.DataFrame, *, ring_members: list[str], loop_trade_ids: list[str]) -> pl.DataFrame:
    """`wallet_view` rows plus one boolean column per SIGNAL_POINTS key, `points` and `lot_count`."""
    c = pl.col
    ordered = view.sort("counterparty", "closed_at", "id")
    secs = c("closed_at").dt.epoch("s")
    same_cp_prev = c("counterparty").shift(1) == c("counterparty")
    same_cp_next = c("counterparty").shift(-1) == c("counterparty")
    rev_prev = same_cp_prev & (c("wallet_sold_base").shift(1) != c("wallet_sold_base")) & (
        (secs - secs.shift(1)) <= REVERSAL_SECONDS)
    rev_next = same_cp_next & (c("wallet_sold_base").shift(-1) != c("wallet_sold_base")) & (
        (secs.shift(-1) - secs) <= REVERSAL_SECONDS)
    log_amount = c("base_amount").cast(pl.Float64).log10()
    whole = c("base_amount") // STROOPS_PER_UNIT
    n_digits = whole.cast(pl.String).str.len_chars()
    trailing = pl.lit(10, pl.Int64).pow((n_digits - 2).clip(lower_bound=0))
    out = ordered.with_columns(
        lot_count=pl.len().over("base_amount"),
        closed_loop=c("id").is_in(pl.Series(loop_trade_ids, dtype=pl.String).implode()),
        self_trade=c("seller_account").is_not_null() & (c("seller_account") == c("buyer_account")),
        ring_counterparty=c("counterparty").is_in(pl.Series(ring_members, dtype=pl.String).implode()),
        quick_reversal=(rev_prev.fill_null(False) | rev_next.fill_null(False)),
        round_amount=(c("base_amount") % STROOPS_PER_UNIT == 0) & (whole > 0) & (whole % trailing == 0),
        size_outlier=(log_amount - log_amount.median()).abs() >= 1.0,
    ).with_columns(repeated_lot=c("lot_count") >= 3)
    points = sum(c(name).cast(pl.Int64) * p for name, p in SIGNAL_POINTS.items())
    return out.with_columns(points=points)


def _reasons(ring_id: str | None) -> pl.Expr:
    c = pl.col
    parts = [
        pl.when(c("closed_loop")).then(pl.lit("in a closed loop (self-financed round trip)")),
        pl.when(c("self_trade")).then(pl.lit("the wallet traded with itself")),
        pl.when(c("ring_counterparty")).then(pl.lit(f"counterparty is a member of ring {ring_id}")),
        pl.when(c("quick_reversal")).then(pl.lit("reversed with the same counterparty within 1 h")),
        pl.when(c("repeated_lot")).then(pl.format("same base amount in {} trades", c("lot_count"))),
        pl.when(c("round_amount")).then(pl.lit("round amount")),
        pl.when(c("size_outlier")).then(pl.lit("amount >= 10x away from the wallet's median")),
    ]
    listed = pl.concat_list(parts).list.drop_nulls()
    return pl.when(listed.list.len() > 0).then(listed).otherwise(
        pl.lit(["no signal: among the wallet's largest trades"], dtype=pl.List(pl.String)))


def top_trades(signals: pl.DataFrame, *, top_n: int, ring_id: str | None) -> list[dict]:
    """The `top_n` trades by points with their reasons and Horizon link, as report rows."""
    top = signals.sort(["points", "base_amount", "id"], descending=[True, True, False]).head(top_n)
    rows = top.select(
        pl.int_range(1, pl.len() + 1).alias("rank"),
        "id",
        pl.col("op_id").cast(pl.String),
        "ledger",
        "closed_at",
        "trade_type",
        pl.when(pl.col("wallet_sold_base")).then(pl.lit("sold base")).otherwise(pl.lit("bought base")).alias("side"),
        "counterparty",
        "sold_asset",
        units("sold_amount").alias("sold_amount"),
        "bought_asset",
        units("bought_amount").alias("bought_amount"),
        pl.format("{}/{}", "price_n", "price_d").alias("price"),
        "points",
        _reasons(ring_id).alias("reasons"),
        pl.format(HORIZON_OPERATION_URL.replace("{op_id}", "{}"), pl.col("op_id")).alias("horizon_url"),
    )
    return rows.to_dicts()


def signal_counts(signals: pl.DataFrame) -> dict[str, int]:
    """How many of the wallet's trades carry each signal."""
    if signals.height == 0:
        return {name: 0 for name in SIGNAL_POINTS}
    row = signals.select(pl.col(name).sum() for name in SIGNAL_POINTS).row(0, named=True)
    return {k: int(v) for k, v in row.items()}
