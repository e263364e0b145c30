"""Tampered, forged, truncated and foreign report files: every one rejected, none crashes the verifier.

The suite is generated: sampled single-byte flips over whole JSON, Markdown and PDF
reports; forgeries that recompute the SHA-256 (the attack the fingerprint alone
cannot stop); deleted keys and changed types with the fingerprint recomputed;
swapped signatures and public keys; truncations; empty and non-report files.
"Rejected" means `verify_report` raised BadInput (not a report at all) or returned
problems; the CLI turns both into INVALID and exit code 2, never a traceback.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.assets import pair_id as make_pair_id
from engine.cli import main
from engine.services.report import assemble_report
from models.signing import fingerprint, public_bytes
from reports import markdown
from reports.attest import sign_published
from reports.canonical import Published, canonical_bytes, fingerprint_of, parse_published
from reports.output import render, write_report
from reports.verify import envelope_of, verify_report
from storage.errors import BadInput
from tests.conftest import ROOT
from tests.factories import ISSUER
from tests.reports.conftest import AS_OF, EVIL_CODE, KEY_FP, TRUSTED, WALLET, signed

FORMATS = ("json", "markdown", "pdf")
N_FLIPS = 300  # sampled positions per format
ATTACKER = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
ATTACKER_FP = fingerprint(public_bytes(ATTACKER))


@pytest.fixture(scope="module")
def published(built) -> Published:
    _, _, _, report, _ = built
    return signed(report)


@pytest.fixture(scope="module")
def files(published) -> dict[str, bytes]:
    return {fmt: render(published, fmt) for fmt in FORMATS}


def rejected(data: bytes) -> str:
    """Why `data` is rejected: the BadInput message or the problems; fails the test when it verifies.

    Any other exception propagates: that is the crash this suite exists to catch."""
    try:
        result = verify_report(data, trusted=TRUSTED)
    except BadInput as exc:
        return f"not a report: {exc}"
    assert not result.ok, "a tampered report verified as VALID"
    return "; ".join(result.problems)


def with_envelope(data: bytes, fmt: str, envelope: bytes) -> bytes:
    """`data` (a rendered report) with its embedded envelope replaced by `envelope`, nothing else changed:
    what an attacker without our renderer can do to a PDF or Markdown file."""
    if fmt == "json":
        return envelope
    if fmt == "markdown":
        at = data.rindex(markdown.EMBED_MARKER.encode())
        block = base64.encodebytes(envelope)
        return data[:at] + markdown.EMBED_MARKER.encode() + b"\n" + block + b"```\n"
    kind = data.index(b"/Type /EmbeddedFile\n")
    start = data.rindex(b"<<", 0, data.rindex(b"/Length ", 0, kind))
    body = data.index(b"stream\n", kind) + len(b"stream\n")
    old_len = int(re.search(rb"/Length (\d+)", data[start:body]).group(1))
    head = re.sub(rb"(/Length|/Size) \d+", lambda m: m.group(1) + b" %d" % len(envelope), data[start:body])
    return data[:start] + head + envelope + data[body + old_len:]


def forged(published: Published, edit, *, keep_signature: bool = True, key=None) -> bytes:
    """The envelope after `edit(report dict)`, fingerprint recomputed, the old attestation kept
    (or re-signed with `key`)."""
    report = copy.deepcopy(published.report)
    edit(report)
    pub = Published(report, fingerprint_of(report), published.anchor,
                    published.attestation if keep_signature else None)  # fmt: skip
    return (sign_published(pub, key) if key is not None else pub).to_bytes()


def _set_score(report: dict) -> None:
    report["header"]["score"] = 12


# -- the issue's forgery: change the score, recompute the SHA-256 --------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_recomputed_fingerprint_does_not_make_a_forgery_valid(files, published, fmt):
    assert with_envelope(files[fmt], fmt, published.to_bytes()) == files[fmt]  # the helper changes nothing else
    envelope = forged(published, _set_score)
    assert parse_published(envelope)[1] == []  # the hash alone is fooled
    data = with_envelope(files[fmt], fmt, envelope) if fmt != "json" else envelope
    why = rejected(data)
    assert "signature does not verify" in why
    if fmt != "json":  # re-rendered with the attacker's own renderer copy: the signature still fails
        assert "signature does not verify" in rejected(render(parse_published(envelope)[0], fmt))


def test_a_report_re_signed_by_an_unknown_key_names_that_key(files, published):
    for fmt in FORMATS:
        pub, _ = parse_published(forged(published, _set_score, key=ATTACKER))
        why = rejected(render(pub, fmt))
        assert f"untrusted signer: key fingerprint {ATTACKER_FP}" in why and "signature does not" not in why


def test_the_untouched_report_verifies_in_every_format(files):
    for fmt, data in files.items():
        result = verify_report(data, trusted=TRUSTED)
        assert result.ok and result.signer == KEY_FP, (fmt, result.problems)
        assert f"Ed25519 signature over the report by trusted key {KEY_FP}" in result.checks


def test_unsigned_and_untrusted_are_named(files, published):
    unsigned = Published(published.report, published.fingerprint, published.anchor).to_bytes()
    assert "not signed" in rejected(unsigned)
    assert "untrusted signer" in "; ".join(verify_report(files["json"], trusted=frozenset()).problems)


# -- swapped signature / public key ----------------------------------------------------------------


def test_swapped_signature_and_public_key_are_rejected(built, published):
    store, pair, settings, _, _ = built
    other = signed(assemble_report(store, wallet=WALLET, pair_id=pair, as_of=datetime(2024, 1, 1, 1, 30, tzinfo=UTC),
                                   settings=settings))  # fmt: skip
    attacker_pub = public_bytes(ATTACKER).hex()
    a = published.attestation
    cases = {
        "signature of another report": {**a, "signature": other.attestation["signature"]},
        "another public key, its fingerprint": {**a, "public_key": attacker_pub, "key_fingerprint": ATTACKER_FP},
        "another public key, old fingerprint": {**a, "public_key": attacker_pub},
        "trusted fingerprint named, attacker key": {**sign_published(published, ATTACKER).attestation,
                                                    "key_fingerprint": KEY_FP},
    }  # fmt: skip
    for name, attestation in cases.items():
        data = Published(published.report, published.fingerprint, None, attestation).to_bytes()
        why = rejected(data)
        assert "signature does not verify" in why or "the key was swapped" in why, (name, why)
    why = rejected(Published(published.report, published.fingerprint, None, cases["trusted fingerprint named, "
                                                                                 "attacker key"]).to_bytes())
    assert f"its public key hashes to {ATTACKER_FP}" in why


# -- deleted keys and changed types ------------------------------------------------------------------


def _delete(path: tuple):
    def edit(report):
        node = report
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return edit


def _retype(path: tuple, value):
    def edit(report):
        node = report
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return edit


REPORT_EDITS = {
    **{f"delete report.{'.'.join(p)}": _delete(p) for p in [
        ("header",), ("format",), ("provenance",), ("annotations",), ("header", "score"), ("header", "wallet"),
        ("provenance", "query"), ("provenance", "query", "as_of"), ("anomalous_trades", "rows"), ("benford",),
        ("format", "fingerprint_rule"), ("ring",)]},
    **{f"retype report.{'.'.join(p)} to {v!r}": _retype(p, v) for p, v in [
        (("header", "score"), "87"), (("header", "score"), None), (("header", "score"), [87]),
        (("header",), []), (("header",), "x"), (("format",), None), (("annotations",), {}),
        (("provenance", "query"), "q"), (("provenance", "query", "as_of"), 5), (("anomalous_trades", "rows"), [1]),
        (("header", "wallet"), {"a": 1}), (("benford", "windows"), None)]},
}  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_keys_and_changed_types_inside_the_report_are_rejected(files, published, fmt):
    for name, edit in REPORT_EDITS.items():
        for key in (None, ATTACKER):  # old signature kept / re-signed by an unknown key
            envelope = forged(published, edit, key=key)
            why = rejected(with_envelope(files[fmt], fmt, envelope))
            assert ("signature does not verify" if key is None else "untrusted signer") in why, (name, why)


def _envelope_edits(published: Published) -> dict[str, dict | list | str | int | None]:
    env = json.loads(published.to_bytes())
    a = env["attestation"]
    out = {f"delete {k}": {x: v for x, v in env.items() if x != k} for k in env}
    out |= {f"delete attestation.{k}": {**env, "attestation": {x: v for x, v in a.items() if x != k}} for k in a}
    out |= {f"retype attestation.{k}": {**env, "attestation": {**a, k: 7}} for k in a}
    out |= {f"retype {k} to {v!r}": {**env, k: v} for k, v in [
        ("attestation", []), ("attestation", "sig"), ("attestation", None), ("fingerprint", 5), ("report", []),
        ("report", None), ("anchor", "tx"), ("anchor", {}), ("anchor", {"envelope_xdr": 5, "signer": []})]}
    out |= {"extra key": {**env, "zzz": 1}, "attestation extra key": {**env, "attestation": {**a, "x": "y"}},
            "algorithm": {**env, "attestation": {**a, "algorithm": "RSA"}},
            "upper-case hex": {**env, "attestation": {**a, "signature": a["signature"].upper()}},
            "list": [env], "string": "report", "number": 1, "null": None}  # fmt: skip
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_keys_and_changed_types_in_the_envelope_are_rejected(files, published, fmt):
    for name, env in _envelope_edits(published).items():
        why = rejected(with_envelope(files[fmt], fmt, canonical_bytes(env)))
        assert why, name


# -- sampled single-byte flips, truncations, foreign files ----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_sampled_single_byte_flips_are_all_rejected(files, fmt):
    data = files[fmt]
    rng = random.Random(f"flips-{fmt}")
    positions = sorted({*range(8), *range(len(data) - 8, len(data)), *rng.sample(range(len(data)), N_FLIPS)})
    for at in positions:
        flipped = bytearray(data)
        flipped[at] ^= rng.choice([0x01, 0x20, 0x80, 0xFF])
        rejected(bytes(flipped))


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files_are_rejected(files, fmt):
    data = files[fmt]
    for size in sorted({0, 1, 5, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 2, len(data) - 1}):
        rejected(data[:size])


def test_foreign_and_hostile_files_are_rejected_without_a_crash():
    for data in [b"", b"\n", b"{}", b"[]", b"null", b"{" * 200_000, b"[" * 200_000, b'{"fingerprint":"x"}',
                 b'{"fingerprint":"x","report":{}}', bytes(range(256)), os.urandom(4096), b"%PDF-1.4\n%%EOF\n",
                 b"%PDF-1.7\n<< /Type /EmbeddedFile /Length 99999999 >> stream\n{", b"# Notes\n\nnot a report\n",
                 markdown.EMBED_MARKER.encode(), b"x\n" + markdown.EMBED_MARKER.encode() + b"\n!!!!\n```\n",
                 b"\xff\xfe{\x00}\x00", "{\"report\": \"\u00e9\"}".encode()]:  # fmt: skip
        rejected(data)


def test_envelope_of_names_the_missing_report():
    with pytest.raises(BadInput, match="no embedded LedgerLens report"):
        envelope_of(b"# just markdown\n", "markdown")


# -- the CLI: INVALID and exit 2, no traceback -----------------------------------------------------


def _verify_cli(path, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEDGERLENS_HOME": str(home), "LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS": KEY_FP}
    return subprocess.run([sys.executable, "-m", "engine", "verify-report", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_cli_says_valid_invalid_and_why(files, published, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS", KEY_FP)
    suffix = {"json": "json", "markdown": "md", "pdf": "pdf"}
    cases = {f"ok.{suffix[f]}": d for f, d in files.items()}
    cases |= {"forged.json": forged(published, _set_score), "empty.md": b"", "truncated.pdf": files["pdf"][:999],
              "untrusted.md": render(parse_published(forged(published, _set_score, key=ATTACKER))[0], "markdown"),
              "nested.json": b"[" * 100_000, "deleted.json": canonical_bytes({"fingerprint": published.fingerprint})}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        code = main(["verify-report", str(tmp_path / name)])  # an exception here is the crash we test for
        last = capsys.readouterr().out.splitlines()[-1]
        if name.startswith("ok."):
            assert code == 0 and last.startswith("VALID") and f"signed by trusted key {KEY_FP}" in last, (name, last)
        else:
            assert code == 2 and last.startswith("INVALID"), (name, last)
    done = _verify_cli(tmp_path / "forged.json", tmp_path / "home")  # as a user runs it: a separate process
    assert done.returncode == 2 and "signature does not verify" in done.stdout and "Traceback" not in done.stderr
    main(["verify-report", str(tmp_path / "untrusted.md")])
    assert f"untrusted signer: key fingerprint {ATTACKER_FP}" in capsys.readouterr().out


# -- Markdown renders inert ----------------------------------------------------------------------------

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "```\n<script>x</script>", "</code><b>",
           "javascript:alert(3)", "<!--", "]]><svg onload=alert(4)>", "`<iframe src=//x>`"]


def test_markdown_with_hostile_strings_renders_inert_and_verifies(built, tmp_path):
    store, _, settings, _, _ = built
    store.append_annotations(pl.DataFrame([{
        "wallet": WALLET, "pair_id": None, "label": "wash", "note": " ".join(HOSTILE), "annotator_id": HOSTILE[1],
        "annotated_at": datetime(2024, 2, 2, tzinfo=UTC), "label_source": "analyst", "hmac": "x"}],
        schema_overrides={"pair_id": pl.String}))  # fmt: skip
    evil_pair = make_pair_id(f"{EVIL_CODE}:{ISSUER}", "XLM:native")
    pub = signed(assemble_report(store, wallet=WALLET, pair_id=evil_pair, as_of=AS_OF, settings=settings))
    path = write_report(pub, fmt="markdown", path=tmp_path / "evil.md")
    text = path.read_text()
    # CommonMark makes raw HTML only from '<': the only ones left are our own Horizon link destinations
    outside_links = re.sub(r"\]\(<https://horizon\.stellar\.org/[0-9a-z/]+>\)", "](LINK)", text)
    assert "<" not in outside_links and ">" not in outside_links
    assert "&lt;img src=x onerror=alert\\(2\\)&gt;" in text and "&lt;script&gt;" in text
    assert text.count("```") == 2  # the embed fence only: no hostile backticks open or close a code block
    block = text[text.index(markdown.EMBED_MARKER) + len(markdown.EMBED_MARKER):].strip().removesuffix("```")
    assert re.fullmatch(r"[A-Za-z0-9+/=\n]+", block)
    envelope = base64.b64decode(block)
    assert EVIL_CODE in json.loads(envelope)["report"]["header"]["base_asset"]  # read back as it was
    assert verify_report(path.read_bytes(), trusted=TRUSTED).ok
