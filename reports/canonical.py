"""Canonical JSON and the report fingerprint.

Canonical form (what is hashed and what is published):
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)`` encoded as ASCII, after `normalise`: floats rounded to
`FLOAT_DIGITS` significant digits (so a regeneration on another BLAS/scipy build
hashes the same), NaN/inf -> null, datetimes -> ISO-8601 UTC with a ``Z``,
tuples -> lists, numpy scalars -> Python numbers.

Published file (the JSON report, and the copy embedded in the PDF / Markdown) is
the canonical form of the envelope ``{"anchor"?: {...}, "attestation"?: {...},
"fingerprint": HEX, "report": {...}}`` and nothing else (no trailing newline). The rule:

    fingerprint = SHA-256( canonical(report) )          (lowercase hex)

Because keys sort, ``"report"`` is the last key, so the hashed bytes are exactly
the published bytes between ``"report":`` and the final ``}``: a third party can
check a report with ``sha256sum`` on that byte range. Verification also
requires the whole file to be byte-identical to the canonical form of what it
parses to, so no byte (whitespace included) can change unnoticed. `anchor`
(a Stellar transaction carrying the fingerprint) and `attestation` (the Ed25519
signature over the same bytes, see `reports.attest`) cannot be inside the hashed
report - they are made from it - so they sit beside it. The fingerprint alone
proves integrity only against accidents: anyone can recompute it; the
attestation proves origin.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

from storage.errors import BadInput

FLOAT_DIGITS = 10
ENVELOPE_KEYS = frozenset({"anchor", "attestation", "fingerprint", "report"})


def normalise(value: Any) -> Any:
    """A JSON-ready copy of `value` in canonical shape (see module doc)."""
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return None if not math.isfinite(x) else float(format(x, f".{FLOAT_DIGITS}g"))
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot put {type(value).__name__} into a canonical report")


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds only when present, ending in Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(fmt)


def canonical_bytes(value: Any) -> bytes:
    """The canonical serialisation of `value` (normalised first)."""
    text = json.dumps(normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_of(report: dict) -> str:
    """SHA-256 (hex) of the canonical report: the fingerprint."""
    return sha256_hex(canonical_bytes(report))


def rows_sha256(frame: pl.DataFrame) -> str:
    """SHA-256 of rows as the canonical JSON list of row objects, in the frame's order.

    Datetimes become ISO-8601 UTC strings, integers stay integers (stroops).
    """
    return sha256_hex(canonical_bytes(frame.to_dicts()))


@dataclass(frozen=True)
class Published:
    """A report as published: the fingerprinted content, its fingerprint, an optional anchor and
    signature (`attestation`, see `reports.attest`)."""

    report: dict
    fingerprint: str
    anchor: dict | None = None
    attestation: dict | None = None

    def to_bytes(self) -> bytes:
        """The exact published bytes (canonical envelope)."""
        envelope = {"fingerprint": self.fingerprint, "report": self.report}
        if self.anchor is not None:
            envelope["anchor"] = self.anchor
        if self.attestation is not None:
            envelope["attestation"] = self.attestation
        return canonical_bytes(envelope)


def publish(report: dict, *, anchor: dict | None = None) -> Published:
    """Normalise the report and compute its fingerprint - the last step before writing.

    The content is returned as parsed back from its canonical bytes (keys sorted), so
    renderers iterate it in the same order as a verifier reading the file does.
    """
    content = json.loads(canonical_bytes(report))
    return Published(content, fingerprint_of(content), reparsed_anchor(anchor))


def reparsed_anchor(anchor: dict | None) -> dict | None:
    return None if anchor is None else json.loads(canonical_bytes(anchor))


def as_published(published: Published) -> Published:
    """`published` exactly as a reader of its bytes sees it (sorted keys, normalised values)."""
    return parse_published(published.to_bytes())[0]


def parse_published(data: bytes) -> tuple[Published, list[str]]:
    """The envelope in `data` and the problems found checking it (empty list: intact).

    Raises BadInput when `data` is not a report envelope at all (not ASCII JSON, nested
    too deep, not an object with `fingerprint` and an object `report`).
    """
    try:
        envelope = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadInput(f"not a LedgerLens JSON report ({type(exc).__name__}: {str(exc)[:200]}); "
                       "expected the canonical envelope") from exc  # fmt: skip
    if not isinstance(envelope, dict) or not {"fingerprint", "report"} <= set(envelope) <= ENVELOPE_KEYS:
        raise BadInput("not a LedgerLens JSON report: expected keys fingerprint, report (and optionally anchor, "
                       "attestation)")  # fmt: skip
    if not isinstance(envelope["report"], dict) or not isinstance(envelope["fingerprint"], str):
        raise BadInput("not a LedgerLens JSON report: `report` must be an object and `fingerprint` a string")
    published = Published(envelope["report"], envelope["fingerprint"], envelope.get("anchor"),
                          envelope.get("attestation"))  # fmt: skip
    problems = []
    if canonical_bytes(envelope) != data:
        problems.append("the bytes are not the canonical serialisation of their content (the file was edited)")
    actual = fingerprint_of(published.report)
    if actual != published.fingerprint:
        problems.append(f"fingerprint mismatch: recorded {published.fingerprint}, content hashes to {actual}")
    return published, problems
