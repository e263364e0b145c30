"""Graph-ML speed and quality on the CPU (2 threads).

1. GraphSAGE link prediction, 10 epochs, on a ~100k-edge snapshot of a simulated market
   (target <= 60 s for the 10 epochs);
2. self-supervised embeddings (+ Deep SVDD) for a 30k-node random graph (target <= 10 s);
3. the link-prediction table (GCN / GraphSAGE / GAT vs EdgeBank / common neighbours /
   Adamic-Adar, random and historical negatives) on a simulated market;
4. PR-AUC of a logistic regression on the wallet features with vs without gnn_* columns.

    .venv/bin/python benchmarks/bench_gnn.py [--scale 1.0] [--quality-scale 0.3] [--nodes 30000] [--repeats 3]
        [--parts speed,embeddings,table,quality]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.graph.snapshots import SNAPSHOT_SCHEMA  # noqa: E402
from engine.graph.temporal import build_snapshots, edges_from_frames, index_of, parse_duration  # noqa: E402
from engine.ingest.files import load_file  # noqa: E402
from engine.services.graph_lab import peak_rss_mb, seed_everything  # noqa: E402
from engine.synthetic import generate_market  # noqa: E402
from models.embeddings import embedding_frame, market_embedding_value  # noqa: E402
from models.link_prediction import LinkPredConfig, run_link_prediction  # noqa: E402


def market_edges(out: Path, *, scale: float, seed: int = 42) -> pl.DataFrame:
    m = generate_market(out, seed=seed, scale=scale, days=7)
    return edges_from_frames(load_file(m.trades_path).frame, load_file(m.operations_path).frame)


def random_graph(n_nodes: int, n_edges: int, seed: int = 0) -> pl.DataFrame:
    """Heavy-tailed random edges over n_nodes accounts (SNAPSHOT_SCHEMA), one week."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_nodes) + 1
    p = weights / weights.sum()
    src, dst = rng.choice(n_nodes, n_edges, p=p), rng.integers(0, n_nodes, n_edges)
    t0 = np.datetime64("2024-03-01T00:00:00", "us")
    ts = t0 + (rng.random(n_edges) * 7 * 86_400e6).astype("timedelta64[us]")
    names = np.char.add("G", np.arange(n_nodes).astype(str))
    return pl.DataFrame({"src": names[src], "dst": names[dst], "timestamp": ts, "asset": "XLM:native",
                         "amount": rng.integers(1, 10**10, n_edges), "kind": "trade"}).with_columns(
        pl.col("timestamp").dt.replace_time_zone("UTC")).cast(SNAPSHOT_SCHEMA)  # fmt: skip


def bench_sage_speed(edges: pl.DataFrame) -> None:
    persisted, _ = build_snapshots(edges, window=parse_duration("30d"))
    n = index_of(persisted).height
    cfg = LinkPredConfig(encoder="sage", epochs=10, patience=10)
    started = time.monotonic()
    res = run_link_prediction(persisted, num_nodes=n, config=cfg)
    print(f"[speed] GraphSAGE link prediction, {persisted.height:,} edges, {n:,} nodes: {res.history.height} epochs, "
          f"total {time.monotonic() - started:.1f}s (split + baselines + training + test), peak RSS {peak_rss_mb():.0f} MiB")


def bench_embeddings(n_nodes: int, *, repeats: int = 3) -> None:
    """Median of `repeats` timed calls (the machine is shared: the 1-min load average is printed beside each),
    and a check that every rerun gives the same frame."""
    edges = random_graph(n_nodes, 5 * n_nodes)
    walls, cpus, frames = [], [], []
    for r in range(repeats):
        started, cpu = time.monotonic(), time.process_time()
        frames.append(embedding_frame(edges, seed=42))
        walls.append(time.monotonic() - started)
        cpus.append(time.process_time() - cpu)
        print(f"[speed]   run {r + 1}: {walls[-1]:.2f}s wall, {cpus[-1]:.2f}s CPU, load {os.getloadavg()[0]:.2f}")
    same = all(f.equals(frames[0]) for f in frames[1:])
    print(f"[speed] embeddings + Deep SVDD for {frames[0].height:,} nodes / {edges.height:,} edges: median "
          f"{np.median(walls):.2f}s wall, {np.median(cpus):.2f}s CPU over {repeats} runs (target <= 10 s); "
          f"reruns identical: {same}; peak RSS {peak_rss_mb():.0f} MiB")


def bench_table(edges: pl.DataFrame) -> None:
    persisted, _ = build_snapshots(edges, window=parse_duration("30d"))
    n = index_of(persisted).height
    pl.Config.set_tbl_rows(40)
    pl.Config.set_tbl_width_chars(200)
    for encoder in ("sage", "gcn", "gat"):
        res = run_link_prediction(persisted, num_nodes=n, config=LinkPredConfig(encoder=encoder, epochs=100))
        print(f"[quality] {encoder}: best epoch {res.best_epoch}/{res.history.height}, {res.seconds:.1f}s; {res.verdict}")
        print(res.table.with_columns(pl.col(pl.Float64).round(3)))
    print(f"[quality] split: {res.split}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="simulator scale of the speed snapshot (1: ~100k trades)")
    ap.add_argument("--quality-scale", type=float, default=0.3)
    ap.add_argument("--nodes", type=int, default=30_000)
    ap.add_argument("--repeats", type=int, default=3, help="timed embedding runs (the median is reported)")
    ap.add_argument("--parts", default="speed,embeddings,table,quality",
                    help="comma-separated subset of speed,embeddings,table,quality")  # fmt: skip
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(2)
    seed_everything(42, threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        if "speed" in parts:
            bench_sage_speed(market_edges(Path(tmp) / "speed", scale=args.scale))
        if "embeddings" in parts:
            bench_embeddings(args.nodes, repeats=args.repeats)
        quality = Path(tmp) / "quality"
        quality_edges = market_edges(quality, scale=args.quality_scale) if parts & {"table", "quality"} else None
        if "table" in parts:
            bench_table(quality_edges)
        if "quality" in parts:
            started = time.monotonic()
            print(f"[quality] PR-AUC with vs without gnn_*: {market_embedding_value(quality, seed=42)} "
                  f"({time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
