"""Ed25519 keys for model and report signing: load or create the private key, fingerprints, verify.

The private key lives at a settings path (PEM, mode 0600), created on first use.
A fingerprint is the SHA-256 hex of the raw 32-byte public key; loading a model
(models.registry) or verifying a report (reports.attest) trusts a signature only
when its public key's fingerprint is in the trusted set. One key and one trust list
serve both (LEDGERLENS_MODEL_SIGNING_KEY, LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS, read
by engine.services.models.signing_key / trusted_fingerprints); the two never accept each
other's signatures because report signatures are over a fixed prefix and model
signatures over metadata JSON.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage.errors import BadInput


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`; a new one is written there (0600) if absent."""
    path = Path(path)
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise BadInput(f"{path} is not a PEM private key ({exc}); move it away to create a new one") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise BadInput(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(raw_public_key: bytes) -> str:
    """SHA-256 hex of a raw public key."""
    return hashlib.sha256(raw_public_key).hexdigest()


def verify(raw_public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by that key."""
    try:
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
