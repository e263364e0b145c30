"""Analysts' labels you can trust: HMAC-signed rows, verification, export and import.

Every annotation row carries an HMAC-SHA256, keyed by a local secret
(`load_or_create_key`), stored as ``v2:<hex>`` over

    b"ledgerlens-annotation-v2\n" + JSON [wallet, pair_id, label, note, annotator_id, annotated_at]

(compact JSON, ASCII; an empty pair_id / note is null; annotated_at in UTC,
Python ``isoformat()``: microseconds only when non-zero). Every field that says
something is covered: who labelled which wallet in which pair (null: every pair) as
what, when, and why - so a label cannot be moved to another pair or given another
note. `label_source` is not covered: it records how the row reached this store
(`analyst`, `import`) and an import rewrites it.

Legacy rows (a bare hex HMAC over ``wallet|label|annotator_id|annotated_at``, made
before pair_id was covered) are checked with that old scheme and then REFUSED with
their own reason: the four fields may be genuine, but nothing proves which pair the
label is about, so they are never evidence or training data. Label again to use them.

Rows that fail verification are rejected by name before any training
(`verify_annotations`) and before any import (`read_annotation_file`). Sharing
labels between analysts means sharing that key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from engine.active.config import active_settings
from storage.errors import BadInput

LABELS: tuple[str, ...] = ("wash", "legit", "unsure")
LABEL_KEYS = {"wash": "W", "legit": "L", "unsure": "U"}  # the keyboard shortcuts of the labelling buttons
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
    a = active_settings(settings)
    return load_or_create_key(a.hmac_key_path, legacy=a.home / LEGACY_KEY_NAME)


def timestamp_text(when: datetime) -> str:
    """The signed form of annotated_at: UTC, `datetime.isoformat()`."""
    if when.tzinfo is None:
        raise BadInput(f"annotated_at {when!r} has no time zone")
    return when.astimezone(UTC).isoformat()


SCHEME = "v2"
SIGNED_PREFIX = b"ledgerlens-annotation-v2\n"
SIGNED_FIELDS: tuple[str, ...] = ("wallet", "pair_id", "label", "note", "annotator_id", "annotated_at")
REASON_LEGACY = ("legacy HMAC (signed before pair_id and note were covered): wallet, label, analyst and time verify "
                 "but the pair it is about cannot be proven; label it again to use it")  # fmt: skip
REASON_MISMATCH = "HMAC mismatch (row altered - e.g. moved to another pair - or signed with another key)"
_LEGACY_MAC = re.compile(r"[0-9a-f]{64}")


def signed_message(*, wallet: str, pair_id: str | None, label: str, note: str | None, annotator_id: str,
                   annotated_at: str) -> bytes:  # fmt: skip
    """The bytes a v2 HMAC is over (`annotated_at` already as `timestamp_text`)."""
    fields = [wallet, pair_id or None, label, note or None, annotator_id, annotated_at]
    return SIGNED_PREFIX + json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sign(key: bytes, *, wallet: str, label: str, annotator_id: str, annotated_at: datetime,
         pair_id: str | None = None, note: str | None = None) -> str:  # fmt: skip
    """``v2:`` + hex HMAC-SHA256 over every meaningful field (see module doc)."""
    message = signed_message(wallet=wallet, pair_id=pair_id, label=label, note=note, annotator_id=annotator_id,
                             annotated_at=timestamp_text(annotated_at))  # fmt: skip
    return f"{SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def sign_legacy(key: bytes, *, wallet: str, label: str, annotator_id: str, annotated_at: str) -> str:
    """The pre-v2 HMAC (hex, over wallet|label|annotator_id|annotated_at text): only to recognise legacy rows."""
    message = f"{wallet}|{label}|{annotator_id}|{annotated_at}".encode()
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
    mac = sign(key, wallet=wallet, label=label, annotator_id=annotator_id, annotated_at=now, pair_id=pair_id,
               note=note)  # fmt: skip
    return pl.DataFrame(
        {"wallet": [wallet], "pair_id": [pair_id or None], "label": [label], "note": [note or None],
         "annotator_id": [annotator_id], "annotated_at": [now], "label_source": [label_source], "hmac": [mac]},
        schema=ANNOTATION_SCHEMA,
    )  # fmt: skip


@dataclass(frozen=True)
class Verified:
    valid: pl.DataFrame  # rows whose HMAC verifies (input columns)
    rejected: pl.DataFrame  # rows that fail: input columns + reason (legacy rows included, see n_legacy)

    @property
    def n_legacy(self) -> int:
        """Rejected rows that are genuine legacy-signed labels (not tampered, but not bound to a pair)."""
        return int((self.rejected.get_column("reason") == REASON_LEGACY).sum()) if self.rejected.height else 0

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


def row_status(key: bytes, row: dict) -> str | None:
    """None when the row's HMAC verifies under the v2 scheme, else why not (legacy rows have their own reason).

    row: wallet, pair_id, label, note, annotator_id, annotated_at (signed text or None), hmac."""
    mac, at = row.get("hmac") or "", row.get("annotated_at")
    if row.get("label") not in LABELS:
        return "label not wash/legit/unsure"
    if not mac:
        return "no HMAC"
    if at is None:
        return "no annotated_at"
    fields = {f: row.get(f) for f in SIGNED_FIELDS}
    if mac.startswith(f"{SCHEME}:"):
        expected = f"{SCHEME}:{hmac.new(key, signed_message(**fields), hashlib.sha256).hexdigest()}"
        return None if hmac.compare_digest(expected, mac) else REASON_MISMATCH
    if _LEGACY_MAC.fullmatch(mac):
        legacy = sign_legacy(key, wallet=fields["wallet"] or "", label=fields["label"],
                             annotator_id=fields["annotator_id"] or "", annotated_at=at)  # fmt: skip
        if hmac.compare_digest(legacy, mac):
            return REASON_LEGACY
    return REASON_MISMATCH


def verify_annotations(frame: pl.DataFrame, key: bytes) -> Verified:
    """Split annotation rows into those whose HMAC verifies and those that do not (with a reason).

    frame: at least wallet, label, annotator_id, annotated_at (tz-aware), hmac; pair_id and note
    (absent: null). Legacy-signed rows are rejected with REASON_LEGACY (see module doc)."""
    if frame.height == 0:
        return Verified(frame, frame.with_columns(reason=pl.lit(None, dtype=pl.String)))
    cols = [pl.col(c) if c in frame.columns else pl.lit(None, dtype=pl.String).alias(c)
            for c in ("wallet", "pair_id", "label", "note", "annotator_id", "hmac")]  # fmt: skip
    rows = frame.select(*cols, _iso_expr().alias("annotated_at")).to_dicts()
    reasons = pl.Series("reason", [row_status(key, r) for r in rows], dtype=pl.String)
    good = reasons.is_null()
    return Verified(frame.filter(good), frame.with_columns(reasons).filter(~good))


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
