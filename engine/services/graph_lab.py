"""Reproducible graph-ML runs: a config file in, benchmark_results/<run>/ out.

A config (YAML or JSON) holds every parameter and the seed:

    run: gnn_example            # folder name under benchmark_results/
    seed: 42                    # python random, numpy, torch (+ deterministic kernels)
    threads: 2                  # torch.set_num_threads
    data: {source: synthetic, scale: 0.05, days: 7, seed: 42}   # or {source: store} / {source: toy, ...}
    snapshot: {window: 30d, step: null, use: last}               # which rolling window is the graph
    model: {encoder: sage, decoder: mlp, hidden_channels: 64, ..., epochs: 100, patience: 10}

Each run writes config.json (the full, defaulted config), result.json (metrics,
loss history, seconds, peak RSS) and metadata.json (run id, timestamp, git revision,
data hash, the two files). The same config on the same data gives the same metrics.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from engine.graph.snapshots import SNAPSHOT_SCHEMA
from engine.graph.temporal import (
    build_snapshots,
    edges_from_frames,
    index_of,
    load_edges,
    parse_duration,
    snapshot,
    validation_report,
)  # fmt: skip
from engine.ingest.files import load_file
from engine.synthetic import generate_market
from models.link_prediction import LinkPredConfig, run_link_prediction
from storage.errors import BadInput

DEFAULT_CONFIG: dict = {
    "run": "gnn_run",
    "seed": 42,
    "threads": 2,
    "data": {"source": "synthetic", "scale": 0.05, "days": 7, "seed": 42,
             "num_ledgers": 100, "num_accounts": 50},  # fmt: skip
    "snapshot": {"window": "30d", "step": None, "use": "last"},
    "model": {},  # LinkPredConfig fields; filled with its defaults by load_config
}
SOURCES = ("synthetic", "store", "toy")


def _model_defaults() -> dict:
    return LinkPredConfig().as_dict()


def complete_config(raw: dict) -> dict:
    """`raw` merged over DEFAULT_CONFIG (and LinkPredConfig defaults); unknown keys -> BadInput."""
    out = copy.deepcopy(DEFAULT_CONFIG)
    out["model"] = _model_defaults()
    for key, value in raw.items():
        if key not in out:
            raise BadInput(f"unknown config key {key!r}; known: {sorted(out)}")
        if isinstance(out[key], dict):
            unknown = set(value or {}) - set(out[key])
            if unknown:
                raise BadInput(f"unknown keys under {key!r}: {sorted(unknown)}; known: {sorted(out[key])}")
            out[key].update(value or {})
        else:
            out[key] = value
    if out["data"]["source"] not in SOURCES:
        raise BadInput(f"data.source {out['data']['source']!r} is not one of {list(SOURCES)}")
    out["model"]["seed"] = out["seed"]  # one seed for the whole run
    return out


def load_config(path: Path) -> dict:
    """Read a YAML (.yaml/.yml) or JSON config and complete it (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"config file {path} does not exist; see benchmarks/configs/gnn_example.yaml")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: both user input errors
        raise BadInput(f"{path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadInput(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    return complete_config(raw)


def seed_everything(seed: int, *, threads: int | None = None) -> None:
    """Seed python random, numpy and torch; deterministic torch kernels (warn where none exists)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(int(threads))


def data_hash(edges: pl.DataFrame) -> str:
    """sha256 of the edge list as CSV in a canonical order (same edges, same hash)."""
    cols = [c for c in SNAPSHOT_SCHEMA if c in edges.columns]
    buf = io.BytesIO()
    edges.select(cols).sort(cols).write_csv(buf)
    return "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


def git_revision(repo: Path | None = None) -> str | None:
    """`git rev-parse HEAD` of the repository, or None outside git / without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def write_run(out_root: Path, *, config: dict, result: dict, data_digest: str, now: datetime) -> Path:
    """Write config.json, result.json and metadata.json into out_root/<config['run']>/; returns the folder."""
    run_dir = Path(out_root) / _safe_name(str(config["run"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    _dump(run_dir / "config.json", config)
    _dump(run_dir / "result.json", result)
    meta = {"run_id": f"{config['run']}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", "run": config["run"],
            "timestamp": now.isoformat(), "git_revision": git_revision(), "data_hash": data_digest,
            "seed": config["seed"], "config": "config.json", "result": "result.json"}  # fmt: skip
    _dump(run_dir / "metadata.json", meta)
    return run_dir


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _safe_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    if not cleaned:
        raise BadInput(f"run name {name!r} has no usable characters")
    return cleaned


# -- data ------------------------------------------------------------------------------------


def toy_ledgers(*, num_ledgers: int, num_accounts: int, seed: int, edges_per_ledger: int = 10) -> pl.DataFrame:
    """A tiny purpose-built ledger stream (SNAPSHOT_SCHEMA), one ledger every 5 s from 2024-01-01.

    Each account has 3 habitual counterparties (70% of its trades, so history predicts the
    future), a ring of 5 accounts trades in a cycle, 10% of edges are funding payments."""
    if num_ledgers < 2 or num_accounts < 8:
        raise BadInput(f"quickstart needs at least 2 ledgers and 8 accounts (got {num_ledgers}, {num_accounts})")
    rng = np.random.default_rng(seed)
    n = num_ledgers * edges_per_ledger
    habits = rng.integers(0, num_accounts, (num_accounts, 3))
    src = rng.integers(0, num_accounts, n)
    dst = np.where(rng.random(n) < 0.7, habits[src, rng.integers(0, 3, n)], rng.integers(0, num_accounts, n))
    ring = rng.random(n) < 0.15
    src[ring] = rng.integers(0, 5, int(ring.sum()))
    dst[ring] = (src[ring] + 1) % 5
    ledger = np.sort(rng.integers(0, num_ledgers, n))
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    names = np.array([f"GTOY{i:04d}" for i in range(num_accounts)])
    return pl.DataFrame({
        "src": names[src], "dst": names[dst],
        "timestamp": pl.Series((ledger * 5).astype("timedelta64[s]") + np.datetime64(t0.replace(tzinfo=None), "us")),
        "asset": np.array(["XLM:native", "USD:GTOYISSUER", "EUR:GTOYISSUER"])[rng.integers(0, 3, n)],
        "amount": (rng.lognormal(18, 1.5, n)).astype(np.int64),
        "kind": np.where(rng.random(n) < 0.1, "funding", "trade"),
    }).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC")).cast(SNAPSHOT_SCHEMA)  # fmt: skip


def load_run_edges(data: dict, *, store=None, work_dir: Path | None = None) -> pl.DataFrame:
    """The edge list a config's `data` section names (SNAPSHOT_SCHEMA)."""
    if data["source"] == "toy":
        return toy_ledgers(num_ledgers=int(data["num_ledgers"]), num_accounts=int(data["num_accounts"]),
                           seed=int(data["seed"]))  # fmt: skip
    if data["source"] == "store":
        if store is None:
            raise BadInput("data.source is 'store' but no store was given (pass --db)")
        return load_edges(store)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        market = generate_market(Path(tmp), seed=int(data["seed"]), scale=float(data["scale"]), days=int(data["days"]))
        return edges_from_frames(load_file(market.trades_path).frame, load_file(market.operations_path).frame)


def choose_snapshot(edges: pl.DataFrame, snap: dict):
    """(edges of the chosen rolling window with node ids, num_nodes, validation report, spec)."""
    step = parse_duration(snap["step"]) if snap.get("step") else None
    persisted, spec = build_snapshots(edges, window=parse_duration(snap["window"]), step=step)
    use = snap.get("use", "last")
    k = spec.n_snapshots - 1 if use == "last" else int(use)
    if not 0 <= k < spec.n_snapshots:
        raise BadInput(f"snapshot.use {use!r} is outside 0..{spec.n_snapshots - 1}")
    return snapshot(persisted, k), index_of(persisted).height, validation_report(persisted, spec), spec


def _silent(_: str) -> None:
    pass


def run_config(config: dict, *, out_root: Path, store=None, on_epoch: Callable | None = None,
               with_gnn: bool = True, echo: Callable[[str], None] = _silent) -> tuple[Path, dict]:
    """Run one completed config end to end and write its three files; returns (run folder, result).

    `echo` receives one line per step: data, graph, validation, link prediction, results."""
    seed_everything(int(config["seed"]), threads=config.get("threads"))
    started, now = time.monotonic(), datetime.now(UTC)
    edges = load_run_edges(config["data"], store=store)
    echo(f"[1/5] data ({config['data']['source']}): {edges.height:,} edges, {data_hash(edges)[:19]}")
    result = evaluate_config(config, edges, on_epoch=on_epoch, with_gnn=with_gnn, echo=echo)
    result["seconds"] = time.monotonic() - started
    run_dir = write_run(out_root, config=config, result=result, data_digest=data_hash(edges), now=now)
    echo(f"[5/5] results: {run_dir / 'result.json'} ({result['seconds']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MiB)")
    return run_dir, result


def evaluate_config(config: dict, edges: pl.DataFrame, *, on_epoch: Callable | None = None, with_gnn: bool = True,
                    echo: Callable[[str], None] = _silent) -> dict:
    """Snapshot, validate and run link prediction on `edges` as `config` says (nothing written).

    Returns the result.json content: metrics (rows of the table), verdict, best_epoch, history,
    split, leakage_ok, snapshot_validation (rows), n_edges, train_seconds, peak_rss_mb."""
    seed_everything(int(config["seed"]), threads=config.get("threads"))
    graph, num_nodes, report, spec = choose_snapshot(edges, config["snapshot"])
    echo(f"[2/5] graph: {spec.n_snapshots} rolling window(s) of {spec.window}; using one with {num_nodes:,} nodes, "
         f"{graph.height:,} edges")
    echo("[3/5] validation: " + _validation_line(report.row(-1, named=True)))
    names = {f.name for f in fields(LinkPredConfig)}
    lp = run_link_prediction(graph, num_nodes=num_nodes, config=LinkPredConfig(**{
        k: v for k, v in config["model"].items() if k in names}), on_epoch=on_epoch, with_gnn=with_gnn)  # fmt: skip
    echo(f"[4/5] link prediction (leakage check passed): {lp.verdict}")
    return {"metrics": lp.table.to_dicts(), "verdict": lp.verdict, "best_epoch": lp.best_epoch,
            "history": lp.history.to_dicts(), "split": lp.split, "leakage_ok": bool(lp.leakage["ok"].all()),
            "snapshot_validation": report.to_dicts(), "n_edges": graph.height, "train_seconds": lp.seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def lab_config(*, window: str, encoder: str, epochs: int, seed: int) -> dict:
    """The config of a Graph Lab run on the store's edges (the page's widgets fill it)."""
    return complete_config({"run": f"lab_{encoder}_{window}", "seed": seed, "data": {"source": "store"},
                            "snapshot": {"window": window}, "model": {"encoder": encoder, "epochs": epochs}})


def _validation_line(row: dict) -> str:
    return (f"{row['n_active']:,} active / {row['n_isolated']:,} isolated nodes, {row['n_self_loops']:,} self-loops, "
            f"density {row['density']:.4f}, mean degree {row['mean_degree'] or 0:.2f} (max {row['max_degree'] or 0})")


def quickstart(*, num_ledgers: int = 100, num_accounts: int = 50, epochs: int = 10, seed: int = 42,
               out_root: Path = Path("benchmark_results"), echo: Callable[[str], None] = _silent) -> tuple[Path, dict]:
    """Toy ledgers -> graph -> validation -> baselines + a GNN -> out_root/quickstart/ (five echoed steps)."""
    config = complete_config({
        "run": "quickstart", "seed": seed,
        "data": {"source": "toy", "num_ledgers": num_ledgers, "num_accounts": num_accounts, "seed": seed},
        "snapshot": {"window": "30d"},
        "model": {"epochs": epochs, "patience": epochs, "hidden_channels": 32, "out_channels": 16},
    })  # fmt: skip
    return run_config(config, out_root=out_root, echo=echo)
