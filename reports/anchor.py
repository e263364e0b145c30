"""Optional anchoring: a signed Stellar transaction that carries a report's fingerprint.

The transaction (built with stellar-sdk's TransactionBuilder, never submitted
here) holds the 32-byte SHA-256 fingerprint twice: as the value of a
``manage_data`` entry named `DATA_NAME` and as the memo hash. Time bounds are
(0, 0) and the sequence comes from settings, so the same key, account, sequence
and fingerprint always give the same transaction hash. Once submitted, anyone can
look the hash up on the ledger and compare the memo with the report.

Settings read (with getattr, defaults in brackets):
- ``anchor_secret_key_path`` [None]: file holding the signer's secret seed (S...);
- ``anchor_source_account`` [the key's public key]: account that pays and sequences;
- ``anchor_sequence`` [0]: the source account's CURRENT sequence (the tx uses +1);
  0 is a placeholder: fetch the real one from Horizon before submitting;
- ``anchor_network_passphrase`` [Public Global Stellar Network ; September 2015];
- ``anchor_base_fee`` [100] stroops.
"""

from __future__ import annotations

from pathlib import Path

from stellar_sdk import Account, Keypair, Network, TransactionBuilder, TransactionEnvelope
from stellar_sdk.exceptions import Ed25519SecretSeedInvalidError

from storage.errors import BadInput

DATA_NAME = "ledgerlens:report"


def load_signer(path: Path) -> Keypair:
    """The Keypair whose secret seed (S...) is the first line of `path`."""
    try:
        seed = Path(path).read_text().strip().splitlines()[0].strip()
        return Keypair.from_secret(seed)
    except (OSError, IndexError, Ed25519SecretSeedInvalidError, ValueError) as exc:
        raise BadInput(f"anchor key {path}: cannot read a Stellar secret seed (S...) from it ({exc})") from exc


def build_anchor(fingerprint: str, *, signer: Keypair, source_account: str | None = None, sequence: int = 0,
                 network_passphrase: str = Network.PUBLIC_NETWORK_PASSPHRASE, base_fee: int = 100) -> dict:
    """Build and sign (not submit) the anchoring transaction; returns the record the report keeps.

    Keys: network_passphrase, source_account, sequence (the transaction's), data_name,
    tx_hash (hex), envelope_xdr (base64), submitted (False).
    """
    digest = bytes.fromhex(fingerprint)
    if len(digest) != 32:
        raise BadInput(f"fingerprint {fingerprint!r} is not a SHA-256 hex digest")
    source = source_account or signer.public_key
    builder = TransactionBuilder(Account(source, int(sequence)), network_passphrase=network_passphrase,
                                 base_fee=base_fee)  # fmt: skip
    envelope = (builder.append_manage_data_op(DATA_NAME, digest).add_hash_memo(digest)
                .add_time_bounds(0, 0).build())  # fmt: skip
    envelope.sign(signer)
    return {
        "network_passphrase": network_passphrase, "source_account": source,
        "sequence": envelope.transaction.sequence, "data_name": DATA_NAME, "tx_hash": envelope.hash_hex(),
        "envelope_xdr": envelope.to_xdr(), "signer": signer.public_key, "submitted": False,
    }  # fmt: skip


def anchor_from_settings(fingerprint: str, settings, *, key_path: Path | None = None) -> dict:
    """`build_anchor` with the signer and account named by the settings (see module doc)."""
    path = key_path or settings.anchor_secret_key_path
    if path is None:
        raise BadInput("anchoring needs a signing key: set LEDGERLENS_ANCHOR_SECRET_KEY_PATH or pass --anchor-key")
    return build_anchor(
        fingerprint, signer=load_signer(Path(path)),
        source_account=settings.anchor_source_account,
        sequence=int(settings.anchor_sequence or 0),
        network_passphrase=settings.anchor_network_passphrase or Network.PUBLIC_NETWORK_PASSPHRASE,
        base_fee=int(settings.anchor_base_fee or 100),
    )  # fmt: skip


def anchored_fingerprint(envelope_xdr: str, network_passphrase: str) -> tuple[str | None, str | None]:
    """(fingerprint in the manage_data value, fingerprint in the memo hash) of an anchoring envelope."""
    tx = TransactionEnvelope.from_xdr(envelope_xdr, network_passphrase).transaction
    data = next((op.data_value for op in tx.operations if getattr(op, "data_name", None) == DATA_NAME), None)
    memo = getattr(tx.memo, "memo_hash", None)
    return (data.hex() if data else None), (memo.hex() if memo else None)


def check_anchor(anchor: dict, fingerprint: str) -> list[str]:
    """Problems with an anchor record (empty: it carries `fingerprint`, its hash and signature hold).

    The record comes from a file nobody vouched for yet: any field may be missing or of another type."""
    try:
        envelope = TransactionEnvelope.from_xdr(anchor.get("envelope_xdr"), anchor.get("network_passphrase"))
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a broken anchor
        return [f"anchor transaction does not decode ({type(exc).__name__}: {str(exc)[:120]})"]
    problems = []
    if envelope.hash_hex() != anchor.get("tx_hash"):
        problems.append(f"anchor tx hash {anchor.get('tx_hash')} differs from the envelope's {envelope.hash_hex()}")
    if anchored_fingerprint(anchor["envelope_xdr"], anchor["network_passphrase"]) != (fingerprint, fingerprint):
        problems.append("the anchor transaction does not carry this report's fingerprint")
    named = anchor.get("signer") or envelope.transaction.source.account_id
    try:
        signer = Keypair.from_public_key(named)
    except Exception:  # noqa: BLE001 - Ed25519PublicKeyInvalidError, TypeError...: not an account id
        return [*problems, f"anchor signer {str(named)[:80]!r} is not a Stellar account id"]
    if not any(_signed_by(signer, envelope, s) for s in envelope.signatures):
        problems.append(f"the anchor transaction is not signed by {signer.public_key}")
    return problems


def _signed_by(signer: Keypair, envelope: TransactionEnvelope, decorated) -> bool:
    try:
        signer.verify(envelope.hash(), decorated.signature)
        return True
    except Exception:  # noqa: BLE001 - BadSignatureError and friends
        return False
