"""Routing a big read to partitions on disk, within a memory budget (the features and rings
steps: one partition in memory at a time, never the market)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow as pa

from storage.errors import BadInput

_MEMORY = "2GB"  # DuckDB's budget during a routed read (it spills to disk beyond)
# LZ4 frames: a 10M-trade window's routed rows were ~5 GB of strings when they carried the asset
# and pair ids, and writing them took 6.1 s against 3.4 s compressed; reading back cost 0.3 s more
_WRITE = pa.ipc.IpcWriteOptions(compression="lz4")
# A routed read's pair columns, for a relation over its `$pairs` list (unnested beside it): the
# pair's key, its position in that list, and its two assets (a pair id is "base/counter",
# engine.assets.pair_id_expr). A trade carries the key instead of its pair id (~120
# characters) and `SOLD_BASE` instead of its two asset ids (~120 more), and `with_pair_ids`
# puts all three back (at 10M trades the features' routed read took 12.5-13.3 s against
# 16.1-17.1 s with the assets; the features step 94.9 / 96.4 s against 101.5 / 98.2, the
# rings step 58.8 / 62.3 s against 63.8 / 64.0).
PAIR_COLUMNS = (
    "generate_subscripts($pairs, 1) - 1 AS pair_key, split_part(unnest($pairs), '/', 1) AS pair_base, "
    "split_part(unnest($pairs), '/', 2) AS pair_counter"
)
# Whether the trade sold its pair's base asset (null: its assets are not its pair's)
SOLD_BASE = (
    "CASE WHEN sold_asset = pair_base AND bought_asset = pair_counter THEN TRUE "
    "WHEN sold_asset = pair_counter AND bought_asset = pair_base THEN FALSE END AS sold_base"
)


@contextmanager
def lean(cur, *, let_go: Callable[[object], None] | None = None) -> Iterator[None]:
    """DuckDB's memory capped (it spills to disk beyond), its row order free; afterwards the
    default limit back (RESET: nothing here sets another, and the limit DuckDB shows is rounded
    down, so setting it back from its text lowered it a little every time) and the row order as
    it was (the app's store is shared). let_go: `Store._let_go_of_cache`, so the blocks the reads
    cached are freed for the engine's work that follows (at 10M trades, most of a gigabyte)
    when nothing else is reading."""
    order = cur.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    cur.execute(f"SET memory_limit = '{_MEMORY}'")
    cur.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        if let_go is not None:
            let_go(cur)
        cur.execute("RESET memory_limit")
        cur.execute(f"SET preserve_insertion_order = {str(order).lower()}")


def scatter(reader, folder: Path, name: str, *, key: str = "part") -> dict[int, Path]:
    """The rows of a stream of Arrow batches, written to one Arrow IPC file per value of their
    column `key` (`folder`/`name`-value.arrow, without `key`), in one pass: the cost is linear
    in the rows, the memory one batch. (DuckDB sorting a 10M-trade window by partition instead
    took 19 s against 7, and spilled beyond its budget.) IPC with LZ4 frames: written and read
    back several times faster than Parquet. -> {value: file}"""
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    paths: dict[int, Path] = {}
    try:
        for batch in reader:
            for (part,), rows in pl.from_arrow(batch).partition_by(key, as_dict=True).items():
                table = rows.drop(key).to_arrow()
                if part not in writers:
                    paths[part] = folder / f"{name}-{part}.arrow"
                    writers[part] = pa.ipc.new_file(paths[part], table.schema, options=_WRITE)
                writers[part].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
    return paths


def with_pair_ids(rows: pl.DataFrame, pair_ids: list[str]) -> pl.DataFrame:
    """Routed `rows` with their `pair_id`, `sold_asset` and `bought_asset` back: the id at
    position `pair_key` of `pair_ids` (the read's `$pairs`, `PAIR_COLUMNS`) and its two assets
    in the order `sold_base` says (the rows keep pair_key, lose sold_base)."""
    assets = pl.col("pair_id").str.split("/").list
    names = pl.DataFrame({"pair_id": pair_ids}, schema={"pair_id": pl.String}).with_row_index("pair_key").with_columns(
        _base=assets.get(0, null_on_oob=True), _counter=assets.get(1, null_on_oob=True))  # fmt: skip
    rows = rows.join(names.cast({"pair_key": rows.schema["pair_key"]}), on="pair_key", how="left", maintain_order="left")
    if rows.get_column("sold_base").null_count():  # (every partition passes here: a count, not a filter)
        wrong = rows.filter(pl.col("sold_base").is_null())
        first = wrong.row(0, named=True)
        raise BadInput(f"the store's trade {first['id']} does not trade the two assets of its pair {first['pair_id']} "
                       f"({wrong.height} such trades): the store is inconsistent; ingest its ledgers again into a "
                       "fresh store (python -m engine ingest ... --db NEW)")  # fmt: skip
    base, counter, sold_base = pl.col("_base"), pl.col("_counter"), pl.col("sold_base")
    return rows.with_columns(sold_asset=pl.when(sold_base).then(base).otherwise(counter),
                             bought_asset=pl.when(sold_base).then(counter).otherwise(base)
                             ).drop("_base", "_counter", "sold_base")  # fmt: skip
