"""Asset and pair identifiers, as vectorised polars expressions.

Asset id: ``XLM:native`` or ``CODE:ISSUER``. Pair id: ``BASE/COUNTER`` with one
canonical orientation per pair: XLM is always the counter; otherwise the two asset
ids sort ascending (``AAA:G.../BBB:G...``). Horizon's own base/counter ordering is
internal and is never used for identity (compare trades on seller/buyer).
"""

from __future__ import annotations

import polars as pl

from engine.schemas import NATIVE_ASSET
from engine.strkey import valid_account_ids


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


ASSET_TYPES = ("native", "credit_alphanum4", "credit_alphanum12")
CODE_LENGTHS = {"credit_alphanum4": (1, 4), "credit_alphanum12": (5, 12)}  # Stellar's rule for each type
_CODE = r"^[A-Za-z0-9]{1,12}$"
_CREDIT_ID = r"^[A-Za-z0-9]{1,12}:G[A-Z2-7]{55}$"
_POOL_ID = r"^[0-9a-f]{64}$"


def valid_codes(codes: pl.Series) -> pl.Series:
    """True where the text is an asset code Stellar accepts (1-12 of [A-Za-z0-9]).

    Codes end up in asset and pair ids (``CODE:ISSUER``, ``BASE/COUNTER``): a ``:``,
    ``/`` or markup in one would make an id that cannot be parsed back.
    """
    return codes.str.contains(_CODE)


def valid_pool_ids(ids: pl.Series) -> pl.Series:
    """True where the text is a liquidity pool id as Horizon writes it (64 lowercase hex digits)."""
    return ids.str.contains(_POOL_ID)


def valid_asset_ids(ids: pl.Series) -> pl.Series:
    """True where the text is ``XLM:native`` or ``CODE:ISSUER`` with a valid code and a
    valid G... issuer (StrKey checksum). Meant for distinct values: it checksums each."""
    shaped = (ids == NATIVE_ASSET) | ids.str.contains(_CREDIT_ID)
    issuers = ids.str.tail(56)
    checksum = pl.Series(valid_account_ids(issuers.to_list()), dtype=pl.Boolean)
    return (ids == NATIVE_ASSET) | (shaped.fill_null(False) & checksum)
