"""Hubble / stellar-etl exports (JSON Lines, CSV, Parquet) and LedgerLens's own
canonical trade exports -> canonical frames + quarantine.

Hubble rows are already seller/buyer ("selling_*" sold to "buying_*"); its amounts
are floats, rounded here to the stroop (exact below ~900 million units).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.assets import asset_id_expr, pair_id_expr, valid_asset_ids
from engine.ingest.horizon_records import (
    OPERATION_FIELDS,
    _mark_duplicates,
    _quarantine,
    operations_from_parsed,
    with_location,
)
from engine.ingest.validate import (
    CheckedAccounts,
    account_reason,
    amount_reason,
    amount_stroops,
    asset_reasons,
    distinct_reason,
    field_reason,
    first_reason,
    pool_reason,
    record_reason,
    shown,
    split_reasons,
    stroops_from_float_text,
    trade_id_reason,
    trade_op_id,
)
from engine.schemas import TRADES_SCHEMA, conform
from storage.errors import BadInput
from storage.readers import parse_json_strings, read_json_lines

V = "VARCHAR"
_ASSET = ("asset_type", "asset_code", "asset_issuer")
TRADE_FIELDS: dict = {
    "history_operation_id": V, "order": V, "ledger_closed_at": V, "trade_type": V,
    **{f"{side}_{f}": V for side in ("selling", "buying")
       for f in ("account_address", "amount", "offer_id", "liquidity_pool_id", *_ASSET)},
    "price_n": V, "price_d": V,
}  # fmt: skip
CANONICAL_FIELDS: dict = {
    c: V for c in (
        "id", "closed_at", "trade_type", "seller_account", "seller_offer_id", "seller_pool_id", "buyer_account",
        "buyer_offer_id", "buyer_pool_id", "sold_asset", "sold_amount", "bought_asset", "bought_amount",
        "price_n", "price_d",
    )
}  # fmt: skip
_DETAILS = {k: v for k, v in OPERATION_FIELDS.items() if k not in ("id", "paging_token", "type", "transaction")}
OPERATION_FIELDS_HUBBLE: dict = {
    "id": V, "closed_at": V, "source_account": V, "type_string": V, "transaction_hash": V,
    "successful": V, "details": _DETAILS,
}  # fmt: skip
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S UTC", "%Y-%m-%d %H:%M:%S%.f UTC", "%Y-%m-%dT%H:%M:%S%.fZ")


def _utc(col: str) -> pl.Expr:
    return pl.coalesce([pl.col(col).str.to_datetime(f, strict=False, time_zone="UTC") for f in _TIME_FORMATS])


def peek_columns(path: Path) -> list[str]:
    """Column names of a CSV or Parquet export (BadInput if it cannot be read as one)."""
    try:
        if ".parquet" in path.name.lower():
            return pl.read_parquet_schema(path).names()
        return pl.read_csv(path, n_rows=0, infer_schema=False).columns
    except pl.exceptions.NoDataError as exc:
        raise BadInput(f"{path}: the file is empty (no header line): export it again with its header") from exc
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadInput(_unreadable(path, exc)) from exc


def _unreadable(path: Path, exc: BaseException) -> str:
    kind = "Parquet" if ".parquet" in path.name.lower() else "CSV"
    return f"{path}: cannot be read as {kind} ({str(exc).splitlines()[0][:200]}). Is it complete? Export it again."


def read_rows(path: Path, fields: dict) -> pl.DataFrame:
    """Rows of a JSONL / CSV / Parquet export as strings + line_no, raw, valid, defect, location."""
    path = Path(path)
    if ".csv" in path.name.lower() or ".parquet" in path.name.lower():
        return parsed_table(_read_table(path), fields, source=str(path))
    return with_location(read_json_lines(path, fields), path)


def parsed_table(frame: pl.DataFrame, fields: dict, *, source: str, first_row: int = 1) -> pl.DataFrame:
    """Rows of a table (every column text) as `read_rows` gives them: missing fields null, plus
    raw, valid, defect, line_no (from `first_row`) and location ("<source>:row <n>")."""
    missing = [c for c in fields if c not in frame.columns and not isinstance(fields[c], dict)]
    undecodable = pl.any_horizontal(pl.all().str.contains(REPLACEMENT_CHAR, literal=True).fill_null(False))
    frame = frame.with_columns(
        [pl.lit(None, dtype=pl.String).alias(c) for c in missing],
        raw=pl.struct(pl.all()).struct.json_encode(),
        valid=~undecodable,
        defect=pl.when(undecodable).then(pl.lit(NOT_UTF8_ROW)),
        line_no=pl.int_range(first_row, first_row + pl.len()),
    )
    return frame.with_columns(location=pl.format("{}:row {}", pl.lit(source), pl.col("line_no")))


REPLACEMENT_CHAR = "\ufffd"
NOT_UTF8_ROW = ("not UTF-8 text (its undecodable bytes show as U+FFFD in raw): fix the file's encoding "
                "or remove the row")


def _read_csv(path: Path) -> pl.DataFrame:
    """Every column as text. A file with bytes that are not UTF-8 is read again with those bytes
    replaced (U+FFFD), so only the rows holding them are lost (read_rows quarantines them);
    no field of a trade export may hold U+FFFD itself (codes, accounts, amounts, times)."""
    try:
        return pl.read_csv(path, infer_schema=False)
    except pl.exceptions.ComputeError as exc:
        if "utf-8" not in str(exc).lower():
            raise
        return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")


def read_parquet(path: Path) -> pl.DataFrame:
    """A Parquet export as it is (nested columns too); BadInput for a corrupt file."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadInput(_unreadable(path, exc)) from exc


def _read_table(path: Path) -> pl.DataFrame:
    """A CSV or Parquet export with every column as text; BadInput for an empty,
    corrupt or nested (struct / list columns) file."""
    if ".csv" not in path.name.lower():
        frame = read_parquet(path)
    else:
        try:
            frame = _read_csv(path)
        except pl.exceptions.NoDataError as exc:
            raise BadInput(f"{path}: the file is empty (no header line): export it again with its header") from exc
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise BadInput(_unreadable(path, exc)) from exc
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if nested:
        raise BadInput(
            f"{path}: columns {nested[:5]} are nested (struct or list); expected the flat columns stellar-etl "
            "writes (text and numbers). Flatten them or export with stellar-etl's flat schema."
        )
    try:
        return frame.select(pl.all().cast(pl.String))
    except pl.exceptions.PolarsError as exc:
        raise BadInput(_unreadable(path, exc)) from exc


def read_trades(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hubble history_trades export -> (trades, quarantine)."""
    return trades_from_parsed(read_rows(path, TRADE_FIELDS))


def trades_from_parsed(
    parsed: pl.DataFrame, *, checked: CheckedAccounts | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed Hubble trade rows (strings + line_no, raw, valid, location) -> (trades, quarantine)."""
    p = parsed.with_columns(
        tid=pl.format("{}-{}", pl.col("history_operation_id"), pl.col("order")),
        sold_asset=asset_id_expr("selling_asset_type", "selling_asset_code", "selling_asset_issuer"),
        bought_asset=asset_id_expr("buying_asset_type", "buying_asset_code", "buying_asset_issuer"),
        sold_amount=stroops_from_float_text("selling_amount"),
        bought_amount=stroops_from_float_text("buying_amount"),
        closed=_utc("ledger_closed_at"),
        pn=pl.col("price_n").cast(pl.Int64, strict=False),
        pd=pl.col("price_d").cast(pl.Int64, strict=False),
    )
    accounts = account_reason(p, "selling_account_address", "buying_account_address", required=False, checked=checked)
    p = p.with_columns(reason=first_reason(*_trade_reasons(p), pl.lit(accounts), *_amount_reasons()))
    good, bad = split_reasons(_mark_duplicates(p, "tid"))
    op_id = trade_op_id("tid")
    out = good.with_columns(
        id=pl.col("tid"), op_id=op_id, ledger=op_id // (1 << 32), closed_at=pl.col("closed"),
        trade_type=pl.col("trade_type").replace_strict({"1": "orderbook", "2": "liquidity_pool"}, default=None),
        seller_account=pl.col("selling_account_address"), buyer_account=pl.col("buying_account_address"),
        seller_offer_id=pl.col("selling_offer_id").cast(pl.Int64, strict=False),
        buyer_offer_id=pl.col("buying_offer_id").cast(pl.Int64, strict=False),
        seller_pool_id=pl.col("selling_liquidity_pool_id"), buyer_pool_id=pl.col("buying_liquidity_pool_id"),
        price_n=pl.col("pn"), price_d=pl.col("pd"), source=pl.lit("files"),
        pair_id=pair_id_expr("sold_asset", "bought_asset"),
    )  # fmt: skip
    return conform(out, TRADES_SCHEMA), _quarantine(bad, "files", "tid")


def _trade_reasons(p: pl.DataFrame) -> list[pl.Expr]:
    """Why a Hubble trade row is unusable: every field the store needs, null-safely
    (a missing value gives a reason, never a null that lets the row through)."""
    return [
        record_reason(),
        trade_id_reason("tid", field="history_operation_id/order"),
        pl.when(pl.col("closed").is_null()).then(
            pl.format("field ledger_closed_at: '{}' missing or not a UTC timestamp", shown("ledger_closed_at"))
        ),
        field_reason(
            "trade_type", ~pl.col("trade_type").is_in(["1", "2"]), "is not 1 (orderbook) or 2 (liquidity pool)"
        ),
        *asset_reasons(p, "selling_"),
        *asset_reasons(p, "buying_"),
        pl.when((pl.col("pn").fill_null(0) <= 0) | (pl.col("pd").fill_null(0) <= 0)).then(
            pl.lit("fields price_n/price_d: must be positive integers")
        ),
        *[
            pl.when(pl.col(f"{side}_account_address").is_null() & pl.col(f"{side}_liquidity_pool_id").is_null()).then(
                pl.lit(f"fields {side}_account_address/{side}_liquidity_pool_id: {side} side has neither")
            )
            for side in ("selling", "buying")
        ],
        *pool_reason(p, "selling_liquidity_pool_id", "buying_liquidity_pool_id"),
        pl.when(pl.col("sold_asset") == pl.col("bought_asset")).then(
            pl.format(
                "fields selling_asset/buying_asset: both are {}; a trade exchanges two assets", shown("sold_asset")
            )
        ),
    ]


def _amount_reasons() -> list[pl.Expr]:
    return [
        field_reason(f"{side}_amount", pl.col(col).is_null() | (pl.col(col) <= 0), "is not a positive amount")
        for side, col in (("selling", "sold_amount"), ("buying", "bought_amount"))
    ]


def read_operations(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hubble history_operations export -> (operations, quarantine), via the Horizon decoder."""
    p = read_rows(path, OPERATION_FIELDS_HUBBLE)
    if "details" not in p.columns:
        raise BadInput(f"{path}: Hubble operations need a 'details' column (JSON export of history_operations)")
    return operations_from_parsed_hubble(p)


def operations_from_table(rows: pl.DataFrame, *, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of a Hubble history_operations table as a Parquet export holds them (`details` a
    struct) -> (operations, quarantine): each row as the JSON line the export would have been,
    through the JSON Lines decoder (`read_operations`), so both read the same.
    Location: "<source> operation <id>"."""
    times = [c for c, t in rows.schema.items() if t.base_type() == pl.Datetime]
    rows = rows.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ") for c in times)
    raw = rows.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
    parsed = parse_json_strings(raw, OPERATION_FIELDS_HUBBLE).with_columns(
        location=pl.format("{} operation {}", pl.lit(source), pl.col("id")))  # fmt: skip
    if "details" not in parsed.columns:
        raise BadInput(f"{source}: Hubble operations need a 'details' column (history_operations)")
    return operations_from_parsed_hubble(parsed)


def operations_from_parsed_hubble(
    p: pl.DataFrame, *, checked: CheckedAccounts | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed Hubble operation rows (with a `details` struct) -> (operations, quarantine)."""
    details = p.get_column("details").struct.unnest()
    p = pl.concat(
        [p.drop("details"), details.select([c for c in details.columns if c not in p.columns])], how="horizontal"
    )
    as_text = {c: _float_to_decimal_text(c) for c in ("amount", "starting_balance", "source_amount") if c in p.columns}
    p = p.with_columns(
        type=pl.col("type_string"),
        created_at=pl.col("closed_at"),
        transaction_successful=pl.col("successful").fill_null("true"),
        transaction=pl.lit(None, dtype=pl.Struct({"memo": pl.String})),
        paging_token=pl.col("id"),
        **as_text,
    )
    return operations_from_parsed(p, source="files", checked=checked)


def _float_to_decimal_text(col: str) -> pl.Expr:
    """Hubble float text -> exact 7-decimal text via stroops ('1e-07' -> '0.0000001')."""
    s = stroops_from_float_text(col)
    return (
        pl.when(s.is_not_null() & (s >= 0))
        .then(pl.format("{}.{}", s // 10_000_000, (s % 10_000_000).cast(pl.String).str.pad_start(7, "0")))
        .otherwise(pl.col(col))
    )


def read_canonical_trades(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """LedgerLens `export trades` JSON Lines -> (trades, quarantine)."""
    return canonical_from_parsed(read_rows(path, CANONICAL_FIELDS))


def canonical_from_parsed(
    parsed: pl.DataFrame, *, checked: CheckedAccounts | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed canonical trade rows -> (trades, quarantine)."""
    p = parsed.with_columns(
        tid=pl.col("id"), closed=_utc("closed_at"),
        pn=pl.col("price_n").cast(pl.Int64, strict=False), pd=pl.col("price_d").cast(pl.Int64, strict=False),
    )  # fmt: skip
    accounts = account_reason(p, "seller_account", "buyer_account", required=False, checked=checked)
    p = p.with_columns(reason=first_reason(*_canonical_reasons(p), pl.lit(accounts)))
    good, bad = split_reasons(_mark_duplicates(p, "tid"))
    op_id = trade_op_id("tid")
    out = good.with_columns(
        op_id=op_id, ledger=op_id // (1 << 32), closed_at=pl.col("closed"),
        sold_amount=amount_stroops("sold_amount"), bought_amount=amount_stroops("bought_amount"),
        price_n=pl.col("pn"), price_d=pl.col("pd"), source=pl.lit("files"),
        pair_id=pair_id_expr("sold_asset", "bought_asset"),
    )  # fmt: skip
    return conform(out, TRADES_SCHEMA), _quarantine(bad, "files", "tid")


def _canonical_reasons(p: pl.DataFrame) -> list[pl.Expr]:
    """Why a row of our own export is unusable: every field the store needs, null-safely."""
    return [
        record_reason(),
        trade_id_reason("tid"),
        pl.when(pl.col("closed").is_null()).then(
            pl.format("field closed_at: '{}' missing or not ISO-8601 UTC", shown("closed_at"))
        ),
        field_reason(
            "trade_type",
            ~pl.col("trade_type").is_in(["orderbook", "liquidity_pool"]),
            "is not orderbook or liquidity_pool",
        ),
        *[field_reason(c, pl.lit(False), "") for c in ("sold_asset", "bought_asset")],
        *[
            distinct_reason(
                p, c, valid_asset_ids, "is not XLM:native or CODE:ISSUER (code of 1-12 letters and digits, G... issuer)"
            )
            for c in ("sold_asset", "bought_asset")
        ],
        pl.when(pl.col("sold_asset") == pl.col("bought_asset")).then(
            pl.format("fields sold_asset/bought_asset: both are {}; a trade exchanges two assets", shown("sold_asset"))
        ),
        amount_reason("sold_amount"),
        amount_reason("bought_amount"),
        pl.when((pl.col("pn").fill_null(0) <= 0) | (pl.col("pd").fill_null(0) <= 0)).then(
            pl.lit("fields price_n/price_d: must be positive integers")
        ),
        *[
            pl.when(pl.col(f"{side}_account").is_null() & pl.col(f"{side}_pool_id").is_null()).then(
                pl.lit(f"fields {side}_account/{side}_pool_id: the {side} side has neither")
            )
            for side in ("seller", "buyer")
        ],
        *pool_reason(p, "seller_pool_id", "buyer_pool_id"),
    ]
