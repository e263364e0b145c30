"""How easy is the simulated market? PR-AUC of two naive per-wallet baselines.

    .venv/bin/python benchmarks/bench_synth_baselines.py [--scale 1.0] [--seed 42] [--min-trades 5]

Baselines (each alone, higher = more suspicious):
- counterparty concentration: share of the wallet's trades with its top counterparty
  (an account or a pool), and the HHI of those shares;
- Benford first-digit MAD over the amounts the wallet traded.
Positives are ring members (role wash_trader). If either is near 1.0 the simulator
is too easy (the issue asks to fix it then).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score

from engine.synthetic import generate_market

BENFORD = np.log10(1 + 1 / np.arange(1, 10))


def wallet_sides(trades: pl.DataFrame) -> pl.DataFrame:
    """One row per (wallet, trade): wallet, counterparty, amount given, amount received (str)."""
    def side(me: str, other: str) -> pl.DataFrame:
        cp = pl.coalesce(pl.col(f"{other}_account"), pl.col(f"{other}_liquidity_pool_id"))
        return trades.filter(pl.col(f"{me}_account").is_not_null()).select(
            wallet=pl.col(f"{me}_account"), counterparty=cp, given=pl.col(f"{me}_amount"), got=pl.col(f"{other}_amount"))
    return pl.concat([side("base", "counter"), side("counter", "base")])


def first_digit(amount: pl.Expr) -> pl.Expr:
    return amount.str.replace(r"^[0.]*", "").str.slice(0, 1).cast(pl.Int32)


def features(sides: pl.DataFrame) -> pl.DataFrame:
    """wallet, n_trades, top_share, hhi, benford_mad."""
    pairs = sides.group_by("wallet", "counterparty").len()
    conc = pairs.with_columns(share=pl.col("len") / pl.col("len").sum().over("wallet")).group_by("wallet").agg(
        n_trades=pl.col("len").sum(), top_share=pl.col("share").max(), hhi=(pl.col("share") ** 2).sum())
    digits = pl.concat([sides.select("wallet", d=first_digit(pl.col("given"))),
                        sides.select("wallet", d=first_digit(pl.col("got")))])
    freq = digits.group_by("wallet", "d").len().with_columns(p=pl.col("len") / pl.col("len").sum().over("wallet"))
    full = freq.select("wallet").unique().join(pl.DataFrame({"d": np.arange(1, 10, dtype=np.int32), "e": BENFORD}), how="cross")
    mad = full.join(freq, on=["wallet", "d"], how="left").with_columns(pl.col("p").fill_null(0)).group_by("wallet").agg(
        benford_mad=(pl.col("p") - pl.col("e")).abs().mean())
    return conc.join(mad, on="wallet")


def evaluate(out_dir: Path, *, min_trades: int) -> dict[str, float]:
    trades = pl.read_ndjson(out_dir / "trades.jsonl", infer_schema_length=None)
    with (out_dir / "labels.csv").open() as f:
        wash = {r["account"] for r in csv.DictReader(f) if r["role"] == "wash_trader"}
    feats = features(wallet_sides(trades)).filter(pl.col("n_trades") >= min_trades)
    y = feats["wallet"].is_in(list(wash)).to_numpy()
    out = {"wallets": feats.height, "positives": int(y.sum()), "prevalence": float(y.mean())}
    for name in ("top_share", "hhi", "benford_mad"):
        out[f"pr_auc_{name}"] = float(average_precision_score(y, feats[name].to_numpy()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--min-trades", type=int, nargs="+", default=[1, 5, 20])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate_market(Path(tmp), seed=args.seed, scale=args.scale)
        for m in args.min_trades:
            r = evaluate(Path(tmp), min_trades=m)
            print(f"min_trades={m}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
