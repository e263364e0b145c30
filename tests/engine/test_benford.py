"""Benford tests: oracle against benford_py, digit exactness, the n-aware verdict."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from engine import benford

bf = pytest.importorskip("benford", reason="benford-py (test-only oracle) is in requirements.txt")

ORACLE_TESTS = {"first": "F1D", "first_two": "F2D", "second": "SD"}


def benford_like(n: int, seed: int) -> np.ndarray:
    """Log-uniform amounts in stroops over 7 decades (Benford by construction)."""
    rng = np.random.default_rng(seed)
    return (10 ** rng.uniform(0, 7, n) * 1e7).astype(np.int64)


def oracle(stroops: np.ndarray):
    """benford_py on the same amounts, passed as units with decimals=7.

    benford_py turns floats into integers with `(x * 10**7).astype(int)`, which
    truncates 0.29 * 1e7 = 2899999.99... to 2899999: about 6 % of random 7-decimal
    amounts get a wrong digit. Test-only work-around: pass each amount as the next
    float above amount/1e7 (np.nextafter), which truncates back to the exact stroop
    count; the assertion below checks benford_py saw exactly our integers.
    """
    units = np.nextafter(stroops / 1e7, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # benford_py's own numpy/pandas deprecation noise
        result = bf.Benford(units, decimals=7, verbose=False, mantissas=False)
    assert np.array_equal(result.base["ZN"].to_numpy(), stroops)
    return result


@pytest.mark.parametrize("test", list(ORACLE_TESTS))
def test_figures_equal_benford_py(test):
    stroops = benford_like(4000, seed=7)
    stroops[:300] = (stroops[:300] // 10**7) * 10**7  # some whole amounts too
    ours = benford.benford_test(stroops, test=test)
    theirs = getattr(oracle(stroops), ORACLE_TESTS[test])
    frame = theirs.sort_index()
    assert ours.n == int(frame["Counts"].sum()) == theirs.limit_N
    np.testing.assert_array_equal(ours.counts, frame["Counts"].to_numpy())
    np.testing.assert_allclose(ours.found, frame["Found"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.expected, frame["Expected"].to_numpy(), rtol=0, atol=1e-12)
    assert ours.chi2 == pytest.approx(theirs.chi_square, abs=1e-9)
    assert ours.mad == pytest.approx(theirs.MAD, abs=1e-12)
    assert ours.ks == pytest.approx(theirs.KS, abs=1e-12)
    # benford_py always subtracts 1/(2N); Nigrini (and we) only when it is smaller
    # than |p_obs - p_exp|. Where it is, the Z scores must agree; elsewhere ours
    # is the uncorrected Z.
    corrected = frame["AbsDif"].to_numpy() > 1 / (2 * theirs.limit_N)
    np.testing.assert_allclose(ours.z[corrected], frame["Z_score"].to_numpy()[corrected], rtol=0, atol=1e-9)
    sd = np.sqrt(ours.expected * (1 - ours.expected) / ours.n)
    np.testing.assert_allclose(ours.z[~corrected], frame["AbsDif"].to_numpy()[~corrected] / sd[~corrected], atol=1e-9)


def test_oracle_with_small_correction_case():
    """n small enough that the continuity correction exceeds some differences."""
    stroops = benford_like(60, seed=4)
    ours = benford.benford_test(stroops, test="first")
    theirs = oracle(stroops).F1D
    frame = theirs.sort_index()
    corrected = frame["AbsDif"].to_numpy() > 1 / 120
    assert corrected.sum() == 4  # five digits are closer than 1/(2n): no correction there
    assert ours.chi2 == pytest.approx(theirs.chi_square, abs=1e-9)
    np.testing.assert_allclose(ours.z[corrected], frame["Z_score"].to_numpy()[corrected], atol=1e-9)
    uncorrected_z = frame["AbsDif"].to_numpy() / np.sqrt(ours.expected * (1 - ours.expected) / 60)
    np.testing.assert_allclose(ours.z[~corrected], uncorrected_z[~corrected], atol=1e-12)
    assert (frame["Z_score"].to_numpy()[~corrected] < ours.z[~corrected]).all()


def test_digits_come_from_integer_stroops():
    x = np.array([1, 12, 10_000_000, 29_000_000, 9_999_999_999_999, 190, 0, -5], dtype=np.int64)
    assert benford.digit_index(x, "first").tolist() == [0, 0, 0, 1, 8, 0, -1, -1]  # digit - 1
    assert (benford.digit_index(x, "first_two") + 10).tolist()[:6] == [9, 12, 10, 29, 99, 19]
    assert benford.digit_index(x, "first_two")[0] == -1  # 1 stroop has one significant digit
    assert benford.digit_index(x, "second").tolist() == [-1, 2, 0, 9, 9, 9, -1, -1]
    assert benford.expected_proportions("second").sum() == pytest.approx(1.0)
    assert benford.expected_proportions("second")[0] == pytest.approx(0.11968, abs=1e-5)


def test_below_minimum_n_is_insufficient_data_not_zero():
    r = benford.benford_test(benford_like(49, seed=1), test="first")
    assert r.n == 49 and r.verdict == "insufficient data"
    assert r.mad is None and r.chi2 is None and r.p_value is None and r.flag is None and r.mad_class is None
    # uniform digits, but too few of them: still not "nonconforming"
    r = benford.benford_test(np.arange(1, 10, dtype=np.int64).repeat(5), test="first")
    assert r.n == 45 and r.verdict == "insufficient data" and r.flag is None


def test_uniform_digits_flag_at_large_n_and_benford_does_not():
    rng = np.random.default_rng(11)
    uniform = rng.integers(1, 10, 5000) * 10 ** rng.integers(0, 10, 5000)
    r = benford.benford_test(uniform, test="first")
    assert r.verdict == "nonconforming" and r.flag is True and r.mad_class == "nonconformity"
    assert r.mad == pytest.approx(np.abs(r.found - r.expected).mean())
    assert r.mad > 0.05 and r.p_value < 1e-100
    ok = benford.benford_test(benford_like(5000, seed=12), test="first")
    assert ok.verdict == "conforming" and ok.flag is False and ok.mad_class == "close conformity"


def test_expected_mad_matches_simulation():
    rng = np.random.default_rng(5)
    p = benford.expected_proportions("first")
    for n in (50, 100, 400):
        sim = np.abs(rng.multinomial(n, p, size=100_000) / n - p).mean(axis=1).mean()
        assert benford.expected_mad(n, "first")[0] == pytest.approx(sim, rel=0.01)


def test_small_honest_samples_are_not_flagged_though_raw_mad_says_nonconformity():
    """500 honest wallets of 100 amounts: MAD alone calls most of them nonconforming."""
    rng = np.random.default_rng(21)
    n_groups, n = 500, 100
    frame = pl.DataFrame({
        "wallet": np.repeat(np.arange(n_groups), n),
        "amount": (10 ** rng.uniform(0, 7, n_groups * n) * 1e7).astype(np.int64),
    })  # fmt: skip
    out = benford.benford_by_group(frame, amount_col="amount", group_cols=["wallet"], test="first")
    assert out.height == n_groups and out["n"].to_list() == [n] * n_groups
    assert (out["mad_class"] == "nonconformity").mean() > 0.5
    assert out["flag"].sum() <= 5  # alpha 0.001 + excess MAD: at most ~1 % by chance


def test_grouped_equals_single():
    rng = np.random.default_rng(2)
    amounts = np.concatenate([benford_like(300, 1), rng.integers(1, 10, 300) * 10**8, benford_like(20, 3)])
    frame = pl.DataFrame({"g": ["a"] * 300 + ["b"] * 300 + ["c"] * 20, "amount": amounts})
    for test in benford.TESTS:
        out = benford.benford_by_group(frame, amount_col="amount", group_cols=["g"], test=test).sort("g")
        for row, lo, hi in zip(out.iter_rows(named=True), (0, 300, 600), (300, 600, 620), strict=True):
            single = benford.benford_test(amounts[lo:hi], test=test)
            assert row["n"] == single.n and row["verdict"] == single.verdict and row["flag"] == single.flag
            for col in ("chi2", "p_value", "mad", "ks", "excess_mad"):
                assert row[col] == (None if getattr(single, col) is None else pytest.approx(getattr(single, col)))
    c = benford.benford_by_group(frame, amount_col="amount", group_cols=["g"]).filter(pl.col("g") == "c")
    assert c["verdict"][0] == "insufficient data" and c["mad"][0] is None and c["flag"][0] is None


def test_leading_digits_stand_for_the_amount_in_every_test():
    rng = np.random.default_rng(3)
    stroops = np.concatenate([benford_like(3000, seed=9), rng.integers(-5, 120, 500), [0, 1, 9, 10, 99, 100, 2**62]])
    reduced = benford.leading_digits(stroops)
    assert set(np.unique(reduced)) <= {0, *range(1, 100)}
    for test in benford.TESTS:
        np.testing.assert_array_equal(benford.digit_index(reduced, test), benford.digit_index(stroops, test))
