"""Active learning, the pure parts: signed annotations, the queue strategies, the AL_* settings.

- annotations: HMAC-SHA256 signing / verification, export and import (CSV, Parquet);
- queue: the strategies (committee, uncertainty, diversity, random) and label evidence;
- config: the AL_* settings (one reader).

The steps over a store (fill the queue, record a label, retrain after enough labels)
are use cases: engine.services.label and engine.services.retrain.
"""

from engine.active.annotations import (
    LABEL_KEYS,
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

__all__ = [
    "LABEL_KEYS", "LABELS", "STRATEGIES", "ActiveSettings", "Verified", "active_settings", "annotation_row", "evidence_boost",
    "export_annotations", "import_annotations", "load_or_create_key", "rank_queue", "settings_key", "sign",
    "verified_store_annotations", "verify_annotations",
]  # fmt: skip
