"""Vectorised readers of untrusted text files, backed by an in-memory DuckDB.

They never fail on a bad line: each line comes back with its number, its raw text
and whether it is valid JSON, so the caller can quarantine what is wrong and load
the rest. Field values come back as strings (numbers keep their JSON text), so no
amount ever passes through a binary float here.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from storage.errors import BadInput

_READ_LINES = (
    "SELECT row_number() OVER () AS line_no, line AS raw FROM read_csv(?, columns = {'line': 'VARCHAR'}, "
    "header = false, delim = '\x01', quote = '', escape = '', auto_detect = false, strict_mode = false, "
    "compression = 'auto')"
)

# A record must be a JSON object; CASE keeps json_type away from invalid text.
_VALID = "CASE WHEN json_valid(raw) THEN json_type(raw) = 'OBJECT' ELSE false END"


def json_spec(fields: dict) -> str:
    """DuckDB json_transform structure from a nested dict of field names (leaves: 'VARCHAR')."""
    import json

    return json.dumps(fields)


def read_json_lines(path: str | Path, fields: dict) -> pl.DataFrame:
    """Read a JSON Lines file (optionally .gz/.zst) into one row per non-empty line.

    Shapes: line_no (i64), raw (str), valid (bool: parses as a JSON object),
    then one column per top-level key of `fields` (str, or struct for nested dicts).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file. Give the path of a JSON Lines export.")
    con = duckdb.connect()
    try:
        sql = (
            "SELECT line_no, raw, valid, json_transform(CASE WHEN valid THEN raw END, ?) AS rec FROM ("
            f"  SELECT line_no, raw, {_VALID} AS valid FROM ({_READ_LINES}) WHERE raw IS NOT NULL AND trim(raw) <> ''"
            ")"
        )
        table = con.sql(sql, params=[json_spec(fields), str(path)]).to_arrow_table()
    except duckdb.Error as exc:
        raise BadInput(f"{path}: cannot be read as text lines ({exc}). Is it a JSON Lines file?") from exc
    finally:
        con.close()
    frame = pl.from_arrow(table)
    return frame.with_columns(pl.col("rec").struct.unnest()).drop("rec")


def parse_json_strings(raw: list[str], fields: dict) -> pl.DataFrame:
    """Like `read_json_lines` for in-memory JSON texts (e.g. records from Horizon)."""
    con = duckdb.connect()
    try:
        con.register("raws", pl.DataFrame({"raw": raw}, schema={"raw": pl.String}).to_arrow())
        table = con.sql(
            "SELECT line_no, raw, valid, json_transform(CASE WHEN valid THEN raw END, ?) AS rec FROM ("
            f"  SELECT row_number() OVER () AS line_no, raw, {_VALID} AS valid FROM raws)",
            params=[json_spec(fields)],
        ).to_arrow_table()
    finally:
        con.close()
    frame = pl.from_arrow(table)
    return frame.with_columns(pl.col("rec").struct.unnest()).drop("rec")
