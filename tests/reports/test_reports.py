"""Forensic reports: content, the three formats, tamper evidence, determinism, escaping, anchoring."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
from stellar_sdk import Keypair, Network

from engine.assets import pair_id as make_pair_id
from engine.services.report import assemble_report, verify_report_file
from reports.anchor import anchored_fingerprint, build_anchor
from reports.canonical import canonical_bytes, fingerprint_of, parse_published
from reports.output import render, write_report
from storage.store import Store
from tests.conftest import ROOT
from tests.factories import ISSUER, account
from tests.reports.conftest import (
    AS_OF,
    EVIL_CODE,
    EVIL_MEMO,
    KEY_FP,
    MEMBERS,
    RING,
    TRUSTED,
    WALLET,
    build_store,
    signed,
)


def _cli(*args, home, trust: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "LEDGERLENS_HOME": str(home), "LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS": trust}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_content_holds_the_real_figures(built):
    _, pair, _, report, _ = built
    c = report.content
    h = c["header"]
    assert (h["wallet"], h["pair_id"], h["score"], h["confidence"], h["ring_id"]) == (WALLET, pair, 87, 74, RING)
    assert h["flagged"] is True and h["generated_at"] == "2099-01-01T00:00:00Z"
    trades = c["anomalous_trades"]
    # wallet = account(0): trades i % 7 == 0 of 630 -> 90
    assert trades["n_trades"] == 90 and len(trades["rows"]) == 20
    top = trades["rows"][0]
    assert trades["signal_counts"] == {"closed_loop": 0, "self_trade": 0, "ring_counterparty": 36, "quick_reversal": 8,
                                       "repeated_lot": 90, "round_amount": 0, "size_outlier": 0}
    assert top["points"] == 7 and top["reasons"] == [f"counterparty is a member of ring {RING}",
                                                     "reversed with the same counterparty within 1 h", "same base amount in 90 trades"]
    assert top["horizon_url"] == f"https://horizon.stellar.org/operations/{top['op_id']}"
    bf = {w["window"]: w for w in c["benford"]["windows"]}
    assert bf["30d"]["n"] == 90 and bf["30d"]["verdict"] == "nonconforming" and bf["30d"]["counts"][1] == 90
    assert c["ring"]["members"][0]["account_id"] == MEMBERS[0] and len(c["ring"]["members"]) == 3
    assert c["lineage"]["shared_ring_ancestors"] == [
        {"ancestor": account(99), "n_members": 3, "depth": 1, "exchange_like": False}]
    incoming = c["lineage"]["incoming_funding"]
    assert [(f["type"], f["from_account"], f["amount"], f["memo"]) for f in incoming] == [
        ("create_account", account(99), "5.0000000", None), ("payment", account(98), "1.2345678", EVIL_MEMO)]
    assert [a["annotator_id"] for a in c["annotations"]] == ["analyst-7"]
    prov = c["provenance"]
    assert prov["trades"]["n_rows"] == 90 and len(prov["trades"]["sha256"]) == 64
    assert prov["query"] == {"wallet": WALLET, "pair_id": pair, "as_of": "2099-01-01T00:00:00Z", "top_n": 20,
                             "benford_windows": ["1h", "4h", "24h", "7d", "30d"], "lineage_depth": 4}
    assert c["attributions"]["shap"]["available"] is False  # never invented
    assert report.fingerprint == fingerprint_of(c)


def test_regenerating_gives_the_same_fingerprint(built):
    store, pair, settings, report, _ = built
    again = assemble_report(store, wallet=WALLET, pair_id=pair, as_of=AS_OF, settings=settings)
    assert again.fingerprint == report.fingerprint
    assert render(signed(again), "pdf") == render(signed(report), "pdf")
    later = assemble_report(store, wallet=WALLET, pair_id=pair, as_of=datetime(2024, 1, 1, 1, 30, tzinfo=UTC),
                            settings=settings)  # fmt: skip
    assert later.fingerprint != report.fingerprint and later.content["header"]["score"] is None


def test_json_fingerprint_is_over_the_published_bytes(built, tmp_path):
    _, _, _, report, _ = built
    path = write_report(signed(report), fmt="json", path=tmp_path / "r.json")
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hashed = data[data.index(b'"report":') + len(b'"report":'):-1]
    assert hashed == canonical_bytes(report.content)
    assert hashlib.sha256(hashed).hexdigest() == report.fingerprint
    assert parse_published(data)[1] == []


def test_pdf_renders_and_reads_back(built, tmp_path):
    _, _, _, report, _ = built
    path = write_report(signed(report), fmt="pdf", path=tmp_path / "r.pdf")
    info = subprocess.run(["pdfinfo", path], capture_output=True, text=True, check=True).stdout
    n_pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 3 <= n_pages <= 8
    text = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True, text=True, check=True).stdout
    assert WALLET in text and "87.0 / 100 (flagged)" in text
    assert KEY_FP in text.replace("\n", "").replace(" ", "")  # the signer's key fingerprint is printed
    assert text.count(f"SHA-256 fingerprint {report.fingerprint}") == n_pages  # every page footer
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", path, tmp_path / "page"], check=True)
    assert (tmp_path / "page-1.png").stat().st_size > 10_000
    assert subprocess.run(["pdfdetach", "-list", path], capture_output=True, text=True).stdout.count(
        "ledgerlens-report.json") == 1


def _flip_spot(data: bytes, fmt: str) -> int:
    if fmt == "json":
        return data.index(b'"score":87') + 9  # the score 87 becomes 86
    return data.index(b"87.0 / 100") if fmt == "markdown" else len(data) // 2


def test_one_byte_changes_fail_verify_report(built, tmp_path):
    _, _, _, report, _ = built
    for fmt in ("json", "pdf", "markdown"):
        path = write_report(signed(report), fmt=fmt, path=tmp_path / f"r.{fmt}")
        assert verify_report_file(path, trusted=TRUSTED).ok
        data = bytearray(path.read_bytes())
        data[_flip_spot(bytes(data), fmt)] ^= 0x01
        path.write_bytes(bytes(data))
        path.with_name(path.name + ".sha256").unlink()  # the sidecar alone would catch it: test the rest
        failed = _cli("verify-report", path, home=tmp_path, trust=KEY_FP)
        assert failed.returncode == 2 and "INVALID" in failed.stdout, (fmt, failed.stdout, failed.stderr)


def test_verify_report_regenerates_from_the_store(built, tmp_path):
    store, pair, settings, report, _ = built
    path = write_report(signed(report), fmt="json", path=tmp_path / "r.json")
    result = verify_report_file(path, trusted=TRUSTED, store=store, settings=settings)
    assert result.ok and "regenerated from the store: same fingerprint" in result.checks
    store.append_annotations(pl.DataFrame([{
        "wallet": WALLET, "pair_id": pair, "label": "legit", "note": "", "annotator_id": "analyst-8",
        "annotated_at": datetime(2024, 3, 1, tzinfo=UTC), "label_source": "analyst", "hmac": "dummy"}]))  # fmt: skip
    changed = verify_report_file(path, trusted=TRUSTED, store=store, settings=settings)
    assert not changed.ok and "sections that differ: annotations, provenance" in changed.problems[0]


def test_ledger_strings_stay_literal_text(built, tmp_path):
    store, _, settings, _, _ = built
    evil_pair = make_pair_id(f"{EVIL_CODE}:{ISSUER}", "XLM:native")
    report = assemble_report(store, wallet=WALLET, pair_id=evil_pair, as_of=AS_OF, settings=settings)
    pub = signed(report)
    assert json.loads(pub.to_bytes())["report"]["header"]["base_asset"].startswith(EVIL_CODE)
    pdf_path = write_report(pub, fmt="pdf", path=tmp_path / "evil.pdf")
    text = " ".join(subprocess.run(["pdftotext", pdf_path, "-"], capture_output=True, text=True).stdout.split())
    assert EVIL_CODE in text and EVIL_MEMO in text and "fixed lots <script>x</script>" in text
    md = render(pub, "markdown").decode()
    body = md[: md.index("```ledgerlens-report-base64")]
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in body and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in body
    assert "<img" not in body and "<b>" not in body and "<script>" not in body


def test_cli_report_bulk_and_files_are_private(built, tmp_path):
    _, pair, _, _, _ = built
    copy, _ = build_store(tmp_path)  # the CLI opens its own store read-write
    copy.close()
    db, home = tmp_path / "reports.duckdb", tmp_path / "home"
    (tmp_path / "w.csv").write_text(f"wallet,pair_id\n{WALLET},{pair}\n{account(10)},{pair}\n")
    done = _cli("report", "--input", tmp_path / "w.csv", "--format", "markdown", "--as-of", "2099-01-01T00:00:00Z",
                "--db", db, home=home)  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted((home / "reports" / "forensic").glob("*.md"))
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    with Store(db, read_only=True) as s:
        recorded = s.reports()
    assert sorted(recorded.get_column("fingerprint")) == sorted(line.split()[0] for line in done.stdout.splitlines())
    checked = _cli("verify-report", files[0], "--db", db, home=home)
    assert checked.returncode == 0 and "regenerated from the store: same fingerprint" in checked.stdout


def test_anchor_transaction_carries_the_fingerprint(built, tmp_path):
    _, _, _, report, _ = built
    signer = Keypair.from_raw_ed25519_seed(bytes(range(32)))
    anchor = build_anchor(report.fingerprint, signer=signer, sequence=41, network_passphrase=Network.TESTNET_NETWORK_PASSPHRASE)
    assert anchor["sequence"] == 42 and len(anchor["tx_hash"]) == 64
    assert anchored_fingerprint(anchor["envelope_xdr"], Network.TESTNET_NETWORK_PASSPHRASE) == (
        report.fingerprint, report.fingerprint)
    assert build_anchor(report.fingerprint, signer=signer, sequence=41,
                        network_passphrase=Network.TESTNET_NETWORK_PASSPHRASE)["tx_hash"] == anchor["tx_hash"]
    pub = signed(report, anchor=anchor)
    assert fingerprint_of(json.loads(pub.to_bytes())["report"]) == report.fingerprint  # anchor is beside, not inside
    assert anchor["tx_hash"] in render(pub, "markdown").decode()
    path = write_report(pub, fmt="pdf", path=tmp_path / "anchored.pdf")
    assert verify_report_file(path, trusted=TRUSTED).ok
    forged = signed(report, anchor={**anchor, "tx_hash": "0" * 64})
    bad = verify_report_file(write_report(forged, fmt="json", path=tmp_path / "forged.json"), trusted=TRUSTED)
    assert bad.problems == (f"anchor tx hash {'0' * 64} differs from the envelope's {anchor['tx_hash']}",)
