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
from engine.progress import Progress, no_progress
from engine.services.analyse import compute_features, compute_scores
from engine.services.models import load_model
from engine.services.rings import compute_rings
from engine.services.train import train_model_version
from engine.settings import Settings
from engine.synthetic import MarketSummary, generate_market
from storage.store import Store

# The demo model is small so `make run` stays fast (recorded in the model metadata as params.n_estimators).
DEMO_N_ESTIMATORS = 40
DEMO_IMBALANCE = "class_weight"


@dataclass(frozen=True)
class DemoSummary:
    db_path: Path
    market: MarketSummary
    ingest: IngestSummary
    steps: tuple[str, ...]  # analysis steps that ran, in order
    seconds: float

    def describe(self) -> str:
        return (f"demo market: {self.ingest.n_trades:,} trades, {self.ingest.n_operations:,} operations, "
                f"{self.market.n_rings} planted rings; steps: {', '.join(self.steps) or 'none'} ({self.seconds:.1f}s)")


def build_demo_store(
    db_path: Path,
    *,
    seed: int = 42,
    scale: float = 0.05,
    days: int = 7,
    market_dir: Path | None = None,
    progress: Progress = no_progress,
    analysis: bool = True,
    settings: Settings | None = None,
) -> DemoSummary:
    """Simulate a market, ingest it through replay + stellar-sdk, then analyse it (rings, features,
    a model trained on the market's ground truth under settings.models_dir, scores).

    settings: where the model goes and how it is signed (default: a data directory beside the
    store, `Settings(home=db_path.parent)`); the app must run with the same home to trust it."""
    settings = settings or Settings(home=Path(db_path).parent, db=Path(db_path))
    with Store(db_path) as store:
        return load_demo(store, settings, seed=seed, scale=scale, days=days, progress=progress, analysis=analysis,
                         market_dir=Path(market_dir or Path(db_path).parent / "demo_market"))  # fmt: skip


def load_demo(
    store: Store, settings: Settings, *, seed: int = 42, scale: float = 0.05, days: int = 7,
    market_dir: Path | None = None, progress: Progress = no_progress, analysis: bool = True,
) -> DemoSummary:  # fmt: skip
    """build_demo_store into an open store (the app's Ingest page): the market goes to `market_dir`
    (default settings.home / "demo_market"), the model under settings.models_dir."""
    started = time.monotonic()
    market = simulate(Path(market_dir or settings.home / "demo_market"), seed=seed, scale=scale, days=days)
    summary = ingest_market(store, market, progress=progress)
    steps = run_analysis(store, market, seed=seed, settings=settings) if analysis else ()
    return DemoSummary(store.path, market, summary, steps, time.monotonic() - started)


def simulate(market_dir: Path, *, seed: int, scale: float, days: int) -> MarketSummary:
    """A fresh simulated market in `market_dir` (replacing an older one there)."""
    if market_dir.exists():
        shutil.rmtree(market_dir)
    return generate_market(market_dir, seed=seed, scale=scale, days=days)


def ingest_market(store: Store, market: MarketSummary, *, progress: Progress = no_progress) -> IngestSummary:
    """Ingest a simulated market's ledgers through the replay server with stellar-sdk."""
    with ReplayServer(market.out_dir) as server:
        request, batches = horizon.plan(
            start_ledger=market.first_ledger, end_ledger=market.last_ledger, horizon_url=server.url
        )
        return run_ingest(store, request, batches, progress=progress)


def run_analysis(store: Store, market: MarketSummary, *, seed: int, settings: Settings) -> tuple[str, ...]:
    """Rings, features (which use ring membership), a model trained on the market's ground truth
    (labels.csv, label source "simulator"; promoted under settings.models_dir), then scores.

    The label-shift guard is overridden (and the override recorded): the labels are the simulator's
    own ground truth, generated just now, not outside input. Returns the steps run."""
    compute_rings(store, options=RingOptions(seed=seed))
    compute_features(store)
    version, _ = train_model_version(
        store, settings.model_copy(update={"seed": seed}), labels=market.labels_path, force_label_shift=True,
        n_estimators=DEMO_N_ESTIMATORS, imbalance=DEMO_IMBALANCE,
    )  # fmt: skip
    compute_scores(store, load_model(settings, version=version),
                   flag_threshold=settings.risk_score_flag_threshold)  # fmt: skip
    return ("rings", "features", "train", "score")
