"""`ingest files`: Horizon JSON Lines, Horizon pages, Hubble / stellar-etl exports
(JSON Lines, CSV, Parquet) and our own canonical `export trades` files.

The format is detected from the file's first record. Every file is read in one
vectorised pass (DuckDB / polars readers), validated, and written in batches whose
cursor is the number of good rows already committed, so a killed run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from engine.ingest import hubble
from engine.ingest.horizon_records import (
    OPERATION_FIELDS,
    TRADE_FIELDS,
    decode_operations,
    decode_trades,
    operations_from_parsed,
    trades_from_parsed,
    with_location,
)
from engine.ingest.runner import Batch, IngestRequest, IngestSummary, prefetch, run_ingest
from engine.ingest.validate import CheckedAccounts
from engine.progress import Progress, no_progress
from storage.errors import BadInput
from storage.readers import NeedsLineReader, iter_json_lines, iter_json_records, open_binary
from storage.store import Store

FORMATS = (
    "horizon_trades", "horizon_operations", "horizon_page", "hubble_trades", "hubble_operations", "canonical_trades"
)  # fmt: skip


@dataclass(frozen=True)
class Loaded:
    """One chunk of a file, decoded: canonical rows plus the records that could not be used."""

    kind: str  # "trades" | "operations"
    frame: pl.DataFrame
    quarantine: pl.DataFrame
    n_records: int
    last_line: int = 0  # the file line this chunk ends on (0 for whole-document formats)


# JSON Lines formats stream in chunks: (fields to parse, decoder of parsed rows, kind).
_JSONL: dict[str, tuple[dict, Callable, str]] = {
    "horizon_trades": (TRADE_FIELDS, partial(trades_from_parsed, source="files"), "trades"),
    "horizon_operations": (OPERATION_FIELDS, partial(operations_from_parsed, source="files"), "operations"),
    "hubble_trades": (hubble.TRADE_FIELDS, hubble.trades_from_parsed, "trades"),
    "hubble_operations": (hubble.OPERATION_FIELDS_HUBBLE, hubble.operations_from_parsed_hubble, "operations"),
    "canonical_trades": (hubble.CANONICAL_FIELDS, hubble.canonical_from_parsed, "trades"),
}
CHUNK_LINES = 500_000


def detect_format(path: Path) -> str:
    """Which of FORMATS `path` holds, from its suffix and first recognisable record.

    Records before it that are broken, empty (`{}`) or lack a field are not looked
    at here: the decoder quarantines them, with their line, and keeps the rest.
    """
    suffixes = "".join(path.suffixes).lower()
    if ".csv" in suffixes or ".parquet" in suffixes:
        columns = hubble.peek_columns(path)
        return _format_from_keys(path, set(columns))
    head = _head_text(path)
    if head.lstrip().startswith("{") and '"_embedded"' in head[:200_000]:
        return "horizon_page"
    seen: list[set[str]] = []
    for line in head.splitlines()[:1000]:
        record = _json_object(line)
        if record is None:
            continue
        fmt = _known_format(set(record))
        if fmt is not None:
            return fmt
        seen.append(set(record))
    if seen:
        _format_from_keys(path, seen[0])  # raises, naming the keys of the first object
    raise BadInput(f"{path}: no JSON object in its first lines; expected JSON Lines, a Horizon page, CSV or Parquet")


def _json_object(line: str) -> dict | None:
    """The line as a JSON object, or None (not JSON, not an object, nested too deep)."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


_SIGNATURES = (
    ({"base_is_seller", "base_amount"}, "horizon_trades"),
    ({"base_amount", "counter_amount", "ledger_close_time"}, "horizon_trades"),
    ({"type", "type_i"}, "horizon_operations"),
    ({"selling_account_address", "history_operation_id"}, "hubble_trades"),
    ({"type_string", "details"}, "hubble_operations"),
    ({"type_string", "details_json"}, "hubble_operations"),
    ({"seller_account", "sold_asset", "sold_amount"}, "canonical_trades"),
)


def _known_format(keys: set[str]) -> str | None:
    return next((fmt for signature, fmt in _SIGNATURES if signature <= keys), None)


def _format_from_keys(path: Path, keys: set[str]) -> str:
    fmt = _known_format(keys)
    if fmt is None:
        raise BadInput(
            f"{path}: unrecognised records (keys: {sorted(keys)[:12]}). Expected Horizon trades/operations, "
            "Hubble (stellar-etl) trades/operations, or LedgerLens `export trades` output."
        )
    return fmt


def _head_text(path: Path) -> str:
    """The first megabyte of the file's text (decompressed; bad bytes replaced)."""
    try:
        with open_binary(path) as fh:
            head = _read_upto(fh, 1_000_000).decode("utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc}). Download or export it again.") from exc
    if not head.strip() and path.name.lower().endswith(_COMPRESSED) and path.stat().st_size > 32:
        raise BadInput(f"{path}: the compressed file gave no text: it is truncated or corrupt. Download it again.")
    if not head.strip():
        raise BadInput(f"{path}: the file is empty")
    return head


def _read_upto(fh, size: int) -> bytes:
    """Up to `size` bytes, or what a damaged compressed stream gave before it broke
    (detection needs only the head; the reader later fails naming the damage)."""
    parts, n = [], 0
    try:
        while n < size and (part := fh.read(min(1 << 16, size - n))):
            parts.append(part)
            n += len(part)
    except Exception as exc:  # EOFError, OSError, zstandard.ZstdError: all a damaged stream
        if not parts:
            raise OSError(f"the compressed stream is truncated or corrupt: {exc}") from exc
    return b"".join(parts)


def load_file(path: Path) -> Loaded:
    """Decode a whole file into canonical rows + quarantine (no store involved)."""
    chunks = list(iter_file(path))
    return Loaded(
        chunks[0].kind, pl.concat([c.frame for c in chunks]), pl.concat([c.quarantine for c in chunks]),
        sum(c.n_records for c in chunks), chunks[-1].last_line,
    )  # fmt: skip


def iter_file(path: Path, *, chunk_lines: int = CHUNK_LINES, skip_lines: int = 0) -> Iterator[Loaded]:
    """Decode a file chunk by chunk (JSON Lines) or whole (pages, CSV, Parquet)."""
    fmt = detect_format(path)
    if fmt == "horizon_page":
        yield _load_page(path)
        return
    fields, decode, kind = _JSONL[fmt]
    if fmt == "hubble_operations" and ".parquet" in path.name.lower():  # `details` is a struct there
        rows = hubble.read_parquet(path)
        frame, bad = hubble.operations_from_table(rows, source=str(path))
        yield Loaded(kind, frame, bad, rows.height, rows.height)
        return
    if ".csv" in path.name.lower() or ".parquet" in path.name.lower():
        rows = hubble.read_rows(path, fields)
        frame, bad = decode(rows)
        yield Loaded(kind, frame, bad, rows.height, rows.height)
        return
    checked = CheckedAccounts()  # an account id seen in one chunk is not checked again in the next
    position = skip_lines
    if position == 0 and not path.name.lower().endswith(_COMPRESSED):
        complete, position = yield from _fast_chunks(path, fields, decode, kind, chunk_lines, checked)
        if complete:
            return
    for rows, last_line in iter_json_lines(path, fields, chunk_lines=chunk_lines, skip_lines=position):
        if kind == "operations" and fmt == "hubble_operations" and "details" not in rows.columns:
            raise BadInput(f"{path}: Hubble operations need a 'details' object on every line")
        frame, bad = decode(with_location(rows, path), checked=checked)
        yield Loaded(kind, frame, bad, rows.height, last_line)


_COMPRESSED = (".gz", ".zst", ".zstd", ".bz2", ".xz")


def _fast_chunks(path, fields, decode, kind, chunk_lines, checked) -> Generator[Loaded, None, tuple[bool, int]]:
    """Chunks read by DuckDB's parallel `read_json`, for as long as each is clean;
    returns (whether the file is done, the ordinal reached).

    A chunk with a record to quarantine, or a repeated id, needs the lines' text
    and exact numbers: it is not yielded, and `iter_file` reads on line by line from
    the ordinal reached (never past the true line, so nothing is skipped; at most
    the blank lines' worth of rows is read twice, and the store keeps one copy).
    """
    position = 0
    try:
        for rows in prefetch(iter_json_records(path, fields, chunk_rows=chunk_lines)):  # read the next while decoding
            # Ordinals are not line numbers; a chunk that would quarantine is not kept
            # anyway, so no per-row location is built here.
            frame, bad = decode(rows.with_columns(location=pl.lit(str(path))), checked=checked)
            if bad.height or frame.height != rows.height:
                return False, position
            position = int(rows.get_column("line_no").max())
            yield Loaded(kind, frame, bad, rows.height, position)
    except NeedsLineReader:
        return False, position
    return position > 0, position


def _load_page(path: Path) -> Loaded:
    """A Horizon page file: its records decoded one by one; kind from the first record
    that is recognisably a trade or an operation (others are quarantined, not guessed)."""
    records = _page_records(path)
    raw = [json.dumps(r) for r in records]
    locations = [f"{path}:record {i + 1}" for i in range(len(raw))]
    kinds = (_known_format(set(r)) for r in records if isinstance(r, dict))
    kind = next((k for k in kinds if k in ("horizon_trades", "horizon_operations")), "horizon_operations")
    decode = decode_trades if kind == "horizon_trades" else decode_operations
    frame, bad = decode(raw, source="files", locations=locations)
    return Loaded("trades" if kind == "horizon_trades" else "operations", frame, bad, len(raw))


def _page_records(path: Path) -> list:
    """`_embedded.records` of a Horizon page file; BadInput naming what is wrong with it."""
    try:
        with open_binary(path) as fh:
            page = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a Horizon page: not valid UTF-8 JSON ({exc}). Fetch the page again.") from exc
    except RecursionError as exc:
        raise BadInput(f"{path}: not a Horizon page: JSON nested too deeply to be one. Fetch the page again.") from exc
    except (OSError, EOFError) as exc:
        raise BadInput(f"{path}: cannot be read ({exc})") from exc
    embedded = page.get("_embedded") if isinstance(page, dict) else None
    records = embedded.get("records") if isinstance(embedded, dict) else None
    if not isinstance(records, list):
        found = "missing" if records is None else f"a JSON {type(records).__name__}"
        raise BadInput(
            f"{path}: not a Horizon page: _embedded.records is {found}, expected a list of records. "
            "Save the page exactly as Horizon served it."
        )
    return records


def plan(path: Path, *, batch_size: int = CHUNK_LINES) -> tuple[IngestRequest, Callable[[str | None], Iterator[Batch]]]:
    """The ingest request for one file and its batches: one per chunk of `batch_size`
    lines, each with the file line it ends on as the resume position."""
    path = Path(path).resolve()
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    stat = path.stat()
    request = IngestRequest(
        source="files",
        stream="file",
        scope=f"{path}|{stat.st_size}|{stat.st_mtime_ns}",
        params={"path": str(path), "size": stat.st_size},
        unit="records",
    )

    def batches(resume_from: str | None) -> Iterator[Batch]:
        position = resume_from or "0"
        for chunk in iter_file(path, chunk_lines=batch_size, skip_lines=int(position)):
            position = str(chunk.last_line)
            yield Batch(
                trades=chunk.frame if chunk.kind == "trades" else None,
                operations=chunk.frame if chunk.kind == "operations" else None,
                quarantine=chunk.quarantine,
                position=position,
                n_units=chunk.n_records,
                n_records=chunk.n_records,
            )
        yield Batch(position=position, done=True)  # chunks go out as soon as read, so the end is its own batch

    return request, batches


def ingest_files(
    store: Store, paths: list[Path], *, batch_size: int = CHUNK_LINES, progress: Progress = no_progress
) -> list[IngestSummary]:
    """Ingest each file (resumably); returns one summary per file."""
    summaries = []
    for path in _expand(paths):
        request, batches = plan(path, batch_size=batch_size)
        summaries.append(run_ingest(store, request, batches, progress=progress))
    return summaries


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the data files directly inside it, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f for f in p.iterdir()
                if f.is_file() and any(s in f.name for s in (".json", ".csv", ".parquet", ".golden"))
            )  # fmt: skip
        elif p.exists():
            out.append(p)
        else:
            raise BadInput(f"{p}: no such file or folder")
    return out
