"""The digit table of the market Benford scopes: one SQL definition for every engine.

`market_digits_sql` is the definition (DuckDB's dialect). Every amount the pair and asset
scopes test (pair: each trade's base amount; asset: both amounts of each trade, under
their assets) is counted by its leading digits (engine.benford.leading_digits: the first
two significant digits, the amount itself below 10, 0 when it is not positive) and by the
narrowest window holding it (bucket i: closed after `start_i`, the windows by width).

    scope | pair_id (pair scope) | asset (asset scope) | bucket | digits | n

The features step runs it on the store (`Store.market_digits`) and on a frame in memory
(`market_digits_of`); Spark runs it transpiled by sqlglot (engine.spark.features); compiled
for BigQuery, Hubble's home, it is kept as golden SQL (tests/engine/golden). It uses only
what the three dialects share: SPLIT_PART, for one, is written as it is for BigQuery, which
has no such function, so the base asset is cut with LEFT and STRPOS.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from storage.sql_dialects import table_name, transpile

_DIGITS = "CASE WHEN amount > 0 THEN CAST(LEFT(CAST(amount AS VARCHAR), 2) AS BIGINT) ELSE 0 END"
_BASE_AMOUNT = ("CASE WHEN LEFT(pair_id, STRPOS(pair_id, '/') - 1) = sold_asset THEN sold_amount "
                "ELSE bought_amount END")  # fmt: skip


def market_digits_sql(n_windows: int, *, source: str = "trades", dialect: str = "duckdb") -> str:
    """The definition over the relation `source` (a table or view name with the columns pair_id,
    closed_at, sold_asset, sold_amount, bought_asset, bought_amount), in `dialect` (any of
    sqlglot's: "duckdb", "spark", "bigquery", ...). Parameters: as_of and start_0 ..
    start_{n_windows - 1} (`market_digit_params`)."""
    if n_windows < 1:
        raise ValueError("n_windows must be at least 1")
    source = table_name(source)
    buckets = " ".join(f"WHEN closed_at > $start_{i} THEN {i}" for i in range(n_windows - 1))
    bucket = f"CASE {buckets} ELSE {n_windows - 1} END" if buckets else "0"
    sql = (
        f"WITH w AS (SELECT pair_id, sold_asset, sold_amount, bought_asset, bought_amount, {bucket} AS bucket "
        f"FROM {source} WHERE closed_at > $start_{n_windows - 1} AND closed_at <= $as_of), "
        f"amounts AS (SELECT 'pair' AS scope, pair_id, CAST(NULL AS VARCHAR) AS asset, bucket, {_BASE_AMOUNT} AS amount "
        "FROM w UNION ALL SELECT 'asset', CAST(NULL AS VARCHAR), sold_asset, bucket, sold_amount FROM w "
        "UNION ALL SELECT 'asset', CAST(NULL AS VARCHAR), bought_asset, bucket, bought_amount FROM w) "
        f"SELECT scope, pair_id, asset, bucket, {_DIGITS} AS digits, COUNT(*) AS n FROM amounts GROUP BY 1, 2, 3, 4, 5"
    )
    return transpile(sql, dialect)


def market_digit_params(as_of: datetime, starts: list[datetime]) -> dict[str, datetime]:
    """The parameters of `market_digits_sql`: `starts`, the windows' starts by width (narrowest first)."""
    return {"as_of": as_of, **{f"start_{i}": start for i, start in enumerate(starts)}}


def market_digits_of(trades: pl.DataFrame, *, as_of: datetime, starts: list[datetime]) -> pl.DataFrame:
    """The definition run on a frame in memory (an in-memory DuckDB)."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", trades.select("pair_id", "closed_at", "sold_asset", "sold_amount", "bought_asset",
                                             "bought_amount").to_arrow())  # fmt: skip
        return pl.from_arrow(con.sql(market_digits_sql(len(starts)), params=market_digit_params(as_of, starts))
                             .to_arrow_table())  # fmt: skip
