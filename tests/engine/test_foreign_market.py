"""The foreign market generator (benchmarks/foreign_market.py) writes what ingest accepts.

Only the generator's contract is checked here: every record is stored (none quarantined),
the labels name the wallets the store holds, the same seed gives the same market.
Detection quality on these markets is measured by benchmarks/bench_foreign.py, not here.
"""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from benchmarks.foreign_market import FUNDINGS, LEGIT_ROLES, PATTERNS, PRESETS, generate, write
from storage.store import Store
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A few thousand trades: one ring of each pattern, one of each legitimate trap; ingested by the CLI."""
    out = tmp_path_factory.mktemp("foreign")
    meta = write(generate(PRESETS["tiny"], prefix="t-"), out)
    db = out / "store.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "ingest", "files", "--db", str(db), str(out / "trades.jsonl"),
         str(out / "operations.jsonl")], cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Store(db, read_only=True) as store:
        trades, operations = store.trades(), store.operations()
        quarantined, runs = store.quarantined(), store.runs()
    return {"out": out, "meta": meta, "trades": trades, "operations": operations, "quarantined": quarantined,
            "runs": runs, "labels": pl.read_csv(out / "labels.csv", schema_overrides={"ring_id": pl.String})}


def test_every_record_is_stored_and_none_quarantined(tiny):
    assert tiny["quarantined"].height == 0, tiny["quarantined"].head(3).to_dicts()
    assert tiny["trades"].height == tiny["meta"]["counts"]["trades"]
    assert tiny["operations"].height == tiny["meta"]["counts"]["operations"]
    assert 2_000 <= tiny["trades"].height <= 10_000


def test_labels_name_the_wallets_in_the_store(tiny):
    labels, trades = tiny["labels"], tiny["trades"]
    traded = set(trades["seller_account"].drop_nulls()) | set(trades["buyer_account"].drop_nulls())
    assert traded <= set(labels["wallet"]), "a stored trade names a wallet the labels do not know"
    members = labels.filter(pl.col("is_ring") == 1)
    assert set(members["wallet"]) <= traded, "a planted ring member never traded"
    assert set(members["pattern"]) == set(PATTERNS) and set(members["funding"]) <= set(FUNDINGS)
    assert set(labels["role"]) >= set(LEGIT_ROLES)
    traps = labels.filter(pl.col("role").is_in(LEGIT_ROLES) & pl.col("wallet").is_in(list(traded)))
    assert set(traps["role"]) == set(LEGIT_ROLES), "every legitimate role trades"


def test_ring_members_are_funded_in_the_operations(tiny):
    funded = set(tiny["operations"]["to_account"].drop_nulls())
    members = tiny["labels"].filter(pl.col("is_ring") == 1)["wallet"]
    assert set(members) <= funded
    ring_pairs = tiny["trades"].filter(pl.col("seller_account").is_in(members.to_list())
                                       & pl.col("buyer_account").is_in(members.to_list()))
    assert ring_pairs.height > 0, "members trade with each other on the order book"


def test_the_same_seed_gives_the_same_market():
    a, b = generate(PRESETS["tiny"]), generate(PRESETS["tiny"])
    assert a.trades.equals(b.trades) and a.operations.equals(b.operations) and a.labels.equals(b.labels)
