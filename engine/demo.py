"""The demo / fixture store: one builder for `make run`, the tests and the browser test.

A simulated market (engine.synthetic) is served by the loopback replay server and
ingested with the real stellar-sdk client, exactly as a Horizon range would be;
then the analysis steps run so every page has something to show.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from engine.graph.rings import RingOptions
from engine.ingest import horizon
from engine.ingest.replay import ReplayServer
from engine.ingest.runner import IngestSummary, run_ingest
from engine.pipeline import compute_features, compute_rings
from engine.progress import Progress, no_progress
from engine.synthetic import MarketSummary, generate_market
from storage.store import Store


@dataclass(frozen=True)
class DemoSummary:
    db_path: Path
    market: MarketSummary
    ingest: IngestSummary
    steps: tuple[str, ...]  # analysis steps that ran, in order
    seconds: float


def build_demo_store(
    db_path: Path,
    *,
    seed: int = 42,
    scale: float = 0.05,
    days: int = 7,
    market_dir: Path | None = None,
    progress: Progress = no_progress,
    analysis: bool = True,
) -> DemoSummary:
    """Simulate a market, ingest it through replay + stellar-sdk, then analyse it."""
    started = time.monotonic()
    market_dir = Path(market_dir or Path(db_path).parent / "demo_market")
    if market_dir.exists():
        shutil.rmtree(market_dir)
    market = generate_market(market_dir, seed=seed, scale=scale, days=days)
    with Store(db_path) as store:
        summary = ingest_market(store, market, progress=progress)
        steps = run_analysis(store, market_dir, seed=seed) if analysis else ()
    return DemoSummary(Path(db_path), market, summary, steps, time.monotonic() - started)


def ingest_market(store: Store, market: MarketSummary, *, progress: Progress = no_progress) -> IngestSummary:
    """Ingest a simulated market's ledgers through the replay server with stellar-sdk."""
    with ReplayServer(market.out_dir) as server:
        request, batches = horizon.plan(
            start_ledger=market.first_ledger, end_ledger=market.last_ledger, horizon_url=server.url
        )
        return run_ingest(store, request, batches, progress=progress)


def run_analysis(store: Store, market_dir: Path, *, seed: int) -> tuple[str, ...]:
    """Rings, then features (which use ring membership); returns the steps run."""
    compute_rings(store, options=RingOptions(seed=seed))
    compute_features(store)
    return ("rings", "features")
