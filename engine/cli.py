"""`python -m engine COMMAND ...`: the command line over the engine.

Each command lives in `engine/commands/<name>.py` with `register(subparsers)`,
which adds its parser and sets `handler(args, settings) -> exit code`. Every
command takes `--db PATH` (default: LEDGERLENS_DB, else $LEDGERLENS_HOME/ledgerlens.duckdb).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.settings import Settings, load_settings
from storage.errors import BadInput, StoreWriteError, UserFacingError
from storage.store import Store

# One module per command group, in the order `--help` lists them.
COMMAND_MODULES = (
    "engine.commands.ingest",
    "engine.commands.replay",
    "engine.commands.export",
    "engine.commands.demo",
    "engine.commands.synth",
    "engine.commands.features",
    "engine.commands.rings",
    "engine.commands.train",
    "engine.commands.report",
    "engine.commands.active",
    "engine.commands.graphml",
    "engine.commands.watch",
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=Path, default=None, help="DuckDB store (overrides LEDGERLENS_DB)")
    parser = argparse.ArgumentParser(prog="python -m engine", description="LedgerLens engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if getattr(args, "db", None) is not None:
        settings = settings.model_copy(update={"db": args.db})
    try:
        return int(args.handler(args, settings) or 0)
    except StoreWriteError as exc:
        # DuckDB can abort (SIGABRT) while closing a file it cannot write: its checkpoint throws in a
        # destructor. Every committed batch is already durable in the WAL, replayed on the next open,
        # so leave without closing rather than turn a clear error into a crash.
        print(f"error: {exc}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the store keeps every committed batch; run the same command to resume.", file=sys.stderr)
        return 130


def parse_utc(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time given on the command line, as UTC (naive means UTC); None stays None."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"{flag} {text!r} is not an ISO 8601 time; e.g. 2024-03-01T00:00:00Z") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def open_store(settings: Settings, *, read_only: bool = False):
    """The store named by the settings (the CLI's one way to it)."""
    return Store(settings.db_path, read_only=read_only)
