"""The market Benford scopes' digit table: one SQL definition (storage.market_digits), run on
DuckDB, transpiled for Spark (tests/engine/test_spark_features.py checks the two agree) and
compiled for BigQuery, kept as golden SQL and checked here without connecting.

Re-record the golden after a deliberate change: python -m tests.engine.test_market_digits_sql
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import sqlglot

from engine import benford
from engine.features import DEFAULT_CONFIG
from engine.features.benford_features import market_digits, market_window_starts
from engine.features.random_market import random_market
from storage.errors import BadInput
from storage.market_digits import market_digit_params, market_digits_sql

GOLDEN = Path(__file__).parent / "golden" / "market_digits.bigquery.sql"
AS_OF = datetime(2026, 1, 5, tzinfo=UTC)
KEY = ["scope", "pair_id", "asset", "bucket", "digits"]


def _bigquery_sql() -> str:
    return market_digits_sql(len(DEFAULT_CONFIG.windows), dialect="bigquery") + "\n"


def _trades(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"pair_id": pl.String, "closed_at": pl.Datetime("us", "UTC"), "sold_asset": pl.String,
                                      "sold_amount": pl.Int64, "bought_asset": pl.String, "bought_amount": pl.Int64},
                        orient="row")  # fmt: skip


def test_amounts_are_counted_by_leading_digits_scope_and_narrowest_window():
    hour, day = timedelta(hours=1), timedelta(days=1)
    trades = _trades([
        ("A:x/XLM:native", AS_OF - hour / 2, "A:x", 123_456, "XLM:native", 5),  # base sold: pair amount 123456
        ("A:x/XLM:native", AS_OF - 2 * day, "XLM:native", 10, "A:x", 0),  # base bought: pair amount 0 (not positive)
        ("A:x/XLM:native", AS_OF + hour, "A:x", 99, "XLM:native", 99),  # after as_of: not counted
        ("A:x/XLM:native", AS_OF - 400 * day, "A:x", 99, "XLM:native", 99),  # before the widest window
    ])  # fmt: skip
    got = market_digits(trades, as_of=AS_OF, cfg=DEFAULT_CONFIG).sort(KEY, nulls_last=True)
    widths = sorted(w for _, w in DEFAULT_CONFIG.windows)
    two_days = next(i for i, w in enumerate(widths) if w >= 2 * day)
    want = pl.DataFrame([
        ("asset", None, "A:x", 0, 12, 1), ("asset", None, "A:x", two_days, 0, 1),
        ("asset", None, "XLM:native", 0, 5, 1), ("asset", None, "XLM:native", two_days, 10, 1),
        ("pair", "A:x/XLM:native", None, 0, 12, 1), ("pair", "A:x/XLM:native", None, two_days, 0, 1),
    ], schema=got.schema, orient="row").sort(KEY, nulls_last=True)  # fmt: skip
    assert got.to_dicts() == want.to_dicts()


def test_sql_leading_digits_equal_the_engines_on_every_magnitude():
    rng = np.random.default_rng(7)
    powers = 10 ** np.arange(0, 18, dtype=np.int64)
    amounts = np.concatenate([powers, powers - 1, powers + 1, rng.integers(1, 2**62, 5_000), [0]])
    trades = _trades([("A:x/B:y", AS_OF, "A:x", int(a), "B:y", 1) for a in amounts])
    got = market_digits(trades, as_of=AS_OF, cfg=DEFAULT_CONFIG).filter(pl.col("scope") == "pair")
    want = pl.DataFrame({"digits": benford.leading_digits(amounts)}).group_by("digits").len("n")
    assert dict(got.select("digits", "n").iter_rows()) == dict(want.iter_rows())


def test_bigquery_sql_is_the_golden_and_computes_what_duckdb_computes():
    assert _bigquery_sql() == GOLDEN.read_text(), "the BigQuery SQL changed: re-record the golden (see the module doc)"
    # the golden read as BigQuery and run on DuckDB gives the definition's table: no function lost on the way
    back = sqlglot.transpile(GOLDEN.read_text(), read="bigquery", write="duckdb")[0]
    trades, _, _ = random_market(n_trades=3_000, n_wallets=40, n_pairs=4, days=4, seed=5)
    as_of = trades.get_column("closed_at").max()
    params = market_digit_params(as_of, market_window_starts(as_of, DEFAULT_CONFIG))
    with duckdb.connect() as con:
        con.register("trades", trades.to_arrow())
        via_bigquery = pl.from_arrow(con.sql(back, params=params).to_arrow_table())
    want = market_digits(trades, as_of=as_of, cfg=DEFAULT_CONFIG)
    assert want.height > 50
    assert via_bigquery.cast(want.schema).sort(KEY).equals(want.sort(KEY))


def test_the_relation_name_is_checked_before_it_enters_the_sql():
    with pytest.raises(BadInput, match="not a table name"):
        market_digits_sql(3, source="trades; DROP TABLE trades")
    assert "FROM crypto_stellar.trades" in market_digits_sql(3, source="crypto_stellar.trades", dialect="bigquery")


if __name__ == "__main__":
    GOLDEN.write_text(_bigquery_sql())
    print(f"wrote {GOLDEN}")
