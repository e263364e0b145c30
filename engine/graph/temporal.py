"""Rolling, time-windowed snapshots of the transaction graph, a stable node index, validation.

The edge list of `engine.graph.snapshots.snapshot_edges` (trades and funding, one row
per edge) is cut into windows [origin + k*step, origin + k*step + window), k = 0..n-1,
clipped to `end`; the last window is the first one reaching `end`. Each edge belongs
to a contiguous range of windows, so the persisted form keeps every edge once with
`first_snapshot` / `last_snapshot` (k range) instead of copying it per window
(a 30d window with a 1d step would otherwise store each edge 30 times).

Node ids are the rank of the account id among all accounts (and pool ids) seen in
[start, end): the same id in every window, so a node absent from a window is an
isolated node of that snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from engine.graph.snapshots import SNAPSHOT_SCHEMA, snapshot_edges
from engine.schemas import FUNDING_TYPES
from storage.errors import BadInput

_US = 1_000_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}

# The persisted snapshot table (derived table "snapshots"): one row per edge.
PERSISTED_SCHEMA = {
    **SNAPSHOT_SCHEMA,
    "src_id": pl.Int64,
    "dst_id": pl.Int64,
    "first_snapshot": pl.Int32,
    "last_snapshot": pl.Int32,
    "origin": pl.Datetime("us", "UTC"),
    "span_end": pl.Datetime("us", "UTC"),
    "window_s": pl.Int64,
    "step_s": pl.Int64,
}


@dataclass(frozen=True)
class SnapshotSpec:
    """Where the windows are: [origin + k*step, min(origin + k*step + window, end)), k < n_snapshots."""

    origin: datetime
    end: datetime
    window: timedelta
    step: timedelta
    n_snapshots: int


def parse_duration(text: str) -> timedelta:
    """'30d', '1d', '12h', '90m', '45s', '2w' -> timedelta (BadInput otherwise)."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"duration {text!r} is not understood; use a positive number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def make_spec(*, first: datetime, last: datetime, window: timedelta, step: timedelta | None = None,
              start: datetime | None = None, end: datetime | None = None) -> SnapshotSpec:
    """Windows over [start, end); defaults: start = first edge's day at 00:00 UTC, end = the day after the last."""
    step = step or window
    if window <= timedelta(0) or step <= timedelta(0):
        raise BadInput(f"window ({window}) and step ({step}) must be positive")
    origin = _utc(start) if start else _utc(first).replace(hour=0, minute=0, second=0, microsecond=0)
    stop = _utc(end) if end else _utc(last).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if stop <= origin:
        raise BadInput(f"--end ({stop:%Y-%m-%dT%H:%M:%SZ}) must be after --start ({origin:%Y-%m-%dT%H:%M:%SZ})")
    n = 1
    while origin + (n - 1) * step + window < stop:
        n += 1
    return SnapshotSpec(origin, stop, window, step, n)


def snapshot_windows(spec: SnapshotSpec) -> pl.DataFrame:
    """Shapes: -> [snapshot: i32, window_start: datetime UTC, window_end: datetime UTC]."""
    starts = [spec.origin + k * spec.step for k in range(spec.n_snapshots)]
    return pl.DataFrame(
        {"snapshot": list(range(spec.n_snapshots)), "window_start": starts,
         "window_end": [min(s + spec.window, spec.end) for s in starts]},
        schema={"snapshot": pl.Int32, "window_start": pl.Datetime("us", "UTC"), "window_end": pl.Datetime("us", "UTC")},
    )  # fmt: skip


def node_index(edges: pl.DataFrame) -> pl.DataFrame:
    """The stable node index of an edge list: account ids (and pool ids) sorted, numbered from 0.

    Shapes: edges [src, dst, ...] -> [node_id: i64, account_id: str]."""
    ids = pl.concat([edges.get_column("src"), edges.get_column("dst")]).unique().sort()
    return pl.DataFrame({"account_id": ids}).with_row_index("node_id").select(
        pl.col("node_id").cast(pl.Int64), pl.col("account_id").cast(pl.String)
    )


def rolling_snapshots(edges: pl.DataFrame, spec: SnapshotSpec) -> pl.DataFrame:
    """Edges of [spec.origin, spec.end) with node ids and the range of windows holding each.

    Shapes: edges SNAPSHOT_SCHEMA -> PERSISTED_SCHEMA (src, dst, timestamp, asset, amount, kind,
    src_id, dst_id, first_snapshot, last_snapshot, origin, span_end, window_s, step_s), by timestamp.
    Edges that fall in no window (window < step leaves gaps) are dropped."""
    inside = edges.filter((pl.col("timestamp") >= spec.origin) & (pl.col("timestamp") < spec.end))
    index = node_index(inside)
    t = (pl.col("timestamp") - pl.lit(spec.origin)).dt.total_microseconds()
    step, window = int(spec.step.total_seconds() * _US), int(spec.window.total_seconds() * _US)
    hi = pl.min_horizontal(t // step, pl.lit(spec.n_snapshots - 1))
    lo = pl.max_horizontal((t - window) // step + 1, pl.lit(0))
    out = (
        inside.with_columns(first_snapshot=lo.cast(pl.Int32), last_snapshot=hi.cast(pl.Int32))
        .filter(pl.col("first_snapshot") <= pl.col("last_snapshot"))
        .join(index.rename({"account_id": "src", "node_id": "src_id"}), on="src", how="left")
        .join(index.rename({"account_id": "dst", "node_id": "dst_id"}), on="dst", how="left")
        .with_columns(origin=pl.lit(spec.origin), span_end=pl.lit(spec.end),
                      window_s=pl.lit(int(spec.window.total_seconds())), step_s=pl.lit(int(spec.step.total_seconds())))
    )  # fmt: skip
    return out.select([pl.col(c).cast(d) for c, d in PERSISTED_SCHEMA.items()]).sort("timestamp", "kind", "src", "dst")


def spec_of(persisted: pl.DataFrame) -> SnapshotSpec:
    """The SnapshotSpec a persisted snapshot table was cut with."""
    if persisted.height == 0 or not set(PERSISTED_SCHEMA) <= set(persisted.columns):
        raise BadInput("no snapshots stored yet: run `python -m engine snapshot --window 30d`")
    row = persisted.row(0, named=True)
    window, step = timedelta(seconds=row["window_s"]), timedelta(seconds=row["step_s"])
    return make_spec(first=row["origin"], last=row["span_end"], window=window, step=step,
                     start=row["origin"], end=row["span_end"])  # fmt: skip


def snapshot(persisted: pl.DataFrame, k: int) -> pl.DataFrame:
    """The edges of window k (PERSISTED_SCHEMA rows with first_snapshot <= k <= last_snapshot)."""
    return persisted.filter((pl.col("first_snapshot") <= k) & (pl.col("last_snapshot") >= k))


def index_of(persisted: pl.DataFrame) -> pl.DataFrame:
    """The node index stored with the snapshots. Shapes: -> [node_id: i64, account_id: str], by node_id."""
    pairs = pl.concat([
        persisted.select(node_id="src_id", account_id="src"), persisted.select(node_id="dst_id", account_id="dst"),
    ])  # fmt: skip
    return pairs.unique("node_id").sort("node_id")


def memberships(persisted: pl.DataFrame) -> pl.DataFrame:
    """One row per (snapshot, edge): the persisted rows with `snapshot` (i32) added (vectorised explode)."""
    return (
        persisted.with_columns(snapshot=pl.int_ranges("first_snapshot", pl.col("last_snapshot") + 1, dtype=pl.Int32))
        .explode("snapshot")
    )


def load_edges(store, *, start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
    """Every stored trade and funding edge in [start, end) (defaults: all), SNAPSHOT_SCHEMA."""
    trades, funding = store.trades(), store.funding_edges()
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    return snapshot_edges(trades, funding, start=_utc(lo), end=_utc(hi))


def edges_from_frames(trades: pl.DataFrame, operations: pl.DataFrame) -> pl.DataFrame:
    """Every trade and funding edge of canonical frames (no store), as `load_edges` gives them from a store.

    Funding = successful FUNDING_TYPES operations with two distinct ends (the store's funding_edges view)."""
    funding = operations.filter(
        pl.col("type").is_in(FUNDING_TYPES) & pl.col("successful").fill_null(True)
        & pl.col("from_account").is_not_null() & pl.col("to_account").is_not_null()
        & (pl.col("from_account") != pl.col("to_account"))
    )  # fmt: skip
    return snapshot_edges(trades, funding, start=datetime(1970, 1, 1, tzinfo=UTC), end=datetime(9999, 1, 1, tzinfo=UTC))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _undirected_pairs(m: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Distinct undirected neighbour pairs (no self-loops) per `keys`, both orientations: [*keys, node, other]."""
    pairs = m.filter(pl.col("src_id") != pl.col("dst_id")).select(
        *keys, a=pl.min_horizontal("src_id", "dst_id"), b=pl.max_horizontal("src_id", "dst_id")
    ).unique()
    return pl.concat([pairs.select(*keys, node="a", other="b"), pairs.select(*keys, node="b", other="a")])


def node_degrees(m: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Distinct neighbours of each node with at least one (non-self) edge: [*keys, node, degree: u32]."""
    return _undirected_pairs(m, *keys).group_by(*keys, "node").agg(degree=pl.len())


def degree_distribution(edges: pl.DataFrame) -> pl.DataFrame:
    """Degree distribution of one snapshot (undirected, self-loops ignored). Shapes: -> [degree: u32, n_nodes: u32]."""
    return node_degrees(edges).group_by("degree").agg(n_nodes=pl.len()).sort("degree")


def validation_report(persisted: pl.DataFrame, spec: SnapshotSpec) -> pl.DataFrame:
    """One row per snapshot: what a researcher checks before training on it.

    Shapes: -> [snapshot, window_start, window_end, n_nodes (the index), n_active (an edge to another node),
    n_isolated, n_edges, n_pairs (distinct directed src != dst), n_self_loops, density (n_pairs over
    n_active * (n_active - 1)), mean_degree, median_degree, max_degree (distinct neighbours, undirected),
    degree_hist (list: nodes with degree in [1], [2,3], [4,7], ... log2 bins)]."""
    n_nodes = index_of(persisted).height
    m = memberships(persisted)
    counts = m.group_by("snapshot").agg(
        n_edges=pl.len(), n_self_loops=(pl.col("src_id") == pl.col("dst_id")).sum(),
        n_pairs=pl.struct("src_id", "dst_id").filter(pl.col("src_id") != pl.col("dst_id")).n_unique(),
    )  # fmt: skip
    deg = node_degrees(m, "snapshot").with_columns(bin=pl.col("degree").log(2).floor().cast(pl.Int32))
    n_bins = int(deg.get_column("bin").max() or 0) + 1
    stats = deg.group_by("snapshot").agg(
        n_active=pl.len(), mean_degree=pl.col("degree").mean(), median_degree=pl.col("degree").median(),
        max_degree=pl.col("degree").max(), degree_hist=pl.concat_list([(pl.col("bin") == b).sum() for b in range(n_bins)]),
    )  # fmt: skip
    out = snapshot_windows(spec).join(counts, on="snapshot", how="left").join(stats, on="snapshot", how="left")
    out = out.with_columns(pl.col("n_edges", "n_self_loops", "n_pairs", "n_active").fill_null(0).cast(pl.Int64))
    return out.with_columns(
        n_nodes=pl.lit(n_nodes, dtype=pl.Int64), n_isolated=pl.lit(n_nodes, dtype=pl.Int64) - pl.col("n_active"),
        density=pl.when(pl.col("n_active") > 1)
        .then(pl.col("n_pairs") / (pl.col("n_active") * (pl.col("n_active") - 1))).otherwise(0.0),
    ).select(
        "snapshot", "window_start", "window_end", "n_nodes", "n_active", "n_isolated", "n_edges", "n_pairs",
        "n_self_loops", "density", "mean_degree", "median_degree", "max_degree", "degree_hist",
    )  # fmt: skip


def build_snapshots(edges: pl.DataFrame, *, window: timedelta, step: timedelta | None = None,
                    start: datetime | None = None, end: datetime | None = None) -> tuple[pl.DataFrame, SnapshotSpec]:
    """(persisted snapshot table, its spec) for an edge list (SNAPSHOT_SCHEMA); BadInput when there is no edge."""
    if edges.height == 0:
        raise BadInput("no trade or funding edge to build snapshots from; ingest data first (python -m engine ingest ...)")
    spec = make_spec(first=edges.get_column("timestamp").min(), last=edges.get_column("timestamp").max(),
                     window=window, step=step, start=start, end=end)  # fmt: skip
    return rolling_snapshots(edges, spec), spec
