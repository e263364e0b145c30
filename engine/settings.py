"""All settings in one place: environment variables prefixed ``LEDGERLENS_``.

Read once at start (`Settings()`), then passed down; nothing else reads the
environment. Every field has a default and a description, and README.md documents
each one (a test checks that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLENS_", extra="ignore")

    home: Path = Field(Path("./data"), description="Data directory: the DuckDB store, models, reports.")
    db: Path | None = Field(None, description="DuckDB file the app opens (default: $LEDGERLENS_HOME/ledgerlens.duckdb).")
    horizon_url: str = Field("https://horizon.stellar.org", description="Horizon server for `ingest horizon`.")
    datalake_url: str = Field(
        "https://aws-public-blockchain.s3.us-east-2.amazonaws.com/v1.1/stellar/ledgers/pubnet",
        description="Ledger-exporter (Galexie) data lake: a local folder or an HTTPS prefix.",
    )
    explorer_url: str = Field(
        "https://stellar.expert/explorer/public",
        description="Block explorer the Wallet page links each trade to (`<url>/ledger/<ledger>`, `<url>/op/<operation id>`).",
    )
    http_timeout_s: float = Field(30.0, description="Timeout of one HTTP request to a source, seconds.")
    http_max_retries: int = Field(8, description="Retries on 429/5xx/timeouts (exponential backoff with jitter).")
    batch_size: int = Field(500_000, description="Records (file lines) per transactional write batch during file ingestion.")
    decode_workers: int = Field(2, description="Processes decoding data-lake ledgers in parallel.")
    seed: int = Field(42, description="Seed for every random step (simulator, models, layouts).")
    risk_score_flag_threshold: int = Field(70, description="Score at or above which a (wallet, pair) is flagged.")
    alert_webhook_secret: str = Field(
        "", description="HMAC-SHA256 key signing `watch` webhook alerts (header X-LedgerLens-Signature); a webhook needs it."
    )
    model_signing_key: Path | None = Field(
        None, description="Ed25519 PEM key signing model metadata and forensic reports (default $LEDGERLENS_HOME/keys/model_signing_ed25519.pem, created on first use)."
    )
    model_trusted_fingerprints: str = Field(
        "", description="Comma-separated SHA-256 fingerprints of trusted signing public keys (models and reports); empty trusts the local key."
    )
    psi_drift_threshold: float = Field(0.25, description="PSI above which a feature counts as drifted.")
    label_shift_tolerance: float = Field(
        0.15, description="Training aborts when the wash-label ratio moved more than this (relative) from the baseline."
    )
    privacy_epsilon: float = Field(1.0, description="Differential-privacy epsilon for public explanations.")
    privacy_delta: float = Field(1e-5, description="Differential-privacy delta for public explanations.")
    privacy_query_budget: float = Field(3.0, description="Total epsilon one wallet's public explanations may spend.")
    al_query_strategy: Literal["committee", "uncertainty", "diversity", "random"] = Field(
        "diversity", description="Annotation queue strategy: committee | uncertainty | diversity | random."
    )
    al_batch_size: int = Field(20, description="Rows the annotation queue proposes per batch.")
    al_retrain_threshold: int = Field(20, description="New verified labels after which the model retrains.")
    al_rollback_auc_drop: float = Field(
        0.01, description="A retrained model whose ROC-AUC drops more than this is not promoted (rolled back)."
    )
    annotation_hmac_key_path: Path | None = Field(
        None, description="HMAC-SHA256 key of analyst labels (default $LEDGERLENS_HOME/keys/annotation_hmac.key, created 0600)."
    )
    anchor_secret_key_path: Path | None = Field(
        None, description="File holding the Stellar secret seed (S...) that signs report-anchoring transactions."
    )
    anchor_source_account: str | None = Field(
        None, description="Account whose sequence the anchoring transaction uses (default: the key's own account)."
    )
    anchor_sequence: int = Field(0, description="Current sequence number of the anchoring account (0: placeholder).")
    anchor_network_passphrase: str = Field(
        "Public Global Stellar Network ; September 2015", description="Network passphrase anchoring transactions sign for."
    )
    anchor_base_fee: int = Field(100, description="Base fee (stroops) of anchoring transactions.")
    spark_master: str = Field(
        "local[2]", description="Spark master for `--engine spark`: local[N], spark://host:7077, yarn, or sc://host:15002 (Spark Connect)."
    )

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.home / "ledgerlens.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def load_settings() -> Settings:
    """Settings from the environment (called once by the CLI and by app.py)."""
    return Settings()
