"""Wallet evidence: individual trades from the wallet's side with explorer links, an every-row CSV, Benford
without a literal None (issue #16)."""

from __future__ import annotations

import csv
import io

import polars as pl
import pytest

from storage.store import Store
from tests.app.fixture_store import build_fixture_store, open_page

EXPLORER = "https://stellar.expert/explorer/public"


@pytest.fixture(scope="module")
def wallet_store(tmp_path_factory):
    s = build_fixture_store(tmp_path_factory.mktemp("evidence") / "fixture.duckdb")
    with Store(s.db_path, read_only=True) as store:
        raw = store.trades().filter((pl.col("seller_account") == s.top_wallet) | (pl.col("buyer_account") == s.top_wallet))
    return s, raw


def _trades(at):
    """The trades table (a non-selectable table carries no key in AppTest)."""
    return next(d.value for d in at.dataframe if "ledger_link" in d.value.columns)


def _expected_sides(raw: pl.DataFrame, wallet: str) -> dict[str, tuple[str, int]]:
    """From the stored seller/buyer rows: did the wallet buy or sell the pair's base asset, and how much."""
    out = {}
    for t in raw.iter_rows(named=True):
        base = t["pair_id"].split("/")[0]
        gave = t["sold_asset"] if t["seller_account"] == wallet else t["bought_asset"]
        amount = t["sold_amount"] if t["sold_asset"] == base else t["bought_amount"]
        out[t["id"]] = ("sell" if gave == base else "buy", amount)
    return out


def test_trades_tab_lists_each_trade_from_the_wallets_side_with_explorer_links(monkeypatch, wallet_store):
    s, raw = wallet_store
    at = open_page(monkeypatch, s.db_path, "wallet", wallet=s.top_wallet)
    shown = _trades(at)
    expected = _expected_sides(raw, s.top_wallet)
    newest = raw.sort(["closed_at", "id"], descending=True).head(50)
    assert shown["trade_id"].tolist() == newest["id"].to_list()
    assert {"buy", "sell"} <= set(shown["side"])
    for row in shown.to_dict("records"):
        side, base_stroops = expected[row["trade_id"]]
        assert row["side"] == side and row["base_amount"] == pytest.approx(base_stroops / 10**7)
    first = newest.row(0, named=True)
    assert shown["ledger_link"].iloc[0] == f"{EXPLORER}/ledger/{first['ledger']}"
    assert shown["op_link"].iloc[0] == f"{EXPLORER}/op/{first['op_id']}"
    assert f"{raw.height:,} trades" in " ".join(c.value for c in at.caption)
    button = at.get("download_button")
    assert any(b.proto.label == f"Download all {raw.height:,} trades (CSV)" for b in button)
    at.number_input(key="wt_page").set_value(2).run()
    assert _trades(at)["trade_id"].tolist() == \
        raw.sort(["closed_at", "id"], descending=True).slice(50, 50)["id"].to_list()


def test_the_csv_holds_every_trade_in_exact_asset_units(wallet_store):
    from pages._evidence import trades_csv
    from pages._ui import open_store

    s, raw = wallet_store
    store = open_store(str(s.db_path.resolve()))  # the app's own Store: the page tests hold the file open
    data = trades_csv(store, wallet=s.top_wallet, pair_id=None, window_days=None, explorer=EXPLORER)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == raw.height > 50  # every row, not only the page shown
    expected = _expected_sides(raw, s.top_wallet)
    for r in rows:
        side, base_stroops = expected[r["trade_id"]]
        whole, frac = r["base_amount"].split(".")
        assert r["side"] == side and int(whole) * 10**7 + int(frac) == base_stroops and len(frac) == 7
        assert r["explorer_ledger"] == f"{EXPLORER}/ledger/{r['ledger']}" and r["closed_at"].endswith("Z")


def test_benford_says_insufficient_data_never_none(monkeypatch, wallet_store):
    s, _ = wallet_store
    at = open_page(monkeypatch, s.db_path, "wallet", wallet=s.top_wallet)
    table = next(d.value for d in at.dataframe if "excess_mad" in d.value.columns)
    assert not table.isna().any().any()
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    thin = table[table["mad"] == "–"]
    assert len(thin) and set(thin["verdict"]) == {"insufficient data"}
