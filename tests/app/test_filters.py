"""Global filters: pair and time window live in the URL, hold across page changes and shared links, and every
count, table and figure that names them honours them (issue #16)."""

from __future__ import annotations

import pytest

from engine.ring_order import order_rings, plural
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, open_page


@pytest.fixture(scope="module")
def store_and_expected(tmp_path_factory):
    s = build_fixture_store(tmp_path_factory.mktemp("filters") / "fixture.duckdb")
    with Store(s.db_path, read_only=True) as store:
        expected = {
            (pair, window): {
                "counts": store.overview_counts(threshold=70, pair_id=pair, window_days=days),
                "flagged": store.top_flagged(threshold=70, pair_id=pair, window_days=days, limit=100),
                "rings": store.rings(pair_id=pair, window_days=days),
            }
            for pair in (None, s.top_pair) for window, days in (("all", None), ("24h", 1), ("7d", 7))
        }
    return s, expected


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_shared_link_sets_the_filters_and_every_count_follows_them(monkeypatch, store_and_expected):
    s, x = store_and_expected
    at = open_page(monkeypatch, s.db_path, "overview", pair=s.top_pair, window="24h")
    assert (at.selectbox(key="flt_pair").value, at.radio(key="flt_window").value) == (s.top_pair, "24h")
    c = x[(s.top_pair, "24h")]["counts"]
    unfiltered = x[(s.top_pair, "all")]["counts"]
    assert c["n_flagged"] != unfiltered["n_flagged"]  # the window changes the answer on this store
    assert metrics(at) == {"Trades": f"{c['n_trades']:,}", "Wallets": f"{c['n_wallets']:,}",
                           "Pairs": str(c["n_pairs"]), "Flagged wallets": str(c["n_flagged"])}  # fmt: skip
    rows, total = x[(s.top_pair, "24h")]["flagged"]
    assert f"{total:,} flagged rows" in [e.value for e in at.caption]
    if total:
        assert at.dataframe(key="top_flagged").value["wallet"].tolist() == rows["wallet"].head(25).to_list()
    link = [c.value for c in at.code if "window=24h" in c.value]
    assert link and "pair=" in link[0]
    volumes = next(d.value for d in at.dataframe if "reported_xlm" in d.value.columns)
    assert set(volumes["pair_id"]) <= {s.top_pair}  # the volumes table too


def test_filters_hold_across_a_page_change_that_drops_the_query_parameters(monkeypatch, store_and_expected):
    s, x = store_and_expected
    at = open_page(monkeypatch, s.db_path, "overview")
    at.selectbox(key="flt_pair").set_value(s.top_pair).run()
    at.radio(key="flt_window").set_value("7d").run()
    assert metrics(at)["Trades"] == f"{x[(s.top_pair, '7d')]['counts']['n_trades']:,}"
    at.switch_page("pages/rings.py")
    for k in list(at.query_params):  # Streamlit drops a page's query parameters when another page opens
        del at.query_params[k]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.selectbox(key="flt_pair").value, at.radio(key="flt_window").value) == (s.top_pair, "7d")
    assert [c.value for c in at.code if "window=7d" in c.value]  # written back into the URL
    rings = x[(s.top_pair, "7d")]["rings"]
    all_rings = x[(None, "all")]["rings"]
    assert 0 < rings.height < all_rings.height  # the pair filter narrows the rings
    table = next(d.value for d in at.dataframe if "closed_loop_share" in d.value.columns)
    assert table["ring_id"].tolist() == order_rings(rings)["ring_id"].to_list()
    assert any(c.value.startswith(f"{plural(rings.height, 'ring')} detected with ring trades on") for c in at.caption)


def test_the_window_alone_filters_flagged_wallets(monkeypatch, store_and_expected):
    s, x = store_and_expected
    at = open_page(monkeypatch, s.db_path, "overview", window="24h")
    day, everything = x[(None, "24h")], x[(None, "all")]
    assert metrics(at)["Flagged wallets"] == str(day["counts"]["n_flagged"])
    assert f"{day['flagged'][1]:,} flagged rows" in [e.value for e in at.caption]
    assert day["flagged"][1] < everything["flagged"][1]
