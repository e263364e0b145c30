"""Horizon trade and operation records (JSON) -> canonical frames + quarantine.

One decoder for every path that sees Horizon JSON: the Horizon source, the replay
server round trip, Horizon JSON Lines files and Horizon page files. Parsing and
validation are vectorised (DuckDB json_transform + polars expressions).
"""

from __future__ import annotations

import polars as pl

from engine.assets import asset_id_expr, pair_id_expr, valid_asset_ids
from engine.ingest.validate import (
    CheckedAccounts,
    account_reason,
    amount_reason,
    amount_stroops,
    asset_reasons,
    distinct_reason,
    fast_stroops,
    field_reason,
    first_reason,
    pool_reason,
    record_reason,
    shown,
    split_checked,
    split_reasons,
    trade_id_reason,
    trade_op_id,
)
from engine.schemas import OPERATIONS_SCHEMA, QUARANTINE_SCHEMA, TRADES_SCHEMA, conform, empty
from storage.readers import parse_json_strings, read_json_lines

V = "VARCHAR"
_ASSET = ("asset_type", "asset_code", "asset_issuer")
TRADE_FIELDS: dict = {
    "id": V, "paging_token": V, "ledger_close_time": V, "trade_type": V, "base_is_seller": V,
    **{f"{side}_{f}": V for side in ("base", "counter")
       for f in ("offer_id", "account", "amount", "liquidity_pool_id", *_ASSET)},
    "price": {"n": V, "d": V},
}  # fmt: skip
OPERATION_FIELDS: dict = {
    "id": V, "paging_token": V, "transaction_successful": V, "source_account": V, "type": V,
    "created_at": V, "transaction_hash": V, "funder": V, "account": V, "starting_balance": V,
    "from": V, "to": V, "into": V, "amount": V, "source_amount": V, "offer_id": V, "balance_id": V,
    "claimant": V, "asset": V, "claimants": [{"destination": V}], "price_r": {"n": V, "d": V},
    **{f"{p}{f}": V for p in ("", "source_", "selling_", "buying_") for f in _ASSET},
    "transaction": {"memo": V},
}  # fmt: skip


def decode_trades(raw: list[str], *, source: str, locations: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Horizon trade records (JSON texts) -> (trades, quarantine); see module doc."""
    parsed = parse_json_strings(raw, TRADE_FIELDS).with_columns(location=pl.Series(locations, dtype=pl.String))
    return trades_from_parsed(parsed, source=source)


def decode_operations(raw: list[str], *, source: str, locations: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Horizon operation records (JSON texts) -> (operations, quarantine)."""
    parsed = parse_json_strings(raw, OPERATION_FIELDS).with_columns(location=pl.Series(locations, dtype=pl.String))
    return operations_from_parsed(parsed, source=source)


def read_trades_file(path, *, source: str = "files") -> tuple[pl.DataFrame, pl.DataFrame]:
    """A Horizon trades JSON Lines file -> (trades, quarantine), one vectorised pass."""
    parsed = read_json_lines(path, TRADE_FIELDS)
    return trades_from_parsed(with_location(parsed, path), source=source)


def read_operations_file(path, *, source: str = "files") -> tuple[pl.DataFrame, pl.DataFrame]:
    parsed = read_json_lines(path, OPERATION_FIELDS)
    return operations_from_parsed(with_location(parsed, path), source=source)


def with_location(parsed: pl.DataFrame, path) -> pl.DataFrame:
    """Add `location` = file:line to parsed JSON Lines rows."""
    return parsed.with_columns(location=pl.format("{}:{}", pl.lit(str(path)), pl.col("line_no")))


def trades_from_parsed(
    parsed: pl.DataFrame, *, source: str, checked: CheckedAccounts | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed trade fields (all strings, plus raw/valid/location) -> (trades, quarantine)."""
    p = parsed.with_columns(
        tid=pl.coalesce("id", "paging_token"),
        base_asset=asset_id_expr("base_asset_type", "base_asset_code", "base_asset_issuer"),
        counter_asset=asset_id_expr("counter_asset_type", "counter_asset_code", "counter_asset_issuer"),
        closed=pl.col("ledger_close_time").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False, time_zone="UTC"),
        pn=pl.col("price").struct.field("n").cast(pl.Int64, strict=False),
        pd=pl.col("price").struct.field("d").cast(pl.Int64, strict=False),
        base_stroops=fast_stroops("base_amount"),
        counter_stroops=fast_stroops("counter_amount"),
    )
    p = p.with_columns(
        acct_reason=account_reason(p, "base_account", "counter_account", required=False, checked=checked)
    )
    checks = _trade_checks(p)
    ok = (
        pl.all_horizontal([c.is_null() for c in checks[:-2]])
        & (pl.col("base_stroops") > 0)
        & (pl.col("counter_stroops") > 0)
    )
    slow = {"base_stroops": amount_stroops("base_amount"), "counter_stroops": amount_stroops("counter_amount")}
    good, bad = split_reasons(_mark_duplicates(split_checked(p, ok, slow, first_reason(*checks)), "tid"))
    return _canonical_trades(good, source), _quarantine(bad, source, "tid")


def _trade_checks(p: pl.DataFrame) -> list[pl.Expr]:
    """Reasons a trade record is unusable, in the order they are reported (amounts last).

    Every field the store needs is checked here, null-safely: a record without
    `base_is_seller` would otherwise become a self-trade (both sides from the
    counter side, pair X/X), one without `trade_type` or an asset type would fail
    the store's NOT NULL and roll back its whole batch.
    """
    return [
        record_reason(),
        trade_id_reason("tid"),
        pl.when(pl.col("closed").is_null()).then(
            pl.format("field ledger_close_time: '{}' missing or not ISO-8601 UTC", shown("ledger_close_time"))
        ),
        field_reason("trade_type", ~pl.col("trade_type").is_in(TRADE_TYPES), "is not orderbook or liquidity_pool"),
        field_reason("base_is_seller", ~pl.col("base_is_seller").is_in(["true", "false"]), "is not true or false"),
        *asset_reasons(p, "base_"),
        *asset_reasons(p, "counter_"),
        pl.when(pl.col("pn").is_null() | pl.col("pd").is_null() | (pl.col("pn") <= 0) | (pl.col("pd") <= 0)).then(
            pl.lit("field price: n and d must be positive integers")
        ),
        pl.when(pl.col("base_account").is_null() & pl.col("base_liquidity_pool_id").is_null()).then(
            pl.lit("fields base_account/base_liquidity_pool_id: base side has neither an account nor a liquidity pool")
        ),
        pl.when(pl.col("counter_account").is_null() & pl.col("counter_liquidity_pool_id").is_null()).then(
            pl.lit("fields counter_account/counter_liquidity_pool_id: counter side has neither an account nor a pool")
        ),
        *pool_reason(p, "base_liquidity_pool_id", "counter_liquidity_pool_id"),
        pl.when(pl.col("base_asset") == pl.col("counter_asset")).then(
            pl.format("fields base_asset/counter_asset: both are {}; a trade exchanges two assets", shown("base_asset"))
        ),
        pl.col("acct_reason"),
        amount_reason("base_amount"),
        amount_reason("counter_amount"),
    ]


TRADE_TYPES = ["orderbook", "liquidity_pool"]


def _mark_duplicates(p: pl.DataFrame, key: str) -> pl.DataFrame:
    """A second record with a stored id but other content is quarantined; exact repeats collapse."""
    ids = p.get_column(key).drop_nulls()
    if ids.hash().n_unique() == ids.len():  # distinct hashes: distinct ids (a collision takes the exact path)
        return p
    repeated = pl.col(key).is_duplicated() & pl.col(key).is_not_null()
    exact_repeat = repeated & ~pl.struct(key, "raw").is_first_distinct()
    p = p.filter(~exact_repeat)
    dup = pl.col(key).is_not_null() & ~pl.col(key).is_first_distinct()
    return p.with_columns(
        reason=pl.when(pl.col("reason").is_null() & dup)
        .then(pl.format("duplicate id {} with different content than an earlier record", pl.col(key)))
        .otherwise(pl.col("reason"))
    )


def _canonical_trades(g: pl.DataFrame, source: str) -> pl.DataFrame:
    seller_is_base = pl.col("base_is_seller") == "true"

    def side(is_base: pl.Expr, field: str) -> pl.Expr:
        return pl.when(is_base).then(pl.col(f"base_{field}")).otherwise(pl.col(f"counter_{field}"))

    op_id = trade_op_id("tid")
    out = g.with_columns(
        id=pl.col("tid"),
        op_id=op_id,
        ledger=op_id // (1 << 32),
        closed_at=pl.col("closed"),
        seller_account=side(seller_is_base, "account"),
        seller_offer_id=side(seller_is_base, "offer_id").cast(pl.Int64, strict=False),
        seller_pool_id=side(seller_is_base, "liquidity_pool_id"),
        buyer_account=side(~seller_is_base, "account"),
        buyer_offer_id=side(~seller_is_base, "offer_id").cast(pl.Int64, strict=False),
        buyer_pool_id=side(~seller_is_base, "liquidity_pool_id"),
        sold_asset=side(seller_is_base, "asset"),
        bought_asset=side(~seller_is_base, "asset"),
        sold_amount=pl.when(seller_is_base).then(pl.col("base_stroops")).otherwise(pl.col("counter_stroops")),
        bought_amount=pl.when(seller_is_base).then(pl.col("counter_stroops")).otherwise(pl.col("base_stroops")),
        price_n=pl.when(seller_is_base).then(pl.col("pn")).otherwise(pl.col("pd")),
        price_d=pl.when(seller_is_base).then(pl.col("pd")).otherwise(pl.col("pn")),
        source=pl.lit(source),
    ).with_columns(pair_id=pair_id_expr("sold_asset", "bought_asset"))
    return conform(out, TRADES_SCHEMA)


def _quarantine(bad: pl.DataFrame, source: str, id_col: str) -> pl.DataFrame:
    if bad.height == 0:
        return empty(QUARANTINE_SCHEMA)
    return conform(
        bad.select(
            source=pl.lit(source),
            location=pl.col("location"),
            record_id=pl.col(id_col).cast(pl.String),
            reason=pl.col("reason"),
            raw=pl.col("raw"),
        ),
        QUARANTINE_SCHEMA,
    )


_BAD_ASSET = "is not XLM:native or CODE:ISSUER (a code of 1-12 letters and digits, a G... issuer)"
_FUNDING_AMOUNT = ("payment", "path_payment_strict_send", "path_payment_strict_receive", "create_claimable_balance")
_OFFERS = ("manage_sell_offer", "manage_buy_offer", "create_passive_sell_offer")


def operations_from_parsed(
    parsed: pl.DataFrame, *, source: str, checked: CheckedAccounts | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed operation fields -> (operations, quarantine).

    Funding direction per type: create_account funder->account; payments and path
    payments from->to; account_merge account->into; create_claimable_balance
    source->first claimant; claim_claimable_balance has no known sender in the
    operation itself (to = claimant, from = null: not a funding edge).
    """
    t = pl.col("type")
    claimable = pl.col("asset").str.replace(r"^native$", "XLM:native")
    p = parsed.with_columns(
        oid=pl.coalesce("id", "paging_token"),
        closed=pl.col("created_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False, time_zone="UTC"),
        amount_col=pl.when(t == "create_account").then(pl.col("starting_balance")).otherwise(pl.col("amount")),
        asset_id=pl.when(t == "create_account")
        .then(pl.lit("XLM:native"))
        .when(t == "account_merge")
        .then(pl.lit("XLM:native"))
        .when(t == "create_claimable_balance")
        .then(claimable)
        .when(t.is_in(_OFFERS))
        .then(asset_id_expr("selling_asset_type", "selling_asset_code", "selling_asset_issuer"))
        .otherwise(asset_id_expr("asset_type", "asset_code", "asset_issuer")),
    )
    p = p.with_columns(
        source_asset_id=asset_id_expr("source_asset_type", "source_asset_code", "source_asset_issuer"),
        buying_asset_id=asset_id_expr("buying_asset_type", "buying_asset_code", "buying_asset_issuer"),
    )
    p = p.with_columns(acct_reason=account_reason(p, "source_account", required=False, checked=checked))
    cheap, amount_checks = _operation_checks(p)
    amounts = {"amount_v": "amount_col", "offer_v": "amount", "source_amount_v": "source_amount"}
    p = p.with_columns(**{name: fast_stroops(col) for name, col in amounts.items()})
    # Most records hold canonical amounts: only the rest get the regex-heavy exact parse and reasons
    ok = pl.all_horizontal(
        *[c.is_null() for c in cheap],
        *[pl.col(col).is_null() | pl.col(name).is_not_null() for name, col in amounts.items()],
        ~t.is_in(["create_account", *_FUNDING_AMOUNT]) | (pl.col("amount_v") > 0),
        ~t.is_in(_OFFERS) | pl.col("offer_v").is_not_null(),
    )
    slow = {name: amount_stroops(col) for name, col in amounts.items()}
    reason = first_reason(*cheap[:4], *amount_checks, *cheap[4:])  # the order reasons are reported in
    good, bad = split_reasons(_mark_duplicates(split_checked(p, ok, slow, reason), "oid"))
    return _canonical_operations(good, source), _quarantine(bad, source, "oid")


def _operation_checks(p: pl.DataFrame) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Reasons an operation record is unusable: (the cheap ones, the amounts' regex-heavy ones)."""
    t = pl.col("type")
    amount_checks = [
        # amount_col is starting_balance for a create_account, amount otherwise: the reason names the record's field
        pl.when(t == "create_account").then(amount_reason("amount_col", field="starting_balance"))
        .when(t.is_in(_FUNDING_AMOUNT)).then(amount_reason("amount_col", field="amount")).otherwise(None),
        pl.when(t.is_in(_OFFERS)).then(amount_reason("amount", allow_zero=True)).otherwise(None),
    ]
    cheap = [
        record_reason(),
        pl.when(pl.col("oid").is_null() | ~pl.col("oid").str.contains(r"^\d+$")).then(
            pl.lit("field id: missing or not a numeric operation id")
        ),
        pl.when(pl.col("type").is_null()).then(pl.lit("missing field type")),
        pl.when(pl.col("closed").is_null()).then(pl.lit("field created_at: missing or not ISO-8601 UTC")),
        *[
            distinct_reason(p, f"{name}_id", valid_asset_ids, _BAD_ASSET, field=name)
            for name in ("asset", "source_asset", "buying_asset")
        ],
        pl.col("acct_reason"),
    ]
    return cheap, amount_checks


def _canonical_operations(g: pl.DataFrame, source: str) -> pl.DataFrame:
    t = pl.col("type")
    oid = pl.col("oid").cast(pl.Int64)
    from_account = (
        pl.when(t == "create_account")
        .then(pl.col("funder"))
        .when(t == "account_merge")
        .then(pl.col("account"))
        .when(t == "create_claimable_balance")
        .then(pl.col("source_account"))
        .when(t.is_in(["payment", "path_payment_strict_send", "path_payment_strict_receive"]))
        .then(pl.col("from"))
        .otherwise(None)
    )
    to_account = (
        pl.when(t == "create_account")
        .then(pl.col("account"))
        .when(t == "account_merge")
        .then(pl.col("into"))
        .when(t == "create_claimable_balance")
        .then(pl.col("claimants").list.first().struct.field("destination"))
        .when(t == "claim_claimable_balance")
        .then(pl.col("claimant"))
        .when(t.is_in(["payment", "path_payment_strict_send", "path_payment_strict_receive"]))
        .then(pl.col("to"))
        .otherwise(None)
    )
    out = g.with_columns(
        id=oid,
        ledger=oid // (1 << 32),
        closed_at=pl.col("closed"),
        tx_hash=pl.col("transaction_hash"),
        successful=pl.col("transaction_successful").replace_strict({"true": True, "false": False}, default=None),
        from_account=from_account,
        to_account=to_account,
        asset=pl.col("asset_id"),
        amount=pl.col("amount_v"),
        source_asset=pl.col("source_asset_id"),
        source_amount=pl.col("source_amount_v"),
        offer_id=pl.col("offer_id").cast(pl.Int64, strict=False),
        buying_asset=pl.col("buying_asset_id"),
        price_n=pl.col("price_r").struct.field("n").cast(pl.Int64, strict=False),
        price_d=pl.col("price_r").struct.field("d").cast(pl.Int64, strict=False),
        memo=pl.col("transaction").struct.field("memo"),
        source=pl.lit(source),
    )
    return conform(out, OPERATIONS_SCHEMA)
