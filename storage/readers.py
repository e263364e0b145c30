"""Vectorised readers of untrusted text files, backed by an in-memory DuckDB.

They never fail on a bad line: each line comes back with its number, its raw text
and whether it is valid JSON, so the caller can quarantine what is wrong and load
the rest. Field values come back as strings (numbers keep their JSON text), so no
amount ever passes through a binary float here.
"""

from __future__ import annotations

import gzip
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from storage.errors import BadInput

# `try` turns a line that is not JSON into NULL (one parse per line); a record must
# also be an object, which a leading "{" tells once the text parses. Only lines that
# fail are looked at again, to say why.
_TRANSFORM = (
    "SELECT line_no, ok AS valid, CASE WHEN ok THEN NULL "
    "  WHEN NOT coalesce(json_valid(raw), false) THEN 'not valid JSON: fix or remove the line' "
    "  WHEN json_type(raw) <> 'OBJECT' THEN 'a JSON ' || CASE json_type(raw) WHEN 'VARCHAR' THEN 'string' "
    "    WHEN 'ARRAY' THEN 'array' WHEN 'NULL' THEN 'null' WHEN 'BOOLEAN' THEN 'boolean' ELSE 'number' END "
    "    || ', not an object: fix or remove the line' "
    "  ELSE 'a field has the wrong JSON type (an object or list where text or a number is expected, or the reverse)' "
    "END AS parse_defect, rec FROM ("
    "  SELECT line_no, raw, rec, rec IS NOT NULL AND ltrim(raw) LIKE '{%' AS ok FROM ("
    "    SELECT line_no, raw, try(json_transform(raw, ?)) AS rec FROM lines))"
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
    lines = _scan_lines(path)
    if skip_lines:
        lines = lines.filter(pl.col("line_no") > skip_lines)
    emitted = False
    with _LineBytes(path) as exact:
        try:
            for chunk in lines.collect_batches(chunk_size=chunk_lines):
                if chunk.height == 0:
                    continue
                last = int(chunk["line_no"].max())
                chunk = chunk.filter(pl.col("raw").is_not_null() & (pl.col("raw").str.strip_chars() != ""))
                emitted = True
                yield _transform(exact.fix(chunk.with_columns(pl.col("line_no").cast(pl.Int64))), fields), last
        except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
            raise BadInput(_unreadable(path, exc)) from exc
    if not emitted:
        empty = pl.DataFrame(schema={"line_no": pl.Int64, "raw": pl.String, "defect": pl.String})
        yield _transform(empty, fields), skip_lines


def _scan_lines(path: Path) -> pl.LazyFrame:
    """The file's lines (decompressed if .gz / .zst) as text: line_no, raw, rest.

    Bytes that are not UTF-8 become U+FFFD rather than failing the whole file, and a
    \x01 (the separator: it never occurs unescaped in valid JSON) puts the text
    after it in `rest`; `_LineBytes.fix` reads such lines' exact bytes.
    """
    return pl.scan_csv(
        path,
        has_header=False,
        separator="\x01",
        quote_char=None,
        schema={"raw": pl.String, "rest": pl.String},
        missing_columns="insert",
        truncate_ragged_lines=True,
        encoding="utf8-lossy",
    ).with_row_index("line_no", offset=1)


def _unreadable(path: Path, exc: BaseException) -> str:
    if path.suffix.lower() in (".gz", ".zst", ".zstd"):
        return (
            f"{path}: the compressed file is truncated or corrupt ({exc}). Download or compress it again; "
            "every line before the damage can be kept by ingesting the decompressed part as a plain file."
        )
    return f"{path}: cannot be read as text lines ({exc}). Is it a JSON Lines file?"


class _LineBytes:
    """Exact bytes of the few lines the lossy text reader could not give as they are
    (invalid UTF-8, a \x01 byte), read from one forward pass over the file."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None
        self.at = 0  # lines consumed so far

    def __enter__(self) -> _LineBytes:
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()

    def fix(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """chunk (line_no, raw, rest) -> (line_no, raw, defect): exact text where it was
        lost, and for a line that is not UTF-8 its bytes escaped and the reason."""
        suspect = pl.col("raw").str.contains("\ufffd", literal=True) | pl.col("rest").is_not_null()
        odd = chunk.filter(suspect)
        out = chunk.select("line_no", "raw", defect=pl.lit(None, dtype=pl.String))
        if odd.height == 0:
            return out
        raws, defects = zip(*(_decode(b) for b in self._lines(odd.get_column("line_no").to_list())), strict=True)
        fixed = pl.DataFrame(
            {"line_no": odd.get_column("line_no"), "raw": list(raws), "defect": list(defects)},
            schema=out.schema,
        )
        return out.update(fixed, on="line_no")

    def _lines(self, numbers: list[int]) -> list[bytes]:
        if self.fh is None:
            self.fh = open_binary(self.path)
        found = []
        for n in numbers:  # ascending: the chunks come in file order
            found.append(next(itertools.islice(self.fh, n - 1 - self.at, None), b""))
            self.at = n
        return found


def _decode(line: bytes) -> tuple[str, str | None]:
    """(text, defect) of one line's bytes: the text as it is, or escaped if not UTF-8."""
    line = line.rstrip(b"\r\n")
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return line.decode("utf-8", "backslashreplace"), (
            f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}; raw shows the bytes "
            "escaped): fix the file's encoding or remove the line"
        )


def open_binary(path: Path):
    """A binary reader of the file's content, decompressing .gz and .zst / .zstd."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix in (".zst", ".zstd"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True, read_across_frames=True)
        return io.BufferedReader(raw)
    return open(path, "rb")


class NeedsLineReader(Exception):
    """The fast reader cannot go on with this file; read it line by line from here."""


def iter_json_records(path: str | Path, fields: dict, *, chunk_rows: int = 250_000) -> Iterator[pl.DataFrame]:
    """Stream a plain JSON Lines file through DuckDB's `read_json` (about twice as fast as
    `iter_json_lines`), in chunks of `chunk_rows` rows.

    DuckDB yields one row per non-blank line, in file order, a line that is not a JSON
    object as a row of nulls. So rows come in the shapes of `iter_json_lines` except:
    line_no is the row's ordinal, equal to the file line when no line is blank and
    never larger; raw is null (the text is not kept); valid is false where no field
    parsed (a broken line, or `{}`). A caller that needs a line's text or exact
    line number goes on with `iter_json_lines` from the ordinal it reached: it
    re-reads at most the blank lines' worth of rows. Raises `NeedsLineReader` if
    DuckDB stops on the file (e.g. invalid UTF-8).
    """
    # One thread: the reader runs beside the store's writer (engine.ingest.runner.prefetch), which
    # it outpaces; with DuckDB's default two threads each the four outran the machine's two
    # cores (at 10M trades the ingest took 66.9-70.8 s against 73.7-84.5 s; the same trades,
    # operations and accounts, and the same features and rings from them)
    con = duckdb.connect(config={"threads": 1})
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
        pl.lit(None, dtype=pl.String).alias("defect"),
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
    """Parse `lines` (line_no, raw, defect) with DuckDB; raw stays in polars (string
    views both ways, so the text is not copied) and the parsed fields are set beside it.
    A line with a reader's defect (not UTF-8) is not valid, whatever it parses to."""
    con = duckdb.connect()
    try:
        _string_views(con)
        con.register("lines", lines.select("line_no", "raw").to_arrow(compat_level=pl.CompatLevel.newest()))
        parsed = pl.from_arrow(con.sql(_TRANSFORM, params=[json_spec(fields)]).to_arrow_table())
    finally:
        con.close()
    if not parsed.get_column("line_no").equals(lines.get_column("line_no")):
        parsed = parsed.sort("line_no")  # DuckDB keeps scan order; lines come in line order
    defect = (
        lines.get_column("defect")
        if "defect" in lines.columns
        else pl.repeat(None, lines.height, dtype=pl.String, eager=True)
    )
    out = lines.select("line_no", "raw").hstack(parsed.drop("line_no")).unnest("rec")
    return out.with_columns(
        defect=pl.coalesce(pl.lit(defect), pl.col("parse_defect")),
        valid=pl.col("valid") & pl.lit(defect).is_null(),
    ).drop("parse_defect")
