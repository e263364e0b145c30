"""Detection on held-out families: train without a pattern, test on a market made only of it.

For each held-out family F (a ring pattern, or the chain funding style):
  1. a training market from the randomised family WITHOUT F (engine.synthetic.FamilyConfig,
     exclude_patterns / exclude_funding), its rings, features and labels, and a model
     trained on it (engine.services.train.simulated_training_data + models.training.train_model);
  2. a test market of another seed whose rings ALL follow F (only_patterns / only_funding),
     with every legitimate population and trap (market makers, DCA bots, triangle
     arbitrage bots, airdrop farmers, crowds, organic traders);
  3. rings, features and scores on the test market exactly as `python -m engine score` does
     (engine.graph.detect_rings, engine.features.build_feature_matrix, engine.scoring).

Printed per family: wallet-level PR-AUC (best score of each of F's ring members vs each legitimate wallet),
recall at the flag threshold (ring members whose best score >= 70), mean best-ring Jaccard,
the flag rate of every legitimate role, distinct scores among the top 50 rows, and the
rings / features time per 100k trades. A last row ("all") trains on the whole family and
tests on another seed of it. Seeds are fixed per family and printed; results go to --out as JSON.

    .venv/bin/python benchmarks/bench_generalization.py [--scale 0.5] [--families cycle chain ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.features import build_feature_matrix  # noqa: E402
from engine.graph import RingOptions, detect_rings  # noqa: E402
from engine.ingest.files import ingest_files  # noqa: E402
from engine.scoring import score_features  # noqa: E402
from engine.services.train import simulated_training_data  # noqa: E402
from engine.synthetic import generate_market  # noqa: E402
from engine.synthetic.family import PATTERNS, FamilyConfig  # noqa: E402
from models.registry import LoadedModel  # noqa: E402
from models.training import train_model  # noqa: E402
from storage.store import Store  # noqa: E402

FLAG = 70
FAMILIES = (*PATTERNS, "chain", "all")
LEGIT_EXCLUDED = {"wash_trader", "ring_controller", "ring_intermediary", "ring_issuer", "funding_hop", "exchange"}


def held_out(family: str) -> tuple[dict, dict]:
    """FamilyConfig keyword arguments of the training and the test market for `family`."""
    if family == "all":
        return {}, {}
    if family == "chain":
        return {"exclude_funding": ("chain",)}, {"only_funding": ("chain",)}
    return {"exclude_patterns": (family,)}, {"only_patterns": (family,)}


def train(family: str, *, seed: int, scale: float) -> tuple[LoadedModel, float]:
    kwargs, _ = held_out(family)
    t = time.perf_counter()
    data = simulated_training_data(seed=seed, scale=scale, days=7, family=FamilyConfig(seed=seed, **kwargs))
    result = train_model(data.features, data.labels, seed=0, n_estimators=120, n_jobs=2)
    loaded = LoadedModel(version=f"bench-{family}", model=result.model, metadata=result.metadata,
                         drift_reference=result.drift_reference)
    return loaded, time.perf_counter() - t


def test_market(family: str, *, seed: int, scale: float, work: Path) -> dict:
    _, kwargs = held_out(family)
    market = generate_market(work / "market", seed=seed, scale=scale, days=7, family=FamilyConfig(seed=seed, **kwargs))
    with Store(work / "test.duckdb") as store:
        ingest_files(store, [market.trades_path, market.operations_path])
        trades, ops, accounts, funding = store.trades(), store.operations(), store.accounts(), store.funding_edges()
    t0 = time.perf_counter()
    rings = detect_rings(trades, funding, options=RingOptions(seed=seed))
    t1 = time.perf_counter()
    features = build_feature_matrix(trades, ops, accounts, as_of=trades["closed_at"].max(),
                                    ring_members=rings.ring_members, loops=rings.closed_loops)
    t2 = time.perf_counter()
    labels = pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})
    meta = json.loads(market.meta_path.read_text())
    return {"trades": trades, "rings": rings, "features": features, "labels": labels, "meta": meta,
            "rings_s": t1 - t0, "features_s": t2 - t1}


def evaluate(family: str, loaded: LoadedModel, market: dict) -> dict:
    from sklearn.metrics import average_precision_score

    scores = score_features(loaded, market["features"], ring_members=market["rings"].ring_members, flag_threshold=FLAG)
    labels = market["labels"].select(pl.col("account").alias("wallet"), "role", "pattern", "is_wash", "ring_id")
    rows = scores.join(labels, on="wallet", how="left")
    target = pl.col("is_wash") == 1 if family in ("all", "chain") else pl.col("pattern") == family
    # a wallet is judged by its best (wallet, pair) score, as the Rings and Wallet pages rank it
    best = rows.group_by("wallet", "role", "pattern", "is_wash").agg(pl.col("score").max())
    members = best.filter(target & (pl.col("role") == "wash_trader"))
    legit = best.filter((pl.col("is_wash") == 0) & ~pl.col("role").is_in(list(LEGIT_EXCLUDED)))
    y = np.r_[np.ones(members.height), np.zeros(legit.height)]
    s = np.r_[members["score"].to_numpy(), legit["score"].to_numpy()]
    flag_rates = {r: round(v, 4) for r, v in legit.group_by("pattern").agg((pl.col("score") >= FLAG).mean()).sort(
        "pattern").rows()}
    top = best.sort("score", descending=True).head(50)  # the top 50 wallets, each by its best pair
    n_trades = market["trades"].height
    return {
        "family": family, "n_trades": n_trades, "n_ring_wallets": members.height, "n_legit_wallets": legit.height,
        "pr_auc": round(float(average_precision_score(y, s)), 4) if members.height else None,
        "recall_at_flag": round(float((members["score"] >= FLAG).mean()), 4) if members.height else None,
        "ring_jaccard": round(_best_jaccard(market["meta"], market["rings"].ring_members, family), 4),
        "legit_flag_rate": flag_rates, "max_legit_flag_rate": max(flag_rates.values(), default=0.0),
        "distinct_top50": top["score"].n_unique(), "top50_range": [float(top["score"].min()), float(top["score"].max())],
        "top50_scores": top["score"].to_list(),
        "missed": members.filter(pl.col("score") < FLAG).select("pattern", "score").rows(),
        "rings_s_per_100k": round(market["rings_s"] * 1e5 / n_trades, 3),
        "features_s_per_100k": round(market["features_s"] * 1e5 / n_trades, 3),
    }


def _best_jaccard(meta: dict, ring_members: pl.DataFrame, family: str) -> float:
    """Mean over the test market's true rings (of the family) of the best Jaccard with a found ring."""
    found = [set(g) for g in ring_members.group_by("ring_id").agg("account_id")["account_id"].to_list()]
    truth = [set(r["members"]) for r in meta["rings"] if family in ("all", "chain") or r["pattern"] == family]
    return float(np.mean([max((len(t & f) / len(t | f) for f in found), default=0.0) for t in truth])) if truth else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.5, help="market size (1 = ~100k trades over 7 days)")
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--train-seed", type=int, default=1000)
    ap.add_argument("--test-seed", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generalization.json"))
    args = ap.parse_args()
    results = []
    for family in args.families:
        i = FAMILIES.index(family)  # a family's seeds do not depend on which others run
        loaded, train_s = train(family, seed=args.train_seed + i, scale=args.scale)
        with tempfile.TemporaryDirectory(prefix="ledgerlens-gen-") as tmp:
            market = test_market(family, seed=args.test_seed + i, scale=args.scale, work=Path(tmp))
            row = evaluate(family, loaded, market) | {"train_s": round(train_s, 1), "train_seed": args.train_seed + i,
                                                       "test_seed": args.test_seed + i}
        results.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scale": args.scale, "results": results}, indent=1) + "\n")
    print(f"{'held out':<16}{'PR-AUC':>8}{'recall':>8}{'Jaccard':>9}{'max legit':>11}{'top50':>7}")
    for r in results:
        print(f"{r['family']:<16}{r['pr_auc'] or 0:>8.3f}{r['recall_at_flag'] or 0:>8.3f}{r['ring_jaccard']:>9.3f}"
              f"{r['max_legit_flag_rate']:>11.4f}{r['distinct_top50']:>7}")


if __name__ == "__main__":
    main()
