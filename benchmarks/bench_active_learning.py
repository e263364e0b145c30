"""Does the annotation queue make labels count? PR-AUC against labels used, per strategy.

    .venv/bin/python benchmarks/bench_active_learning.py [--scale 1.0] [--seed 7] [--batch 20]
        [--budget 0.15] [--repeats 2] [--out benchmarks/results/active_learning]

A simulated market (engine.synthetic.generate_market) is ingested (engine.ingest.files),
rings and features computed (engine.services.analyse); the simulator's labels.csv is the oracle.
(wallet, pair) rows are split by group (a ring, or a wallet) into a pool (70%) and a
held-out test set (30%). Each strategy starts from the same random seed set (20 rows,
extended at random until it holds 2 wash rows), then repeatedly: fit the ensemble on
the labelled rows, rank the unlabelled pool with engine.active.rank_queue (evidence of
wash labels included, as in the product), reveal the next batch's labels, until
`budget` of the pool is labelled. PR-AUC is measured on the test set after every batch,
and compared with the same ensemble trained on every pool label.

Twice: with every feature, and without the ring-membership features (ring_*), which
make the simulator nearly trivial (ring_size alone has ROC-AUC ~0.999).
Writes <out>.json and <out>.png (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from engine.active.config import STRATEGIES  # noqa: E402
from engine.active.queue import MEMBER_COLUMNS, evidence_boost, rank_queue  # noqa: E402
from engine.scoring import ring_of  # noqa: E402
from models.ensemble import WashEnsemble, stratified_group_split  # noqa: E402
from models.training import design_matrix, feature_columns, join_labels, labels_from_simulator  # noqa: E402

N_ESTIMATORS = 40
SEED_SET = 20


def build_market(scale: float, seed: int, work: Path) -> dict:
    """Simulate, ingest, rings, features: {features, labels, ring_members, funding}."""
    from engine.graph.rings import RingOptions
    from engine.ingest.files import ingest_files
    from engine.services.analyse import compute_features
    from engine.services.rings import compute_rings
    from engine.synthetic import generate_market
    from storage.store import Store

    market = generate_market(work / "market", seed=seed, scale=scale, days=7)
    with Store(work / "bench.duckdb") as store:
        ingest_files(store, [market.trades_path, market.operations_path])
        compute_rings(store, options=RingOptions(seed=seed))
        run = compute_features(store)
        out = {"features": run.matrix, "ring_members": store.load_derived("ring_members"),
               "funding": store.funding_edges(), "n_trades": store.counts()["trades"]}  # fmt: skip
    out["labels"] = labels_from_simulator(pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String}))
    return out


def fit(X: np.ndarray, y: np.ndarray, seed: int) -> WashEnsemble:
    return WashEnsemble(n_estimators=N_ESTIMATORS, n_jobs=2, random_state=seed, calibration_size=0.25).fit(X, y)


def seed_set(y_pool: np.ndarray, rng: np.random.Generator) -> list[int]:
    """20 random rows, extended at random until 2 wash and 2 legit rows are in (all count as labels used)."""
    order = rng.permutation(y_pool.size)
    k = SEED_SET
    while (y_pool[order[:k]].sum() < 2 or (1 - y_pool[order[:k]]).sum() < 2) and k < y_pool.size:
        k += 1
    return order[:k].tolist()


def run_strategy(strategy: str, data: dict, *, batch: int, budget: int, seed: int) -> list[tuple[int, float]]:
    """[(labels used, test PR-AUC)] of one strategy from the shared seed set."""
    pool, Xp, yp, Xt, yt = data["pool"], data["Xp"], data["yp"], data["Xt"], data["yt"]
    labelled = list(data["seed_idx"])
    curve = []
    while True:
        model = fit(Xp[labelled], yp[labelled], seed)
        curve.append((len(labelled), float(average_precision_score(yt, model.predict_proba(Xt)[:, 1]))))
        if len(labelled) >= budget:
            return curve
        rest = np.setdiff1d(np.arange(yp.size), labelled)
        members, p = model.member_probas(Xp[rest]), model.predict_proba(Xp[rest])[:, 1]
        cand = pool[rest].with_columns(pl.Series("p", p), *[pl.Series(c, members[:, j])
                                                             for j, c in enumerate(MEMBER_COLUMNS)])  # fmt: skip
        wash = pool[labelled].filter(pl.Series(yp[labelled] == 1)).get_column("wallet").unique().to_list()
        ev = evidence_boost(wash, ring_members=data["ring_members"], funding_edges=data["funding"])
        picked = rank_queue(cand.with_columns(_i=pl.Series(rest)), strategy=strategy, size=batch,
                            seed=seed + len(labelled), evidence=ev)  # fmt: skip
        idx = cand.with_columns(_i=pl.Series(rest)).join(picked.select("wallet", "pair_id"), on=["wallet", "pair_id"])
        labelled += idx.get_column("_i").to_list()


def prepare(market: dict, *, drop_ring: bool, seed: int) -> dict:
    frame = join_labels(market["features"], market["labels"])
    cols = [c for c in feature_columns(market["features"]) if not (drop_ring and c.startswith("ring_"))]
    X, y = design_matrix(frame, cols), frame.get_column("label").to_numpy().astype(int)
    tr, te = stratified_group_split(y, frame.get_column("group").to_numpy(), 0.3, seed)
    # the queue sees the rings LedgerLens detected, never the simulator's ground truth
    pool = frame[tr].select("wallet", "pair_id").join(ring_of(market["ring_members"]), on="wallet", how="left",
                                                     maintain_order="left")
    return {"pool": pool, "Xp": X[tr], "yp": y[tr], "Xt": X[te], "yt": y[te], "columns": cols,
            "ring_members": market["ring_members"], "funding": market["funding"]}  # fmt: skip


def experiment(market: dict, *, drop_ring: bool, args) -> dict:
    data = prepare(market, drop_ring=drop_ring, seed=args.seed)
    full = fit(data["Xp"], data["yp"], args.seed)
    full_pr = float(average_precision_score(data["yt"], full.predict_proba(data["Xt"])[:, 1]))
    budget = int(np.ceil(args.budget * data["yp"].size))
    ten_pct = int(np.floor(0.10 * data["yp"].size))
    out = {"n_pool": int(data["yp"].size), "n_test": int(data["yt"].size), "pool_prevalence": float(data["yp"].mean()),
           "test_prevalence": float(data["yt"].mean()), "n_features": len(data["columns"]), "full_label_pr_auc": full_pr,
           "ten_pct_labels": ten_pct, "curves": {}}  # fmt: skip
    for r in range(args.repeats):
        data["seed_idx"] = seed_set(data["yp"], np.random.default_rng(args.seed + 100 * r))
        for strategy in STRATEGIES:
            t = time.monotonic()
            curve = run_strategy(strategy, data, batch=args.batch, budget=budget, seed=args.seed + r)
            out["curves"].setdefault(strategy, []).append(curve)
            print(f"  ring={'no' if drop_ring else 'yes'} repeat {r} {strategy:<11} {time.monotonic() - t:5.1f}s "
                  f"PR-AUC at <=10%: {pr_at(curve, ten_pct):.3f} (full {full_pr:.3f})", flush=True)
    out["summary"] = {s: summarise(c, ten_pct, full_pr) for s, c in out["curves"].items()}
    return out


def pr_at(curve: list[tuple[int, float]], n: int) -> float:
    """PR-AUC of the last model trained on <= n labels."""
    ok = [pr for used, pr in curve if used <= n]
    return ok[-1] if ok else float("nan")


def summarise(curves: list, ten_pct: int, full_pr: float) -> dict:
    at10 = float(np.mean([pr_at(c, ten_pct) for c in curves]))
    first95 = []
    for c in curves:
        hit = [used for used, pr in c if pr >= 0.95 * full_pr]
        first95.append(hit[0] if hit else None)
    return {"pr_auc_at_10pct": at10, "share_of_full_at_10pct": at10 / full_pr if full_pr else None,
            "labels_to_95pct_of_full": first95, "meets_target": at10 >= 0.95 * full_pr}  # fmt: skip


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, (name, res) in zip(axes, results["experiments"].items(), strict=True):
        for strategy, curves in res["curves"].items():
            xs = np.array([u for u, _ in curves[0]])
            n = min(len(c) for c in curves)
            ys = np.mean([[pr for _, pr in c[:n]] for c in curves], axis=0)
            ax.plot(xs[:n], ys, label=strategy, lw=2.2 if strategy != "random" else 1.6,
                    ls="--" if strategy == "random" else "-")  # fmt: skip
        ax.axhline(res["full_label_pr_auc"], color="k", lw=1, label=f"all {res['n_pool']} labels")
        ax.axhline(0.95 * res["full_label_pr_auc"], color="k", lw=0.8, ls=":", label="95% of that")
        ax.axvline(res["ten_pct_labels"], color="grey", lw=0.8, ls="-.", label="10% of the pool")
        ax.axhline(res["test_prevalence"], color="grey", lw=0.6, ls=":")
        ax.set_title(f"{name} ({res['n_features']} features)")
        ax.set_xlabel("labels used ((wallet, pair) rows)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out PR-AUC")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Active learning on a simulated market (scale {results['scale']}, seed {results['seed']}, "
                 f"{results['n_trades']:,} trades; mean of {results['repeats']} seed sets)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--budget", type=float, default=0.12, help="share of the pool labelled by the end")
    p.add_argument("--repeats", type=int, default=2, help="seed sets (curves are averaged)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/active_learning"))
    args = p.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ledgerlens-al-") as tmp:
        market = build_market(args.scale, args.seed, Path(tmp))
    print(f"market: {market['n_trades']:,} trades, {market['features'].height:,} feature rows "
          f"({time.monotonic() - started:.0f}s)", flush=True)  # fmt: skip
    results = {"scale": args.scale, "seed": args.seed, "batch": args.batch, "repeats": args.repeats,
               "n_trades": market["n_trades"], "experiments": {}}  # fmt: skip
    for name, drop in (("all features", False), ("without ring features", True)):
        results["experiments"][name] = experiment(market, drop_ring=drop, args=args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    for name, res in results["experiments"].items():
        print(f"{name}: full-label PR-AUC {res['full_label_pr_auc']:.3f} (test prevalence "
              f"{res['test_prevalence']:.3f}); at <= 10% of labels ({res['ten_pct_labels']}):")  # fmt: skip
        for s, m in res["summary"].items():
            print(f"  {s:<11} PR-AUC {m['pr_auc_at_10pct']:.3f} = {m['share_of_full_at_10pct']:.1%} of full; "
                  f"labels to reach 95%: {m['labels_to_95pct_of_full']}")  # fmt: skip
    print(f"written {args.out.with_suffix('.json')} and .png in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
