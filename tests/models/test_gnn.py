"""Encoders, the temporal link-prediction task (split, leakage, negatives, baselines), embeddings,
reproducible benchmark runs and the quickstart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from engine.graph.temporal import build_snapshots, index_of, parse_duration
from engine.services.graph_lab import complete_config, load_config, quickstart, toy_ledgers
from models.embeddings import (
    EMBEDDING_COLUMNS,
    MeanSAGE,
    deep_svdd_scores,
    embedding_frame,
    embedding_value,
    mean_adjacency,
    sage_embeddings,
)
from models.gnn import build_encoder, build_link_model
from models.link_prediction import (
    LeakageError,
    LinkPredConfig,
    Phase,
    baseline_scores,
    check_leakage,
    run_link_prediction,
    temporal_split,
)
from storage.errors import BadInput

FAST = LinkPredConfig(hidden_channels=16, out_channels=8, epochs=4, patience=4, seed=7)


@pytest.fixture(scope="module")
def toy():
    persisted, _ = build_snapshots(toy_ledgers(num_ledgers=60, num_accounts=40, seed=3), window=parse_duration("30d"))
    return persisted, index_of(persisted).height


@pytest.mark.parametrize("name", ["gcn", "sage", "gat"])
def test_encoders_follow_basic_gnn_shapes(name):
    torch.manual_seed(0)
    enc = build_encoder(name, in_channels=8, hidden_channels=16, num_layers=2, out_channels=4)
    z = enc(torch.randn(5, 8), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    assert tuple(z.shape) == (5, 4) and enc.num_layers == 2 and enc.in_channels == 8
    with pytest.raises(BadInput, match="unknown encoder"):
        build_encoder("mlp", in_channels=8)
    assert tuple(build_link_model(name, in_channels=8, out_channels=4, decoder="dot")(
        torch.randn(5, 8), torch.tensor([[0, 1], [1, 2]]), torch.tensor([[0, 4], [1, 3]])).shape) == (2,)


def test_split_is_temporal_and_leak_free(toy):
    persisted, n = toy
    phases = temporal_split(persisted, num_nodes=n, config=FAST)
    assert [p.name for p in phases] == ["train", "val", "test"]
    assert phases[-1].messages.height == 480  # 80% of 600 edges are context
    report = check_leakage(phases)
    assert report.get_column("n_leaked").to_list() == [0, 0, 0]
    for ph in phases:
        assert ph.messages.get_column("timestamp").max() < ph.target_start
        pos = set(map(tuple, ph.positives.T))
        assert not pos & set(map(tuple, ph.random_negatives.T))
        assert not pos & set(map(tuple, ph.historical_negatives.T))
        hist = set(ph.messages.select("src_id", "dst_id").rows())
        assert set(map(tuple, ph.historical_negatives.T)) <= hist
    test = phases[-1]
    leaky = Phase("test", pl.concat([test.messages, test.target_edges.head(1)]), test.target_start,
                  test.target_edges, test.positives, test.random_negatives, test.historical_negatives)
    with pytest.raises(LeakageError):
        check_leakage([leaky])


def test_baselines_on_a_hand_graph():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    # undirected message graph: 0-1, 0-2, 1-3, 2-3, 3-4 ; deg(1)=2, deg(2)=2, deg(3)=3
    pairs = [(0, 1), (0, 2), (1, 3), (3, 2), (4, 3)]
    msgs = pl.DataFrame({"src_id": [p[0] for p in pairs], "dst_id": [p[1] for p in pairs],
                         "timestamp": [t0] * 5})  # fmt: skip
    s = baseline_scores(msgs, np.array([[0, 0, 1, 3], [3, 1, 2, 2]]), num_nodes=5)
    assert s["edgebank"].tolist() == [0, 1, 0, 1]  # (3,2) was seen as 3->2
    assert s["common_neighbours"].tolist() == [2, 0, 2, 0]
    assert s["adamic_adar"] == pytest.approx([2 / np.log(2), 0, 1 / np.log(2) + 1 / np.log(3), 0])


def test_link_prediction_table_and_reproducibility(toy):
    persisted, n = toy
    seen = []

    def on_epoch(**kw):
        seen.append(kw["epoch"])

    a = run_link_prediction(persisted, num_nodes=n, config=FAST, on_epoch=on_epoch)
    b = run_link_prediction(persisted, num_nodes=n, config=FAST)
    assert a.table.height == 8 and set(a.table["method"]) == {"gnn_sage", "edgebank", "common_neighbours",
                                                             "adamic_adar"}  # fmt: skip
    assert a.table.equals(b.table) and a.history.equals(b.history)
    assert seen == list(range(1, a.history.height + 1)) and 1 <= a.best_epoch <= 4
    assert a.split["test"]["n_positives"] == a.table["n_pos"][0]
    eb = a.table.filter((pl.col("method") == "edgebank") & (pl.col("negatives") == "historical")).row(0, named=True)
    # every historical negative was seen before: EdgeBank scores them all 1, so its precision is repeats / (repeats + n_neg)
    share = a.split["test"]["share_repeated_positives"]
    assert eb["recall"] == pytest.approx(share)
    assert eb["precision"] == pytest.approx(share * eb["n_pos"] / (share * eb["n_pos"] + eb["n_neg"]))
    assert "gnn_sage" in a.verdict and ("beats" in a.verdict)


def test_embeddings_and_svdd(toy):
    persisted, n = toy
    emb = embedding_frame(persisted, epochs=3, seed=1, svdd_epochs=5)
    assert emb.height == n and emb.columns == ["wallet", *EMBEDDING_COLUMNS, "svdd_score"]
    assert emb.equals(embedding_frame(persisted, epochs=3, seed=1, svdd_epochs=5))
    assert (emb["svdd_score"] >= 0).all()
    z = np.zeros((20, 4), dtype=np.float32)
    z[0] = 10.0
    assert int(np.argmax(deep_svdd_scores(z, epochs=20, seed=0))) == 0  # the outlier is the farthest


def test_mean_adjacency_and_sage_match_pyg():
    from engine.graph.pyg import message_edge_index

    # 0-1 twice (both ways), 0-2, 1-2, a self-loop on 3, 3->0: distinct pairs {0,1} {0,2} {1,2} {0,3}
    src, dst = np.array([0, 1, 0, 2, 3, 3]), np.array([1, 0, 2, 1, 3, 0])
    adj, adj_t = mean_adjacency(src, dst, num_nodes=5)  # node 4 is isolated: an all-zero row
    expected = torch.tensor([[0, 1 / 3, 1 / 3, 1 / 3, 0], [1 / 2, 0, 1 / 2, 0, 0], [1 / 2, 1 / 2, 0, 0, 0],
                             [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])  # fmt: skip
    assert torch.allclose(adj.to_dense(), expected) and torch.allclose(adj_t.to_dense(), expected.T)
    with pytest.raises(BadInput, match="no edge"):
        mean_adjacency(np.array([2]), np.array([2]), num_nodes=3)
    torch.manual_seed(0)
    pyg = build_encoder("sage", in_channels=3, hidden_channels=8, num_layers=2, out_channels=4)
    torch.manual_seed(0)
    ours = MeanSAGE(3, 8, 2, 4)  # same seed, same initial weights as PyG's GraphSAGE
    x = torch.randn(5, 3, requires_grad=True)
    ei = torch.as_tensor(message_edge_index(pl.DataFrame({"src_id": src, "dst_id": dst})))
    a, b = pyg(x, ei), ours(x, (adj, adj_t))
    assert tuple(b.shape) == (5, 4) and torch.allclose(a, b, atol=1e-6)
    ga, gb = (torch.autograd.grad(out.square().sum(), x)[0] for out in (a, b))
    assert torch.allclose(ga, gb, atol=1e-5)  # the custom backward (A^T @ grad) is the true gradient


def test_sampled_pairs_are_reproducible_and_threads_restored(toy):
    persisted, n = toy
    threads = torch.get_num_threads()
    z = sage_embeddings(persisted, num_nodes=n, epochs=3, seed=2, pairs_per_step=50)
    assert z.shape == (n, 32) and z.dtype == np.float32
    assert np.array_equal(z, sage_embeddings(persisted, num_nodes=n, epochs=3, seed=2, pairs_per_step=50))
    assert not np.array_equal(z, sage_embeddings(persisted, num_nodes=n, epochs=3, seed=2))
    embedding_frame(persisted, epochs=1, seed=1, svdd_epochs=1)
    assert torch.get_num_threads() == threads


def test_embedding_value_compares_with_and_without():
    from models.training import synthetic_feature_frame

    features, labels = synthetic_feature_frame(n_wallets=120, n_snapshots=1, pairs_per_wallet=1, seed=0,
                                               columns=("counterparty_hhi", "n_trades"))  # fmt: skip
    wash = labels.filter(pl.col("is_wash") == 1)["account"].to_list()
    rng = np.random.default_rng(0)
    emb = pl.DataFrame({"wallet": labels["account"]}).with_columns(
        [pl.Series(c, rng.normal(size=labels.height)) for c in EMBEDDING_COLUMNS]
    ).with_columns(svdd_score=pl.col("wallet").is_in(wash).cast(pl.Float64) * 5)  # a perfect signal
    out = embedding_value(features, labels, emb, seed=0, repeats=3)
    assert out["n_rows"] == 120 and out["prevalence"] == pytest.approx(12 / 120) and out["n_base_features"] == 3
    assert out["pr_auc_with_gnn"] > out["pr_auc_without_gnn"] and out["pr_auc_gnn_only"] > 0.9


def test_quickstart_writes_a_reproducible_run(tmp_path):
    run_dir, result = quickstart(num_ledgers=40, num_accounts=20, epochs=3, seed=5, out_root=tmp_path)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metadata.json", "result.json"]
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["seed"] == 5 and meta["data_hash"].startswith("sha256:") and meta["result"] == "result.json"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["epochs"] == 3 and config["data"]["num_accounts"] == 20
    assert result["leakage_ok"] and len(result["metrics"]) == 8 and result["peak_rss_mb"] > 0
    _, again = quickstart(num_ledgers=40, num_accounts=20, epochs=3, seed=5, out_root=tmp_path)
    assert again["metrics"] == result["metrics"] and again["history"] == result["history"]


def test_configs(tmp_path):
    from pathlib import Path

    example = load_config(Path(__file__).resolve().parents[2] / "benchmarks" / "configs" / "gnn_example.yaml")
    assert example["model"]["encoder"] == "sage" and example["seed"] == 42 and example["snapshot"]["window"] == "30d"
    (tmp_path / "c.json").write_text(json.dumps({"run": "x", "model": {"epochs": 2, "layers": 3}}))
    with pytest.raises(BadInput, match="layers"):
        load_config(tmp_path / "c.json")
    with pytest.raises(BadInput, match="data.source"):
        complete_config({"data": {"source": "s3"}})
    assert toy_ledgers(num_ledgers=10, num_accounts=10, seed=1)["timestamp"].max() - datetime(
        2024, 1, 1, tzinfo=UTC) <= timedelta(seconds=45)
