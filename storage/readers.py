"""Vectorised readers of untrusted text files, backed by an in-memory DuckDB.

They never fail on a bad line: each line comes back with its number, its raw text
and whether it is valid JSON, so the caller can quarantine what is wrong and load
the rest. Field values come back as strings (numbers keep their JSON text), so no
amount ever passes through a binary float here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from storage.errors import BadInput

# `try` turns a line that is not JSON into NULL (one parse per line); a record must
# also be an object, which a leading "{" tells once the text parses.
_TRANSFORM = (
    "SELECT line_no, rec IS NOT NULL AND ltrim(raw) LIKE '{%' AS valid, rec FROM ("
    "  SELECT line_no, raw, try(json_transform(raw, ?)) AS rec FROM lines)"
)


def json_spec(fields: dict) -> str:
    """DuckDB json_transform structure from a nested dict of field names (leaves: 'VARCHAR')."""
    import json

    return json.dumps(fields)


def read_json_lines(path: str | Path, fields: dict) -> pl.DataFrame:
    """Read a whole JSON Lines file (see `iter_json_lines` for the shapes)."""
    chunks = [chunk for chunk, _ in iter_json_lines(path, fields)]
    return pl.concat(chunks) if len(chunks) > 1 else chunks[0]


def iter_json_lines(
    path: str | Path, fields: dict, *, chunk_lines: int = 250_000, skip_lines: int = 0
) -> Iterator[tuple[pl.DataFrame, int]]:
    """Stream a JSON Lines file (optionally .gz/.zst) in chunks of `chunk_lines` lines,
    after the first `skip_lines`; memory stays bounded by the chunk.

    Yields (rows, last_line): rows has one row per non-empty line: line_no (i64,
    1-based line in the file), raw (str), valid (bool: parses as a JSON object),
    then one column per top-level key of `fields` (str, or struct for nested
    dicts); last_line is the file line the chunk ends on (blank lines included).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file. Give the path of a JSON Lines export.")
    # A control byte never occurs unescaped in valid JSON, so \x01 never splits a good line.
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\x01",
        quote_char=None,
        schema={"raw": pl.String},
        truncate_ragged_lines=True,
    ).with_row_index("line_no", offset=1)
    if skip_lines:
        lines = lines.filter(pl.col("line_no") > skip_lines)
    emitted = False
    try:
        for chunk in lines.collect_batches(chunk_size=chunk_lines):
            if chunk.height == 0:
                continue
            last = int(chunk["line_no"].max())
            chunk = chunk.filter(pl.col("raw").is_not_null() & (pl.col("raw").str.strip_chars() != ""))
            emitted = True
            yield _transform(chunk.with_columns(pl.col("line_no").cast(pl.Int64)), fields), last
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot be read as text lines ({exc}). Is it a JSON Lines file?") from exc
    if not emitted:
        empty = pl.DataFrame(schema={"line_no": pl.Int64, "raw": pl.String})
        yield _transform(empty, fields), skip_lines


class NeedsLineReader(Exception):
    """The fast reader cannot go on with this file; read it line by line from here."""


def iter_json_records(path: str | Path, fields: dict, *, chunk_rows: int = 250_000) -> Iterator[pl.DataFrame]:
    """Stream a plain JSON Lines file through DuckDB's parallel `read_json` (about
    twice as fast as `iter_json_lines`), in chunks of `chunk_rows` rows.

    DuckDB yields one row per non-blank line, in file order, a line that is not a JSON
    object as a row of nulls. So rows come in the shapes of `iter_json_lines` except:
    line_no is the row's ordinal, equal to the file line when no line is blank and
    never larger; raw is null (the text is not kept); valid is false where no field
    parsed (a broken line, or `{}`). A caller that needs a line's text or exact
    line number goes on with `iter_json_lines` from the ordinal it reached: it
    re-reads at most the blank lines' worth of rows. Raises `NeedsLineReader` if
    DuckDB stops on the file (e.g. invalid UTF-8).
    """
    con = duckdb.connect()
    try:
        _string_views(con)
        relation = con.read_json(
            str(path), format="newline_delimited", columns=_column_types(fields), ignore_errors=True
        )
        done, pending = 0, []
        for batch in relation.to_arrow_reader(chunk_rows):  # DuckDB hands out ~25k-row batches
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= chunk_rows:
                chunk, pending = _records(pending, done), []
                done += chunk.height
                yield chunk
        if pending:
            yield _records(pending, done)
    except duckdb.Error as exc:
        raise NeedsLineReader(f"{path}: {exc}") from exc
    finally:
        con.close()


def _records(batches: list, done: int) -> pl.DataFrame:
    rows = pl.from_arrow(pa.Table.from_batches(batches))  # one conversion for the chunk
    valid = pl.any_horizontal(pl.col(c).is_not_null() for c in rows.columns)
    return rows.select(
        pl.int_range(done + 1, done + 1 + rows.height, dtype=pl.Int64).alias("line_no"),
        pl.lit(None, dtype=pl.String).alias("raw"),
        valid.alias("valid"),
        pl.all(),
    )


def _string_views(con) -> None:
    """Arrow results with string views, which polars takes without copying the text."""
    con.execute("SET arrow_output_version = '1.5'")
    con.execute("SET produce_arrow_string_view = true")


def _column_types(fields: dict) -> dict[str, str]:
    """read_json `columns` from a json_transform structure."""

    def sql_type(spec) -> str:
        if isinstance(spec, dict):
            return "STRUCT(" + ", ".join(f'"{k}" {sql_type(v)}' for k, v in spec.items()) + ")"
        if isinstance(spec, list):
            return sql_type(spec[0]) + "[]"
        return spec

    return {name: sql_type(spec) for name, spec in fields.items()}


def parse_json_strings(raw: list[str], fields: dict) -> pl.DataFrame:
    """Like `read_json_lines` for in-memory JSON texts (e.g. records from Horizon)."""
    lines = pl.DataFrame({"raw": raw}, schema={"raw": pl.String}).with_row_index("line_no", offset=1)
    return _transform(lines.with_columns(pl.col("line_no").cast(pl.Int64)), fields)


def _transform(lines: pl.DataFrame, fields: dict) -> pl.DataFrame:
    """Parse `lines` (line_no, raw) with DuckDB; raw stays in polars (string views both
    ways, so the text is not copied) and the parsed fields are set beside it."""
    con = duckdb.connect()
    try:
        _string_views(con)
        con.register("lines", lines.select("line_no", "raw").to_arrow(compat_level=pl.CompatLevel.newest()))
        parsed = pl.from_arrow(con.sql(_TRANSFORM, params=[json_spec(fields)]).to_arrow_table())
    finally:
        con.close()
    if not parsed.get_column("line_no").equals(lines.get_column("line_no")):
        parsed = parsed.sort("line_no")  # DuckDB keeps scan order; lines come in line order
    return lines.select("line_no", "raw").hstack(parsed.drop("line_no")).unnest("rec")
