"""Training: labels with their source, leak-free splits, metrics beside a baseline.

Splits: groups (a ring, or a wallet outside rings) are assigned whole to train or
test, stratified by group label; when the feature rows hold several `as_of`
snapshots, test rows are also the latest snapshot and train rows the earlier ones
(train on the past, test on the future). Metrics: ROC-AUC, PR-AUC with the
prevalence beside it, F1 at the flag threshold, precision@k of wallets at
0.5/1/2%, Brier; for the ensemble, each member and the rule-of-thumb baseline.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from importlib.metadata import version as pkg_version

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from engine.drift import reference_bins
from engine.features import FEATURE_NAMES
from models.baseline import RuleOfThumb, baseline_indices
from models.ensemble import IMBALANCE_METHODS, MEMBERS, WashEnsemble, stratified_group_split
from models.registry import schema_hash
from storage.errors import BadInput

KEY_COLUMNS = ("wallet", "pair_id", "as_of")
LABELS_SCHEMA = {"wallet": pl.String, "pair_id": pl.String, "label": pl.Int8, "label_source": pl.String,
                 "group": pl.String, "role": pl.String}  # fmt: skip
PRECISION_AT = (0.005, 0.01, 0.02)


def labels_from_simulator(labels: pl.DataFrame) -> pl.DataFrame:
    """Simulator ground truth (account, role, is_wash, ring_id) as training labels (LABELS_SCHEMA).

    The group is the ring for ring members, the account itself otherwise."""
    wash = pl.col("is_wash").cast(pl.String).str.to_lowercase().is_in(["1", "true"])
    return labels.select(
        wallet=pl.col("account"), pair_id=pl.lit(None, dtype=pl.String), label=wash.cast(pl.Int8),
        label_source=pl.lit("simulator"),
        group=pl.coalesce(pl.col("ring_id").cast(pl.String).replace("", None), pl.col("account")),
        role=pl.col("role").cast(pl.String),
    )  # fmt: skip


def labels_from_annotations(annotations: pl.DataFrame, ring_members: pl.DataFrame | None = None) -> pl.DataFrame:
    """Analysts' latest label per (wallet, pair_id) (a relabel supersedes), 'unsure' dropped (LABELS_SCHEMA).

    annotations: wallet, pair_id, label, annotator_id, annotated_at, label_source (HMACs must
    be verified before this). The group is the wallet's ring when it has one."""
    if annotations.height == 0:
        return pl.DataFrame(schema=LABELS_SCHEMA)
    latest = annotations.sort("annotated_at").group_by("wallet", "pair_id", maintain_order=True).last()
    out = latest.filter(pl.col("label").is_in(["wash", "legit"])).select(
        "wallet", "pair_id", label=(pl.col("label") == "wash").cast(pl.Int8),
        label_source=pl.coalesce(pl.col("label_source"), pl.lit("analyst")),
    )  # fmt: skip
    rings = (
        ring_members
        if ring_members is not None
        else pl.DataFrame(schema={"account_id": pl.String, "ring_id": pl.String})
    )
    rings = rings.group_by("account_id").agg(pl.first("ring_id")).rename({"account_id": "wallet"})
    out = out.join(rings, on="wallet", how="left")
    return out.select(
        *list(LABELS_SCHEMA)[:4], group=pl.coalesce("ring_id", "wallet"), role=pl.lit(None, dtype=pl.String)
    )


def feature_columns(features: pl.DataFrame) -> list[str]:
    """The model's input columns: every numeric/boolean column but the keys, in frame order."""
    return [c for c, t in features.schema.items() if c not in KEY_COLUMNS and (t.is_numeric() or t == pl.Boolean)]


def design_matrix(features: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """float64 (n, len(columns)); booleans as 0/1, nulls as NaN."""
    if not columns:
        raise BadInput("the feature matrix has no feature columns")
    return features.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float64, copy=False)


def join_labels(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Feature rows that carry a label (pair-specific labels win over wallet-wide ones).

    Shapes: the feature columns + label (Int8), label_source, group, role."""
    cols = ["label", "label_source", "group", "role"]
    by_pair = labels.filter(pl.col("pair_id").is_not_null()).unique(["wallet", "pair_id"], keep="last")
    by_wallet = labels.filter(pl.col("pair_id").is_null()).drop("pair_id").unique("wallet", keep="last")
    out = features.join(by_pair, on=["wallet", "pair_id"], how="left").join(
        by_wallet.rename({c: f"{c}_w" for c in cols}), on="wallet", how="left"
    )
    out = out.with_columns([pl.coalesce(c, f"{c}_w").alias(c) for c in cols]).drop([f"{c}_w" for c in cols])
    return out.filter(pl.col("label").is_not_null())


def time_group_split(
    as_of: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float = 0.3,
    seed: int = 0,
    use_time: bool = True,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train rows, test rows, kind): whole groups per side, stratified by group label;
    with >= 2 snapshots (and use_time), test = latest snapshot, train = earlier ones."""
    _, held = stratified_group_split(y, groups, test_size, seed)
    in_test = np.zeros(y.size, dtype=bool)
    in_test[held] = True
    times = np.unique(as_of)
    if use_time and times.size >= 2:
        later = as_of >= times[-1]
        return np.flatnonzero(~in_test & ~later), np.flatnonzero(in_test & later), "time+group"
    return np.flatnonzero(~in_test), np.flatnonzero(in_test), "group"


def evaluate(y: np.ndarray, p: np.ndarray, *, wallets: np.ndarray, threshold: float = 0.7) -> dict:
    """Metrics of probabilities `p` for labels `y`; precision@k over wallets (a wallet's max over pairs)."""
    both = np.unique(y).size == 2
    by_wallet = (
        pl.DataFrame({"w": wallets, "y": y, "p": p})
        .group_by("w")
        .agg(pl.max("y"), pl.max("p"))
        .sort("p", descending=True)
    )
    out = {
        "n": int(y.size), "n_wash": int(y.sum()), "prevalence": float(y.mean()) if y.size else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "f1_at_threshold": float(f1_score(y, p >= threshold, zero_division=0)),
        "brier": float(brier_score_loss(y, p)) if y.size else None, "n_wallets": by_wallet.height,
    }  # fmt: skip
    for frac in PRECISION_AT:
        k = max(1, int(np.ceil(frac * by_wallet.height)))
        out[f"precision_at_{frac * 100:g}pct"] = float(by_wallet.get_column("y")[:k].mean())
    return out


@dataclass(frozen=True)
class TrainResult:
    model: WashEnsemble
    columns: tuple[str, ...]
    metadata: dict  # everything model_metadata.json needs but the registry's own fields
    drift_reference: dict
    test_rows: pl.DataFrame  # wallet, pair_id, as_of, label, role, p_ensemble, p_baseline (held-out)
    test_X: np.ndarray  # the held-out design matrix (to compare another model on the same rows)
    trained_keys: tuple[str, ...] = ()  # row_keys of every row the returned model was fit on


@dataclass(frozen=True)
class LabelledData:
    frame: pl.DataFrame  # the labelled feature rows
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    as_of: np.ndarray


def labelled_data(features: pl.DataFrame, labels: pl.DataFrame, columns: list[str] | None = None) -> LabelledData:
    """Join labels to features and build the design matrix; BadInput when a class is absent."""
    frame = join_labels(features, labels)
    y = frame.get_column("label").to_numpy().astype(int)
    if frame.height == 0 or np.unique(y).size < 2:
        raise BadInput(
            f"{frame.height} labelled feature rows, classes {sorted(set(y.tolist()))}: training needs wash AND "
            "legit labels on wallets that have features"
        )
    cols = columns or feature_columns(features)
    as_of = frame.get_column("as_of").dt.epoch("s").to_numpy() if "as_of" in frame.columns else np.zeros(frame.height)
    return LabelledData(frame, design_matrix(frame, cols), y, frame.get_column("group").to_numpy(), as_of)


def train_model(
    features: pl.DataFrame, labels: pl.DataFrame, *, seed: int = 0, n_estimators: int = 150,
    imbalance: str = "auto", refit: bool = True, flag_threshold: int = 70, n_jobs: int = 2,
    weights: tuple[float, float, float] | None = None,
) -> TrainResult:  # fmt: skip
    """Choose the imbalance method, evaluate on a leak-free held-out split, refit on every row.

    features: the feature matrix (wallet, pair_id, as_of, features...); labels: LABELS_SCHEMA;
    weights: member weights (e.g. a point of the NSGA-II front), None = the median.
    """
    cols = feature_columns(features)
    data = labelled_data(features, labels, cols)
    tr, te, kind = time_group_split(data.as_of, data.groups, data.y, seed=seed)
    if np.unique(data.y[te]).size < 2 or np.unique(data.y[tr]).size < 2:
        tr, te, kind = time_group_split(data.as_of, data.groups, data.y, seed=seed, use_time=False)
    params = {"n_estimators": n_estimators, "random_state": seed, "n_jobs": n_jobs, "weights": weights}
    choice = choose_imbalance(data, tr, params) if imbalance == "auto" else {"chosen": imbalance}
    model = WashEnsemble(imbalance=choice["chosen"], **params).fit(data.X[tr], data.y[tr], groups=data.groups[tr])
    base = RuleOfThumb(feature_indices=baseline_indices(cols)).fit(data.X[tr], data.y[tr])
    metrics, test_rows = _held_out_metrics(model, base, data, te, flag_threshold / 100)
    if refit:
        model = WashEnsemble(imbalance=choice["chosen"], **params).fit(data.X, data.y, groups=data.groups)
    meta = _metadata(data, cols, seed=seed, params=params, imbalance=choice, metrics=metrics,
                     split={"kind": kind, "n_train": int(tr.size), "n_test": int(te.size), "refit_on_all": refit})  # fmt: skip
    fitted = data.frame if refit else data.frame[tr]
    return TrainResult(model, tuple(cols), meta, reference_bins(data.X, cols), test_rows, data.X[te],
                       tuple(row_keys(fitted)))  # fmt: skip


def row_keys(frame: pl.DataFrame) -> list[str]:
    """A stable key per labelled row: SHA-256 (16 hex) of wallet|pair_id|as_of (unix s).

    Recorded with each model version, so a later comparison can score the model only
    on rows it never trained on.
    """
    import hashlib

    as_of = pl.col("as_of").dt.epoch("s") if "as_of" in frame.columns else pl.lit(0)
    text = frame.select(pl.concat_str([pl.col("wallet"), pl.col("pair_id"), as_of.cast(pl.String)], separator="|"))
    return [hashlib.sha256(t.encode()).hexdigest()[:16] for t in text.to_series().to_list()]


def choose_imbalance(data: LabelledData, train_idx: np.ndarray, params: dict) -> dict:
    """PR-AUC of class weights vs SMOTE on a grouped validation part of the training rows; keeps the better."""
    sub_tr, sub_va, _ = time_group_split(
        data.as_of[train_idx], data.groups[train_idx], data.y[train_idx], test_size=0.25,
        seed=params["random_state"] + 1, use_time=False,
    )  # fmt: skip
    tr, va = train_idx[sub_tr], train_idx[sub_va]
    scores = {}
    for method in IMBALANCE_METHODS:
        m = WashEnsemble(imbalance=method, **params).fit(data.X[tr], data.y[tr], groups=data.groups[tr])
        yv = data.y[va]
        scores[method] = float(average_precision_score(yv, m.predict_proba(data.X[va])[:, 1])) if yv.any() else 0.0
    return {"chosen": max(scores, key=scores.get), "validation_pr_auc": scores}


def _held_out_metrics(model, base, data: LabelledData, te: np.ndarray, threshold: float) -> tuple[dict, pl.DataFrame]:
    X, y = data.X[te], data.y[te]
    wallets = data.frame.get_column("wallet").to_numpy()[te]
    members = model.member_probas(X)
    p_ens, p_base = model.predict_proba(X)[:, 1], base.predict_proba(X)[:, 1]
    metrics = {"ensemble": evaluate(y, p_ens, wallets=wallets, threshold=threshold),
               "baseline": evaluate(y, p_base, wallets=wallets, threshold=threshold)}  # fmt: skip
    for j, name in enumerate(MEMBERS):
        metrics[name] = evaluate(y, members[:, j], wallets=wallets, threshold=threshold)
    rows = data.frame[te].select(
        "wallet", "pair_id", "label", "role", *(["as_of"] if "as_of" in data.frame.columns else [])
    )
    return metrics, rows.with_columns(p_ensemble=pl.Series(p_ens), p_baseline=pl.Series(p_base))


def _metadata(data: LabelledData, cols: list[str], *, seed: int, params: dict, imbalance: dict, metrics: dict,
              split: dict) -> dict:  # fmt: skip
    sources = data.frame.group_by("label_source").agg(pl.len()).sort("label_source")
    n_wash = int(data.y.sum())
    digest = hashlib.sha256(data.X.tobytes() + data.y.astype(np.int8).tobytes()).hexdigest()
    src = sources.get_column("label_source").to_list()
    return {
        "feature_columns": cols, "feature_schema_hash": schema_hash(cols), "library_versions": library_versions(),
        "data_hash": digest, "n_rows": int(data.y.size), "label_source": "+".join(src),
        "label_sources": dict(sources.iter_rows()), "label_distribution": {"wash": n_wash, "legit": int(data.y.size) - n_wash},
        "seed": seed, "params": params, "imbalance": imbalance, "split": split, "metrics": metrics,
        "evaluation_note": (f"held-out rows are labelled by the same source(s) as training ({'+'.join(src)}): "
                            "figures measure fit to that labeller, not to reality"),
    }  # fmt: skip


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("scikit-learn", "xgboost-cpu", "lightgbm", "imbalanced-learn", "numpy", "polars", "shap"):
        try:
            out[name] = pkg_version(name)
        except Exception:  # not installed under that distribution name
            out[name] = None
    return out


def synthetic_feature_frame(
    *, n_wallets: int = 300, n_snapshots: int = 2, pairs_per_wallet: int = 2, wash_share: float = 0.1,
    seed: int = 0, columns: tuple[str, ...] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """A seeded stand-in feature matrix and simulator-style labels, for tests and benchmarks.

    Wash wallets (in rings of 4) get shifted counterparty_hhi / flow_balance /
    round_trip_rate / benford_neglog_p_30d / ring_cp_share, with overlap; market makers
    share the high flow_balance (a confounder). Other columns are noise, ~10% null.
    Returns (features: wallet, pair_id, as_of, *columns, <name>_missing...; labels:
    account, role, is_wash, ring_id).
    """
    rng = np.random.default_rng(seed)
    cols = columns or _default_columns()
    n_wash = max(8, int(n_wallets * wash_share)) // 4 * 4
    wallets = np.array([f"G{seed:03d}{i:08d}" for i in range(n_wallets)])
    role = np.where(np.arange(n_wallets) < n_wash, "wash",
                    np.where(rng.random(n_wallets) < 0.05, "market_maker", "organic"))  # fmt: skip
    ring = np.where(role == "wash", np.char.add(f"ring_s{seed}_", (np.arange(n_wallets) // 4).astype(str)), "")
    w_idx = np.repeat(np.arange(n_wallets), pairs_per_wallet * n_snapshots)
    n = w_idx.size
    snap = np.tile(np.repeat(np.arange(n_snapshots), pairs_per_wallet), n_wallets)
    pair = np.tile(np.arange(pairs_per_wallet), n_wallets * n_snapshots)
    X = rng.normal(size=(n, len(cols)))
    X[rng.random((n, len(cols))) < 0.1] = np.nan
    wash, mm = (role[w_idx] == "wash"), (role[w_idx] == "market_maker")
    signal = {"counterparty_hhi": 1.2, "flow_balance": 1.0, "round_trip_rate": 1.1, "benford_neglog_p_30d": 0.8,
              "ring_cp_share": 1.5}  # fmt: skip
    for name, shift in signal.items():
        if name in cols:
            X[:, cols.index(name)] += shift * wash * rng.uniform(0.3, 1.7, n)
    if "flow_balance" in cols:
        X[:, cols.index("flow_balance")] += 1.0 * mm
    start = np.datetime64("2024-01-08T00:00:00", "us")
    frame = pl.DataFrame({"wallet": wallets[w_idx], "pair_id": np.char.add("P", pair.astype(str)),
                          "as_of": start + snap * np.timedelta64(7, "D")})  # fmt: skip
    frame = frame.with_columns(
        pl.col("as_of").dt.replace_time_zone("UTC"), *[pl.Series(c, X[:, j]) for j, c in enumerate(cols)]
    )
    frame = frame.with_columns(any_missing=pl.any_horizontal([pl.col(c).is_null() for c in cols]))
    labels = pl.DataFrame({"account": wallets, "role": role, "is_wash": (role == "wash").astype(int), "ring_id": ring})
    return frame.fill_nan(None), labels.with_columns(pl.col("ring_id").replace("", None))


def _default_columns() -> tuple[str, ...]:
    return tuple(FEATURE_NAMES)
