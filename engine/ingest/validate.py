"""Vectorised validation of untrusted ledger fields: amounts, account ids, ids.

Each check is a polars expression yielding a reason string where the value is bad
and null where it is good; `first_reason` combines them so a bad record carries the
first thing wrong with it, named by field, with what to do.
"""

from __future__ import annotations

import polars as pl

from engine.schemas import STROOPS_PER_UNIT
from engine.strkey import valid_account_ids

_DECIMAL = r"^-?\d+(\.\d+)?$"
_EXACT = r"^\d{1,12}(\.\d{1,7})?$"  # up to 922,337,203,685 units: int64 stroops


def amount_stroops(col: str) -> pl.Expr:
    """Exact stroops from a decimal amount string ('12.3400000' -> 123400000); null if bad."""
    s = pl.col(col).str.strip_chars()
    whole = s.str.extract(r"^(\d+)", 1)
    frac = s.str.extract(r"\.(\d+)$", 1).fill_null("").str.pad_end(7, "0")
    value = (whole + frac).cast(pl.Int64, strict=False)
    return pl.when(s.str.contains(_EXACT)).then(value).otherwise(None)


def fast_stroops(col: str) -> pl.Expr:
    """Stroops for the canonical '123.4567890' form Horizon always writes; null otherwise.

    The cheap path for good records; anything else goes through `amount_stroops`
    and `amount_reason` on the (few) records that fail it.
    """
    s = pl.col(col)
    return pl.when(s.str.contains(r"^\d{1,12}\.\d{7}$")).then(s.str.replace(".", "", literal=True).cast(pl.Int64))


def split_checked(frame: pl.DataFrame, ok: pl.Expr, slow: dict[str, pl.Expr], reason: pl.Expr) -> pl.DataFrame:
    """Validate in two passes: rows passing the cheap `ok` test get reason null; the
    rest get the `slow` columns recomputed and a `reason`. Row order is kept.

    Bad records are rare, so the detailed checks run on few rows.
    """
    frame = frame.with_columns(_ok=ok.fill_null(False))
    fast = frame.filter(pl.col("_ok")).with_columns(reason=pl.lit(None, dtype=pl.String))
    rest = frame.filter(~pl.col("_ok"))
    if rest.height == 0:
        return fast.drop("_ok")
    rest = rest.with_columns(**slow).with_columns(reason=reason).select(fast.columns)
    return pl.concat([fast, rest], how="vertical_relaxed").sort("line_no").drop("_ok")


def amount_reason(col: str, *, allow_zero: bool = False, required: bool = True) -> pl.Expr:
    """Why the amount in `col` is unusable (null when it is fine)."""
    s = pl.col(col).str.strip_chars()
    stroops = amount_stroops(col)
    zero_bad = pl.lit(not allow_zero)
    return (
        pl.when(s.is_null())
        .then(pl.lit(f"missing field {col}") if required else pl.lit(None, dtype=pl.String))
        .when(~s.str.contains(_DECIMAL))
        .then(pl.format(f"field {col}: '{{}}' is not a decimal amount", s))
        .when(s.str.starts_with("-"))
        .then(pl.format(f"field {col}: negative amount {{}}", s))
        .when(s.str.extract(r"\.(\d+)$", 1).str.len_chars() > 7)
        .then(pl.format(f"field {col}: {{}} has more than 7 decimals (Stellar amounts are whole stroops)", s))
        .when(stroops.is_null())
        .then(pl.format(f"field {col}: {{}} is out of range for int64 stroops", s))
        .when(zero_bad & (stroops == 0))
        .then(pl.lit(f"field {col}: zero amount"))
        .otherwise(None)
    )


def account_reason(frame: pl.DataFrame, col: str, *, required: bool) -> pl.Series:
    """Reason per row where `col` is not a valid G... account id (checksum included).

    Validates each distinct id once (ids repeat across many trades), so the cost
    follows the number of wallets, not of records.
    """
    values = frame.get_column(col)
    distinct = values.drop_nulls().unique().to_list()
    bad = {v for v, ok in zip(distinct, valid_account_ids(distinct), strict=True) if not ok}
    is_bad = values.is_in(pl.Series(list(bad), dtype=pl.String)) if bad else pl.Series([False] * len(values), dtype=pl.Boolean)
    missing = values.is_null()
    reasons = pl.select(
        pl.when(pl.lit(is_bad))
        .then(pl.format(f"field {col}: '{{}}' is not a valid Stellar account id (StrKey checksum)", pl.lit(values)))
        .when(pl.lit(missing) & pl.lit(required))
        .then(pl.lit(f"missing field {col}"))
        .otherwise(None)
        .alias("r")
    )
    return reasons.get_column("r")


def first_reason(*reasons: pl.Expr) -> pl.Expr:
    """The first non-null reason, or null when the record is fine."""
    return pl.coalesce(list(reasons))


def stroops_from_float_text(col: str) -> pl.Expr:
    """Stroops from Hubble's float amounts ('0.8962207', '1e-07'): rounds to the stroop.

    Exact for amounts below 2^53 stroops (~900 million units); Hubble's floats
    cannot carry more precision than that anyway.
    """
    as_float = pl.col(col).cast(pl.Float64, strict=False)
    return (as_float * STROOPS_PER_UNIT).round(0).cast(pl.Int64, strict=False)
