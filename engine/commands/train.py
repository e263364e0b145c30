"""`train`, `score`, `retrain-if-drifted`, `calibrate-weights`: the risk models from the CLI.

A thin layer over engine.services (train_model_version, compute_scores, retrain_if_drifted),
which the app's Models page and active learning use too. Labelled data: `--labels labels.csv`
(simulator ground truth) on the stored features, else what the store holds (see engine.services.train).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli import open_store
from engine.progress import CliProgress
from storage.errors import BadInput, NotFound


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
    p.add_argument("--sim-scale", type=float, default=None, help="simulated market scale when no labels")
    p.add_argument("--sim-days", type=int, default=None)
    p.add_argument("--weights", type=_weights, default=None,
                   help="member weights rf,xgb,lgbm (a calibrate-weights point); default: the median")  # fmt: skip


def _weights(text: str) -> tuple[float, float, float]:
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise BadInput(f"--weights {text!r}: three comma-separated numbers, e.g. 0.2,0.5,0.3") from exc
    if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
        raise BadInput(f"--weights {text!r}: three non-negative numbers with a positive sum")
    return w


def _train_options(args) -> dict:
    from engine.services.train import SIM_DAYS, SIM_SCALE

    sim_scale = SIM_SCALE if args.sim_scale is None else args.sim_scale
    sim_days = SIM_DAYS if args.sim_days is None else args.sim_days
    return dict(labels=args.labels, force_label_shift=args.force_label_shift, n_estimators=args.n_estimators,
                imbalance=args.imbalance, weights=args.weights, sim_scale=sim_scale, sim_days=sim_days,
                progress=CliProgress("train"))  # fmt: skip


def _train(args, settings) -> int:
    from engine.services.models import current_metadata
    from engine.services.train import train_model_version
    with open_store(settings) as store:
        version, metrics = train_model_version(store, settings, **_train_options(args))
    meta = current_metadata(settings)
    print(f"model {version} promoted ({meta['split']['kind']} split, imbalance {meta['imbalance']['chosen']}; "
          f"trained on {meta['trained_on']})")  # fmt: skip
    print(metrics_table(meta["metrics"]))
    print(meta["evaluation_note"])
    return 0


def metrics_table(metrics: dict) -> str:
    """The held-out metrics as an aligned text table (ensemble, members, baseline)."""
    cols = ("roc_auc", "pr_auc", "prevalence", "f1_at_threshold", "precision_at_0.5pct", "precision_at_1pct",
            "precision_at_2pct", "brier")  # fmt: skip
    lines = ["model     " + " ".join(f"{c[:14]:>14}" for c in cols)]
    for name, m in metrics.items():
        if name == "previous":
            continue
        lines.append(
            f"{name:<9} " + " ".join(f"{m.get(c):>14.4f}" if m.get(c) is not None else f"{'-':>14}" for c in cols)
        )
    return "\n".join(lines)


def _score(args, settings) -> int:
    from engine.scoring import SCORE_COLUMNS
    from engine.services.analyse import compute_scores, ensure_features
    from engine.services.models import load_model
    from engine.services.train import train_model_version

    with open_store(settings) as store:
        try:
            loaded = load_model(settings)
        except NotFound:
            print("no model yet: training the default model first", file=sys.stderr)
            ensure_features(store, seed=settings.seed)
            train_model_version(store, settings, **_train_options(args))
            loaded = load_model(settings)
        scores = compute_scores(store, loaded, flag_threshold=settings.risk_score_flag_threshold,
                                wallet=args.wallet or None, pair_id=args.pair if args.wallet else None)  # fmt: skip
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
    from engine.services.train import retrain_if_drifted

    with open_store(settings) as store:
        outcome = retrain_if_drifted(store, settings, psi_threshold=args.psi, **_train_options(args))
    if outcome.psi is not None:
        print(outcome.psi.head(10))
    print(outcome.message)
    return outcome.code


def _calibrate(args, settings) -> int:
    from engine.drift import pareto_weights
    from engine.explain import member_shap
    from engine.services.models import load_model
    from engine.services.train import training_data
    from models.training import labelled_data

    with open_store(settings) as store:
        loaded = load_model(settings)
        options = _train_options(args)
        data = training_data(store, settings, labels=args.labels, sim_scale=options["sim_scale"],
                             sim_days=options["sim_days"])  # fmt: skip
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
