"""Report signatures: who made a report, provable offline.

The fingerprint (SHA-256 of the canonical report) shows a report is internally
consistent, but anyone who edits a report can recompute it. The attestation is an
Ed25519 signature over

    SIGNED_PREFIX + canonical(report)       (the exact bytes the fingerprint hashes)

made with the installation's signing key - the same key, file and trust list as
model signing (`models.signing`; settings LEDGERLENS_MODEL_SIGNING_KEY and
LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS, read by `engine.services.models.signing_key` /
`trusted_fingerprints`). The prefix separates the two uses: a model signature is
over metadata JSON (starting with ``{``), so it can never pass as a report
signature, nor the reverse. The published envelope carries

    "attestation": {"algorithm": "Ed25519", "public_key": HEX32, "key_fingerprint": SHA-256 HEX of the
                    raw public key, "signature": HEX64}

A report is authentic when the signature verifies under that public key, the
recorded key fingerprint is that key's, and the fingerprint is in the trusted set.
The attestation itself is outside the signed bytes; every field of it is checked.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models import signing
from reports.canonical import Published, canonical_bytes

SIGNED_PREFIX = b"ledgerlens-report-signature-v1\n"
ALGORITHM = "Ed25519"
ATTESTATION_KEYS = frozenset({"algorithm", "public_key", "key_fingerprint", "signature"})
SIGNATURE_RULE = (
    "signature = Ed25519 over the ASCII bytes 'ledgerlens-report-signature-v1' + LF followed by the canonical JSON "
    "of `report` (the bytes the fingerprint hashes); `attestation` holds the signature, the raw public key (hex) "
    "and its SHA-256 fingerprint, which must be in the verifier's trusted set (LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS)"
)
_HEX = re.compile(r"[0-9a-f]*")


def signed_message(report: dict) -> bytes:
    """The bytes a report signature is over (see module doc)."""
    return SIGNED_PREFIX + canonical_bytes(report)


def sign_published(published: Published, key: Ed25519PrivateKey) -> Published:
    """`published` with its attestation: `key`'s signature over the report (replacing any earlier one)."""
    public = signing.public_bytes(key)
    attestation = {
        "algorithm": ALGORITHM, "public_key": public.hex(), "key_fingerprint": signing.fingerprint(public),
        "signature": key.sign(signed_message(published.report)).hex(),
    }  # fmt: skip
    return Published(published.report, published.fingerprint, published.anchor, attestation)


def signer_fingerprint(published: Published) -> str | None:
    """The key fingerprint the attestation names (unchecked), for display; None when absent or malformed."""
    a = published.attestation
    fp = a.get("key_fingerprint") if isinstance(a, dict) else None
    return fp if isinstance(fp, str) else None


def check_attestation(published: Published, trusted: frozenset[str]) -> list[str]:
    """Problems with the report's signature (empty list: signed by a trusted key over this content)."""
    a = published.attestation
    if a is None:
        return ["not signed: the report carries no attestation (made before LedgerLens signed reports, or the "
                "signature was removed); its fingerprint proves nothing about who made it - regenerate it from the "
                "store (verify-report --regenerate) or ask its issuer for a signed copy"]  # fmt: skip
    malformed = _malformed(a)
    if malformed:
        return [f"attestation is malformed: {malformed}"]
    public, signature = bytes.fromhex(a["public_key"]), bytes.fromhex(a["signature"])
    actual = signing.fingerprint(public)
    problems = []
    if a["key_fingerprint"] != actual:
        problems.append(f"attestation names key fingerprint {a['key_fingerprint']} but its public key hashes to "
                        f"{actual} (the key was swapped)")  # fmt: skip
    if not signing.verify(public, signature, signed_message(published.report)):
        problems.append(f"signature does not verify over the content with key {actual}: the report was changed "
                        "after signing (or its signature / public key was replaced)")  # fmt: skip
    if actual not in trusted:
        problems.append(f"untrusted signer: key fingerprint {actual} is not in the trusted set; if you know it is "
                        "the issuer's key, add it to LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS")  # fmt: skip
    return problems


def _malformed(a) -> str | None:
    """Why an attestation is not of the expected shape (None when it is)."""
    if not isinstance(a, dict) or set(a) != ATTESTATION_KEYS:
        return f"expected an object with exactly the keys {', '.join(sorted(ATTESTATION_KEYS))}"
    if a["algorithm"] != ALGORITHM:
        return f"algorithm {a['algorithm']!r} is not {ALGORITHM}"
    sizes = {"public_key": 64, "key_fingerprint": 64, "signature": 128}
    for name, size in sizes.items():
        value = a[name]
        if not isinstance(value, str) or len(value) != size or not _HEX.fullmatch(value):
            return f"{name} is not {size} lowercase hex digits"
    return None
