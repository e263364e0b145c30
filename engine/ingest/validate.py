"""Vectorised validation of untrusted ledger fields: amounts, account ids, ids.

Each check is a polars expression yielding a reason string where the value is bad
and null where it is good; `first_reason` combines them so a bad record carries the
first thing wrong with it, named by field, with what to do.
"""

from __future__ import annotations

import polars as pl

from engine.assets import ASSET_TYPES, CODE_LENGTHS, valid_asset_ids, valid_codes, valid_pool_ids
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


_TRADE_ID = r"^(0|[1-9]\d{0,18})-(0|[1-9]\d{0,17})$"  # no sign, no leading zeros


def trade_op_id(col: str) -> pl.Expr:
    """The operation id of a `{operation_id}-{index}` trade id (null if it does not fit int64)."""
    return pl.col(col).str.head(pl.col(col).str.find("-", literal=True)).cast(pl.Int64, strict=False)


def trade_id_reason(col: str, *, field: str = "id") -> pl.Expr:
    """Why `col` is not a trade id as Horizon writes it, `{operation_id}-{index}`: two
    plain integers (no sign, no leading zeros), the operation id within int64 (it
    gives the ledger), so two spellings of one trade cannot both be stored."""
    ok = pl.col(col).str.contains(_TRADE_ID) & trade_op_id(col).is_not_null()
    return (
        pl.when(pl.col(col).is_null())
        .then(pl.lit(f"missing field {field}"))
        .when(~ok.fill_null(False))
        .then(
            pl.format(
                f"field {field}: '{{}}' is not a trade id of the form <operation id>-<index> (e.g. 4294967297-0)",
                pl.col(col).fill_null("(missing)"),
            )
        )
    )


def split_checked(frame: pl.DataFrame, ok: pl.Expr, slow: dict[str, pl.Expr], reason: pl.Expr) -> pl.DataFrame:
    """Validate in two passes: rows passing the cheap `ok` test get reason null; the
    rest get the `slow` columns recomputed and a `reason`. Row order is kept.

    Bad records are rare, so the detailed checks run on few rows.
    """
    frame = frame.with_columns(_ok=ok.fill_null(False))
    if frame.get_column("_ok").all():
        return frame.drop("_ok").with_columns(reason=pl.lit(None, dtype=pl.String))
    fast = frame.filter(pl.col("_ok")).with_columns(reason=pl.lit(None, dtype=pl.String))
    rest = frame.filter(~pl.col("_ok"))
    rest = rest.with_columns(**slow).with_columns(reason=reason).select(fast.columns)
    return pl.concat([fast, rest], how="vertical_relaxed").sort("line_no").drop("_ok")


def amount_reason(col: str, *, allow_zero: bool = False, required: bool = True, field: str | None = None) -> pl.Expr:
    """Why the amount in `col` is unusable (null when it is fine), naming `field` (default `col`):
    the record's own field, where `col` is a column of the decoder's."""
    field = field or col
    s = pl.col(col).str.strip_chars()
    stroops = amount_stroops(col)
    zero_bad = pl.lit(not allow_zero)
    return (
        pl.when(s.is_null())
        .then(pl.lit(f"missing field {field}") if required else pl.lit(None, dtype=pl.String))
        .when(~s.str.contains(_DECIMAL))
        .then(pl.format(f"field {field}: '{{}}' is not a decimal amount", s))
        .when(s.str.starts_with("-"))
        .then(pl.format(f"field {field}: negative amount {{}}", s))
        .when(s.str.extract(r"\.(\d+)$", 1).str.len_chars() > 7)
        .then(pl.format(f"field {field}: {{}} has more than 7 decimals (Stellar amounts are whole stroops)", s))
        .when(stroops.is_null())
        .then(pl.format(f"field {field}: {{}} is out of range for int64 stroops", s))
        .when(zero_bad & (stroops == 0))
        .then(pl.lit(f"field {field}: zero amount"))
        .otherwise(None)
    )


class CheckedAccounts:
    """Account ids one ingest run has already found valid, so each is checked once
    however many chunks it appears in. Pass one to `account_reason` per run."""

    def __init__(self, limit: int = 2_000_000):
        self.ids = pl.Series(dtype=pl.String)
        self.limit = limit

    def new(self, distinct: pl.Series) -> pl.Series:
        return distinct.filter(~distinct.is_in(self.ids.implode()))

    def add(self, valid: pl.Series) -> None:
        self.ids = valid if self.ids.len() > self.limit else pl.concat([self.ids, valid])


def account_reason(
    frame: pl.DataFrame, *cols: str, required: bool, checked: CheckedAccounts | None = None
) -> pl.Series:
    """Reason per row where one of `cols` is not a valid G... account id (checksum
    included); the first such column is named.

    Validates each distinct id once (and, given `checked`, once per run), so the
    cost follows the number of wallets, not of records.
    """
    checked = checked or CheckedAccounts()
    values = [frame.get_column(c) for c in cols]
    unseen = checked.new(pl.concat([v.drop_nulls().unique() for v in values]).unique())
    ok = pl.Series(valid_account_ids(unseen.to_list()), dtype=pl.Boolean)
    checked.add(unseen.filter(ok))
    bad = unseen.filter(~ok)
    if bad.len() == 0 and not required:
        return pl.repeat(None, frame.height, dtype=pl.String, eager=True).alias("r")
    reasons = [
        pl.when(pl.lit(v).is_in(bad.implode()))
        .then(pl.format(f"field {c}: '{{}}' is not a valid Stellar account id (StrKey checksum)", pl.lit(v)))
        .when(pl.lit(v).is_null() & pl.lit(required))
        .then(pl.lit(f"missing field {c}"))
        for c, v in zip(cols, values, strict=True)
    ]
    return pl.select(pl.coalesce(reasons).alias("r")).get_column("r")


def split_reasons(p: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose `reason` is null, rows with a reason); no copy when all are good."""
    if p.get_column("reason").null_count() == p.height:
        return p, p.clear()
    return p.filter(pl.col("reason").is_null()), p.filter(pl.col("reason").is_not_null())


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


def shown(col: str) -> pl.Expr:
    """The value of `col` as quoted in a reason: at most 80 characters of it."""
    return pl.col(col).cast(pl.String).str.slice(0, 80).fill_null("(missing)")


def field_reason(col: str, bad: pl.Expr, problem: str, *, field: str | None = None, required: bool = True) -> pl.Expr:
    """Null-safe reason for one field: "missing field F" where the value is null (if
    `required`), "field F: 'value' <problem>" where `bad` holds.

    A comparison with a missing value is null, and `pl.when(null)` takes the
    `otherwise` branch: a check written as a bare `pl.when(~x.is_in(...))` lets a
    record without the field through, to fail the store's NOT NULL later and take
    its whole batch with it. Here a null `bad` counts as bad.
    """
    field = field or col
    value = pl.col(col)
    return (
        pl.when(value.is_null())
        .then(pl.lit(f"missing field {field}") if required else pl.lit(None, dtype=pl.String))
        .when(bad.fill_null(True))
        .then(pl.format(f"field {field}: '{{}}' {problem}", shown(col)))
    )


def distinct_reason(
    frame: pl.DataFrame, col: str, valid, problem: str, *, field: str | None = None, where: pl.Expr | None = None
) -> pl.Expr:
    """Reason where the non-null value of `col` fails `valid` (a Series -> bool Series
    test) on rows where `where` holds; checked once per distinct value: asset codes,
    issuers and pool ids repeat across a file, so the cost follows the number of
    assets, not of trades."""
    bad = bad_values(frame, col, valid)
    if bad.len() == 0:
        return pl.lit(None, dtype=pl.String)
    hit = pl.col(col).is_in(bad.implode()) & (pl.lit(True) if where is None else where)
    return pl.when(hit).then(pl.format(f"field {field or col}: '{{}}' {problem}", shown(col)))


def bad_values(frame: pl.DataFrame, col: str, valid) -> pl.Series:
    """The distinct non-null values of `col` that fail `valid` (empty if no such column)."""
    if col not in frame.columns:
        return pl.Series(col, [], dtype=pl.String)
    values = frame.get_column(col).drop_nulls().unique()
    return values.filter(~valid(values).fill_null(False))


def _valid_issuers(ids: pl.Series) -> pl.Series:
    return pl.Series(valid_account_ids(ids.to_list()), dtype=pl.Boolean)


def asset_reasons(frame: pl.DataFrame, prefix: str) -> list[pl.Expr]:
    """Reasons the asset `{prefix}asset_type/_code/_issuer` breaks Stellar's rules: a
    known type; for credit assets a code of 1-4 (credit_alphanum4) or 5-12
    (credit_alphanum12) letters and digits, and a G... issuer (StrKey checksum).
    Code and issuer of a native asset are ignored (stellar-etl writes them as "")."""
    t, code, issuer = (f"{prefix}asset_{f}" for f in ("type", "code", "issuer"))
    credit = pl.col(t).is_in(list(CODE_LENGTHS))
    n = pl.col(code).str.len_chars()
    lengths = [
        pl.when((pl.col(t) == kind) & ((n < lo) | (n > hi))).then(
            pl.format(f"field {code}: '{{}}' has {{}} characters: {kind} codes have {lo}-{hi}", shown(code), n)
        )
        for kind, (lo, hi) in CODE_LENGTHS.items()
    ]
    return [
        field_reason(t, ~pl.col(t).is_in(ASSET_TYPES), f"is not an asset type ({', '.join(ASSET_TYPES)})"),
        pl.when(credit & pl.col(code).is_null()).then(pl.lit(f"missing field {code}")),
        pl.when(credit & pl.col(issuer).is_null()).then(pl.lit(f"missing field {issuer}")),
        distinct_reason(
            frame, code, valid_codes, "is not a Stellar asset code (letters and digits only)", where=credit
        ),
        distinct_reason(
            frame, issuer, _valid_issuers, "is not a valid Stellar account id (StrKey checksum)", where=credit
        ),
        *lengths,
    ]


def pool_reason(frame: pl.DataFrame, *cols: str) -> list[pl.Expr]:
    """Reasons where a liquidity pool id in `cols` is not 64 lowercase hex digits."""
    return [
        distinct_reason(frame, c, valid_pool_ids, "is not a liquidity pool id (64 lowercase hex digits)") for c in cols
    ]


NOT_AN_OBJECT = "not a JSON object: fix or remove the line"


def record_reason() -> pl.Expr:
    """Why a line / record could not be parsed at all: the reader's `defect` (invalid
    UTF-8, a JSON value that is not an object, a field of the wrong JSON type), else
    that it is not a JSON object."""
    return pl.when(~pl.col("valid").fill_null(False)).then(pl.coalesce(pl.col("defect"), pl.lit(NOT_AN_OBJECT)))


# What the store's NOT NULL / CHECK constraints need of each canonical frame.
STORED_REQUIRED = {
    "trades": ("id", "op_id", "ledger", "closed_at", "trade_type", "pair_id", "sold_asset", "sold_amount",
               "bought_asset", "bought_amount", "price_n", "price_d", "source"),
    "operations": ("id", "ledger", "closed_at", "type", "source"),
}  # fmt: skip
_ASSET_COLUMNS = {"trades": ("sold_asset", "bought_asset"), "operations": ("asset", "source_asset", "buying_asset")}


def unstorable_reason(frame: pl.DataFrame, table: str) -> pl.Expr | None:
    """Why a canonical row (engine.schemas) cannot be stored as it is, or None when
    every row can: a required column empty, a non-positive amount, an asset id that
    breaks Stellar's rules, a trade of an asset for itself.

    The decoders check each source's fields and name them; this runs on every
    source's output before the write, so a gap in one decoder costs a quarantined
    row, never a failed batch or an invented one. Cheap when all is well: null
    counts, minima and distinct asset ids.
    """
    required = STORED_REQUIRED[table]
    nulls = frame.select(required).null_count().row(0)
    checks = [
        pl.when(pl.col(c).is_null()).then(pl.lit(f"field {c}: missing"))
        for c, n in zip(required, nulls, strict=True)
        if n
    ]
    checks += [
        distinct_reason(frame, c, valid_asset_ids, "is not XLM:native or CODE:ISSUER")
        for c in _ASSET_COLUMNS[table]
        if bad_values(frame, c, valid_asset_ids).len()
    ]
    if table == "trades":
        positive = ("sold_amount", "bought_amount", "price_n", "price_d")
        checks += [pl.when(pl.col(c) <= 0).then(pl.lit(f"field {c}: not positive")) for c in positive
                   if frame.height and (frame.get_column(c).min() or 1) <= 0]  # fmt: skip
        if frame.height and (frame.get_column("sold_asset") == frame.get_column("bought_asset")).any():
            checks.append(
                pl.when(pl.col("sold_asset") == pl.col("bought_asset")).then(pl.lit("sold and bought the same asset"))
            )
    return first_reason(*checks) if checks else None
