"""Benford statistics over trailing windows "as of" t, vectorised over groups.

Windows are nested (1h within 4h ... within 30d), so each amount is coded once
with the narrowest window holding it and the wider windows are cumulative sums:
one bincount for every group and window at once. Digit counts are kept only for
the groups with at least the test's minimum n in the widest window (the others
are "insufficient data" whatever their digits), and the statistics are computed
only for groups with enough data: memory stays O(amounts + groups x windows).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import polars as pl

from engine import benford
from engine.features.sides import TRADE_COLUMNS, FeatureConfig, require
from storage.market_digits import market_digits_of

# The three window statistics of the feature matrix (first-digit test).
WINDOW_STATS = ("excess_mad", "neglog_p", "ks")
NEGLOG_P_CAP = 300.0  # -log10 p is capped (p underflows to 0 beyond ~1e-308)


class WindowCodes(NamedTuple):
    """Amounts of a frame coded for window counting (see `window_codes`)."""

    keys: pl.DataFrame  # one row per group (group_cols), in order of first appearance
    group: np.ndarray  # per amount: row of `keys` (int64)
    bucket: np.ndarray  # per amount: index of the narrowest window (by width) holding it
    digits: np.ndarray  # per amount: its leading digits (benford.leading_digits: all the tests read)
    n_windows: int
    weight: np.ndarray | None = None  # per amount: how many amounts it stands for (None: one each)


def window_codes(
    frame: pl.DataFrame, *, group_cols: list[str], amount_col: str, as_of: datetime,
    windows: tuple[tuple[str, timedelta], ...],
) -> WindowCodes:  # fmt: skip
    """Group and window codes of the amounts of `frame` in the widest window.

    `frame` needs group_cols, amount_col (stroops) and closed_at (rows after
    as_of are ignored; windows are (as_of - width, as_of]). Windows are nested, so
    each amount is coded with the narrowest window holding it; one pass serves
    every test and window.
    """
    widths = sorted(w for _, w in windows)
    f = frame.filter((pl.col("closed_at") <= as_of) & (pl.col("closed_at") > as_of - widths[-1]))
    age = pl.lit(len(widths) - 1, dtype=pl.Int64)
    for i, width in reversed(list(enumerate(widths))):
        age = pl.when(pl.col("closed_at") > as_of - width).then(pl.lit(i, dtype=pl.Int64)).otherwise(age)
    keys = f.select(group_cols).unique(maintain_order=True).with_row_index("_g")
    coded = f.select(*group_cols, pl.col(amount_col).fill_null(0), b=age).join(
        keys, on=group_cols, how="left", nulls_equal=True
    )
    return WindowCodes(keys.drop("_g"), coded["_g"].to_numpy().astype(np.int64), coded["b"].to_numpy(),
                       benford.leading_digits(coded[amount_col].to_numpy()), len(widths))  # fmt: skip


def sparse_window_counts(
    codes: WindowCodes, *, test: str, min_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, rows, counts) of a Benford test per group and window, by window width.

    n[g, w]: counted amounts of group g in window w (groups x windows); rows: the
    groups with n >= min_n in the widest window, the only ones whose digits matter
    (n grows with the width); counts[r, w, d]: digit counts of group rows[r]. Memory
    stays O(amounts + groups x windows), not groups x windows x digits.
    """
    k = len(benford.digit_values(test))
    n_g, n_w = codes.keys.height, codes.n_windows
    idx = benford.digit_index_of_leading(codes.digits, test)
    ok = idx >= 0
    g, b, idx = codes.group[ok], codes.bucket[ok], idx[ok]
    weight = None if codes.weight is None else codes.weight[ok]
    n = np.cumsum(_bincount(g * n_w + b, weight, n_g * n_w).reshape(n_g, n_w), axis=1)
    wide = (n[:, -1] >= min_n) & (n[:, -1] > 0)
    rows = np.flatnonzero(wide)
    rank = np.cumsum(wide) - 1
    m = wide[g]
    flat = _bincount((rank[g[m]] * n_w + b[m]) * k + idx[m], None if weight is None else weight[m], len(rows) * n_w * k)
    return n, rows, np.cumsum(flat.reshape(len(rows), n_w, k), axis=1)


def _bincount(x: np.ndarray, weight: np.ndarray | None, size: int) -> np.ndarray:
    """Counts (int64) of each value of x in range(size), each weighing `weight` (default 1)."""
    if weight is None:
        return np.bincount(x, minlength=size)
    return np.bincount(x, weights=weight, minlength=size).round().astype(np.int64)  # exact below 2^53


def pair_window_codes(sides: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig) -> WindowCodes:
    """The window codes of the wallets' base amounts per (wallet, pair_id): what the Benford
    features and the table's wallet_pair scope both count."""
    return window_codes(sides, group_cols=["wallet", "pair_id"], amount_col="base_amount", as_of=as_of,
                        windows=cfg.windows)  # fmt: skip


def benford_window_features(
    sides: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig, codes: WindowCodes | None = None
) -> pl.DataFrame:
    """First-digit Benford features per (wallet, pair_id) and window.

    codes: `pair_window_codes(sides)` when already computed.
    Shapes: wallet, pair_id, then per window w: benford_excess_mad_{w},
    benford_neglog_p_{w}, benford_ks_{w} (null when n < benford.MIN_N).
    """
    if codes is None:
        codes = pair_window_codes(sides, as_of=as_of, cfg=cfg)
    n, rows, counts = sparse_window_counts(codes, test="first", min_n=benford.MIN_N["first"])
    widths = sorted(w for _, w in cfg.windows)
    cols = {}
    for name, width in cfg.windows:
        w = widths.index(width)
        s = benford.stats_from_counts(counts[:, w, :], "first", labels=False)
        neglog = np.minimum(-np.log10(np.maximum(s["p_value"], 1e-320)), NEGLOG_P_CAP)
        for stat, values in (("excess_mad", s["excess_mad"]), ("neglog_p", neglog), ("ks", s["ks"])):
            full = np.full(codes.keys.height, np.nan)
            full[rows] = values
            cols[f"benford_{stat}_{name}"] = pl.Series(full, dtype=pl.Float64, nan_to_null=True)
    return pl.concat([codes.keys, pl.DataFrame(cols)], how="horizontal")


# The trade columns the pair and asset scopes read (no account ids).
AMOUNT_COLUMNS = ("pair_id", "closed_at", "sold_asset", "sold_amount", "bought_asset", "bought_amount")

Scopes = dict[str, tuple[pl.DataFrame, list[str], str]]  # scope: (frame, group_cols, amount_col)


def wallet_scopes(sides: pl.DataFrame) -> Scopes:
    """The amounts the wallet scopes test: the wallet's base-asset amounts, per
    (wallet, pair) and per wallet. Complete for a wallet when its sides are."""
    return {"wallet_pair": (sides, ["wallet", "pair_id"], "base_amount"), "wallet": (sides, ["wallet"], "base_amount")}


BENFORD_TABLE_KEYS: dict[str, pl.DataType] = {
    "as_of": pl.Datetime("us", "UTC"), "scope": pl.String, "wallet": pl.String, "pair_id": pl.String,
    "asset": pl.String, "window": pl.String,
}  # fmt: skip
SCOPE_KEYS: dict[str, list[str]] = {"wallet_pair": ["wallet", "pair_id"], "wallet": ["wallet"], "pair": ["pair_id"],
                                    "asset": ["asset"]}  # fmt: skip


def benford_table(
    scopes: Scopes, *, as_of: datetime, cfg: FeatureConfig, coded: dict[str, WindowCodes] | None = None
) -> pl.DataFrame:
    """Every Benford test of `scopes` (`wallet_scopes`; the market scopes: `market_benford`) per group and window.

    coded: the window codes of some scopes when already computed (`window_codes` of the
    scope's frame, its keys as the table's strings), counted instead of the frame.

    Shapes (long): as_of, scope, wallet, pair_id, asset (the scope's key columns,
    others null), window, then benford.STAT_COLUMNS (test, n, chi2, p_value, mad,
    mad_class, expected_mad, excess_mad, ks, z_max, verdict, flag). Rows: groups
    with n > 0, by scope, test, window, then group in order of first appearance.
    """
    parts = []
    for scope, (frame, group_cols, amount_col) in scopes.items():
        codes = (coded or {}).get(scope)
        if codes is None:
            codes = window_codes(frame, group_cols=group_cols, amount_col=amount_col, as_of=as_of, windows=cfg.windows)
        parts += _scope_tests(scope, codes, group_cols, as_of=as_of, cfg=cfg)
    return _table(parts)


def _scope_tests(
    scope: str, codes: WindowCodes, group_cols: list[str], *, as_of: datetime, cfg: FeatureConfig
) -> list[pl.DataFrame]:
    """The rows of every test and window of one scope's coded amounts (groups with n > 0)."""
    widths = sorted(w for _, w in cfg.windows)
    keys = codes.keys.select(
        pl.lit(as_of, dtype=BENFORD_TABLE_KEYS["as_of"]).alias("as_of"), pl.lit(scope).alias("scope"),
        *[(pl.col(c) if c in group_cols else pl.lit(None)).cast(BENFORD_TABLE_KEYS[c]).alias(c)
          for c in ("wallet", "pair_id", "asset")],
    )  # fmt: skip
    # Every window of a test in one call (the statistics are row-wise): the groups' rows window
    # after window, in the configured order.
    order = [widths.index(width) for _, width in cfg.windows]
    by_window = pl.concat([keys.with_columns(window=pl.lit(name)) for name, _ in cfg.windows])
    parts = []
    for test in benford.TESTS:
        n, rows, counts = sparse_window_counts(codes, test=test, min_n=benford.MIN_N[test])
        part = benford.sparse_stats_frame(
            by_window, n[:, order].T.ravel(), np.concatenate([rows + i * keys.height for i in range(len(order))]),
            counts[:, order, :].transpose(1, 0, 2).reshape(-1, counts.shape[2]), test,
        )  # fmt: skip
        parts.append(part.filter(pl.col("n") > 0))
    return parts


def _table(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema={**BENFORD_TABLE_KEYS, **benford.STAT_COLUMNS})
    return pl.concat(parts).select(*BENFORD_TABLE_KEYS, *benford.STAT_COLUMNS)


# The digit table of the market scopes: per group and window bucket (the narrowest window
# holding the amount, see `window_codes`), how many amounts have each leading digits
# (benford.leading_digits; 0: counted by no test). Batches of a market add up.
MARKET_DIGITS_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String, "pair_id": pl.String, "asset": pl.String, "bucket": pl.Int64, "digits": pl.Int64,
    "n": pl.Int64,
}  # fmt: skip


def market_window_starts(as_of: datetime, cfg: FeatureConfig) -> list[datetime]:
    """The starts of the feature windows as of `as_of`, narrowest first: the buckets of the
    market digit table (storage.market_digits)."""
    return [as_of - width for width in sorted(w for _, w in cfg.windows)]


def market_digits(trades: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig) -> pl.DataFrame:
    """The digit table (MARKET_DIGITS_SCHEMA) of the pair and asset scopes of `trades` (the
    AMOUNT_COLUMNS) in memory, by the one SQL definition the store and Spark run
    (storage.market_digits): a few rows per pair, asset, window and leading digits."""
    t = require(trades, {c: TRADE_COLUMNS[c] for c in AMOUNT_COLUMNS}, "trades")
    return market_digits_of(t, as_of=as_of, starts=market_window_starts(as_of, cfg)).cast(MARKET_DIGITS_SCHEMA)


def market_benford(digits: pl.DataFrame, *, as_of: datetime, cfg: FeatureConfig) -> pl.DataFrame:
    """The pair and asset scopes of the Benford table (as `benford_table`) from their digit
    table (`market_digits`, or the same SQL's rows from the store or Spark: cast here; rows in
    any order, a group's counts split over rows or not)."""
    total = digits.cast(MARKET_DIGITS_SCHEMA).group_by("scope", "pair_id", "asset", "bucket", "digits", maintain_order=True).agg(pl.col("n").sum())
    parts = []
    for scope in ("pair", "asset"):
        group_cols = SCOPE_KEYS[scope]
        table = total.filter(pl.col("scope") == scope)
        keys = table.select(group_cols).unique().sort(group_cols).with_row_index("_g")  # one order, whatever the batches
        coded = table.join(keys, on=group_cols, how="left", nulls_equal=True, maintain_order="left")
        codes = WindowCodes(keys.drop("_g"), coded["_g"].to_numpy().astype(np.int64), coded["bucket"].to_numpy(),
                            coded["digits"].to_numpy(), len(cfg.windows), coded["n"].to_numpy())  # fmt: skip
        parts += _scope_tests(scope, codes, group_cols, as_of=as_of, cfg=cfg)
    return _table(parts)
