"""Verify a published report file (JSON, PDF or Markdown), optionally against a regeneration.

Checks, in order (any failure makes the report invalid):
1. the canonical JSON envelope: the file itself (JSON) or the copy embedded in
   the PDF attachment / base64 block ending the Markdown; its bytes must be
   canonical and SHA-256 of the canonical `report` must equal the recorded fingerprint;
2. the signature (`reports.attest`): Ed25519 over the report by a key whose
   fingerprint is in the trusted set - this is what proves origin offline, since
   anyone can recompute a SHA-256;
3. PDF / Markdown: rendering the envelope again must give the file byte for byte
   (so a change of any byte outside the JSON is caught too). For a PDF rendered
   by another reportlab version the bytes cannot match: that is reported as such;
4. the `<file>.sha256` sidecar, when present, must match the file's bytes;
5. the anchor, when present: its transaction decodes, carries the fingerprint,
   has the recorded hash and the signer's signature;
6. with `regenerate` (engine.services.report passes one that reads the store): the
   report is assembled again from the recorded query and its fingerprint must be the
   same (the differing sections are named when not). Nothing here reads a store.

A file that holds no report envelope at all raises BadInput. Anything else wrong -
any edited, truncated or re-typed field - is a problem in the result, never an
exception: checks 3, 5 and 6 read a document nobody vouched for yet, so a failure
inside them is reported as that check failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from reports import markdown, output, pdf
from reports.anchor import check_anchor
from reports.assemble import Report
from reports.attest import check_attestation, signer_fingerprint
from reports.canonical import Published, parse_published, sha256_hex
from storage.errors import BadInput, NotFound

Regenerate = Callable[..., Report]  # (wallet=, pair_id=, as_of=) -> the report assembled again

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verification:
    path: Path | None
    fmt: str
    fingerprint: str | None
    problems: tuple[str, ...]
    checks: tuple[str, ...]  # what was checked and held
    signer: str | None = None  # key fingerprint the attestation names (trusted only when ok)

    @property
    def ok(self) -> bool:
        return not self.problems


def detect_format(data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"{"):
        return "json"
    return "markdown"


def envelope_of(data: bytes, fmt: str) -> bytes:
    """The JSON envelope inside a report file; BadInput when there is none."""
    if not data.strip():
        raise BadInput("the file is empty")
    found = {"json": lambda d: d, "pdf": pdf.extract_envelope, "markdown": markdown.extract_envelope}[fmt](data)
    if found is None:
        raise BadInput(f"no embedded LedgerLens report JSON found in this {fmt} file")
    return found


def verify_report_file(path: Path, *, trusted: frozenset[str] = frozenset(), regenerate: Regenerate | None = None
                       ) -> Verification:  # fmt: skip
    """Run every check that applies to the file at `path` (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such report file")
    try:
        data = path.read_bytes()
        side = output.sidecar(path)
        sidecar = side.read_text(errors="replace") if side.is_file() else None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it ({exc})") from exc
    return verify_report(data, path=path, sidecar=sidecar, trusted=trusted, regenerate=regenerate)


def verify_report(
    data: bytes, *, path: Path | None = None, sidecar: str | None = None, trusted: frozenset[str] = frozenset(),
    regenerate: Regenerate | None = None,
) -> Verification:  # fmt: skip
    """Checks 1-6 on a report's bytes (e.g. an upload); `sidecar` is the .sha256 text if any.

    `trusted`: fingerprints of trusted signing keys (none by default: then no signer is trusted);
    `regenerate(wallet=, pair_id=, as_of=)`: the report assembled again (check 6), when given."""
    fmt = detect_format(data)
    published, problems = parse_published(envelope_of(data, fmt))
    checks = ["canonical JSON envelope and fingerprint"] if not problems else []
    _check_signature(published, trusted, problems, checks)
    if fmt != "json":
        _check_rendering(published, data, fmt, problems, checks)
    if sidecar is not None:
        recorded = sidecar.split()[0] if sidecar.strip() else ""
        same = recorded == sha256_hex(data)
        (checks if same else problems).append(f"sidecar: file SHA-256 {'matches' if same else 'DIFFERS'}")
    if published.anchor is not None:
        _check_anchor(published, problems, checks)
    if regenerate is not None:
        _check_regenerated(published, regenerate, problems, checks)
    return Verification(path, fmt, published.fingerprint, tuple(problems), tuple(checks), signer_fingerprint(published))


def _check_signature(published: Published, trusted: frozenset[str], problems: list, checks: list) -> None:
    found = check_attestation(published, trusted)
    problems += found
    if not found:
        checks.append(f"Ed25519 signature over the report by trusted key {signer_fingerprint(published)}")


def _check_rendering(published: Published, data: bytes, fmt: str, problems: list, checks: list) -> None:
    try:
        rendered = _rendered(published.to_bytes(), fmt)
    except Exception as exc:  # noqa: BLE001 - an unvouched document that cannot be rendered is simply invalid
        log.debug("re-rendering a %s report failed", fmt, exc_info=True)
        problems.append(f"the embedded report cannot be rendered as {fmt} ({type(exc).__name__}: "
                        f"{str(exc)[:120]}): it is not a report LedgerLens wrote")  # fmt: skip
        return
    if rendered == data:
        checks.append(f"{fmt} re-rendered from the embedded JSON is byte-identical")
        return
    if fmt == "pdf" and pdf.RENDERER.encode() not in data:
        problems.append(f"the PDF was not rendered by {pdf.RENDERER}; it cannot be re-rendered byte for byte "
                        "here (the embedded JSON is checked above; verify with the recorded renderer)")
    else:
        problems.append(f"the {fmt} file differs from the rendering of its embedded report (the file was edited)")


@lru_cache(maxsize=4)
def _rendered(envelope: bytes, fmt: str) -> bytes:
    """The rendering of an envelope's bytes (cached: verifying the same report again, e.g. an upload
    re-run by the page or a tamper suite, re-renders nothing)."""
    published, _ = parse_published(envelope)
    return output.render(published, fmt)


def _check_anchor(published: Published, problems: list, checks: list) -> None:
    anchor = published.anchor
    found = check_anchor(anchor, published.fingerprint) if isinstance(anchor, dict) else ["anchor is not an object"]
    problems += found
    if not found:
        checks.append(f"anchor transaction {anchor.get('tx_hash')} carries the fingerprint")


def _check_regenerated(published: Published, regenerate: Regenerate, problems: list, checks: list) -> None:
    query = _recorded_query(published.report)
    if isinstance(query, str):
        problems.append(f"cannot regenerate: {query}")
        return
    try:
        again = regenerate(**query)
    except (BadInput, NotFound) as exc:
        problems.append(f"cannot regenerate from the store: {exc}")
        return
    if again.fingerprint == published.fingerprint:
        checks.append("regenerated from the store: same fingerprint")
        return
    differ = sorted(k for k in set(again.content) | set(published.report)
                    if again.content.get(k) != published.report.get(k))  # fmt: skip
    problems.append(f"regenerated from the store, the fingerprint is {again.fingerprint}, not "
                    f"{published.fingerprint}; sections that differ: {', '.join(differ)}")


def _recorded_query(report: dict) -> dict | str:
    """wallet, pair_id, as_of of the recorded query, or why they cannot be read."""
    q = report.get("provenance", {}).get("query") if isinstance(report.get("provenance"), dict) else None
    if not isinstance(q, dict) or not all(isinstance(q.get(k), str) for k in ("wallet", "pair_id", "as_of")):
        return "the report records no query (provenance.query with wallet, pair_id, as_of)"
    try:
        as_of = datetime.fromisoformat(q["as_of"].replace("Z", "+00:00"))
    except ValueError:
        return f"the recorded as_of {q['as_of']!r} is not an ISO-8601 time"
    return {"wallet": q["wallet"], "pair_id": q["pair_id"], "as_of": as_of}
