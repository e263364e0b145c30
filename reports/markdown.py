"""The Markdown rendering of a published report.

Every ledger string goes through `md_escape`: HTML specials become entities
(`<img ...>` shows as text, never as markup, in any Markdown viewer) and Markdown
punctuation is backslash-escaped, newlines become spaces (tables stay tables).

The published JSON envelope ends the file BASE64-ENCODED (76-character lines) in a
fenced code block opened by `EMBED_MARKER`: raw JSON there would carry ledger
strings such as ``<img onerror=...>`` that a renderer passes through as live HTML;
base64 has no ``<``, ``&`` or backtick, so no renderer can turn it into markup or
close the fence early. `reports.verify` decodes it, checks fingerprint and
signature, renders the Markdown again from it and requires the file to match byte
for byte. By hand: ``sed -n '/^```ledgerlens-report-base64$/,/^```$/p' F.md | sed '1d;$d' | base64 -d``.
"""

from __future__ import annotations

import base64
import binascii
import re

from reports import tables
from reports.canonical import Published
from storage.errors import BadInput

EMBED_MARKER = "```ledgerlens-report-base64"
EMBED_END = "```"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text) -> str:
    """Markdown-safe literal text of a report value."""
    s = tables.cell(text).replace("\r", " ").replace("\n", " ")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def _link(url: str) -> str:
    """A Markdown link of a URL we built (Horizon, digits only): text escaped, target in angle brackets."""
    return f"[{md_escape(url)}](<{url.replace('>', '%3E').replace(' ', '%20')}>)"


def _table(t: tables.Table) -> list[str]:
    lines = [f"### {md_escape(t.title)}", ""]
    if t.rows:
        lines.append("| " + " | ".join(md_escape(h) for h in t.headers) + " |")
        lines.append("|" + "---|" * len(t.headers))
        for row in t.rows:
            cells = [_link(v) if v.startswith("https://horizon.stellar.org/") else md_escape(v) for v in row]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if t.note:
        lines += [md_escape(t.note), ""]
    elif not t.rows:
        lines += ["None.", ""]
    return lines


def render_markdown(published: Published) -> str:
    """The Markdown text of a published report (deterministic for the same report)."""
    r = published.report
    h = r["header"]
    lines = [
        "# LedgerLens forensic report", "",
        f"**Wallet** `{md_escape(h['wallet'])}`  ", f"**Pair** {md_escape(h['pair_id'])}  ",
        f"**SHA-256 fingerprint** `{published.fingerprint}`  ",
        f"**Signing key fingerprint** `{md_escape(_signer(published))}`", "",
    ]  # fmt: skip
    lines += _table(tables.header_table(r))
    lines += _table(tables.signature_table(published.attestation))
    lines += _table(tables.trades_table(r))
    lines += ["## Attributions", ""]
    lines += _table(tables.shap_table(r))
    lines += _table(tables.feature_table(r))
    lines += _table(tables.benford_table(r))
    for t in [*tables.lineage_tables(r), *tables.ring_tables(r), tables.annotation_table(r),
              *tables.provenance_tables(r)]:  # fmt: skip
        lines += _table(t)
    lines += _verification(published)
    return "\n".join(lines) + "\n" + _embedded(published.to_bytes())


def _signer(published: Published) -> str:
    a = published.attestation
    fp = a.get("key_fingerprint") if isinstance(a, dict) else None
    return fp if isinstance(fp, str) else "none (unsigned)"


def _embedded(envelope: bytes) -> str:
    """The envelope as the last block of the file: base64 lines in a fenced code block (inert everywhere)."""
    body = base64.encodebytes(envelope).decode("ascii")
    return f"{EMBED_MARKER}\n{body}{EMBED_END}\n"


def _verification(published: Published) -> list[str]:
    lines = ["## Fingerprint and verification", "", f"`{published.fingerprint}`", "",
             md_escape(published.report["format"]["fingerprint_rule"]), "",
             md_escape(published.report["format"].get("signature_rule", "")), "",
             "`python -m engine verify-report FILE.md [--db STORE]` checks the fingerprint and the signature of "
             "the JSON below (base64), renders this Markdown again from it and compares byte for byte.", ""]  # fmt: skip
    anchor = published.anchor
    if anchor:
        lines += [f"Anchored: Stellar transaction `{md_escape(anchor.get('tx_hash'))}` "
                  f"({md_escape(anchor.get('network_passphrase'))}), signed, "
                  f"{'submitted' if anchor.get('submitted') else 'not submitted'}.", ""]  # fmt: skip
    return lines


def extract_envelope(text: bytes) -> bytes | None:
    """The embedded JSON envelope (None when the marker is missing; BadInput when its block is broken)."""
    marker = b"\n" + EMBED_MARKER.encode() + b"\n"
    at = text.rfind(marker)
    if at < 0:
        return None
    block = text[at + len(marker):]
    end = b"\n" + EMBED_END.encode() + b"\n"
    if not block.endswith(end):
        raise BadInput("the embedded report block is not closed by ``` at the end of the file (file truncated "
                       "or edited)")  # fmt: skip
    try:
        return base64.b64decode(block[: -len(end)].replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"the embedded report block is not valid base64 ({exc})") from exc
