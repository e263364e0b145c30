"""`train`, `score`, `retrain-if-drifted`, `calibrate-weights`: the risk models from the CLI.

Labelled data, in order: `--labels labels.csv` (simulator ground truth) on the stored
features; else analysts' annotations in the store; else (said on stderr) a simulated
market built in a temp dir (engine.synthetic -> ingest -> rings -> features at
several as_of snapshots) with its ground truth.

Settings read (with defaults while engine/settings.py lacks them):
model_signing_key, model_trusted_fingerprints, psi_drift_threshold, label_shift_tolerance.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl

from engine.cli import open_store
from storage.errors import BadInput, NotFound

SIM_SCALE, SIM_DAYS, SIM_SNAPSHOTS = 1.0, 7, 2
AUC_REGRESSION = 0.01


def register(sub, common) -> None:
    t = sub.add_parser("train", parents=[common], help="train, evaluate, sign and promote the risk ensemble")
    _training_options(t)
    t.set_defaults(handler=_train)
    s = sub.add_parser("score", parents=[common], help="score every stored (wallet, pair); keep the history")
    s.add_argument("--out", type=Path, help="write the scores as CSV")
    s.add_argument("--wallet", help="score one wallet only (same code path)")
    s.add_argument("--pair", help="with --wallet: one pair only")
    _training_options(s)
    s.set_defaults(handler=_score)
    r = sub.add_parser(
        "retrain-if-drifted",
        parents=[common],
        help="PSI drift check; exit 0 no drift, 2 retrained+promoted, 3 retrained not promoted, 1 error",
    )
    r.add_argument("--psi", type=float, default=None, help="drift threshold (default: settings, 0.25)")
    _training_options(r)
    r.set_defaults(handler=_retrain)
    c = sub.add_parser(
        "calibrate-weights",
        parents=[common],
        help="NSGA-II Pareto front of ensemble weights (precision, recall, SHAP stability)",
    )
    c.add_argument("--out", type=Path, required=True, help="CSV of the Pareto front")
    c.add_argument("--pop-size", type=int, default=24)
    c.add_argument("--generations", type=int, default=20)
    _training_options(c)
    c.set_defaults(handler=_calibrate)


def _training_options(p) -> None:
    p.add_argument("--labels", type=Path, help="simulator labels.csv for the stored data")
    p.add_argument("--n-estimators", type=int, default=150)
    p.add_argument("--imbalance", choices=("auto", "class_weight", "smote"), default="auto")
    p.add_argument("--force-label-shift", action="store_true", help="train even if the label ratio moved > 15%%")
    p.add_argument("--sim-scale", type=float, default=SIM_SCALE, help="simulated market scale when no labels")
    p.add_argument("--sim-days", type=int, default=SIM_DAYS)
    p.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="member weights rf,xgb,lgbm (a calibrate-weights point); default: the median",
    )


def _weights(text: str) -> tuple[float, float, float]:
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise BadInput(f"--weights {text!r}: three comma-separated numbers, e.g. 0.2,0.5,0.3") from exc
    if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
        raise BadInput(f"--weights {text!r}: three non-negative numbers with a positive sum")
    return w


def signing_key(settings):
    from models.signing import load_or_create_key

    path = settings.model_signing_key or settings.home / "keys" / "model_signing_ed25519.pem"
    return load_or_create_key(Path(path))


def trusted_fingerprints(settings) -> frozenset[str]:
    """LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS (comma-separated), else the local signing key's."""
    from models.signing import fingerprint, public_bytes

    configured = settings.model_trusted_fingerprints or ""
    fps = frozenset(f.strip().lower() for f in configured.split(",") if f.strip())
    return fps or frozenset({fingerprint(public_bytes(signing_key(settings)))})


def load_current(settings):
    from models.registry import load_version

    return load_version(settings.models_dir, trusted_fingerprints=trusted_fingerprints(settings))


@dataclass(frozen=True)
class TrainingData:
    features: pl.DataFrame
    labels: pl.DataFrame  # models.training.LABELS_SCHEMA
    origin: str


def training_data(store, settings, args) -> TrainingData:
    """The labelled data to train on (see the module docstring for the order)."""
    from engine.scoring import ensure_features
    from models.training import labels_from_annotations, labels_from_simulator

    if args.labels is not None:
        labels = labels_from_simulator(pl.read_csv(args.labels, schema_overrides={"ring_id": pl.String}))
        return TrainingData(ensure_features(store), labels, f"simulator labels {args.labels}")
    ann = store.annotations()
    if ann.height and ann.filter(pl.col("label") == "wash").height and ann.filter(pl.col("label") == "legit").height:
        if "hmac" in ann.columns:
            print(
                "note: annotation HMACs are not verified here (engine.active verifies them on import)", file=sys.stderr
            )
        labels = labels_from_annotations(ann, store.load_derived("ring_members"))
        return TrainingData(ensure_features(store), labels, f"{labels.height} analyst labels")
    print(f"no labelled data in the store: training on a simulated market (seed {settings.seed}, scale "
          f"{args.sim_scale}, {args.sim_days} days)", file=sys.stderr)  # fmt: skip
    return simulated_training_data(seed=settings.seed, scale=args.sim_scale, days=args.sim_days)


def simulated_training_data(*, seed: int, scale: float, days: int, snapshots: int = SIM_SNAPSHOTS) -> TrainingData:
    """A simulated market's feature snapshots (rings and features as of each) and its ground truth."""
    from engine.features import build_feature_matrix
    from engine.graph.rings import detect_rings
    from engine.ingest.files import ingest_files
    from engine.synthetic import generate_market
    from models.training import labels_from_simulator
    from storage.store import Store

    with tempfile.TemporaryDirectory(prefix="ledgerlens-sim-") as tmp:
        market = generate_market(Path(tmp) / "market", seed=seed, scale=scale, days=days)
        with Store(Path(tmp) / "sim.duckdb") as sim:
            ingest_files(sim, [market.trades_path, market.operations_path])
            trades, ops, accounts, edges = sim.trades(), sim.operations(), sim.accounts(), sim.funding_edges()
        labels = pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})
    end = trades.get_column("closed_at").max()
    step = timedelta(days=max(1, days // (snapshots + 1)))
    frames = []
    for i in reversed(range(snapshots)):
        as_of = end - i * step
        rings = detect_rings(trades.filter(pl.col("closed_at") <= as_of), edges.filter(pl.col("closed_at") <= as_of))
        frames.append(build_feature_matrix(trades, ops, accounts, as_of=as_of, ring_members=rings.ring_members))
    origin = f"simulated market seed {seed} scale {scale} ({trades.height:,} trades, {snapshots} snapshots)"
    return TrainingData(pl.concat(frames, how="vertical_relaxed"), labels_from_simulator(labels), origin)


def train_and_register(store, settings, args, *, promote: bool = True):
    """Train on the resolved data (poisoning guard first), sign and store a version. Returns (version, result)."""
    from models.registry import check_label_shift, save_version
    from models.training import join_labels, train_model

    data = training_data(store, settings, args)
    y = join_labels(data.features, data.labels).get_column("label")
    dist = {"wash": int(y.sum()), "legit": int(y.len() - y.sum())}
    tolerance = settings.label_shift_tolerance
    note = check_label_shift(_baseline_distribution(settings), dist, tolerance=tolerance, force=args.force_label_shift)
    if note:
        print(f"label guard: {note}", file=sys.stderr)
    result = train_model(data.features, data.labels, seed=settings.seed, n_estimators=args.n_estimators,
                         imbalance=args.imbalance, flag_threshold=settings.risk_score_flag_threshold,
                         weights=args.weights)  # fmt: skip
    meta = {**result.metadata, "trained_on": data.origin, "label_guard": note}
    version = save_version(settings.models_dir, result.model, metadata=meta, drift_reference=result.drift_reference,
                           key=signing_key(settings), promote=promote)  # fmt: skip
    return version, result


def _baseline_distribution(settings) -> dict | None:
    from models.registry import current_version, verify_version

    version = current_version(settings.models_dir)
    if version is None:
        return None
    meta = verify_version(settings.models_dir / version, trusted_fingerprints=trusted_fingerprints(settings))
    return meta.get("label_distribution")


def _train(args, settings) -> int:
    with open_store(settings) as store:
        version, result = train_and_register(store, settings, args)
    print(f"model {version} promoted ({result.metadata['split']['kind']} split, imbalance "
          f"{result.metadata['imbalance']['chosen']})")  # fmt: skip
    print(metrics_table(result.metadata["metrics"]))
    print(result.metadata["evaluation_note"])
    return 0


def metrics_table(metrics: dict) -> str:
    """The held-out metrics as an aligned text table (ensemble, members, baseline)."""
    cols = ("roc_auc", "pr_auc", "prevalence", "f1_at_threshold", "precision_at_0.5pct", "precision_at_1pct",
            "precision_at_2pct", "brier")  # fmt: skip
    lines = ["model     " + " ".join(f"{c[:14]:>14}" for c in cols)]
    for name, m in metrics.items():
        lines.append(
            f"{name:<9} " + " ".join(f"{m.get(c):>14.4f}" if m.get(c) is not None else f"{'-':>14}" for c in cols)
        )
    return "\n".join(lines)


def _score(args, settings) -> int:
    from engine.scoring import SCORE_COLUMNS, ensure_features, score_store, score_wallet

    with open_store(settings) as store:
        try:
            loaded = load_current(settings)
        except NotFound:
            print("no model yet: training the default model first", file=sys.stderr)
            ensure_features(store)
            train_and_register(store, settings, args)
            loaded = load_current(settings)
        if args.wallet:
            scores = score_wallet(loaded, ensure_features(store), args.wallet, pair_id=args.pair,
                                  flag_threshold=settings.risk_score_flag_threshold,
                                  benford=store.load_derived("benford"), ring_members=store.load_derived("ring_members"))  # fmt: skip
            store.append_scores(scores)
        else:
            scores = score_store(store, loaded, flag_threshold=settings.risk_score_flag_threshold)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        scores.select(SCORE_COLUMNS).write_csv(args.out)
    n_flag = int(scores.get_column("ml_flag").sum())
    n_div = int(scores.get_column("bft_divergence").sum())
    print(f"{scores.height:,} (wallet, pair) scored with {loaded.version}: {n_flag:,} flagged "
          f"(score >= {settings.risk_score_flag_threshold}), {n_div:,} with model divergence"
          + (f"; written to {args.out}" if args.out else ""))  # fmt: skip
    return 0


def _retrain(args, settings) -> int:
    """Exit codes: 0 no drift, 2 retrained and promoted, 3 retrained not promoted, 1 error."""
    from engine.drift import PSI_DRIFT, is_drifted, psi_table
    from engine.scoring import ensure_features
    from models.registry import promote_version

    threshold = args.psi if args.psi is not None else settings.psi_drift_threshold
    with open_store(settings) as store:
        old = load_current(settings)
        table = psi_table(old.drift_reference, ensure_features(store))
        print(table.head(10))
        if not is_drifted(table, threshold=threshold):
            print(f"no drift (max PSI {table.get_column('psi').max() or 0:.3f} <= {threshold}); {old.version} stays")
            return 0
        version, result = train_and_register(store, settings, args, promote=False)
    new_auc = result.metadata["metrics"]["ensemble"]["roc_auc"]
    old_auc = _auc_of(old, result)
    if new_auc is None or (old_auc is not None and new_auc < old_auc - AUC_REGRESSION):
        print(f"retrained {version} (AUC {new_auc}) but NOT promoted: {old.version} scores {old_auc} on the same "
              f"held-out rows (regression > {AUC_REGRESSION}); the new version is archived")  # fmt: skip
        return 3
    promote_version(settings.models_dir, version)
    print(f"drift -> retrained and promoted {version} (AUC {new_auc:.4f} vs {old.version} {old_auc}); "
          f"{old.version} archived")  # fmt: skip
    return 2


def _auc_of(old, result) -> float | None:
    """The old model's ROC-AUC on the new model's held-out rows (None when its features differ)."""
    from sklearn.metrics import roc_auc_score

    if tuple(old.feature_columns) != tuple(result.columns):
        return None
    y = result.test_rows.get_column("label").to_numpy()
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, old.model.predict_proba(result.test_X)[:, 1]))


def _calibrate(args, settings) -> int:
    from engine.drift import pareto_weights
    from engine.explain import member_shap
    from models.training import labelled_data

    with open_store(settings) as store:
        loaded = load_current(settings)
        data = training_data(store, settings, args)
    d = labelled_data(data.features, data.labels, list(loaded.feature_columns))
    idx = slice(0, min(2000, d.y.size))
    points = loaded.model.member_probas(d.X[idx]) * 100
    shap = [phi for _, phi in member_shap(loaded.model, d.X[idx])]
    front = pareto_weights(points, d.y[idx], shap, threshold=settings.risk_score_flag_threshold,
                           pop_size=args.pop_size, n_gen=args.generations, seed=settings.seed)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    front.write_csv(args.out)
    print(f"{front.height} Pareto-optimal weightings of {json.dumps(['rf', 'xgb', 'lgbm'])} written to {args.out}; "
          "pick one and pass its weights to WashEnsemble(weights=...)")  # fmt: skip
    return 0


__all__ = ["BadInput", "load_current", "metrics_table", "register", "simulated_training_data", "train_and_register",
           "trusted_fingerprints"]  # fmt: skip
