"""Benford statistics over trailing windows "as of" t, vectorised over groups.

Windows are nested (1h within 4h ... within 30d), so each amount is counted once
in the narrowest window holding it and the wider windows are cumulative sums of
a (groups x windows x digits) count matrix: one bincount for every group and
window at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from engine import benford
from engine.features.sides import TRADE_COLUMNS, FeatureConfig, require

# The three window statistics of the feature matrix (first-digit test).
WINDOW_STATS = ("excess_mad", "neglog_p", "ks")
NEGLOG_P_CAP = 300.0  # -log10 p is capped (p underflows to 0 beyond ~1e-308)


def window_counts(
    frame: pl.DataFrame,
    *,
    group_cols: list[str],
    amount_col: str,
    as_of: datetime,
    windows: tuple[tuple[str, timedelta], ...],
    test: str,
) -> tuple[pl.DataFrame, np.ndarray]:
    """(keys, counts): counts[g, w, d] = amounts of group g in window w with digit d.

    `frame` needs group_cols, amount_col (stroops) and closed_at (rows after
    as_of are ignored; windows are (as_of - width, as_of]).
    """
    k = len(benford.digit_values(test))
    widths = sorted(windows, key=lambda w: w[1])
    f = frame.filter((pl.col("closed_at") <= as_of) & (pl.col("closed_at") > as_of - widths[-1][1]))
    age = pl.lit(len(widths) - 1, dtype=pl.Int64)
    for i, (_, width) in reversed(list(enumerate(widths))):
        age = pl.when(pl.col("closed_at") > as_of - width).then(pl.lit(i, dtype=pl.Int64)).otherwise(age)
    keys = f.select(group_cols).unique(maintain_order=True).with_row_index("_g")
    coded = f.select(*group_cols, amount_col, b=age).join(keys, on=group_cols, how="left", nulls_equal=True)
    idx = benford.digit_index(coded[amount_col].fill_null(0).to_numpy(), test)
    ok = idx >= 0
    code = (coded["_g"].to_numpy().astype(np.int64) * len(widths) + coded["b"].to_numpy()) * k + idx
    flat = np.bincount(code[ok], minlength=keys.height * len(widths) * k)
    counts = np.cumsum(flat.reshape(keys.height, len(widths), k), axis=1)
    order = [widths.index(w) for w in windows]
    return keys.drop("_g"), counts[:, order, :]


def benford_window_features(sides: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig) -> pl.DataFrame:
    """First-digit Benford features per (wallet, pair_id) and window.

    Shapes: wallet, pair_id, then per window w: benford_excess_mad_{w},
    benford_neglog_p_{w}, benford_ks_{w} (null when n < benford.MIN_N).
    """
    keys, counts = window_counts(
        sides, group_cols=["wallet", "pair_id"], amount_col="base_amount", as_of=as_of,
        windows=cfg.windows, test="first",
    )  # fmt: skip
    cols = {}
    for w, (name, _) in enumerate(cfg.windows):
        s = benford.stats_from_counts(counts[:, w, :], "first", labels=False)
        neglog = np.minimum(-np.log10(np.maximum(s["p_value"], 1e-320)), NEGLOG_P_CAP)
        for stat, values in (("excess_mad", s["excess_mad"]), ("neglog_p", neglog), ("ks", s["ks"])):
            cols[f"benford_{stat}_{name}"] = pl.Series(values, dtype=pl.Float64, nan_to_null=True)
    return pl.concat([keys, pl.DataFrame(cols)], how="horizontal")


def _base_amount(t: pl.DataFrame) -> pl.Expr:
    base = pl.col("pair_id").str.split("/").list.first()
    return pl.when(pl.col("sold_asset") == base).then("sold_amount").otherwise("bought_amount")


def scope_frames(trades: pl.DataFrame, sides: pl.DataFrame) -> dict[str, tuple[pl.DataFrame, list[str], str]]:
    """The amounts each Benford scope tests: {scope: (frame, group_cols, amount_col)}.

    wallet_pair / wallet: the wallet's base-asset amounts; pair: one base amount
    per trade; asset: every amount of the asset (two per trade).
    """
    t = require(trades, TRADE_COLUMNS, "trades")
    per_trade = t.select("pair_id", "closed_at", amount=_base_amount(t))
    per_asset = pl.concat([
        t.select("closed_at", asset=pl.col("sold_asset"), amount=pl.col("sold_amount")),
        t.select("closed_at", asset=pl.col("bought_asset"), amount=pl.col("bought_amount")),
    ])  # fmt: skip
    return {
        "wallet_pair": (sides, ["wallet", "pair_id"], "base_amount"),
        "wallet": (sides, ["wallet"], "base_amount"),
        "pair": (per_trade, ["pair_id"], "amount"),
        "asset": (per_asset, ["asset"], "amount"),
    }


BENFORD_TABLE_KEYS: dict[str, pl.DataType] = {
    "as_of": pl.Datetime("us", "UTC"), "scope": pl.String, "wallet": pl.String, "pair_id": pl.String,
    "asset": pl.String, "window": pl.String,
}  # fmt: skip


def benford_table(trades: pl.DataFrame, sides: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig) -> pl.DataFrame:
    """Every Benford test per wallet, per (wallet, pair), per pair, per asset and window.

    Shapes (long): as_of, scope, wallet, pair_id, asset (the scope's key columns,
    others null), window, then benford.STAT_COLUMNS (test, n, chi2, p_value, mad,
    mad_class, expected_mad, excess_mad, ks, z_max, verdict, flag).
    """
    parts = []
    for scope, (frame, group_cols, amount_col) in scope_frames(trades, sides).items():
        for test in benford.TESTS:
            keys, counts = window_counts(frame, group_cols=group_cols, amount_col=amount_col, as_of=as_of,
                                         windows=cfg.windows, test=test)  # fmt: skip
            for w, (name, _) in enumerate(cfg.windows):
                part = benford.stats_frame(keys, counts[:, w, :], test).filter(pl.col("n") > 0)
                parts.append(part.with_columns(as_of=pl.lit(as_of), scope=pl.lit(scope), window=pl.lit(name)))
    if not parts:
        return pl.DataFrame(schema={**BENFORD_TABLE_KEYS, **benford.STAT_COLUMNS})
    out = pl.concat(parts, how="diagonal_relaxed")
    for c, t in BENFORD_TABLE_KEYS.items():
        out = out.with_columns((pl.col(c) if c in out.columns else pl.lit(None)).cast(t).alias(c))
    return out.select(*BENFORD_TABLE_KEYS, *benford.STAT_COLUMNS)
