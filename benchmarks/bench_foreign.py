"""Detection on markets LedgerLens did not write (issue 14), run as a new user runs it.

Generates markets with `benchmarks/foreign_market.py` (a clean-room generator, see its
docstring), then for each market, in a FRESH `LEDGERLENS_HOME` (so a fresh DuckDB file
and no model: `score` trains its default model itself, no labels given):

    python -m engine ingest files trades.jsonl operations.jsonl
    python -m engine rings
    python -m engine features
    python -m engine score --out scores.csv

and compares with the generator's labels: PR-AUC (a wallet's best score vs is_ring),
recall at score >= 70 per ring pattern and funding style, mean best-ring Jaccard per
pattern (rings read from the store through `Store.rings` / `Store.ring_members`), the
flag rate of every legitimate role, distinct scores among the top 50, quarantined rows,
and the wall time of each step. Results (and failing examples) go to
`<out>/<market>/result.json`; the market files stay next to it for `engine report`.

    flock /tmp/ledgerlens-heavy.lock .venv/bin/python benchmarks/bench_foreign.py \
        [--markets A B] [--extra-seeds S ...] [--out /work/bench-data/foreign]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.foreign_market import LEGIT_ROLES, PRESETS, generate, write  # noqa: E402
from storage.store import Store  # noqa: E402

FLAG = 70.0


def run_step(name: str, args: list[str], *, home: Path, log: Path) -> float:
    """One CLI command in the fresh home; stderr/stdout appended to `log`. -> wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLENS_")}
    env["LEDGERLENS_HOME"] = str(home)
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ python -m engine {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}); see {log}")
    return seconds


def pipeline(market_dir: Path, home: Path) -> dict[str, float]:
    """What a new user runs, timed step by step."""
    log = market_dir / "engine.log"
    log.write_text("")
    return {
        "ingest": run_step("ingest", ["ingest", "files", str(market_dir / "trades.jsonl"),
                                      str(market_dir / "operations.jsonl")], home=home, log=log),
        "rings": run_step("rings", ["rings"], home=home, log=log),
        "features": run_step("features", ["features"], home=home, log=log),
        "score": run_step("score", ["score", "--out", str(market_dir / "scores.csv")], home=home, log=log),
    }


def stored_rings(db: Path) -> dict[str, set[str]]:
    """Rings as the store holds them: {ring_id: member accounts}."""
    with Store(db, read_only=True) as store:
        rings = store.rings()
        if rings is None:
            return {}
        return {r: set(store.ring_members(r)["account_id"].to_list()) for r in rings["ring_id"].to_list()}


def wallet_scores(scores_csv: Path, labels: pl.DataFrame) -> pl.DataFrame:
    """Each scored wallet's best (wallet, pair) row with its label.

    Shapes: [wallet, score, pair_id, ring_id (engine), role, is_ring, true_ring, pattern, funding]"""
    scores = pl.read_csv(scores_csv, schema_overrides={"ring_id": pl.String})
    best = scores.sort("score", descending=True).unique("wallet", keep="first")
    return best.select("wallet", "score", "pair_id", "ring_id").join(
        labels.rename({"ring_id": "true_ring"}), on="wallet", how="left")


def ring_overlap(labels: pl.DataFrame, found: dict[str, set[str]]) -> pl.DataFrame:
    """Per planted ring: the found ring overlapping it best. Shapes: [true_ring, pattern, funding, size,
    best_ring, best_size, jaccard]"""
    rows = []
    for (ring, pattern, funding), members in labels.filter(pl.col("is_ring") == 1).group_by(
            "ring_id", "pattern", "funding"):
        truth = set(members["wallet"].to_list())
        best = max(((len(truth & f) / len(truth | f), r, len(f)) for r, f in found.items()), default=(0.0, None, 0))
        matched = best[0] > 0
        rows.append({"true_ring": ring, "pattern": pattern, "funding": funding, "size": len(truth),
                     "best_ring": best[1] if matched else None, "best_size": best[2] if matched else 0,
                     "jaccard": best[0]})
    return pl.DataFrame(rows).sort("true_ring")


def evaluate(market_dir: Path, home: Path) -> dict:
    labels = pl.read_csv(market_dir / "labels.csv", schema_overrides={"ring_id": pl.String})
    scored = wallet_scores(market_dir / "scores.csv", labels)
    found = stored_rings(home / "ledgerlens.duckdb")
    overlap = ring_overlap(labels, found)
    members = scored.filter(pl.col("is_ring") == 1)
    flagged = pl.col("score") >= FLAG
    top = scored.sort("score", descending=True).head(50)
    return {
        "n_scored_wallets": scored.height, "n_unlabelled_scored": scored.filter(pl.col("role").is_null()).height,
        "n_ring_wallets_scored": members.height, "n_ring_wallets_planted": labels["is_ring"].sum(),
        "pr_auc": float(average_precision_score(scored["is_ring"].fill_null(0), scored["score"])),
        "precision_at_flag": _share(scored.filter(flagged), pl.col("is_ring") == 1),
        "recall_at_flag": _share(members, flagged),
        "recall_by_pattern": _by(members, "pattern", flagged),
        "recall_by_funding": _by(members, "funding", flagged),
        "jaccard_by_pattern": {k: round(v, 3) for k, v in overlap.group_by("pattern").agg(
            pl.col("jaccard").mean()).sort("pattern").iter_rows()},
        "jaccard_mean": round(float(overlap["jaccard"].mean()), 3),
        "rings_found": {"planted": overlap.height, "any_overlap": int((overlap["jaccard"] > 0).sum()),
                        "jaccard_ge_0.8": int((overlap["jaccard"] >= 0.8).sum()), "stored_rings": len(found)},
        "legit_flag_rate": _by(scored.filter(pl.col("role").is_in(LEGIT_ROLES)), "role", flagged),
        "distinct_scores_top50": top["score"].n_unique(), "top50_range": [top["score"].min(), top["score"].max()],
        "share_scoring_zero": _share(scored, pl.col("score") == 0),
        "rings": overlap.to_dicts(),
        "failures": failures(scored, overlap),
    }


def _share(frame: pl.DataFrame, cond: pl.Expr) -> float | None:
    return round(float(frame.select(cond.mean()).item()), 4) if frame.height else None


def _by(frame: pl.DataFrame, key: str, cond: pl.Expr) -> dict:
    """{group: {"n": wallets, "rate": share meeting cond}}"""
    agg = frame.group_by(key).agg(n=pl.len(), rate=cond.mean().round(4)).sort(key)
    return {row[key]: {"n": row["n"], "rate": row["rate"]} for row in agg.iter_rows(named=True)}


def failures(scored: pl.DataFrame, overlap: pl.DataFrame) -> dict:
    """Examples behind every failing figure: missed ring members (with the ring the engine gave them),
    rings found badly (Jaccard < 0.8), legitimate wallets flagged."""
    missed = scored.filter((pl.col("is_ring") == 1) & (pl.col("score") < FLAG)).sort("true_ring", "score")
    flagged_legit = scored.filter(pl.col("role").is_in(LEGIT_ROLES) & (pl.col("score") >= FLAG))
    return {
        "missed_members": missed.select("wallet", "true_ring", "pattern", "funding", "score", "pair_id",
                                        "ring_id").to_dicts(),
        "poor_rings": overlap.filter(pl.col("jaccard") < 0.8).to_dicts(),
        "flagged_legit": flagged_legit.sort("score", descending=True).head(40)
        .select("wallet", "role", "score", "pair_id", "ring_id").to_dicts(),
    }


def bench(preset: str, seed: int, out: Path) -> dict:
    name = preset if seed == PRESETS[preset].seed else f"{preset}-{seed}"
    config = replace(PRESETS[preset], seed=seed)
    market_dir = out / name
    home = market_dir / "home"
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=True)
    home.mkdir(parents=True)
    started = time.perf_counter()
    meta = write(generate(config, prefix=f"{name}-"), market_dir)
    timings = {"generate": time.perf_counter() - started, **pipeline(market_dir, home)}
    result = {"market": name, "preset": preset, "seed": seed, "counts": meta["counts"],
              "seconds": {k: round(v, 2) for k, v in timings.items()},
              "load": os.getloadavg(), **evaluate(market_dir, home)}
    result["quarantined"] = quarantined(market_dir / "engine.log")
    plans = {r["ring_id"]: r for r in meta["rings"]}
    keep = ("amount_style", "camouflage", "pool_leg_share", "pair_split", "maker_is_giver", "n_legs", "pairs",
            "max_net_in_mean_legs")
    result["rings"] = [{**r, **{k: plans[r["true_ring"]][k] for k in keep}} for r in result["rings"]]
    (market_dir / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def quarantined(log: Path) -> int:
    """Quarantined rows as the ingest runs reported them ('..., N quarantined, ...')."""
    total = 0
    for line in log.read_text().splitlines():
        if line.startswith("run ") and " quarantined" in line:
            total += int(line.split(" quarantined")[0].rsplit(", ", 1)[1].replace(",", ""))
    return total


def table(results: list[dict]) -> str:
    """The summary printed at the end (Markdown)."""
    lines = ["| market | trades | ring wallets | PR-AUC | precision@70 | recall@70 | mean Jaccard | max legit flag "
             "| distinct top 50 | ingest / rings / features / score s |", "|---|" * 1 + "---|" * 9]
    for r in results:
        worst = max(r["legit_flag_rate"].items(), key=lambda kv: kv[1]["rate"])
        s = r["seconds"]
        lines.append(f"| {r['market']} | {r['counts']['trades']:,} | {r['n_ring_wallets_scored']} | {r['pr_auc']:.3f} "
                     f"| {r['precision_at_flag']} | {r['recall_at_flag']} | {r['jaccard_mean']} "
                     f"| {worst[1]['rate']:.2%} ({worst[0]}) | {r['distinct_scores_top50']} "
                     f"| {s['ingest']} / {s['rings']} / {s['features']} / {s['score']} |")
    for r in results:
        lines += [f"\n{r['market']}: per pattern (recall@70, mean Jaccard, n wallets)"]
        lines += [f"  {p:16s} {v['rate']:.3f}  {r['jaccard_by_pattern'].get(p, float('nan')):.3f}  n={v['n']}"
                  for p, v in r["recall_by_pattern"].items()]
        lines += ["  by funding: " + ", ".join(f"{k} {v['rate']:.3f} (n={v['n']})"
                                              for k, v in r["recall_by_funding"].items())]
        lines += ["  legit flag rate: " + ", ".join(f"{k} {v['rate']:.2%} (n={v['n']})"
                                                   for k, v in r["legit_flag_rate"].items())]
    return "\n".join(lines)


def pooled(results: list[dict]) -> str:
    """Per pattern over every market run: recall@70 of all ring wallets and mean Jaccard of all rings, with the
    ring variants that decide it (ping-pong: pair or hub; two-pair: by_edge or by_leg)."""
    rings = pl.DataFrame([r for res in results for r in res["rings"]])
    wallets = {}
    for res in results:
        for pattern, v in res["recall_by_pattern"].items():
            n, hit = wallets.get(pattern, (0, 0.0))
            wallets[pattern] = (n + v["n"], hit + v["rate"] * v["n"])
    variant = (pl.when(pl.col("pattern") == "ping_pong").then(pl.format("size {}", pl.col("size")))
               .when(pl.col("pattern") == "two_pair").then(pl.col("pair_split")).otherwise(pl.lit("")))
    by = rings.with_columns(variant=variant).group_by("pattern", "variant").agg(
        n_rings=pl.len(), jaccard=pl.col("jaccard").mean().round(3), found=(pl.col("jaccard") >= 0.8).sum(),
    ).sort("pattern", "variant")
    lines = [f"\npooled over {len(results)} markets: pattern, recall@70 (ring wallets), mean Jaccard (rings)"]
    for pattern, (n, hit) in sorted(wallets.items()):
        j = rings.filter(pl.col("pattern") == pattern)["jaccard"].mean()
        lines.append(f"  {pattern:16s} {hit / n:.3f} (n={n})  {j:.3f}")
    lines += [f"  {r['pattern']} {r['variant']}: {r['found']}/{r['n_rings']} rings with Jaccard >= 0.8, "
              f"mean {r['jaccard']}" for r in by.iter_rows(named=True) if r["variant"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", nargs="+", default=["A", "B"], choices=sorted(PRESETS))
    parser.add_argument("--extra-seeds", type=int, nargs="*", default=[],
                        help="also run every market with these seeds (same parameters)")
    parser.add_argument("--out", type=Path, default=Path("/work/bench-data/foreign"))
    parser.add_argument("--summarise-only", action="store_true",
                        help="print the tables from the result.json files already under --out")
    args = parser.parse_args(argv)
    if args.summarise_only:
        results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/result.json"))]
        print(table(results) + pooled(results))
        return
    results = []
    for preset, seed in [(p, s) for p in args.markets for s in [PRESETS[p].seed, *args.extra_seeds]]:
        print(f"market {preset} seed {seed}: generating and running the pipeline ...", file=sys.stderr, flush=True)
        results.append(bench(preset, seed, args.out))
        print(json.dumps({k: results[-1][k] for k in ("market", "seconds", "pr_auc", "recall_at_flag")}),
              file=sys.stderr, flush=True)
    summary = table(results) + pooled(results)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
