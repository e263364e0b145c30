"""`ingest files`: Horizon JSON Lines, Horizon pages, Hubble / stellar-etl exports
(JSON Lines, CSV, Parquet) and our own canonical `export trades` files.

The format is detected from the file's first record. Every file is read in one
vectorised pass (DuckDB / polars readers), validated, and written in batches whose
cursor is the number of good rows already committed, so a killed run resumes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.ingest import hubble
from engine.ingest.horizon_records import (
    decode_operations,
    decode_trades,
    read_operations_file,
    read_trades_file,
)
from engine.ingest.runner import Batch, IngestRequest, IngestSummary, run_ingest
from engine.progress import Progress, no_progress
from storage.errors import BadInput
from storage.store import Store

FORMATS = (
    "horizon_trades", "horizon_operations", "horizon_page", "hubble_trades", "hubble_operations", "canonical_trades"
)  # fmt: skip


@dataclass(frozen=True)
class Loaded:
    """One file, decoded: canonical frames plus the records that could not be used."""

    kind: str  # "trades" | "operations"
    frame: pl.DataFrame
    quarantine: pl.DataFrame
    n_records: int


def detect_format(path: Path) -> str:
    """Which of FORMATS `path` holds, from its suffix and first record."""
    suffixes = "".join(path.suffixes).lower()
    if ".csv" in suffixes or ".parquet" in suffixes:
        columns = hubble.peek_columns(path)
        return _format_from_keys(path, set(columns))
    first = _first_text(path)
    if first.lstrip().startswith("{") and '"_embedded"' in first[:200_000]:
        return "horizon_page"
    try:
        keys = set(json.loads(first))
    except (json.JSONDecodeError, TypeError):
        raise BadInput(f"{path}: first line is not a JSON object; expected JSON Lines, a Horizon page, CSV or Parquet")
    return _format_from_keys(path, keys)


def _format_from_keys(path: Path, keys: set[str]) -> str:
    if {"base_is_seller", "base_amount"} <= keys:
        return "horizon_trades"
    if {"type", "type_i"} <= keys:
        return "horizon_operations"
    if {"selling_account_address", "history_operation_id"} <= keys:
        return "hubble_trades"
    if {"type_string", "details"} <= keys or {"type_string", "details_json"} <= keys:
        return "hubble_operations"
    if {"seller_account", "sold_asset", "sold_amount"} <= keys:
        return "canonical_trades"
    raise BadInput(
        f"{path}: unrecognised records (keys: {sorted(keys)[:12]}). Expected Horizon trades/operations, "
        "Hubble (stellar-etl) trades/operations, or LedgerLens `export trades` output."
    )


def _first_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            head = fh.read(1_000_000)
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc})") from exc
    stripped = head.lstrip()
    if stripped.startswith("{") and '"_embedded"' in stripped[:200_000]:
        return stripped
    for line in head.splitlines():
        if line.strip():
            return line
    raise BadInput(f"{path}: the file is empty")


def load_file(path: Path) -> Loaded:
    """Decode one file into canonical rows + quarantine (no store involved)."""
    fmt = detect_format(path)
    if fmt == "horizon_trades":
        frame, bad = read_trades_file(path)
    elif fmt == "horizon_operations":
        frame, bad = read_operations_file(path)
    elif fmt == "horizon_page":
        return _load_page(path)
    elif fmt == "hubble_trades":
        frame, bad = hubble.read_trades(path)
    elif fmt == "hubble_operations":
        frame, bad = hubble.read_operations(path)
    else:
        frame, bad = hubble.read_canonical_trades(path)
    kind = "operations" if fmt.endswith("operations") else "trades"
    return Loaded(kind, frame, bad, frame.height + bad.height)


def _load_page(path: Path) -> Loaded:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["_embedded"]["records"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a Horizon page with _embedded.records ({exc})") from exc
    raw = [json.dumps(r) for r in records]
    locations = [f"{path}:record {i + 1}" for i in range(len(raw))]
    is_trade = bool(records) and "base_is_seller" in records[0]
    decode = decode_trades if is_trade else decode_operations
    frame, bad = decode(raw, source="files", locations=locations)
    return Loaded("trades" if is_trade else "operations", frame, bad, len(raw))


def plan(path: Path, *, batch_size: int = 50_000) -> tuple[IngestRequest, Callable[[str | None], Iterator[Batch]]]:
    """The ingest request for one file and its batches (position = good rows committed)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    stat = path.stat()
    request = IngestRequest(
        source="files",
        stream="file",
        scope=f"{path}|{stat.st_size}|{stat.st_mtime_ns}",
        params={"path": str(path), "size": stat.st_size},
        unit="rows",
    )

    def batches(resume_from: str | None) -> Iterator[Batch]:
        loaded = load_file(path)
        start = int(resume_from or 0)
        total = loaded.frame.height
        if start == 0 or total == 0:  # quarantine rides with the first batch
            yield _slice(loaded, 0, min(batch_size, total), with_quarantine=True)
            start = min(batch_size, total)
        while start < total:
            yield _slice(loaded, start, min(start + batch_size, total), with_quarantine=False)
            start += batch_size

    return request, batches


def _slice(loaded: Loaded, lo: int, hi: int, *, with_quarantine: bool) -> Batch:
    part = loaded.frame.slice(lo, hi - lo)
    quarantine = loaded.quarantine if with_quarantine else None
    n_bad = loaded.quarantine.height if with_quarantine else 0
    return Batch(
        trades=part if loaded.kind == "trades" else None,
        operations=part if loaded.kind == "operations" else None,
        quarantine=quarantine,
        position=str(hi),
        done=hi >= loaded.frame.height,
        n_units=(hi - lo) + n_bad,
        n_records=(hi - lo) + n_bad,
    )


def ingest_files(
    store: Store, paths: list[Path], *, batch_size: int = 50_000, progress: Progress = no_progress
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
