"""The PDF rendering of a published report (reportlab; charts and the ring drawn with reportlab.graphics).

Tamper evidence. The PDF is a pure function of the published report: rendered
with ``invariant=1`` (no creation date, deterministic document id), so the same
report always gives the same bytes. The exact published JSON envelope is
embedded, uncompressed, as the PDF attachment ``ledgerlens-report.json``
(catalog /Names /EmbeddedFiles; any PDF viewer lists it). `reports.verify`
extracts it, checks its fingerprint, renders it again and requires the result
to equal the file byte for byte: changing any byte of the PDF - text, drawing,
metadata, the attachment or the xref table - fails verification. The fingerprint
is printed in every page footer; the signer's public key and its fingerprint in
the Signature table (`reports.attest`).

Every ledger string reaches a Paragraph through `xml.sax.saxutils.escape`
(reportlab paragraphs interpret markup); graphics strings are not markup.
"""

from __future__ import annotations

import io
import math
import re
from xml.sax.saxutils import escape

import reportlab
from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import PDFArray, PDFDictionary, PDFName, PDFStream, PDFString
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

import engine
from reports import tables
from reports.canonical import Published

ATTACHMENT = "ledgerlens-report.json"
RENDERER = f"LedgerLens {engine.__version__} / reportlab {reportlab.Version}"
_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=8.5, leading=10.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=6.8, leading=8.2)
SMALL_ID = ParagraphStyle("small_id", parent=SMALL, wordWrap="CJK")  # long ids break anywhere
LINK = ParagraphStyle("link", parent=SMALL, fontSize=6.2, leading=7.5, wordWrap="CJK")
MONO = ParagraphStyle("mono", parent=BODY, fontName="Courier", fontSize=8, leading=10)
H1 = ParagraphStyle("h1", parent=_STYLES["Title"], fontSize=16, leading=19, alignment=0)
H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontSize=11.5, leading=14, spaceBefore=8, spaceAfter=3)
WALLET_COLOUR = colors.HexColor("#c0392b")
NODE_COLOUR = colors.HexColor("#2e5d8a")


def p(text, style=BODY) -> Paragraph:
    """A Paragraph of untrusted text: escaped, never interpreted as markup."""
    return Paragraph(escape(tables.cell(text)), style)


def link(url: str) -> Paragraph:
    safe = escape(url, {'"': "&quot;"})
    return Paragraph(f'<link href="{safe}" color="blue">{safe}</link>', LINK)


def render_pdf(published: Published) -> bytes:
    """The PDF bytes of a published report (deterministic for the same report)."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=14 * mm, rightMargin=14 * mm, topMargin=14 * mm,
                            bottomMargin=16 * mm, invariant=1, title="LedgerLens forensic report",
                            author="LedgerLens", creator=RENDERER, subject=f"sha256 {published.fingerprint}")
    envelope = published.to_bytes()

    def first(canvas, d):
        _embed(canvas, envelope)
        _footer(canvas, d, published.fingerprint)

    doc.build(story(published), onFirstPage=first, onLaterPages=lambda c, d: _footer(c, d, published.fingerprint))
    return out.getvalue()


def _footer(canvas, doc, fingerprint: str) -> None:
    canvas.saveState()
    canvas.setFont("Courier", 6.5)
    canvas.drawString(14 * mm, 8 * mm, f"SHA-256 fingerprint {fingerprint}")
    canvas.drawRightString(A4[0] - 14 * mm, 8 * mm, f"page {doc.page}")
    canvas.restoreState()


def _embed(canvas, envelope: bytes) -> None:
    """Attach the published JSON envelope (uncompressed) as an embedded file."""
    stream = PDFStream(PDFDictionary({"Type": PDFName("EmbeddedFile"), "Subtype": PDFName("application/json"),
                                      "Params": PDFDictionary({"Size": len(envelope)})}),
                       content=envelope, filters=[])  # fmt: skip
    spec = PDFDictionary({
        "Type": PDFName("Filespec"), "F": PDFString(ATTACHMENT), "UF": PDFString(ATTACHMENT),
        "Desc": PDFString("Canonical LedgerLens report (fingerprint source)"), "EF": PDFDictionary({"F": stream}),
    })  # fmt: skip
    names = PDFDictionary({"EmbeddedFiles": PDFDictionary({"Names": PDFArray([PDFString(ATTACHMENT), spec])})})
    canvas.setCatalogEntry("Names", names)


_EMBEDDED = re.compile(rb"<<([^<>]*?/Type /EmbeddedFile[^<>]*?)>>\s*stream\r?\n", re.S)


def extract_envelope(pdf: bytes) -> bytes | None:
    """The embedded JSON envelope of a LedgerLens PDF (None when there is none)."""
    m = _EMBEDDED.search(pdf) or re.search(rb"<<(.{0,400}?/Type /EmbeddedFile.{0,200}?)>>\s*stream\r?\n", pdf, re.S)
    if m is None:
        return None
    length = re.search(rb"/Length (\d+)", m.group(1))
    if length is None:
        return None
    return pdf[m.end(): m.end() + int(length.group(1))]


def story(published: Published) -> list:
    r = published.report
    h = r["header"]
    flow = [Paragraph("LedgerLens forensic report", H1), p(h["wallet"], MONO), p(h["pair_id"], MONO),
            Spacer(1, 4), _table(tables.header_table(r), widths=(55 * mm, None))]  # fmt: skip
    flow += _section(tables.signature_table(published.attestation), style=SMALL, widths=(55 * mm, None))
    flow += _trades(tables.trades_table(r))
    flow += _attributions(r)
    flow += _section(tables.benford_table(r), widths=(14 * mm, 38 * mm, 12 * mm, 18 * mm, 28 * mm, 20 * mm, 20 * mm, None))
    flow += _benford_chart(r["benford"])
    lineage_widths = [(27 * mm, 22 * mm, 46 * mm, 25 * mm, 16 * mm, None), None, None]
    for t, widths in zip(tables.lineage_tables(r), lineage_widths, strict=False):
        flow += _section(t, style=SMALL, widths=widths if len(t.headers) == 6 else None)
    for t in tables.ring_tables(r):
        flow += _section(t, style=SMALL)
    flow += _ring_drawing(r["ring"], h["wallet"])
    flow += _section(tables.annotation_table(r), style=SMALL)
    for t in tables.provenance_tables(r):
        flow.append(KeepTogether(_section(t, style=SMALL, widths=(45 * mm, None) if len(t.headers) == 2 else None)))
    return flow + [KeepTogether(_verification(published))]  # never a page holding a few stray lines


def _trades(t: tables.Table) -> list:
    """The trades table with the Horizon link under the reasons (one column: the page is narrow)."""
    merged = tables.Table(t.title, (*t.headers[:-2], "Why picked / Horizon operation"),
                          tuple((*row[:-2], row[-2] + "\n" + row[-1]) for row in t.rows), t.note)
    widths = (7 * mm, 17 * mm, 12 * mm, 21 * mm, 25 * mm, 25 * mm, 8 * mm, None)
    return _section(merged, style=SMALL, widths=widths)


def _attributions(r: dict) -> list:
    shap = _section(tables.shap_table(r), style=SMALL, widths=(38 * mm, 18 * mm, 14 * mm, 14 * mm, None))
    features = _section(tables.feature_table(r), style=SMALL, widths=(38 * mm, 16 * mm, 16 * mm, 10 * mm, 26 * mm, None))
    return [Paragraph("Attributions", H2), *shap[1:], Spacer(1, 4), *features]


def _section(t: tables.Table, *, style=BODY, widths=None, heading: bool = True) -> list:
    out = [Paragraph(escape(t.title), H2)] if heading else []
    if t.rows:
        out.append(_table(t, style=style, widths=widths))
    if t.note:
        out += [Spacer(1, 2), p(t.note, SMALL)]
    elif not t.rows:
        out.append(p("None.", SMALL))
    return out


def _table(t: tables.Table, *, style=BODY, widths=None) -> Table:
    def render(value: str):
        if "\nhttps://horizon.stellar.org/" in value:
            text, url = value.rsplit("\n", 1)
            return [p(text, style), link(url)]
        if value.startswith("https://horizon.stellar.org/"):
            return link(value)
        return p(value, SMALL_ID if style is SMALL and " " not in value and len(value) > 18 else style)

    head = [Paragraph(f"<b>{escape(h)}</b>", style) for h in t.headers]
    body = [[render(v) for v in row] for row in t.rows]
    table = Table([head, *body] if head else body, colWidths=widths, repeatRows=1 if head else 0)
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b8c2cc")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 2.5), ("RIGHTPADDING", (0, 0), (-1, -1), 2.5),
    ]))  # fmt: skip
    return table


def _benford_chart(b: dict) -> list:
    """Observed first-digit proportions (widest window) as bars, Benford's curve as a line."""
    if not b.get("available", True):
        return []
    window = next((w for w in reversed(b["windows"]) if w["n"] > 0), None)
    if window is None:
        return []
    d = Drawing(480, 170)
    x0, y0, width, height = 40, 25, 420, 125
    observed = [c / window["n"] for c in window["counts"]]
    top = max(max(observed), max(b["expected"])) * 1.1
    d.add(Line(x0, y0, x0 + width, y0))
    d.add(Line(x0, y0, x0, y0 + height))
    for k in range(5):
        y = y0 + height * k / 4
        d.add(String(x0 - 4, y - 3, f"{top * k / 4:.2f}", fontSize=7, textAnchor="end"))
    step = width / 9
    points = []
    for i, (obs, exp) in enumerate(zip(observed, b["expected"], strict=True)):
        cx = x0 + step * (i + 0.5)
        d.add(Rect(cx - step * 0.3, y0, step * 0.6, height * obs / top, fillColor=NODE_COLOUR, strokeColor=None))
        d.add(String(cx, y0 - 10, str(i + 1), fontSize=8, textAnchor="middle"))
        points += [cx, y0 + height * exp / top]
    d.add(PolyLine(points, strokeColor=WALLET_COLOUR, strokeWidth=1.5))
    for i in range(0, len(points), 2):
        d.add(Circle(points[i], points[i + 1], 2, fillColor=WALLET_COLOUR, strokeColor=None))
    d.add(String(x0 + width, y0 + height + 8, f"bars: observed, window {window['window']} (n={window['n']}); "
                                              "line: Benford expected", fontSize=7, textAnchor="end"))  # fmt: skip
    return [KeepTogether([d, p("First significant digit", SMALL)])]


def _ring_drawing(ring: dict, wallet: str) -> list:
    """Members on a circle (sorted ids, so the drawing is reproducible); trade edges solid, funding dashed."""
    if not ring.get("available", True) or not ring.get("members"):
        return []
    ids = [m["account_id"] for m in ring["members"]]
    size, radius = (150, 50) if len(ids) <= 3 else (300, 115)  # a pair or a triangle needs no full-page circle
    start = 0.0 if len(ids) == 2 else math.pi / 2  # two members side by side
    d = Drawing(480, size)
    cx, cy = 240, size / 2
    pos = {a: (cx + radius * math.cos(2 * math.pi * i / len(ids) + start),
               cy + radius * math.sin(2 * math.pi * i / len(ids) + start)) for i, a in enumerate(ids)}  # fmt: skip
    for e in ring["trade_edges"]:
        if e["a"] in pos and e["b"] in pos:
            (x1, y1), (x2, y2) = pos[e["a"]], pos[e["b"]]
            d.add(Line(x1, y1, x2, y2, strokeColor=colors.HexColor("#7f8c8d"),
                       strokeWidth=min(0.6 + math.log2(e["n_trades"]), 5)))
    for e in ring["funding_edges"]:
        (x1, y1), (x2, y2) = pos[e["from_account"]], pos[e["to_account"]]
        d.add(Line(x1, y1, x2, y2, strokeColor=colors.HexColor("#e67e22"), strokeWidth=1, strokeDashArray=[3, 2]))
    for a, (x, y) in pos.items():
        d.add(Circle(x, y, 6 if a == wallet else 4.5, fillColor=WALLET_COLOUR if a == wallet else NODE_COLOUR,
                     strokeColor=colors.white))
        if len(ids) <= 40 or a == wallet:
            d.add(String(x, y + 8 if y >= cy else y - 14, tables.short(a), fontSize=6.5, textAnchor="middle"))
    caption = ("Ring graph: members on a circle (sorted ids), the reported wallet in red; grey lines = trades "
               "between members in this pair (width ~ log2 count), dashed orange = funding between members.")
    return [KeepTogether([d, p(caption, SMALL)])]


def _verification(published: Published) -> list:
    r = published.report
    flow = [Paragraph("Fingerprint and verification", H2), p(published.fingerprint, MONO),
            p(r["format"]["fingerprint_rule"], SMALL), p(r["format"].get("signature_rule", ""), SMALL),
            p(f"This PDF embeds that JSON as the attachment {ATTACHMENT} and is rendered deterministically from it "
              f"({RENDERER}): `python -m engine verify-report FILE.pdf [--db STORE]` checks the fingerprint and "
              "the signature, re-renders the PDF and compares it byte for byte, and with the store regenerates "
              "the report.", SMALL)]
    anchor = published.anchor
    if anchor:
        flow += [p(f"Anchored on Stellar ({anchor.get('network_passphrase')}): transaction {anchor.get('tx_hash')} "
                   f"from {anchor.get('source_account')} (sequence {anchor.get('sequence')}), fingerprint in "
                   f"manage_data {anchor.get('data_name')!s} and the memo hash; signed, "
                   f"{'submitted' if anchor.get('submitted') else 'not submitted'}.", SMALL)]
    return flow
