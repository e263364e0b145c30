"""Active learning: signed annotations, the annotation queue, retraining with rollback.

- annotations: HMAC-SHA256 signing / verification, export and import (CSV, Parquet);
- queue: the strategies (committee, uncertainty, diversity, random) and label evidence;
- service: the queue over a store and recording a label;
- retrain: retrain after AL_RETRAIN_THRESHOLD new labels, roll back on an AUC drop;
- config: the AL_* settings (one reader).
"""

from engine.active.annotations import (
    LABELS,
    Verified,
    annotation_row,
    export_annotations,
    import_annotations,
    load_or_create_key,
    settings_key,
    sign,
    verified_store_annotations,
    verify_annotations,
)  # fmt: skip
from engine.active.config import STRATEGIES, ActiveSettings, active_settings
from engine.active.queue import evidence_boost, rank_queue
from engine.active.retrain import RetrainRecord, maybe_retrain, retrain_log
from engine.active.service import QueueResult, build_queue, record_label

__all__ = [
    "LABELS", "STRATEGIES", "ActiveSettings", "QueueResult", "RetrainRecord", "Verified", "active_settings",
    "annotation_row", "build_queue", "evidence_boost", "export_annotations", "import_annotations",
    "load_or_create_key", "maybe_retrain", "rank_queue", "record_label", "retrain_log", "settings_key", "sign",
    "verified_store_annotations", "verify_annotations",
]  # fmt: skip
