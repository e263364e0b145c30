"""Horizon-shaped JSON lines from the simulator's tables, vectorised with polars.

Field names and shapes follow Horizon's trade and operation resources (as in the
java-stellar-sdk recorded responses): amounts are 7-decimal strings, prices
rationals of strings ({n, d}) on trades and of ints (price_r) on offers, ids and
paging tokens TOIDs. `_links` are left out: no reader of ours needs them.
Every value written is generated here (ids, hex, codes of [A-Za-z0-9]), so no
JSON escaping is needed.
"""

from __future__ import annotations

import numpy as np
import polars as pl

TYPE_I = {
    "create_account": 0, "payment": 1, "path_payment_strict_receive": 2, "manage_sell_offer": 3,
    "account_merge": 8, "manage_buy_offer": 12, "path_payment_strict_send": 13,
    "create_claimable_balance": 14, "claim_claimable_balance": 15,
}
SYNTHETIC_OFFER_BIT = 1 << 62


def amount_expr(col: str | pl.Expr) -> pl.Expr:
    """int64 stroops -> "123.4567890"."""
    c = pl.col(col) if isinstance(col, str) else col
    return pl.concat_str([(c // 10_000_000).cast(pl.String), pl.lit("."),
                          (c % 10_000_000).cast(pl.String).str.zfill(7)])


def time_expr(col: str) -> pl.Expr:
    return pl.from_epoch(pl.col(col), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def q(expr: pl.Expr) -> pl.Expr:
    """A JSON string literal of a (safe) string expression."""
    return pl.concat_str([pl.lit('"'), expr, pl.lit('"')])


def asset_fragments(codes: np.ndarray, issuers: list[str | None], prefix: str) -> pl.Series:
    """Per asset index: '"{prefix}type":..,"{prefix}code":..,"{prefix}issuer":..' (native: type only)."""
    out = []
    for code, issuer in zip(codes, issuers, strict=True):
        if issuer is None:
            out.append(f'"{prefix}type":"native"')
        else:
            kind = "credit_alphanum4" if len(code) <= 4 else "credit_alphanum12"
            out.append(f'"{prefix}type":"{kind}","{prefix}code":"{code}","{prefix}issuer":"{issuer}"')
    return pl.Series(out, dtype=pl.String)


def asset_names(codes: np.ndarray, issuers: list[str | None]) -> pl.Series:
    """Per asset index: "native" or "CODE:ISSUER" (claimable balances' asset field)."""
    return pl.Series(["native" if i is None else f"{c}:{i}" for c, i in zip(codes, issuers, strict=True)], dtype=pl.String)


def reduced_ratio(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.gcd(num, den)
    g = np.where(g == 0, 1, g)
    return num // g, den // g


def int32_price(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """num/den approximated as n/d with n, d < 2^31 (offer prices are int32 rationals)."""
    p = num.astype(np.float64) / den.astype(np.float64)
    k = np.clip(np.floor(np.log10((2**31 - 1) / np.maximum(p, 1e-12))), 0, 7).astype(np.int64)
    d = 10**k
    n = np.maximum(1, np.round(p * d)).astype(np.int64)
    return reduced_ratio(n, d)


def _side(prefix: str) -> pl.Expr:
    """'"base_offer_id":"..","base_account":".."' or '"base_liquidity_pool_id":".."'."""
    account = pl.concat_str([pl.lit(f'"{prefix}_offer_id":"'), pl.col(f"{prefix}_offer").cast(pl.String),
                             pl.lit(f'","{prefix}_account":"'), pl.col(f"{prefix}_account"), pl.lit('"')])
    pool = pl.concat_str([pl.lit(f'"{prefix}_liquidity_pool_id":"'), pl.col(f"{prefix}_pool"), pl.lit('"')])
    return pl.when(pl.col(f"{prefix}_account").is_not_null()).then(account).otherwise(pool)


def trade_lines(trades: pl.DataFrame, base_assets: pl.Series, counter_assets: pl.Series) -> pl.Series:
    """JSON lines of resolved trades.

    Needs: op_id, fill_idx, close_unix, is_pool, base_asset, counter_asset (asset indexes),
    base_amount, counter_amount (stroops), base_is_seller, price_n, price_d,
    {base,counter}_account / _pool (str or null) and _offer (i64).
    """
    token = pl.concat_str([pl.col("op_id").cast(pl.String), pl.lit("-"), pl.col("fill_idx").cast(pl.String)])
    kind = pl.when(pl.col("is_pool")).then(pl.lit('"liquidity_pool","liquidity_pool_fee_bp":30')).otherwise(pl.lit('"orderbook"'))
    line = pl.concat_str([
        pl.lit('{"id":'), q(token), pl.lit(',"paging_token":'), q(token),
        pl.lit(',"ledger_close_time":'), q(time_expr("close_unix")), pl.lit(',"trade_type":'), kind,
        pl.lit(","), _side("base"), pl.lit(',"base_amount":'), q(amount_expr("base_amount")), pl.lit(","),
        pl.col("base_frag"), pl.lit(","), _side("counter"), pl.lit(',"counter_amount":'),
        q(amount_expr("counter_amount")), pl.lit(","), pl.col("counter_frag"),
        pl.lit(',"base_is_seller":'), pl.when(pl.col("base_is_seller")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.lit(',"price":{"n":'), q(pl.col("price_n").cast(pl.String)), pl.lit(',"d":'),
        q(pl.col("price_d").cast(pl.String)), pl.lit("}}"),
    ])
    frags = trades.select(
        base_frag=base_assets.gather(trades["base_asset"]), counter_frag=counter_assets.gather(trades["counter_asset"]))
    return trades.with_columns(frags).select(line.alias("line"))["line"]


def _op_tails() -> dict[str, pl.Expr]:
    src, dst = q(pl.col("src_id")), q(pl.col("dst_id"))
    amount, amount2 = q(amount_expr("amount")), q(amount_expr("amount2"))
    price = q(amount_expr((pl.col("price_n") * 10_000_000 + pl.col("price_d") // 2) // pl.col("price_d")))
    path = [pl.lit(',"from":'), src, pl.lit(',"to":'), dst, pl.lit(',"amount":'), amount,
            pl.lit(',"path":[],"source_amount":'), amount2]
    offer = pl.concat_str([
        pl.lit(',"amount":'), amount, pl.lit(',"price":'), price, pl.lit(',"price_r":{"n":'),
        pl.col("price_n").cast(pl.String), pl.lit(',"d":'), pl.col("price_d").cast(pl.String), pl.lit("},"),
        pl.col("buying_frag"), pl.lit(","), pl.col("selling_frag"), pl.lit(',"offer_id":'),
        q(pl.col("offer_id").cast(pl.String))])
    return {
        "create_account": pl.concat_str([pl.lit(',"starting_balance":'), amount, pl.lit(',"funder":'), src,
                                         pl.lit(',"account":'), dst]),
        "payment": pl.concat_str([pl.lit(","), pl.col("asset_frag"), pl.lit(',"from":'), src, pl.lit(',"to":'), dst,
                                  pl.lit(',"amount":'), amount]),
        "path_payment_strict_send": pl.concat_str([pl.lit(","), pl.col("asset_frag"), *path,
                                                   pl.lit(',"destination_min":'), amount, pl.lit(","), pl.col("source_frag")]),
        "path_payment_strict_receive": pl.concat_str([pl.lit(","), pl.col("asset_frag"), *path,
                                                      pl.lit(',"source_max":'), amount2, pl.lit(","), pl.col("source_frag")]),
        "account_merge": pl.concat_str([pl.lit(',"account":'), src, pl.lit(',"into":'), dst]),
        "manage_sell_offer": offer,
        "manage_buy_offer": offer,
        "create_claimable_balance": pl.concat_str([
            pl.lit(',"sponsor":'), src, pl.lit(',"asset":'), q(pl.col("asset_name")), pl.lit(',"amount":'), amount,
            pl.lit(',"claimants":[{"destination":'), dst, pl.lit(',"predicate":{"unconditional":true}}]')]),
        "claim_claimable_balance": pl.concat_str([pl.lit(',"balance_id":'), q(pl.col("balance_id")),
                                                  pl.lit(',"claimant":'), src]),
    }


def operation_lines(ops: pl.DataFrame, frags: dict[str, pl.Series], names: pl.Series) -> pl.Series:
    """JSON lines of resolved operations.

    Needs: op_id, close_unix, tx_hash, type, src_id, dst_id, asset, amount, asset2, amount2,
    offer_id, price_n, price_d, balance_id. `frags` maps asset_/source_/selling_/buying_
    prefixes to per-asset fragments (asset_fragments); `names` is asset_names.
    """
    a, a2 = ops["asset"].fill_null(0), ops["asset2"].fill_null(0)
    ops = ops.with_columns(
        asset_frag=frags["asset_"].gather(a), source_frag=frags["source_asset_"].gather(a2),
        selling_frag=frags["selling_asset_"].gather(a), buying_frag=frags["buying_asset_"].gather(a2),
        asset_name=names.gather(a), type_i=pl.col("type").replace_strict(TYPE_I, return_dtype=pl.String),
    )
    tail = pl.lit(None, dtype=pl.String)
    for name, expr in _op_tails().items():
        tail = pl.when(pl.col("type") == name).then(expr).otherwise(tail)
    op_id = q(pl.col("op_id").cast(pl.String))
    line = pl.concat_str([
        pl.lit('{"id":'), op_id, pl.lit(',"paging_token":'), op_id,
        pl.lit(',"transaction_successful":true,"source_account":'), q(pl.col("src_id")),
        pl.lit(',"type":'), q(pl.col("type")), pl.lit(',"type_i":'), pl.col("type_i"),
        pl.lit(',"created_at":'), q(time_expr("close_unix")), pl.lit(',"transaction_hash":'), q(pl.col("tx_hash")),
        tail, pl.lit("}"),
    ])
    return ops.select(line.alias("line"))["line"]
