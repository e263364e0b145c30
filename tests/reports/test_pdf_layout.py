"""The PDF as a lawyer reads it (pdftotext of the rendered pages): operation types never split mid-word, a
creation date that is real or says it is unknown (a placeholder date before the network existed is not
a creation date), and no last page holding a few stray lines."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import polars as pl
import pytest

from reports.output import write_report
from reports.sections import lineage_section
from tests.reports.conftest import AS_OF, MEMBERS, WALLET, signed

pytestmark = pytest.mark.skipif(subprocess.run(["which", "pdftotext"], capture_output=True).returncode != 0,
                                reason="pdftotext (poppler-utils) is absent: make system-deps")


def _pages(path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def _accounts(created_at: datetime | None) -> pl.DataFrame:
    return pl.DataFrame({"account_id": [WALLET], "created_at": [created_at], "funder": ["GFUNDER"],
                         "starting_balance": [10**8]}, schema_overrides={"created_at": pl.Datetime("us", "UTC")})


def _lineage(accounts: pl.DataFrame) -> dict:
    edges = pl.DataFrame(schema={"from_account": pl.String, "to_account": pl.String, "type": pl.String,
                                 "closed_at": pl.Datetime("us", "UTC"), "amount": pl.Int64, "asset": pl.String})
    ops = pl.DataFrame(schema={"id": pl.Int64, "to_account": pl.String, "closed_at": pl.Datetime("us", "UTC"),
                               "successful": pl.Boolean, "type": pl.String, "from_account": pl.String,
                               "asset": pl.String, "amount": pl.Int64, "memo": pl.String})
    return lineage_section(edges, ops, accounts, wallet=WALLET, members=MEMBERS, as_of=AS_OF)


def test_a_placeholder_creation_date_is_reported_as_unknown():
    from reports.tables import lineage_tables

    unknown = _lineage(_accounts(datetime(2000, 1, 1, tzinfo=UTC)))
    assert unknown["account"]["created_at"] is None
    note = lineage_tables({"lineage": unknown})[0].note
    assert note.startswith("Creation date unknown: the account's creation is not in the ingested ledgers.")
    real = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
    assert _lineage(_accounts(real))["account"]["created_at"] == real


def test_types_whole_creation_date_real_or_unknown_and_no_stray_last_page(built, tmp_path):
    from engine.services.report import assemble_report

    store, pair, settings, report, _ = built
    member = assemble_report(store, wallet=MEMBERS[1], pair_id=pair, as_of=AS_OF, settings=settings)
    for name, rep in (("wallet", report), ("member", member)):
        pages = _pages(write_report(signed(rep), fmt="pdf", path=tmp_path / f"{name}.pdf"))
        text = " ".join("\n".join(pages).split())  # words, whatever the line breaks
        assert "2000-01-01" not in text and "create_accou" not in text
        assert len([line for line in pages[-1].splitlines() if line.strip()]) >= 8, pages[-1]
        assert "Account created 2024-01-01T00:00:00Z by" in text  # account(99) created the ring members
    assert "create account" in text  # the member's funding table, the type in words
