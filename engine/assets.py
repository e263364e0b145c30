"""Asset and pair identifiers, as vectorised polars expressions.

Asset id: ``XLM:native`` or ``CODE:ISSUER``. Pair id: ``BASE/COUNTER`` with one
canonical orientation per pair: XLM is always the counter; otherwise the two asset
ids sort ascending (``AAA:G.../BBB:G...``). Horizon's own base/counter ordering is
internal and is never used for identity (compare trades on seller/buyer).
"""

from __future__ import annotations

import polars as pl

from engine.schemas import NATIVE_ASSET


def asset_id_expr(type_col: str, code_col: str, issuer_col: str) -> pl.Expr:
    """Asset id from Horizon's ``*_asset_type/_code/_issuer`` triple.

    Unknown asset types yield null (the caller quarantines them).
    """
    t = pl.col(type_col)
    return (
        pl.when(t == "native")
        .then(pl.lit(NATIVE_ASSET))
        .when(t.is_in(["credit_alphanum4", "credit_alphanum12"]))
        .then(pl.concat_str([pl.col(code_col), pl.lit(":"), pl.col(issuer_col)]))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def pair_id_expr(asset_a: str | pl.Expr, asset_b: str | pl.Expr) -> pl.Expr:
    """Canonical pair id of two asset-id columns (order of the inputs is irrelevant)."""
    a = pl.col(asset_a) if isinstance(asset_a, str) else asset_a
    b = pl.col(asset_b) if isinstance(asset_b, str) else asset_b
    a_first = (b == NATIVE_ASSET) | ((a != NATIVE_ASSET) & (a <= b))
    base = pl.when(a_first).then(a).otherwise(b)
    counter = pl.when(a_first).then(b).otherwise(a)
    return pl.concat_str([base, pl.lit("/"), counter])


def pair_id(asset_a: str, asset_b: str) -> str:
    """Canonical pair id of two asset ids (scalar form of `pair_id_expr`)."""
    if asset_b == NATIVE_ASSET or (asset_a != NATIVE_ASSET and asset_a <= asset_b):
        return f"{asset_a}/{asset_b}"
    return f"{asset_b}/{asset_a}"


def split_pair(pair: str) -> tuple[str, str]:
    """``BASE/COUNTER`` -> (base, counter); raises ValueError on a malformed id."""
    parts = pair.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"pair id {pair!r} is not BASE/COUNTER (e.g. USDC:GA5Z.../XLM:native)")
    return parts[0], parts[1]
