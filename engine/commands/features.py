"""`features`: compute the wallet feature matrix and the Benford table as of a time
and store them (derived tables `features` and `benford`, replaced whole)."""

from __future__ import annotations

from engine.cli import open_store, parse_utc


def register(sub, common) -> None:
    p = sub.add_parser("features", parents=[common], help="compute wallet features and Benford tests, store them")
    p.add_argument(
        "--as-of",
        default=None,
        help="UTC time, ISO 8601 (e.g. 2024-05-01T00:00:00Z); default: the last stored trade's close time",
    )
    p.add_argument("--dictionary", action="store_true", help="print the feature dictionary (Markdown) and exit")
    p.set_defaults(handler=_features)


def _features(args, settings) -> int:
    from engine.services.analyse import compute_features

    if args.dictionary:
        print(dictionary_markdown())
        return 0
    with open_store(settings) as store:
        run = compute_features(store, as_of=parse_utc(args.as_of, "--as-of"))
    flagged = run.benford.filter(run.benford["flag"].fill_null(False)).height
    print(
        f"features as of {run.as_of:%Y-%m-%d %H:%M:%S} UTC: {run.matrix.height:,} (wallet, pair) rows x "
        f"{run.matrix.width - 3} columns; Benford: {run.benford.height:,} tests, {flagged:,} nonconforming"
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
