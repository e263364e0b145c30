"""Retrain after enough new labels; keep the new model only if it is not worse.

After `retrain_threshold` new verified labels since the last retrain (or on demand),
the model is retrained through engine.services.train.train_model_version on the verified
analyst labels (plus the simulator labels file the current model was trained on,
when there is one), NOT promoted; it is promoted only when its ROC-AUC on the
held-out rows is no more than `rollback_auc_drop` below the current model's on the
same rows — otherwise the current model stays (rolled back) and the new version is
archived. Tampered annotation rows are rejected by name before any training.
Every attempt is logged to $LEDGERLENS_HOME/active/retrains.jsonl (the page plots it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from engine.active.annotations import Verified, settings_key, verified_store_annotations
from engine.active.config import active_settings
from engine.services.train import should_promote, stored_labels, train_model_version
from models.registry import current_version, promote_version
from storage.errors import BadInput

log = logging.getLogger(__name__)
LOG_NAME = "retrains.jsonl"


@dataclass(frozen=True)
class RetrainRecord:
    at: str  # ISO time of the attempt
    status: str  # promoted | rolled_back | blocked (label guard) | skipped (too few labels)
    version: str | None  # the version trained (None when skipped / blocked)
    current: str | None  # the current model after the attempt
    n_labels: int  # verified wash/legit analyst labels used
    last_annotation_id: int  # the newest annotation row counted
    roc_auc: float | None
    pr_auc: float | None
    previous_roc_auc: float | None
    n_rejected: int  # annotation rows whose HMAC failed (not trained on)
    message: str


def log_path(settings) -> Path:
    return active_settings(settings).home / "active" / LOG_NAME


def retrain_log(settings) -> pl.DataFrame:
    """Every retrain attempt, oldest first (RetrainRecord fields); empty frame when none."""
    path = log_path(settings)
    if not path.exists():
        return pl.DataFrame(schema={f: pl.String for f in RetrainRecord.__dataclass_fields__})
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pl.DataFrame(rows, infer_schema_length=None)


def _append_log(settings, record: RetrainRecord) -> None:
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(asdict(record)) + "\n")


def new_label_count(settings, verified: Verified) -> int:
    """Verified annotation rows added since the last retrain attempt."""
    log_frame = retrain_log(settings)
    last = int(log_frame.get_column("last_annotation_id").cast(pl.Int64).max() or 0) if log_frame.height else 0
    return int(verified.valid.filter(pl.col("id") > last).height) if "id" in verified.valid.columns else 0


def training_labels(store, settings, verified: Verified) -> pl.DataFrame:
    """LABELS_SCHEMA labels: the current model's simulator labels file (if any) + verified analyst labels."""
    parts, _, _ = stored_labels(store, settings, annotations=verified.valid)
    if not parts:
        raise BadInput("no verified labels to train on: label wallets on the Annotate page first")
    return pl.concat(parts)


def maybe_retrain(store, settings, *, now: datetime, force: bool = False, n_estimators: int = 150,
                  force_label_shift: bool = False) -> RetrainRecord:  # fmt: skip
    """Retrain when `retrain_threshold` new verified labels arrived (or `force`); see the module docstring."""
    a = active_settings(settings)
    verified = verified_store_annotations(store, settings_key(settings))
    if verified.rejected.height:
        log.warning("rejected %d tampered annotation row(s) before training: %s", verified.rejected.height,
                    "; ".join(verified.names()))  # fmt: skip
    n_new = new_label_count(settings, verified)
    last_id = int(verified.valid.get_column("id").max() or 0) if verified.valid.height else 0
    base = {"at": now.isoformat(), "n_rejected": verified.rejected.height, "last_annotation_id": last_id}
    if not force and n_new < a.retrain_threshold:
        return RetrainRecord(status="skipped", version=None, current=None, n_labels=n_new, roc_auc=None, pr_auc=None,
                             previous_roc_auc=None, message=f"{n_new} of {a.retrain_threshold} new labels", **base)  # fmt: skip
    labels = training_labels(store, settings, verified)
    record = _train_and_decide(store, settings, labels, base, drop=a.rollback_auc_drop, n_estimators=n_estimators,
                               force_label_shift=force_label_shift)  # fmt: skip
    _append_log(settings, record)
    return record


def _train_and_decide(store, settings, labels: pl.DataFrame, base: dict, *, drop: float, n_estimators: int,
                      force_label_shift: bool) -> RetrainRecord:  # fmt: skip
    n = labels.filter(pl.col("label_source") != "simulator").height
    before = current_version(settings.models_dir)
    try:
        version, metrics = train_model_version(store, settings, labels=labels, force_label_shift=force_label_shift,
                                               promote=False, n_estimators=n_estimators)  # fmt: skip
    except BadInput as exc:  # the label guard (LabelShiftError) or one class only
        return RetrainRecord(status="blocked", version=None, current=before, n_labels=n, roc_auc=None, pr_auc=None,
                             previous_roc_auc=None, message=str(exc), **base)  # fmt: skip
    ens, prev = metrics.get("ensemble", {}), (metrics.get("previous") or {})
    promote = should_promote(metrics, tolerance=drop)
    if promote:
        promote_version(settings.models_dir, version)
    msg = (f"{version} promoted (ROC-AUC {ens.get('roc_auc')} vs previous {prev.get('roc_auc')})" if promote else
           f"{version} NOT promoted: ROC-AUC {ens.get('roc_auc')} is more than {drop} below {before}'s "
           f"{prev.get('roc_auc')} on the same rows; {before} stays current (rolled back)")  # fmt: skip
    return RetrainRecord(status="promoted" if promote else "rolled_back", version=version,
                         current=version if promote else before, n_labels=n, roc_auc=ens.get("roc_auc"),
                         pr_auc=ens.get("pr_auc"), previous_roc_auc=prev.get("roc_auc"), message=msg, **base)  # fmt: skip
