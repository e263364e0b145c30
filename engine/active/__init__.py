"""Active learning: signed annotations, the annotation queue, retraining with rollback.

- annotations: HMAC-SHA256 signing / verification, export and import (CSV, Parquet);
- queue: the strategies (committee, uncertainty, diversity, random) and label evidence;
- service: the queue over a store and recording a label;
- retrain: retrain after AL_RETRAIN_THRESHOLD new labels, roll back on an AUC drop;
- config: the AL_* settings (one reader).
"""

import importlib

# Names resolve on first use (PEP 562), so `python -m engine ...` does not load the
# queue, retraining and their model imports for every command.
_FROM = {
    "annotations": (
        "LABELS", "Verified", "annotation_row", "export_annotations", "import_annotations", "load_or_create_key",
        "settings_key", "sign", "verified_store_annotations", "verify_annotations",
    ),
    "config": ("STRATEGIES", "ActiveSettings", "active_settings"),
    "queue": ("evidence_boost", "rank_queue"),
    "retrain": ("RetrainRecord", "maybe_retrain", "retrain_log"),
    "service": ("QueueResult", "build_queue", "record_label"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _FROM.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'engine.active' has no attribute {name!r}")
    return getattr(importlib.import_module(f"engine.active.{_MODULE_OF[name]}"), name)
