"""Train and promote models (the `train`, `retrain-if-drifted` and Models-page retrain use cases).

Models (signed registry under settings.models_dir, loaded through engine.services.models):
    train_model_version(store, settings, *, labels=..., force_label_shift=False) -> (version, metrics)
    retrain_and_promote(store, settings)  promote only when not worse on the same held-out rows
    retrain_if_drifted(store, settings)   RetrainOutcome with an exit-code-like `code`

Labelled data for training, in order: the `labels` given (a LABELS_SCHEMA frame or a
simulator labels.csv path); else the labels file the current model was trained on
(when it still exists) together with analysts' annotations; else annotations alone
(wash AND legit needed); else a simulated market built in a temp dir (said in the log).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import precision_recall_curve, roc_auc_score

from engine.active.annotations import settings_key, verified_store_annotations
from engine.drift import is_drifted, psi_table
from engine.explain import ensemble_shap
from engine.features import build_feature_matrix
from engine.graph.rings import RingOptions, detect_rings
from engine.ingest.files import ingest_files
from engine.progress import Progress, no_progress
from engine.services.analyse import compute_scores, ensure_features
from engine.services.models import current_metadata, load_model, signing_key
from engine.synthetic import generate_market
from engine.synthetic.family import FamilyConfig
from models.registry import check_label_shift, promote_version, save_version
from models.training import join_labels, labels_from_annotations, labels_from_simulator, row_keys, train_model
from storage.errors import NotFound
from storage.store import Store

log = logging.getLogger(__name__)

SIM_SCALE, SIM_DAYS, SIM_SNAPSHOTS = 1.0, 7, 2
AUC_REGRESSION = 0.01  # a retrained model scoring this much lower ROC-AUC on the same rows is not promoted
TRAIN_STEPS = 5  # progress "steps" of train_model_version


# -- labelled data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    features: pl.DataFrame
    labels: pl.DataFrame  # models.training.LABELS_SCHEMA
    origin: str
    labels_file: str | None = None  # the simulator labels.csv the labels came from, if any


def read_simulator_labels(path: Path) -> pl.DataFrame:
    """A simulator labels.csv (account, role, is_wash, ring_id) as training labels (LABELS_SCHEMA)."""

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"labels file {path} does not exist")
    return labels_from_simulator(pl.read_csv(path, schema_overrides={"ring_id": pl.String}))


def training_data(store: Store, settings, *, labels=None, sim_scale: float = SIM_SCALE,
                  sim_days: int = SIM_DAYS) -> TrainingData:  # fmt: skip
    """The labelled data to train on (order in the module docstring)."""
    if isinstance(labels, str | Path):
        return TrainingData(ensure_features(store), read_simulator_labels(labels), f"simulator labels {labels}",
                            str(labels))  # fmt: skip
    if labels is not None:
        return TrainingData(ensure_features(store), labels, f"{labels.height} given labels")
    parts, origin, labels_file = stored_labels(store, settings)
    if parts and _has_both_classes(pl.concat(parts)):
        return TrainingData(ensure_features(store), pl.concat(parts), " + ".join(origin), labels_file)
    log.warning("no labelled data in the store: training on a simulated market (seed %s, scale %s, %s days)",
                settings.seed, sim_scale, sim_days)  # fmt: skip
    return simulated_training_data(seed=settings.seed, scale=sim_scale, days=sim_days)


def stored_labels(
    store: Store, settings, *, annotations: pl.DataFrame | None = None
) -> tuple[list[pl.DataFrame], list[str], str | None]:
    """(label frames, their descriptions, labels file): the current model's labels file +
    analysts' labels. Annotations are HMAC-verified first (tampered rows are rejected by
    name and never trained on) unless already-verified `annotations` are given."""

    parts, origin, labels_file = [], [], None
    meta = current_metadata(settings)
    path = (meta or {}).get("labels_file")
    if path and Path(path).is_file():
        parts.append(read_simulator_labels(Path(path)))
        origin.append(f"simulator labels {path}")
        labels_file = path
    if annotations is None:
        verified = verified_store_annotations(store, settings_key(settings))
        if verified.rejected.height:
            log.warning("rejected %d tampered annotation row(s) before training: %s",
                        verified.rejected.height, "; ".join(verified.names()))  # fmt: skip
        annotations = verified.valid
    ann = annotations
    if ann.height:
        from_analysts = labels_from_annotations(ann, store.load_derived("ring_members"))
        if from_analysts.height:
            parts.append(from_analysts)
            origin.append(f"{from_analysts.height} analyst labels")
    return parts, origin, labels_file


def _has_both_classes(labels: pl.DataFrame) -> bool:
    return labels.get_column("label").n_unique() == 2


def simulated_training_data(*, seed: int, scale: float, days: int, snapshots: int = SIM_SNAPSHOTS,
                            family=None) -> TrainingData:  # fmt: skip
    """A simulated market's feature snapshots (rings and features as of each) and its ground truth.

    `family`: an engine.synthetic.FamilyConfig; default the whole randomised family drawn
    from `seed` (every ring pattern and funding style, wide ranges), so the default model
    is not trained on one configuration of the simulator."""

    family = family if family is not None else FamilyConfig(seed=seed)
    with tempfile.TemporaryDirectory(prefix="ledgerlens-sim-") as tmp:
        market = generate_market(Path(tmp) / "market", seed=seed, scale=scale, days=days, family=family)
        with Store(Path(tmp) / "sim.duckdb") as sim:
            ingest_files(sim, [market.trades_path, market.operations_path])
            trades, ops, accounts, edges = sim.trades(), sim.operations(), sim.accounts(), sim.funding_edges()
        labels = pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})
    end = trades.get_column("closed_at").max()
    step = timedelta(days=max(1, days // (snapshots + 1)))
    frames = []
    for i in reversed(range(snapshots)):
        as_of = end - i * step
        rings = detect_rings(trades.filter(pl.col("closed_at") <= as_of), edges.filter(pl.col("closed_at") <= as_of),
                             options=RingOptions(seed=seed))  # fmt: skip
        frames.append(build_feature_matrix(trades, ops, accounts, as_of=as_of, ring_members=rings.ring_members,
                                           loops=rings.closed_loops))
    origin = (f"simulated market family seed {seed} scale {scale} ({trades.height:,} trades, {snapshots} snapshots; "
              f"patterns {', '.join(family.patterns)}; funding {', '.join(family.funding_styles)})")
    return TrainingData(pl.concat(frames, how="vertical_relaxed"), labels_from_simulator(labels), origin)


# -- training --------------------------------------------------------------------------------------------------------


def train_model_version(
    store: Store, settings, *, labels=None, force_label_shift: bool = False, promote: bool = True,
    n_estimators: int = 150, imbalance: str = "auto", weights: tuple[float, float, float] | None = None,
    sim_scale: float = SIM_SCALE, sim_days: int = SIM_DAYS, progress: Progress = no_progress,
) -> tuple[str, dict]:  # fmt: skip
    """Train, evaluate, sign and store a new model version; promote it unless `promote=False`.

    labels: a LABELS_SCHEMA frame, a simulator labels.csv path, or None (resolved from the store,
    see the module docstring). The poisoning guard runs first (LabelShiftError unless
    `force_label_shift`). Returns (version, metrics): metrics are the held-out metrics per model
    ("ensemble", "baseline", "rf", "xgb", "lgbm": roc_auc, pr_auc, prevalence, f1_at_threshold,
    precision_at_*, brier...) plus "previous": {"version", "roc_auc"} — the model current before this
    training scored on the SAME held-out rows (roc_auc None when there was none or its features differ).
    Use `should_promote(metrics)` + models.registry.promote_version to promote only if not worse.
    """

    step = _stepper(progress)
    step(0, "labelled data")
    data = training_data(store, settings, labels=labels, sim_scale=sim_scale, sim_days=sim_days)
    note = _label_guard(settings, data, force=force_label_shift)
    step(1, "training")
    result = train_model(data.features, data.labels, seed=settings.seed, n_estimators=n_estimators,
                         imbalance=imbalance, flag_threshold=settings.risk_score_flag_threshold, weights=weights)  # fmt: skip
    step(2, "evaluating")
    previous = _previous_on_held_out(settings, result)
    meta = {**result.metadata, "trained_on": data.origin, "label_guard": note, "labels_file": data.labels_file,
            "compared_with": previous, "pr_curves": pr_curves(result.test_rows),
            "feature_importance": shap_importance(result.model, result.test_X, result.columns)}  # fmt: skip
    step(3, "signing")
    version = save_version(settings.models_dir, result.model, metadata=meta, drift_reference=result.drift_reference,
                           key=signing_key(settings), promote=promote, trained_keys=result.trained_keys)  # fmt: skip
    step(TRAIN_STEPS, "done")
    log.info("model %s trained on %s (%s)", version, data.origin, "promoted" if promote else "not promoted")
    return version, {**result.metadata["metrics"], "previous": previous}


def _stepper(progress: Progress):
    def step(done: int, what: str) -> None:
        log.info("training: %s", what)
        progress(done=done, total=TRAIN_STEPS, records=0, unit="steps")

    return step


def _label_guard(settings, data: TrainingData, *, force: bool) -> str | None:

    y = join_labels(data.features, data.labels).get_column("label")
    dist = {"wash": int(y.sum()), "legit": int(y.len() - y.sum())}
    baseline = (current_metadata(settings) or {}).get("label_distribution")
    note = check_label_shift(baseline, dist, tolerance=settings.label_shift_tolerance, force=force)
    if note:
        log.warning("label guard: %s", note)
    return note


MIN_FAIR_ROWS = 20  # held-out rows both models never saw, below which the recorded AUC is compared


def _previous_on_held_out(settings, result) -> dict:
    """The current model's ROC-AUC where it can be compared fairly with the new one's.

    Basis "unseen rows": the new model's held-out rows that the current model was never fit
    on either (the current model is refit on all its labelled rows, so scoring it on rows it
    saw would favour it). When fewer than MIN_FAIR_ROWS such rows (or one class) remain, the
    basis is the current model's own recorded held-out ROC-AUC. None when its features differ.
    """

    try:
        old = load_model(settings)
    except NotFound:
        return {"version": None, "roc_auc": None, "basis": None}
    if tuple(old.feature_columns) != tuple(result.columns):
        return {"version": old.version, "roc_auc": None, "basis": "feature columns differ"}
    unseen = np.array([k not in old.trained_keys for k in row_keys(result.test_rows)], dtype=bool)
    y = result.test_rows.get_column("label").to_numpy()[unseen]
    if old.trained_keys and unseen.sum() >= MIN_FAIR_ROWS and len(set(y.tolist())) == 2:
        auc = float(roc_auc_score(y, old.model.predict_proba(result.test_X[unseen])[:, 1]))
        return {"version": old.version, "roc_auc": auc, "basis": f"{int(unseen.sum())} held-out rows neither model saw"}
    recorded = ((old.metadata.get("metrics") or {}).get("ensemble") or {}).get("roc_auc")
    return {"version": old.version, "roc_auc": recorded, "basis": "its own recorded held-out ROC-AUC"}


def should_promote(metrics: dict, *, tolerance: float = AUC_REGRESSION) -> bool:
    """True unless the new ROC-AUC is missing or more than `tolerance` below the previous model's on the same rows."""
    new, old = metrics.get("ensemble", {}).get("roc_auc"), (metrics.get("previous") or {}).get("roc_auc")
    return new is not None and (old is None or new >= old - tolerance)


def pr_curves(test_rows: pl.DataFrame, *, max_points: int = 200) -> dict:
    """Held-out precision-recall curves of the ensemble and the baseline: {name: {"precision", "recall"}}."""

    y = test_rows.get_column("label").to_numpy()
    if np.unique(y).size < 2:
        return {}
    out = {}
    for name, col in (("ensemble", "p_ensemble"), ("baseline", "p_baseline")):
        precision, recall, _ = precision_recall_curve(y, test_rows.get_column(col).to_numpy())
        keep = np.unique(np.linspace(0, precision.size - 1, min(max_points, precision.size)).astype(int))
        out[name] = {"precision": precision[keep].round(4).tolist(), "recall": recall[keep].round(4).tolist()}
    return out


def shap_importance(model, X: np.ndarray, columns, *, sample: int = 300, seed: int = 0) -> dict[str, float]:
    """Global feature importance: mean |SHAP| (score points) of each feature over (a seeded sample of) X."""

    if X.shape[0] == 0:
        return {}
    rows = np.random.default_rng(seed).permutation(X.shape[0])[:sample]
    _, contrib, _ = ensemble_shap(model, X[np.sort(rows)])
    return {c: round(float(v), 4) for c, v in zip(columns, np.abs(contrib).mean(axis=0), strict=True)}


# -- drift ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainOutcome:
    code: int  # 0 no drift, 2 retrained and promoted, 3 retrained but not promoted (regression)
    message: str
    psi: pl.DataFrame | None = None  # engine.drift.psi_table vs the previous model's reference (drift checks)
    version: str | None = None  # the retrained version (None when nothing was trained)
    metrics: dict | None = None  # train_model_version's metrics (incl. "previous")
    n_scored: int = 0  # rows re-scored with the promoted version


def drift_table(store: Store, settings) -> pl.DataFrame:
    """PSI per feature of the stored features against the current model's training reference
    (engine.drift.psi_table columns: feature, psi, missing_ref, missing_now, status)."""

    return psi_table(load_model(settings).drift_reference, ensure_features(store))


def retrain_and_promote(store: Store, settings, *, rescore: bool = False, **train_options) -> RetrainOutcome:
    """Train a new version (train_model_version options) and promote it unless its ROC-AUC is more than
    AUC_REGRESSION below the current model's on the same held-out rows (then it stays archived: the roll-back).
    With `rescore`, a promoted version scores the store (compute_scores). Codes: 2 promoted, 3 not promoted."""

    version, metrics = train_model_version(store, settings, **{**train_options, "promote": False})
    new_auc, prev = metrics["ensemble"]["roc_auc"], metrics["previous"]
    if not should_promote(metrics):
        return RetrainOutcome(3, f"retrained {version} (AUC {new_auc}) but NOT promoted: {prev['version']} scores "
                                 f"{prev['roc_auc']} on the same held-out rows (regression > {AUC_REGRESSION}); "
                                 "the new version is archived", version=version, metrics=metrics)  # fmt: skip
    promote_version(settings.models_dir, version)
    n = 0
    if rescore:
        loaded = load_model(settings, version=version)
        n = compute_scores(store, loaded, flag_threshold=settings.risk_score_flag_threshold).height
    old = f" vs {prev['version']} {prev['roc_auc']}; {prev['version']} archived" if prev["version"] else ""
    return RetrainOutcome(2, f"retrained and promoted {version} (AUC {new_auc}{old})", version=version,
                          metrics=metrics, n_scored=n)  # fmt: skip


def retrain_if_drifted(store: Store, settings, *, psi_threshold: float | None = None, **train_options) -> RetrainOutcome:
    """PSI drift check against the current model; on drift retrain_and_promote (train_model_version options).
    Codes: 0 no drift, 2 retrained and promoted, 3 retrained not promoted (regression)."""

    threshold = settings.psi_drift_threshold if psi_threshold is None else psi_threshold
    old = load_model(settings)
    table = psi_table(old.drift_reference, ensure_features(store))
    if not is_drifted(table, threshold=threshold):
        top = table.get_column("psi").max() or 0.0
        return RetrainOutcome(0, f"no drift (max PSI {top:.3f} <= {threshold}); {old.version} stays", table)
    outcome = retrain_and_promote(store, settings, **train_options)
    return replace(outcome, psi=table, message="drift -> " + outcome.message)
