"""The active-learning settings, read in one place from engine.settings.Settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STRATEGIES: tuple[str, ...] = ("committee", "uncertainty", "diversity", "random")


@dataclass(frozen=True)
class ActiveSettings:
    strategy: str
    batch_size: int
    retrain_threshold: int
    rollback_auc_drop: float
    hmac_key_path: Path
    home: Path


def active_settings(settings) -> ActiveSettings:
    """The LEDGERLENS_AL_* settings of `settings` (engine.settings.Settings)."""
    key_path = settings.annotation_hmac_key_path or Path(settings.home) / "keys" / "annotation_hmac.key"
    return ActiveSettings(
        strategy=settings.al_query_strategy,
        batch_size=settings.al_batch_size,
        retrain_threshold=settings.al_retrain_threshold,
        rollback_auc_drop=settings.al_rollback_auc_drop,
        hmac_key_path=Path(key_path),
        home=Path(settings.home),
    )
