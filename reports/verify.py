"""Verify a published report file (JSON, PDF or Markdown), optionally against the store.

Checks, in order (any failure makes the report invalid):
1. the canonical JSON envelope: the file itself (JSON) or the copy embedded in
   the PDF attachment / after the Markdown marker; its bytes must be canonical
   and SHA-256 of the canonical `report` must equal the recorded fingerprint;
2. PDF / Markdown: rendering the envelope again must give the file byte for byte
   (so a change of any byte outside the JSON is caught too). For a PDF rendered
   by another reportlab version the bytes cannot match: that is reported as such;
3. the `<file>.sha256` sidecar, when present, must match the file's bytes;
4. the anchor, when present: its transaction decodes, carries the fingerprint,
   has the recorded hash and the signer's signature;
5. with a store: the report is assembled again from the recorded query and its
   fingerprint must be the same (the differing sections are named when not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reports import markdown, output, pdf
from reports.anchor import check_anchor
from reports.canonical import Published, parse_published, sha256_hex
from storage.errors import BadInput, NotFound


@dataclass(frozen=True)
class Verification:
    path: Path | None
    fmt: str
    fingerprint: str | None
    problems: tuple[str, ...]
    checks: tuple[str, ...]  # what was checked and held

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
    found = {"json": lambda d: d, "pdf": pdf.extract_envelope, "markdown": markdown.extract_envelope}[fmt](data)
    if found is None:
        raise BadInput(f"no embedded LedgerLens report JSON found in this {fmt} file")
    return found


def verify_report_file(path: Path, *, store=None, settings=None) -> Verification:
    """Run every check that applies to the file at `path` (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such report file")
    data = path.read_bytes()
    side = output.sidecar(path)
    sidecar = side.read_text() if side.exists() else None
    return verify_report(data, path=path, sidecar=sidecar, store=store, settings=settings)


def verify_report(
    data: bytes, *, path: Path | None = None, sidecar: str | None = None, store=None, settings=None
) -> Verification:
    """Checks 1-5 on a report's bytes (e.g. an upload); `sidecar` is the .sha256 text if any."""
    fmt = detect_format(data)
    published, problems = parse_published(envelope_of(data, fmt))
    checks = ["canonical JSON envelope and fingerprint"] if not problems else []
    if fmt != "json":
        _check_rendering(published, data, fmt, problems, checks)
    if sidecar is not None:
        recorded = sidecar.split()[0] if sidecar.strip() else ""
        same = recorded == sha256_hex(data)
        (checks if same else problems).append(f"sidecar: file SHA-256 {'matches' if same else 'DIFFERS'}")
    if published.anchor is not None:
        anchor_problems = check_anchor(published.anchor, published.fingerprint)
        problems += anchor_problems
        if not anchor_problems:
            checks.append(f"anchor transaction {published.anchor.get('tx_hash')} carries the fingerprint")
    if store is not None and settings is not None:
        _check_regenerated(published, store, settings, problems, checks)
    return Verification(path, fmt, published.fingerprint, tuple(problems), tuple(checks))


def _check_rendering(published: Published, data: bytes, fmt: str, problems: list, checks: list) -> None:
    if output.render(published, fmt) == data:
        checks.append(f"{fmt} re-rendered from the embedded JSON is byte-identical")
        return
    if fmt == "pdf" and pdf.RENDERER.encode() not in data:
        problems.append(f"the PDF was not rendered by {pdf.RENDERER}; it cannot be re-rendered byte for byte "
                        "here (the embedded JSON is checked above; verify with the recorded renderer)")
    else:
        problems.append(f"the {fmt} file differs from the rendering of its embedded report (the file was edited)")


def _check_regenerated(published: Published, store, settings, problems: list, checks: list) -> None:
    from reports.assemble import assemble_report

    q = published.report["provenance"]["query"]
    as_of = datetime.fromisoformat(q["as_of"].replace("Z", "+00:00"))
    try:
        again = assemble_report(store, wallet=q["wallet"], pair_id=q["pair_id"], as_of=as_of, settings=settings)
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
