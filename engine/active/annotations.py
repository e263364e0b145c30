"""Analysts' labels you can trust: HMAC-signed rows, verification, export and import.

Every annotation row carries an HMAC-SHA256 over ``wallet|label|annotator_id|annotated_at``
(annotated_at in UTC, Python ``isoformat()``: microseconds only when non-zero), keyed
by a local secret (`load_or_create_key`). Rows that fail verification are rejected
by name before any training (`verify_annotations`) and before any import
(`read_annotation_file`). Sharing labels between analysts means sharing that key.

The HMAC covers the four fields the spec names; pair_id, note and label_source are
not covered (a changed note cannot change training; a moved pair_id can: see the report).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from storage.errors import BadInput

LABELS: tuple[str, ...] = ("wash", "legit", "unsure")
ANNOTATION_COLUMNS: tuple[str, ...] = (
    "wallet", "pair_id", "label", "note", "annotator_id", "annotated_at", "label_source", "hmac",
)  # fmt: skip
ANNOTATION_SCHEMA = {
    "wallet": pl.String, "pair_id": pl.String, "label": pl.String, "note": pl.String, "annotator_id": pl.String,
    "annotated_at": pl.Datetime("us", "UTC"), "label_source": pl.String, "hmac": pl.String,
}  # fmt: skip
LEGACY_KEY_NAME = "annotation.key"  # where engine.workbench kept the key before engine.active


def load_or_create_key(path: Path, *, legacy: Path | None = None) -> bytes:
    """The HMAC secret at `path`; created (32 random bytes, mode 0600) on first use.

    When `path` is absent but `legacy` (the old $LEDGERLENS_HOME/annotation.key) exists,
    its bytes are carried over so labels signed before the move still verify."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = legacy.read_bytes() if legacy is not None and legacy.exists() else secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    key = path.read_bytes()
    if len(key) < 16:
        raise BadInput(f"annotation HMAC key {path} holds {len(key)} bytes; it needs at least 16 (delete it to "
                       "create a new one, which invalidates every existing label)")  # fmt: skip
    return key


def settings_key(settings) -> bytes:
    """The annotation HMAC key named by the settings (see engine.active.config)."""
    from engine.active.config import active_settings

    a = active_settings(settings)
    return load_or_create_key(a.hmac_key_path, legacy=a.home / LEGACY_KEY_NAME)


def timestamp_text(when: datetime) -> str:
    """The signed form of annotated_at: UTC, `datetime.isoformat()`."""
    if when.tzinfo is None:
        raise BadInput(f"annotated_at {when!r} has no time zone")
    return when.astimezone(UTC).isoformat()


def sign(key: bytes, *, wallet: str, label: str, annotator_id: str, annotated_at: datetime) -> str:
    """Hex HMAC-SHA256 over wallet|label|annotator_id|annotated_at."""
    message = f"{wallet}|{label}|{annotator_id}|{timestamp_text(annotated_at)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def annotation_row(
    *, wallet: str, pair_id: str | None, label: str, note: str | None, annotator_id: str, key: bytes,
    now: datetime, label_source: str = "analyst",
) -> pl.DataFrame:  # fmt: skip
    """One signed annotation row (ANNOTATION_SCHEMA), as Store.append_annotations takes it."""
    if label not in LABELS:
        raise BadInput(f"label {label!r} is not one of {', '.join(LABELS)}")
    if not wallet or not annotator_id:
        raise BadInput("an annotation needs a wallet and an annotator id")
    now = now.astimezone(UTC)
    mac = sign(key, wallet=wallet, label=label, annotator_id=annotator_id, annotated_at=now)
    return pl.DataFrame(
        {"wallet": [wallet], "pair_id": [pair_id or None], "label": [label], "note": [note or None],
         "annotator_id": [annotator_id], "annotated_at": [now], "label_source": [label_source], "hmac": [mac]},
        schema=ANNOTATION_SCHEMA,
    )  # fmt: skip


@dataclass(frozen=True)
class Verified:
    valid: pl.DataFrame  # rows whose HMAC verifies (input columns)
    rejected: pl.DataFrame  # rows that fail: input columns + reason

    def names(self, limit: int = 20) -> list[str]:
        """The rejected rows named for a person: `wallet label by annotator at time (reason)`."""
        return [f"{w} {lab} by {a} at {t} ({r})" for w, lab, a, t, r in
                self.rejected.select("wallet", "label", "annotator_id", "annotated_at", "reason").head(limit).iter_rows()]  # fmt: skip


def _iso_expr() -> pl.Expr:
    """annotated_at as `datetime.astimezone(UTC).isoformat()` renders it (no fraction when microsecond == 0)."""
    ts = pl.col("annotated_at").dt.convert_time_zone("UTC")
    return (
        pl.when(ts.dt.microsecond() == 0)
        .then(ts.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        .otherwise(ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
    )


def _signed_text(frame: pl.DataFrame) -> pl.Series:
    """wallet|label|annotator_id|annotated_at per row, annotated_at rendered as isoformat() (vectorised)."""
    parts = [pl.col("wallet").fill_null(""), pl.col("label").fill_null(""), pl.col("annotator_id").fill_null(""),
             _iso_expr().fill_null("")]  # fmt: skip
    return frame.select(pl.concat_str(parts, separator="|").alias("m")).get_column("m")


def verify_annotations(frame: pl.DataFrame, key: bytes) -> Verified:
    """Split annotation rows into those whose HMAC verifies and those that do not (with a reason).

    frame: at least wallet, label, annotator_id, annotated_at (tz-aware), hmac."""
    if frame.height == 0:
        return Verified(frame, frame.with_columns(reason=pl.lit(None, dtype=pl.String)))
    expected = [hmac.new(key, m.encode(), hashlib.sha256).hexdigest() for m in _signed_text(frame).to_list()]
    given = frame.get_column("hmac").fill_null("").to_list()
    ok = [hmac.compare_digest(e, g) for e, g in zip(expected, given, strict=True)]
    reason = (
        pl.when(~pl.col("label").is_in(list(LABELS))).then(pl.lit("label not wash/legit/unsure"))
        .when(pl.col("hmac").is_null() | (pl.col("hmac") == "")).then(pl.lit("no HMAC"))
        .when(pl.col("annotated_at").is_null()).then(pl.lit("no annotated_at"))
        .otherwise(pl.lit("HMAC mismatch (row altered or signed with another key)"))
    )  # fmt: skip
    good = pl.Series("ok", ok) & frame.get_column("label").is_in(list(LABELS))
    return Verified(frame.filter(good), frame.filter(~good).with_columns(reason=reason))


def verified_store_annotations(store, key: bytes) -> Verified:
    """Every stored annotation row, verified (the only door from annotations to training)."""
    return verify_annotations(store.annotations(), key)


# -- export / import -------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "parquet")


def file_format(path: Path) -> str:
    """csv or parquet, from the file name; BadInput otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"csv": "csv", "parquet": "parquet", "pq": "parquet"}.get(suffix)
    if fmt is None:
        raise BadInput(f"{path}: annotation files are .csv or .parquet")
    return fmt


def export_annotations(frame: pl.DataFrame, path: Path) -> int:
    """Write annotation rows (ANNOTATION_COLUMNS, HMACs kept) as CSV or Parquet; returns rows written.

    CSV holds annotated_at as its signed text (UTC isoformat), so a re-import verifies bit for bit."""
    path = Path(path)
    out = frame.select(ANNOTATION_COLUMNS).cast(ANNOTATION_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format(path) == "parquet":
        out.write_parquet(path)
    else:
        out.with_columns(annotated_at=_iso_expr()).write_csv(path)
    return out.height


def read_annotation_file(path: Path) -> pl.DataFrame:
    """Annotation rows from an exported CSV / Parquet file (ANNOTATION_SCHEMA); BadInput naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    try:
        raw = pl.read_parquet(path) if file_format(path) == "parquet" else pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise BadInput(f"{path}: not a readable annotation file ({exc})") from exc
    missing = [c for c in ANNOTATION_COLUMNS if c not in raw.columns and c not in ("note", "pair_id", "label_source")]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(ANNOTATION_COLUMNS)}")
    for c in ("note", "pair_id", "label_source"):
        if c not in raw.columns:
            raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    at = pl.col("annotated_at")
    if raw.schema["annotated_at"] == pl.String:
        at = at.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", strict=False)
    else:
        at = at.dt.convert_time_zone("UTC") if getattr(raw.schema["annotated_at"], "time_zone", None) else at
    texts = [pl.col(c).cast(pl.String) for c in ANNOTATION_COLUMNS if c != "annotated_at"]
    return raw.select(*texts, at.cast(pl.Datetime("us", "UTC")).alias("annotated_at")).select(ANNOTATION_COLUMNS)


@dataclass(frozen=True)
class ImportResult:
    n_read: int
    n_added: int
    n_duplicate: int  # verified rows already in the store (re-import is idempotent)
    verified: Verified


def import_annotations(store, path: Path, key: bytes) -> ImportResult:
    """Verify every row of an exported file, append the verified rows not yet stored (label_source
    'import'), and return what was rejected; nothing tampered ever reaches the store."""
    rows = read_annotation_file(path)
    checked = verify_annotations(rows, key)
    keys = ["wallet", "label", "annotator_id", "annotated_at", "hmac"]
    stored = store.annotations()
    have = stored.select(keys).cast({"annotated_at": pl.Datetime("us", "UTC")}) if stored.height else None
    new = checked.valid.unique(keys, keep="first", maintain_order=True)
    if have is not None:
        new = new.join(have, on=keys, how="anti")
    new = new.with_columns(label_source=pl.lit("import"))
    if new.height:
        store.append_annotations(new)
    return ImportResult(rows.height, new.height, checked.valid.height - new.height, checked)
