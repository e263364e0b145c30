"""The Markdown rendering of a published report.

Every ledger string goes through `md_escape`: HTML specials become entities
(`<img ...>` shows as text, never as markup, in any Markdown viewer) and Markdown
punctuation is backslash-escaped, newlines become spaces (tables stay tables).
The published JSON envelope is the last line of the file, after the marker
`EMBED_MARKER`; `reports.verify` checks its fingerprint, renders the Markdown
again from it and requires the file to match byte for byte.
"""

from __future__ import annotations

import re

from reports import tables
from reports.canonical import Published

EMBED_MARKER = "<!-- ledgerlens-report-json: the canonical JSON envelope (fingerprint source) is the next line -->"
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
        f"**SHA-256 fingerprint** `{published.fingerprint}`", "",
    ]  # fmt: skip
    lines += _table(tables.header_table(r))
    lines += _table(tables.trades_table(r))
    lines += ["## Attributions", ""]
    lines += _table(tables.shap_table(r))
    lines += _table(tables.feature_table(r))
    lines += _table(tables.benford_table(r))
    for t in [*tables.lineage_tables(r), *tables.ring_tables(r), tables.annotation_table(r),
              *tables.provenance_tables(r)]:  # fmt: skip
        lines += _table(t)
    lines += _verification(published)
    return "\n".join(lines) + "\n" + EMBED_MARKER + "\n" + published.to_bytes().decode("ascii") + "\n"


def _verification(published: Published) -> list[str]:
    lines = ["## Fingerprint and verification", "", f"`{published.fingerprint}`", "",
             md_escape(published.report["format"]["fingerprint_rule"]), "",
             "`python -m engine verify-report FILE.md [--db STORE]` checks the fingerprint of the JSON below, "
             "renders this Markdown again from it and compares byte for byte.", ""]  # fmt: skip
    anchor = published.anchor
    if anchor:
        lines += [f"Anchored: Stellar transaction `{md_escape(anchor.get('tx_hash'))}` "
                  f"({md_escape(anchor.get('network_passphrase'))}), signed, "
                  f"{'submitted' if anchor.get('submitted') else 'not submitted'}.", ""]  # fmt: skip
    return lines


def extract_envelope(text: bytes) -> bytes | None:
    """The embedded JSON envelope (None when the marker is missing)."""
    marker = b"\n" + EMBED_MARKER.encode() + b"\n"
    at = text.rfind(marker)
    if at < 0:
        return None
    return text[at + len(marker):].removesuffix(b"\n")
