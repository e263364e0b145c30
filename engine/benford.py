"""Benford digit tests on exact amounts (int64 stroops), single and grouped.

Three tests: ``first`` (digits 1-9, df 8), ``first_two`` (10-99, df 89) and
``second`` (0-9, df 9). Amounts are stroops (1 unit = 10^7): the significant
digits of ``amount / 1e7`` are the leading digits of the integer stroop count, so
digits come from integer arithmetic only, never from binary floats. As in
Nigrini and ``benford_py``, ``first_two`` and ``second`` use amounts of at least
10 stroops (two significant digits); amounts <= 0 are left out.

Figures per test: digit counts and proportions, chi-square and its p-value
(scipy ``chi2.sf``), per-digit Z with Nigrini's continuity correction ``1/(2n)``
(applied only when it is smaller than ``|p_obs - p_exp|``), MAD with Nigrini's
conformity classes (``MAD_CLASSES``), KS distance (largest absolute difference
of the cumulative proportions).

Sample-size-aware verdict (the flag). MAD alone flags most honest samples of a
few hundred amounts: sampling noise alone gives MAD ~ 0.02 at n = 100 for the
first digit. So:

* ``n < MIN_N[test]`` (first 50, first_two 200, second 50): verdict
  ``"insufficient data"``; every statistic is null (never 0) and the flag is
  null (never "nonconforming").
* otherwise ``expected_mad`` is E[MAD] of a genuine Benford sample of that n,
  exact from the binomial mean absolute deviation (de Moivre):
  ``E|X - np| = 2 (k+1) (1-p) P(X = k+1)``, ``k = floor(np)``, per digit.
  ``excess_mad = mad - expected_mad``.
* ``flag`` (verdict ``"nonconforming"``) when BOTH the chi-square p-value is
  below ``ALPHA`` (0.001: the departure is not sampling noise at this n; strict
  because thousands of wallets are tested) AND ``excess_mad`` exceeds Nigrini's
  nonconformity bound for the test (0.015 / 0.0022 / 0.012: the departure is
  large, not merely significant, as chi-square alone becomes at large n).
  Otherwise ``"conforming"``. ``mad_class`` is Nigrini's class of the raw MAD,
  reported for reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
from scipy import special
from scipy.special._ufuncs import _binom_pmf  # what scipy.stats.binom.pmf computes, without importing scipy.stats

TESTS: tuple[str, ...] = ("first", "first_two", "second")
MIN_N: dict[str, int] = {"first": 50, "first_two": 200, "second": 50}
ALPHA = 0.001
# Nigrini's MAD bounds: close conformity / acceptable / marginal; above: nonconformity.
MAD_CLASSES: dict[str, tuple[float, float, float]] = {
    "first": (0.006, 0.012, 0.015),
    "first_two": (0.0012, 0.0018, 0.0022),
    "second": (0.008, 0.010, 0.012),
}
MAD_CLASS_NAMES = ("close conformity", "acceptable", "marginal", "nonconformity")
VERDICTS = ("insufficient data", "conforming", "nonconforming")
INSUFFICIENT = "insufficient data"

_POW10 = np.array([10**i for i in range(19)], dtype=np.int64)


def digit_values(test: str) -> np.ndarray:
    """The digit values a test counts, in column order (1-9, 10-99 or 0-9)."""
    _check_test(test)
    return {"first": np.arange(1, 10), "first_two": np.arange(10, 100), "second": np.arange(10)}[test]


@cache
def _expected(test: str) -> np.ndarray:
    if test == "second":
        d1 = np.arange(1, 10)[:, None]
        return np.log10(1.0 + 1.0 / (10 * d1 + np.arange(10)[None, :])).sum(axis=0)
    return np.log10(1.0 + 1.0 / digit_values(test))


def expected_proportions(test: str) -> np.ndarray:
    """Benford's proportions for the test's digits (sum to 1)."""
    _check_test(test)
    return _expected(test).copy()


def digit_index(stroops: np.ndarray, test: str) -> np.ndarray:
    """Column index of each amount's digit for `test` (int64), -1 when not counted.

    Integer arithmetic only: the leading digits come from `leading_digits` (a search in the
    powers of ten and an integer division), the test's digit from a table of the 100 values
    they can take.
    """
    return digit_index_of_leading(leading_digits(stroops), test)


def digit_index_of_leading(leading: np.ndarray, test: str) -> np.ndarray:
    """`digit_index` of amounts given by their `leading_digits` (0-99), without searching again."""
    _check_test(test)
    return _LEADING_INDEX[test][leading]


def leading_digits(stroops: np.ndarray) -> np.ndarray:
    """The first two significant digits of each amount (10-99), the amount itself when it has
    one digit (1-9), 0 when it is not positive: every test reads only these, so
    `digit_index(leading_digits(x), test) == digit_index(x, test)` and amounts can be
    counted by their leading digits (engine.features.benford_features.market_digits)."""
    x = np.asarray(stroops, dtype=np.int64)
    n_digits = np.searchsorted(_POW10, x, side="right")  # 10^(n-1) <= x < 10^n
    return np.where(x > 0, x // _POW10[np.maximum(n_digits - 2, 0)], 0)


def _leading_index() -> dict[str, np.ndarray]:
    """Per test, the digit index of each leading-digits value 0-99 (-1: not counted): `first`
    counts every positive amount, `first_two` and `second` those of at least two digits."""
    d = np.arange(100)
    two = d >= 10
    return {
        "first": np.where(d == 0, -1, np.where(two, d // 10, d) - 1),
        "first_two": np.where(two, d - 10, -1),
        "second": np.where(two, d % 10, -1),
    }


_LEADING_INDEX = _leading_index()


def count_digits(stroops: np.ndarray, test: str) -> np.ndarray:
    """Counts per digit (length 9 / 90 / 10) of the amounts counted by `test`."""
    idx = digit_index(stroops, test)
    k = len(digit_values(test))
    return np.bincount(idx[idx >= 0], minlength=k).astype(np.int64)


def expected_mad(n: np.ndarray | int, test: str) -> np.ndarray:
    """E[MAD] of a genuine Benford sample of size n (exact, binomial), per n.

    E|X/n - p| with X ~ Binomial(n, p) is de Moivre's 2 (k+1) (1-p) P(X=k+1) / n,
    k = floor(n p); averaged over the test's digits. n <= 0 gives NaN.
    """
    n_arr = np.atleast_1d(np.asarray(n, dtype=np.int64))
    uniq, inverse = np.unique(n_arr, return_inverse=True)  # evaluate each distinct n once
    p = _expected(test)[None, :]
    nn = np.maximum(uniq, 1)[:, None].astype(np.float64)
    k = np.floor(nn * p)
    md = 2.0 * (k + 1.0) * (1.0 - p) * _binom_pmf(k + 1.0, nn, p) / nn  # 0 < p < 1, 1 <= k + 1 <= nn
    out = md.mean(axis=1)[inverse.ravel()]
    out[n_arr <= 0] = np.nan
    return out


_FLOAT_STATS = ("z_max", "chi2", "p_value", "mad", "expected_mad", "excess_mad", "ks")


def _stats_of_enough(counts: np.ndarray, test: str) -> dict:
    """The statistics of count rows that all have n >= min_n > 0 (float64 groups x digits).

    Row-wise arithmetic only, so a row's figures do not depend on the other rows:
    computing them on the subset of rows that have enough data gives the same
    values as on the full matrix, at a fraction of the cost.
    """
    p = _expected(test)[None, :]
    n = counts.sum(axis=1)
    nn = n[:, None]
    found = counts / nn
    diff = np.abs(found - p)
    correction = 1.0 / (2.0 * nn)
    diff_cc = np.where(correction < diff, diff - correction, diff)
    z = diff_cc / np.sqrt(p * (1.0 - p) / nn)
    chi2 = ((counts - nn * p) ** 2 / (nn * p)).sum(axis=1)
    mad = diff.mean(axis=1)
    e_mad = expected_mad(n.astype(np.int64), test)
    return {
        "found": found, "z": z, "z_max": z.max(axis=1), "chi2": chi2,
        "p_value": special.chdtrc(p.shape[1] - 1, chi2), "mad": mad, "expected_mad": e_mad,
        "excess_mad": mad - e_mad, "ks": np.abs(np.cumsum(found, axis=1) - np.cumsum(p, axis=1)).max(axis=1),
    }  # fmt: skip


def _label_codes(s: dict, test: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(mad_class index into MAD_CLASS_NAMES, flag) of rows with enough data."""
    flag = (s["p_value"] < alpha) & (s["excess_mad"] > MAD_CLASSES[test][2])
    return np.searchsorted(np.array(MAD_CLASSES[test]), np.nan_to_num(s["mad"]), side="left"), flag


def stats_from_counts(
    counts: np.ndarray, test: str, *, alpha: float = ALPHA, min_n: int | None = None, labels: bool = True
) -> dict:
    """Vectorised statistics of a (groups x digits) count matrix.

    Returns a dict of arrays (one value per group; ``found`` and ``z`` are
    groups x digits): n, found, z, z_max, chi2, p_value, mad, mad_class,
    expected_mad, excess_mad, ks, verdict, flag. Groups with n < min_n get NaN
    statistics, mad_class None, verdict "insufficient data" and flag None.
    labels=False skips the text columns (mad_class, verdict, flag) for speed.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    min_n = MIN_N[test] if min_n is None else min_n
    n = counts.sum(axis=1)
    enough = (n >= min_n) & (n > 0)
    e = _stats_of_enough(counts[enough], test)
    out = {"n": n.astype(np.int64)}
    for key, values in e.items():
        full = np.full((len(n), *values.shape[1:]), np.nan)
        full[enough] = values
        out[key] = full
    if not labels:
        return out
    cls, flag = _label_codes(e, test, alpha)
    out["mad_class"] = np.full(len(n), None, dtype=object)
    out["mad_class"][enough] = np.array(MAD_CLASS_NAMES, dtype=object)[cls]
    out["verdict"] = np.full(len(n), INSUFFICIENT, dtype=object)
    out["verdict"][enough] = np.where(flag, "nonconforming", "conforming")
    out["flag"] = np.full(len(n), None, dtype=object)
    out["flag"][enough] = flag
    return out


@dataclass(frozen=True)
class BenfordResult:
    """One Benford test on one sample. Statistics are None when n < min_n."""

    test: str
    n: int
    digits: np.ndarray  # digit values in column order
    counts: np.ndarray  # int64 per digit
    expected: np.ndarray  # Benford proportions per digit
    found: np.ndarray | None  # observed proportions per digit
    z: np.ndarray | None  # per-digit Z (Nigrini continuity correction)
    chi2: float | None
    p_value: float | None
    mad: float | None
    mad_class: str | None
    expected_mad: float | None
    excess_mad: float | None
    ks: float | None
    verdict: str  # "insufficient data" | "conforming" | "nonconforming"
    flag: bool | None


def benford_test(stroops: np.ndarray, *, test: str = "first", alpha: float = ALPHA, min_n: int | None = None) -> BenfordResult:
    """Benford test `test` of amounts in stroops (int64). See the module docstring."""
    counts = count_digits(stroops, test)
    s = stats_from_counts(counts[None, :], test, alpha=alpha, min_n=min_n)
    ok = s["verdict"][0] != INSUFFICIENT

    def scalar(key):
        return float(s[key][0]) if ok else None

    return BenfordResult(
        test=test, n=int(s["n"][0]), digits=digit_values(test), counts=counts, expected=expected_proportions(test),
        found=s["found"][0] if ok else None, z=s["z"][0] if ok else None,
        chi2=scalar("chi2"), p_value=scalar("p_value"), mad=scalar("mad"), mad_class=s["mad_class"][0],
        expected_mad=scalar("expected_mad"), excess_mad=scalar("excess_mad"), ks=scalar("ks"),
        verdict=str(s["verdict"][0]), flag=None if s["flag"][0] is None else bool(s["flag"][0]),
    )


STAT_COLUMNS: dict[str, pl.DataType] = {
    "test": pl.String,
    "n": pl.Int64,
    "chi2": pl.Float64,
    "p_value": pl.Float64,
    "mad": pl.Float64,
    "mad_class": pl.String,
    "expected_mad": pl.Float64,
    "excess_mad": pl.Float64,
    "ks": pl.Float64,
    "z_max": pl.Float64,
    "verdict": pl.String,
    "flag": pl.Boolean,
}


def count_matrix(frame: pl.DataFrame, *, amount_col: str, group_cols: list[str], test: str) -> tuple[pl.DataFrame, np.ndarray]:
    """(keys, counts): one row of `keys` (group_cols) per group, counts is groups x digits.

    One polars group_by on (group, digit) and one numpy bincount; no loop per group.
    Groups whose amounts are all uncounted (e.g. < 10 stroops for first_two) keep
    an all-zero row.
    """
    k = len(digit_values(test))
    keys = frame.select(group_cols).unique(maintain_order=True).with_row_index("_g")
    coded = frame.select(*group_cols, amount_col).join(keys, on=group_cols, how="left", nulls_equal=True)
    idx = digit_index(coded[amount_col].fill_null(0).to_numpy(), test)
    g = coded["_g"].to_numpy().astype(np.int64)
    ok = idx >= 0
    counts = np.bincount(g[ok] * k + idx[ok], minlength=keys.height * k).reshape(keys.height, k)
    return keys.drop("_g"), counts


def stats_frame(keys: pl.DataFrame, counts: np.ndarray, test: str, *, alpha: float = ALPHA, min_n: int | None = None) -> pl.DataFrame:
    """`keys` plus the STAT_COLUMNS of each row of `counts` (nulls, never NaN)."""
    counts = np.atleast_2d(np.asarray(counts, dtype=np.int64))
    return sparse_stats_frame(keys, counts.sum(axis=1), np.arange(len(counts)), counts, test, alpha=alpha, min_n=min_n)


def sparse_stats_frame(
    keys: pl.DataFrame, n: np.ndarray, rows: np.ndarray, counts: np.ndarray, test: str, *,
    alpha: float = ALPHA, min_n: int | None = None,
) -> pl.DataFrame:  # fmt: skip
    """`keys` plus the STAT_COLUMNS of each group, from digit counts of some groups only.

    n: counted amounts per group (one per row of `keys`); counts: digit counts
    (len(rows) x digits) of the groups `rows` (indices into keys), which must hold
    every group with n >= min_n (the others are "insufficient data" whatever
    their digits). Labels are built from integer codes, never per-row objects.
    """
    min_n = MIN_N[test] if min_n is None else min_n
    n = np.asarray(n, dtype=np.int64)
    enough = (n >= min_n) & (n > 0)
    take = enough[rows]
    where = np.asarray(rows)[take]
    if len(where) != enough.sum():
        raise ValueError("sparse_stats_frame: `rows` must include every group with n >= min_n")
    e = _stats_of_enough(np.asarray(counts, dtype=np.float64)[take], test)
    cls, flag = _label_codes(e, test, alpha)
    cols: dict[str, pl.Series] = {"test": pl.repeat(test, len(n), dtype=pl.String, eager=True), "n": pl.Series(n)}
    codes = {"mad_class": np.full(len(n), -1, dtype=np.int64), "verdict": np.zeros(len(n), dtype=np.int64)}
    codes["mad_class"][where] = cls
    codes["verdict"][where] = np.where(flag, 2, 1)
    for c in STAT_COLUMNS:
        if c in _FLOAT_STATS:
            full = np.full(len(n), np.nan)
            full[where] = e[c]
            cols[c] = pl.Series(c, full, dtype=pl.Float64, nan_to_null=True)
        elif c in codes:
            names = MAD_CLASS_NAMES if c == "mad_class" else VERDICTS
            cols[c] = pl.Series(c, names, dtype=pl.String).gather(pl.Series(codes[c]).replace(-1, None))
    flags = np.zeros(len(n), dtype=bool)
    flags[where] = flag
    cols["flag"] = pl.Series("flag", flags).set(pl.Series(~enough), None)
    return pl.concat([keys, pl.DataFrame({c: cols[c].alias(c) for c in STAT_COLUMNS})], how="horizontal")


def benford_by_group(
    frame: pl.DataFrame,
    *,
    amount_col: str,
    group_cols: list[str],
    test: str = "first",
    alpha: float = ALPHA,
    min_n: int | None = None,
) -> pl.DataFrame:
    """Benford statistics per group, vectorised (no Python loop per group).

    `frame` holds `amount_col` (int64 stroops) and `group_cols`.
    Shapes: one row per group: group_cols..., test, n, chi2, p_value, mad,
    mad_class, expected_mad, excess_mad, ks, z_max, verdict, flag.
    """
    _check_test(test)
    keys, counts = count_matrix(frame, amount_col=amount_col, group_cols=group_cols, test=test)
    return stats_frame(keys, counts, test, alpha=alpha, min_n=min_n)


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown Benford test {test!r}; use one of {TESTS}")
