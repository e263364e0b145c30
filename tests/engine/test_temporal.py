"""Rolling snapshots, the stable node index, the validation report and the PyG conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from engine.cli import main
from engine.graph.pyg import message_edge_index, structural_features, to_data, to_temporal_data
from engine.graph.snapshots import SNAPSHOT_SCHEMA
from engine.graph.temporal import (
    build_snapshots,
    degree_distribution,
    index_of,
    make_spec,
    parse_duration,
    snapshot,
    spec_of,
    validation_report,
)
from storage.errors import BadInput

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def edges(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    """(src, dst, day offset) -> SNAPSHOT_SCHEMA edges (amount 1 unit, trades)."""
    return pl.DataFrame({
        "src": [r[0] for r in rows], "dst": [r[1] for r in rows],
        "timestamp": [T0 + timedelta(days=r[2]) for r in rows], "asset": ["XLM:native"] * len(rows),
        "amount": [10_000_000] * len(rows), "kind": ["trade"] * len(rows),
    }).cast(SNAPSHOT_SCHEMA)  # fmt: skip


# a-b-c triangle on day 0, c self-loop on day 1, d->e on day 2.5, a->b again on day 3.5
SMALL = edges([("a", "b", 0.1), ("b", "c", 0.2), ("c", "a", 0.3), ("c", "c", 1.5), ("d", "e", 2.5), ("a", "b", 3.5)])


def test_parse_duration():
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(BadInput, match="not understood"):
        parse_duration("thirty days")
    with pytest.raises(BadInput):
        parse_duration("0d")


def test_windows_cover_the_span_and_edges_carry_their_window_range():
    persisted, spec = build_snapshots(SMALL, window=timedelta(days=2), step=timedelta(days=1))
    assert (spec.origin, spec.end, spec.n_snapshots) == (T0, T0 + timedelta(days=4), 3)
    assert persisted.select("first_snapshot", "last_snapshot").rows() == [(0, 0), (0, 0), (0, 0), (0, 1), (1, 2), (2, 2)]
    assert index_of(persisted).rows() == [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]
    assert snapshot(persisted, 1).select("src", "dst").rows() == [("c", "c"), ("d", "e")]
    assert spec_of(persisted) == spec


def test_validation_report_counts():
    persisted, spec = build_snapshots(SMALL, window=timedelta(days=2), step=timedelta(days=1))
    r = validation_report(persisted, spec)
    assert r.get_column("n_nodes").to_list() == [5, 5, 5]
    assert r.get_column("n_edges").to_list() == [4, 2, 2]
    assert r.get_column("n_self_loops").to_list() == [1, 1, 0]
    assert r.get_column("n_active").to_list() == [3, 2, 4]
    assert r.get_column("n_isolated").to_list() == [2, 3, 1]
    assert r.get_column("n_pairs").to_list() == [3, 1, 2]
    assert r.get_column("density").to_list() == pytest.approx([3 / 6, 1 / 2, 2 / 12])
    assert r.get_column("max_degree").to_list() == [2, 1, 1]
    assert r.get_column("degree_hist").to_list() == [[0, 3], [2, 0], [4, 0]]
    assert degree_distribution(snapshot(persisted, 0)).rows() == [(2, 3)]


def test_default_window_is_one_snapshot_and_bad_range_is_refused():
    persisted, spec = build_snapshots(SMALL, window=parse_duration("30d"))
    assert spec.n_snapshots == 1 and persisted.height == 6
    with pytest.raises(BadInput, match="must be after"):
        make_spec(first=T0, last=T0, window=timedelta(days=1), start=T0, end=T0)
    with pytest.raises(BadInput, match="no trade or funding edge"):
        build_snapshots(SMALL.head(0), window=timedelta(days=1))


def test_pyg_conversions():
    persisted, _ = build_snapshots(SMALL, window=parse_duration("30d"))
    data = to_data(persisted, num_nodes=5)
    assert data.num_nodes == 5 and tuple(data.edge_index.shape) == (2, 6) and tuple(data.x.shape) == (5, 8)
    assert data.edge_index[:, 3].tolist() == [2, 2] and data.edge_time[0].item() == int((T0 + timedelta(days=0.1)).timestamp())
    temporal = to_temporal_data(persisted)
    assert temporal.src.tolist() == [0, 1, 2, 2, 3, 0] and temporal.dst.tolist() == [1, 2, 0, 2, 4, 1]
    assert tuple(temporal.msg.shape) == (6, 2)
    ei = message_edge_index(persisted)
    assert ei.shape == (2, 8)  # 4 distinct non-self pairs, both directions
    x = structural_features(persisted, num_nodes=5)
    assert x[2, 7] == pytest.approx(2 / 4)  # c: 4 edge ends, 2 of them its self-loop


def test_snapshot_command_persists_snapshots(tmp_path, capsys):
    from engine.ingest.files import ingest_files
    from storage.store import Store
    from tests.factories import horizon_trade, write_jsonl

    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        ingest_files(store, [write_jsonl(tmp_path / "t.jsonl", [horizon_trade(i) for i in range(30)])])
    assert main(["snapshot", "--db", str(db), "--window", "1d"]) == 0
    assert "1 snapshot(s) of 1d" in capsys.readouterr().out
    with Store(db) as store:
        stored = store.load_derived("snapshots")
        assert stored.height == 30 and index_of(stored).height == 12  # accounts 0-6 and 10-14
    assert main(["snapshot", "--db", str(db), "--window", "soon"]) == 1
