"""Graph Lab page: snapshot statistics from the store, a link-prediction run with its table."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from engine.graph.temporal import build_snapshots, load_edges, parse_duration, validation_report
from engine.ingest.files import ingest_files
from engine.synthetic import generate_market
from storage.store import Store
from tests.app.fixture_store import open_page


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("graph_lab")
    market = generate_market(d / "market", seed=42, scale=0.05, days=7)
    with Store(d / "lab.duckdb") as store:
        ingest_files(store, [market.trades_path, market.operations_path])
        persisted, spec = build_snapshots(load_edges(store), window=parse_duration("2d"), step=parse_duration("1d"))
        store.save_derived("snapshots", persisted)
    return d / "lab.duckdb", validation_report(persisted, spec)


def table(at: AppTest, *columns: str):
    for d in at.dataframe:
        if set(columns) <= set(d.value.columns):
            return d.value
    raise AssertionError(f"no table with columns {columns}")


def test_snapshot_statistics_and_a_run(monkeypatch, lab_store):
    db, report = lab_store
    at = open_page(monkeypatch, db, "graph_lab")
    shown = table(at, "snapshot", "n_isolated", "density")
    assert shown["n_edges"].tolist() == report["n_edges"].to_list() and len(shown) == 6
    assert shown["n_isolated"].tolist() == report["n_isolated"].to_list()
    assert at.selectbox(key="gl_snapshot").options == [str(k) for k in range(6)]
    at.selectbox(key="gl_model").set_value("gcn")
    at.number_input(key="gl_epochs").set_value(3)
    at.button(key="gl_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = table(at, "method", "negatives", "auc", "ap", "f1")
    assert len(metrics) == 8 and set(metrics["method"]) == {"gnn_gcn", "edgebank", "common_neighbours", "adamic_adar"}
    assert set(metrics["negatives"]) == {"random", "historical"}
    verdicts = [e.value for e in at.success] + [e.value for e in at.warning]
    assert any("gnn_gcn" in v and "historical negatives" in v for v in verdicts)
    assert any("leakage check passed" in c.value for c in at.caption)


def test_empty_store_says_what_to_run(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path / "empty.duckdb", "graph_lab")
    assert any("stop the app and run the `snapshot --window 30d` command" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric} == {"Embedded wallets": "not computed yet"}
    at.button(key="gl_run").click().run()
    assert any("no trade or funding edge" in e.value for e in at.error)
