"""`features`: compute the wallet feature matrix and the Benford table as of a time
and store them (derived tables `features` and `benford`, replaced whole)."""

from __future__ import annotations

from pathlib import Path

from engine.cli import open_store, parse_utc
from engine.errors import BadInput
from engine.progress import CliProgress


def register(sub, common) -> None:
    p = sub.add_parser("features", parents=[common], help="compute wallet features and Benford tests, store them")
    p.add_argument(
        "--as-of",
        default=None,
        help="UTC time, ISO 8601 (e.g. 2024-05-01T00:00:00Z); default: the last stored trade's close time",
    )
    p.add_argument("--dictionary", action="store_true", help="print the feature dictionary (Markdown) and exit")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default) or spark: the same features on Spark (LEDGERLENS_SPARK_MASTER: local[N], "
                        "a cluster, or sc:// Spark Connect)")  # fmt: skip
    p.add_argument("--trades", type=Path, default=None,
                   help="with --engine spark: canonical trades Parquet (`export trades --format parquet`); "
                        "default: the store's trades")  # fmt: skip
    p.add_argument("--operations", type=Path, default=None,
                   help="with --engine spark: operations Parquet, ours or Hubble history_operations (offer cancellations); default: the store's. "
                        "Accounts, funding and rings come from the store")  # fmt: skip
    p.set_defaults(handler=_features)


def _features(args, settings) -> int:
    from engine.services.features import compute_features, compute_features_spark

    if args.dictionary:
        print(dictionary_markdown())
        return 0
    if args.engine == "duckdb" and (args.trades or args.operations):
        raise BadInput("--trades / --operations are read with --engine spark; the duckdb engine reads the store")
    as_of = parse_utc(args.as_of, "--as-of")
    with open_store(settings) as store:
        if args.engine == "spark":
            run = compute_features_spark(store, master=settings.spark_master, trades_path=args.trades,
                                         operations_path=args.operations, as_of=as_of)  # fmt: skip
        else:
            run = compute_features(store, as_of=as_of, progress=CliProgress("features"))
    print(
        f"features as of {run.as_of:%Y-%m-%d %H:%M:%S} UTC: {run.matrix.height:,} (wallet, pair) rows x "
        f"{run.matrix.width - 3} columns; Benford: {run.benford_tests:,} tests, {run.benford_flagged:,} nonconforming"
    )
    return 0


def dictionary_markdown() -> str:
    """The feature dictionary as a Markdown table (name, meaning, unit, direction, missing indicator)."""
    from engine.features import FEATURE_DICTIONARY

    rows = ["| feature | meaning | unit | direction | missing indicator |", "|---|---|---|---|---|"]
    for name, info in FEATURE_DICTIONARY.items():
        cells = (name, info.description, info.unit, info.direction, info.missing or "never null")
        rows.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
