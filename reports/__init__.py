"""Forensic reports: assemble from the store, render (PDF, JSON, Markdown), verify.

`generate_report` is the one way the app and the CLI make a report file (signed with
the installation's Ed25519 key, see `reports.attest`); `verify_report` /
`verify_report_file` check one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reports.verify import Verification, verify_report, verify_report_file  # noqa: F401

FORMATS = ("pdf", "json", "markdown")


@dataclass(frozen=True)
class GeneratedReport:
    path: Path
    fingerprint: str
    fmt: str
    anchor: dict | None
    key_fingerprint: str  # of the key that signed it


def generate_report(
    store, *, wallet: str, pair_id: str, fmt: str, settings, as_of: datetime | None = None,
    out: Path | None = None, out_dir: Path | None = None, anchor: bool = False, anchor_key: Path | None = None,
) -> GeneratedReport:  # fmt: skip
    """Assemble the (wallet, pair) report as of `as_of` (default: now, to the second),
    sign it with the settings' signing key (the model-signing key), write it (mode 0o600)
    to `out`, or into `out_dir`, or under $LEDGERLENS_HOME/reports/forensic, and record
    it in the store."""
    from engine.pipeline import signing_key
    from reports.anchor import anchor_from_settings
    from reports.assemble import assemble_report
    from reports.attest import sign_published, signer_fingerprint
    from reports.output import default_path, write_report

    as_of = as_of or datetime.now(UTC).replace(microsecond=0)
    report = assemble_report(store, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)
    anchored = anchor_from_settings(report.fingerprint, settings, key_path=anchor_key) if anchor else None
    path = out or default_path(settings, wallet=report.wallet, fingerprint=report.fingerprint, fmt=fmt)
    if out is None and out_dir is not None:
        path = Path(out_dir) / Path(path).name
    signed = sign_published(report.published(anchor=anchored), signing_key(settings))
    write_report(signed, fmt=fmt, path=path)
    store.record_report(
        fingerprint=report.fingerprint, wallet=report.wallet, pair_id=report.pair_id, fmt=fmt, path=str(path),
        model_version=report.content["header"]["model"]["version"],
    )  # fmt: skip
    return GeneratedReport(Path(path), report.fingerprint, fmt, anchored, signer_fingerprint(signed))
