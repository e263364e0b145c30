"""Integer account keys for the graph steps: the rank of the account id in sorted order.

The rings step compares, sorts and groups wallets millions of times; on a 56-character id
each row holds ~70 bytes per wallet column, on a key 8. Keys are ranks in sorted order, so
every `min`, `max`, `<` and sort gives the same answer on keys as on ids, and results are
identical once decoded (ring ids hash the decoded ids).
"""

from __future__ import annotations

import polars as pl


def account_names(*ids: pl.Series) -> pl.Series:
    """Every account id in `ids` once, sorted: position i is the id of key i."""
    return pl.concat([s.cast(pl.String).drop_nulls() for s in ids]).unique().sort().rename("account_id")


def key_index(names: pl.Series) -> pl.DataFrame:
    """Shapes: -> [account_id: str, key: i64] (key = position in `names`)."""
    return pl.DataFrame({"account_id": names}).with_row_index("key").select(
        "account_id", pl.col("key").cast(pl.Int64))


def encode_columns(frame: pl.DataFrame, names: pl.Series, columns: tuple[str, ...]) -> pl.DataFrame:
    """`frame` with each of `columns` (account ids; nulls stay null) replaced by its key."""
    return map_columns(frame, key_index(names), columns)


def map_columns(frame: pl.DataFrame, mapping: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """`frame` with each of `columns` replaced through `mapping` [value, key] (first column ->
    `key`; a value it lacks, or null, becomes null); row order kept."""
    value = mapping.columns[0]
    for column in columns:
        frame = frame.join(mapping.rename({value: column, "key": "_key"}), on=column, how="left",
                           maintain_order="left").with_columns(pl.col("_key").alias(column)).drop("_key")
    return frame


def decode(keys: pl.Expr | str, names: pl.Series) -> pl.Expr:
    """Expression giving the account ids of the keys in `keys` (a column of keys)."""
    column = pl.col(keys) if isinstance(keys, str) else keys
    return column.map_batches(lambda s: names.gather(s), return_dtype=pl.String)


def decode_lists(frame: pl.DataFrame, column: str, names: pl.Series) -> pl.DataFrame:
    """`frame` with the list-of-keys `column` turned into lists of account ids (order kept)."""
    if frame.height == 0:
        return frame.with_columns(pl.col(column).cast(pl.List(pl.String)))
    rows = frame.select(pl.int_range(pl.len()).alias("_row"))
    flat = rows.with_columns(frame.get_column(column)).explode(column)  # an empty list leaves no row
    ids = flat.select("_row", decode(column, names)).group_by("_row").agg(pl.col(column))
    ids = rows.join(ids, on="_row", how="left").sort("_row")
    return frame.with_columns(ids.get_column(column).fill_null(pl.lit([], pl.List(pl.String))))
