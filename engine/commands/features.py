"""`features`: compute the wallet feature matrix and the Benford table as of a time
and store them (derived tables `features` and `benford`, replaced whole)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.cli import open_store
from storage.errors import BadInput


def register(sub, common) -> None:
    p = sub.add_parser("features", parents=[common], help="compute wallet features and Benford tests, store them")
    p.add_argument(
        "--as-of",
        default=None,
        help="UTC time, ISO 8601 (e.g. 2024-05-01T00:00:00Z); default: the last stored trade's close time",
    )
    p.set_defaults(handler=_features)


def _as_of(text: str | None, trades) -> datetime:
    if text is None:
        if trades.height == 0:
            raise BadInput("the store holds no trades; ingest some first (python -m engine ingest ...)")
        return trades["closed_at"].max()
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"--as-of {text!r} is not an ISO 8601 time; e.g. 2024-05-01T00:00:00Z") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _features(args, settings) -> int:
    from engine.features import build_benford_table, build_feature_matrix

    with open_store(settings) as store:
        trades = store.trades()
        as_of = _as_of(args.as_of, trades)
        operations, accounts = store.operations(), store.accounts()
        ring_members = store.load_derived("ring_members")
        if ring_members is not None and not {"account_id", "ring_id"} <= set(ring_members.columns):
            ring_members = None
        matrix = build_feature_matrix(trades, operations, accounts, as_of=as_of, ring_members=ring_members)
        table = build_benford_table(trades, as_of=as_of)
        store.save_derived("features", matrix)
        store.save_derived("benford", table)
    flagged = table.filter(table["flag"].fill_null(False)).height
    print(
        f"features as of {as_of:%Y-%m-%d %H:%M:%S} UTC: {matrix.height:,} (wallet, pair) rows x "
        f"{matrix.width - 3} columns; Benford: {table.height:,} tests, {flagged:,} nonconforming"
    )
    return 0
