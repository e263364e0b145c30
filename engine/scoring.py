"""Features -> RiskScore rows: one code path for a whole matrix and for one wallet.

RiskScore (DESIGN.md): wallet, pair_id, score 0-100, benford_flag, ml_flag,
confidence 0-100, ring_id | None, timestamp (as_of, unix s), model_version,
bft_divergence. The score carries one decimal (DESIGN.md's integer widened): a market
with a hundred wallets in clear rings has a hundred wallets between 70 and 100, and 31
integers cannot order them; tenths can (benchmarks/bench_generalization.py, "top50").

The score adds two kinds of points and maps them onto 0-100 without a ceiling wall:

- model points: the ensemble's calibrated probability (median of the three members; the
  outlier trimmed when they spread > 30 points) x 80, so the model alone reaches the
  threshold from 0.875 and never saturates the scale; `ml_flag` is that probability
  x 100 >= the threshold (the model's own verdict, shown beside the score);
- mechanism points (`EVIDENCE_WEIGHTS`), read from the features and never trained, so a
  pattern the model never saw still scores when its mechanism shows: closed loops
  (sqrt(the wallet's share of trades in closed loops) x (60 + 15 x log10(1 + its trades
  in closed loops)): 10 loop trades are less evidence than 1,000, and a market maker with
  a few loops among thousands of trades earns almost nothing), its ring (30 x the
  share of trades with members of its own ring) and a shared controller while flat
  (20 x the share of trades with funding kin x (1 - |net flow|)); all x (1 - exp(-n/15))
  for a wallet with n trades in the pair, so more trades are more evidence;
- weak signals, at most 3 points (a score of 5): half from trading flat with a concentrated set
  of counterparties (counterparty HHI x flow balance), half from the 30-day first-digit Benford
  excess MAD (1 at 0.05). They order the many wallets with no mechanism and a calibrated model
  probability of 0, which would otherwise all score 0.0, and move no wallet by more than 3 points;
- score = 100 x (1 - exp(-points / 58.1)) up to 70 points (= a score of 70), then linear,
  0.18 per point, up to 98 (at 225.6 points), then 98 + 1.9 x (1 - exp(-(points - 225.6)
  / 40)): every further point still raises the score (the model alone or the mechanisms
  alone can reach the threshold; both together rank above either), and the strong end,
  where most evidence sits, is not squeezed: the top of the market is ordered by how much
  evidence it carries, never a wall of 100s.

Confidence is agreement (100 - the kept members' spread) times calibration (1 - the
held-out expected calibration error).
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from models.registry import LoadedModel, check_feature_schema
from models.training import design_matrix, feature_columns
from storage.errors import NotFound

log = logging.getLogger(__name__)

SCORE_COLUMNS: tuple[str, ...] = (
    "wallet", "pair_id", "score", "benford_flag", "ml_flag", "confidence", "ring_id", "timestamp",
    "model_version", "bft_divergence",
)  # fmt: skip
SCORES_SCHEMA = {
    "wallet": pl.String, "pair_id": pl.String, "score": pl.Float64, "benford_flag": pl.Boolean, "ml_flag": pl.Boolean,
    "confidence": pl.Int64, "ring_id": pl.String, "timestamp": pl.Int64, "model_version": pl.String,
    "bft_divergence": pl.Boolean,
}  # fmt: skip
# Sample-size-aware Benford rule of engine.benford (chi-square p < 0.001 AND excess MAD > 0.015),
# read back from the 30-day window features when the benford table is not at hand.
BENFORD_WINDOW = "30d"
# the Benford table's rows the flag reads (benford_flags): a caller that reads the table from the
# store reads these only (at 10M trades, 0.95M of its 9.9M rows: the score step peaked at 6.2-6.5 GB
# when it read them all, 2.7-2.8 GB now)
BENFORD_FLAG_ROWS = {"scope": "wallet_pair", "test": "first", "window": BENFORD_WINDOW}
BENFORD_NEGLOG_P = 3.0
BENFORD_EXCESS_MAD = 0.015

MODEL_POINTS = 80.0  # the model alone reaches the threshold from a probability of 0.875
EVIDENCE_WEIGHTS = {"loops": 60.0, "loop_volume": 15.0, "ring": 30.0, "controller": 20.0}
WEAK_POINTS = 3.0  # weak signals order the bottom of the market and never decide a flag alone
WEAK_MAD = 0.05  # a 30-day Benford excess MAD of 0.05 is a full weak signal
EVIDENCE_TRADES = 15.0  # mechanism points x (1 - exp(-n_trades / 15)): 3 trades say less than 300
POINTS_SCALE = 70.0 / -np.log(0.3)  # 58.1: 70 points -> a score of 70
TOP_SLOPE = 0.18  # past 70 points: 0.18 score per point up to 98 (70 + 28 / 0.18 = 225.6 points) ...
TOP_KNEE = 70.0 + 28.0 / TOP_SLOPE
TOP_TAIL = 40.0  # ... then 98 + 1.9 x (1 - exp(-(points - knee) / 40)): never 100


def evidence_points(features: pl.DataFrame) -> pl.DataFrame:
    """Mechanism evidence per feature row, in points (see the module docstring).

    Shapes: -> [wallet, pair_id, loop_points, ring_points, controller_points, weak_points] (f64, null -> 0).
    """
    col = lambda name: (pl.col(name) if name in features.columns else pl.lit(None)).cast(pl.Float64).fill_null(0.0)  # noqa: E731
    in_ring = col("ring_size") > 0
    support = 1.0 - (-col("n_trades") / EVIDENCE_TRADES).exp()
    return features.select(
        "wallet", "pair_id",
        loop_points=col("loop_share").clip(0.0, 1.0).sqrt() * support * (
            EVIDENCE_WEIGHTS["loops"] + EVIDENCE_WEIGHTS["loop_volume"] * (1.0 + col("loop_share") * col("n_trades")).log10()),
        ring_points=EVIDENCE_WEIGHTS["ring"] * pl.when(in_ring).then(col("ring_cp_share")).otherwise(0.0) * support,
        controller_points=EVIDENCE_WEIGHTS["controller"] * col("same_controller_rate") * col("flow_balance") * support,
        weak_points=WEAK_POINTS * (0.5 * col("counterparty_hhi").clip(0.0, 1.0) * col("flow_balance").clip(0.0, 1.0)
                                   + 0.5 * (col(f"benford_excess_mad_{BENFORD_WINDOW}") / WEAK_MAD).clip(0.0, 1.0)),
    )  # fmt: skip


def score_breakdown(model_probability: float, row: pl.DataFrame) -> pl.DataFrame:
    """How one (wallet, pair) score is made: model points, each mechanism's points, the total
    and the score it maps to (the Wallet page shows this beside the SHAP explanation).

    row: the wallet's feature row in the pair (one row). model_probability: 0-1.
    Shapes: -> [part, points: f64, reading] (last row: "score", the 0-100 score).
    """
    points = evidence_points(row)
    pts, f = points.row(0, named=True), row.row(0, named=True)
    share = lambda name: "n/a" if f.get(name) is None else f"{f[name]:.0%}"  # noqa: E731
    parts = [
        ("model", MODEL_POINTS * model_probability, f"calibrated probability {model_probability:.0%} x {MODEL_POINTS:.0f}"),
        ("closed loops", pts["loop_points"], f"{share('loop_share')} of its trades in closed loops"),
        ("own ring", pts["ring_points"], f"{share('ring_cp_share')} of its trades with members of its ring"),
        ("funding kin, flat", pts["controller_points"],
         f"{share('same_controller_rate')} of its trades with funding kin; flow balance {share('flow_balance')}"),
        ("weak signals", pts["weak_points"], f"counterparty concentration {share('counterparty_hhi')}, "
                                            f"Benford excess MAD (30d) {f.get(f'benford_excess_mad_{BENFORD_WINDOW}') or 0:.3f}"),
    ]
    total = sum(p for _, p, _ in parts)
    score = float(combined_score(np.array([model_probability]), points)[0])
    rows = [*parts, ("total", total, "points"), ("score", score, "100 x (1 - exp(-points/58.1)) up to 70 points, "
                                                               "then 0.18 per point up to 98")]
    return pl.DataFrame(rows, schema={"part": pl.String, "points": pl.Float64, "reading": pl.String}, orient="row")


def combined_score(model_probability: np.ndarray, points: pl.DataFrame) -> np.ndarray:
    """0-100 floats from the model's probability (0-1) and `evidence_points` rows."""
    total = MODEL_POINTS * np.asarray(model_probability, dtype=float) + points.select(
        pl.sum_horizontal("loop_points", "ring_points", "controller_points", "weak_points")).to_series().to_numpy()
    below = 100.0 * (1.0 - np.exp(-total / POINTS_SCALE))
    linear = 70.0 + TOP_SLOPE * (total - 70.0)
    tail = 98.0 + 1.9 * (1.0 - np.exp(-(total - TOP_KNEE) / TOP_TAIL))
    return np.where(total <= 70.0, below, np.where(total <= TOP_KNEE, linear, tail))


def score_features(
    loaded: LoadedModel, features: pl.DataFrame, *, flag_threshold: int = 70,
    benford: pl.DataFrame | None = None, ring_members: pl.DataFrame | None = None,
) -> pl.DataFrame:  # fmt: skip
    """RiskScore rows (SCORES_SCHEMA columns, in SCORE_COLUMNS order) for every feature row.

    features: the feature matrix (wallet, pair_id, as_of, feature columns...);
    benford: engine.features.build_benford_table output (optional);
    ring_members: account_id, ring_id (optional). Raises ModelIntegrityError naming
    missing/extra columns when the matrix does not fit the model.
    """
    check_feature_schema(loaded.feature_columns, feature_columns(features))
    if features.height == 0:
        return pl.DataFrame(schema=SCORES_SCHEMA)
    model, divergent, spread, _ = loaded.model.combined(design_matrix(features, loaded.feature_columns))
    calibration = 1.0 - float(getattr(loaded.model, "calibration_error_", 0.5))
    score = np.floor(10.0 * combined_score(model / 100.0, evidence_points(features)) + 0.5) / 10.0
    out = features.select(
        "wallet", "pair_id",
        score=pl.Series(score),
        ml_flag=pl.Series(np.floor(model + 0.5) >= flag_threshold),
        confidence=pl.Series(np.floor(100 * (1 - spread / 100) * calibration + 0.5).astype(np.int64)),
        timestamp=pl.col("as_of").dt.epoch("s"),
        model_version=pl.lit(loaded.version),
        bft_divergence=pl.Series(divergent),
    )  # fmt: skip
    out = out.join(benford_flags(features, benford), on=["wallet", "pair_id"], how="left")
    out = out.join(ring_of(ring_members), on="wallet", how="left")
    _log_divergence(out)
    return out.with_columns(pl.col("benford_flag").fill_null(False)).select(SCORE_COLUMNS).cast(SCORES_SCHEMA)


def score_wallet(loaded: LoadedModel, features: pl.DataFrame, wallet: str, *, pair_id: str | None = None,
                 **options) -> pl.DataFrame:  # fmt: skip
    """RiskScore rows of one wallet (all its pairs, or one): the batch path on the wallet's rows."""
    rows = features.filter(pl.col("wallet") == wallet)
    if pair_id is not None:
        rows = rows.filter(pl.col("pair_id") == pair_id)
    if rows.height == 0:
        raise NotFound(f"no feature row for wallet {wallet}" + (f" in pair {pair_id}" if pair_id else ""))
    return score_features(loaded, rows, **options)


def benford_flags(features: pl.DataFrame, benford: pl.DataFrame | None = None) -> pl.DataFrame:
    """wallet, pair_id, benford_flag: the first-digit test's sample-size-aware flag over 30 days.

    From the benford table (scope wallet_pair, test first, window 30d, column flag) when given,
    else from the features benford_neglog_p_30d / benford_excess_mad_30d (same rule);
    null (insufficient data) becomes False downstream."""
    if benford is not None and benford.height:
        return (
            benford.filter(**BENFORD_FLAG_ROWS)
            .group_by("wallet", "pair_id")
            .agg(benford_flag=pl.col("flag").cast(pl.Boolean).any())
        )
    p, mad = f"benford_neglog_p_{BENFORD_WINDOW}", f"benford_excess_mad_{BENFORD_WINDOW}"
    if p not in features.columns or mad not in features.columns:
        return features.select("wallet", "pair_id", benford_flag=pl.lit(None, dtype=pl.Boolean))
    return features.select(
        "wallet", "pair_id", benford_flag=(pl.col(p) >= BENFORD_NEGLOG_P) & (pl.col(mad) > BENFORD_EXCESS_MAD)
    ).unique(["wallet", "pair_id"])


def ring_of(ring_members: pl.DataFrame | None) -> pl.DataFrame:
    """wallet, ring_id (a wallet in several rings gets the smallest id, stable across runs)."""
    if ring_members is None or ring_members.height == 0:
        return pl.DataFrame(schema={"wallet": pl.String, "ring_id": pl.String})
    return ring_members.group_by("account_id").agg(pl.min("ring_id")).rename({"account_id": "wallet"})


def _log_divergence(scores: pl.DataFrame) -> None:
    div = scores.filter(pl.col("bft_divergence"))
    if div.height:
        sample = ", ".join(f"{w[:8]}../{p}" for w, p in div.select("wallet", "pair_id").head(5).iter_rows())
        log.warning("models disagree by > 30 points on %d of %d rows; outlier trimmed (e.g. %s)",
                    div.height, scores.height, sample)  # fmt: skip
