"""AppTest for every page, on an empty store and on the populated fixture store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.workbench import JOBS, graph_layout, ring_graph_html
from storage.store import Store
from tests.app.fixture_store import EVIL_CODE, EVIL_PAIR, RING, RING_ID, build_fixture_store
from tests.factories import horizon_trade, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("overview", "ingest", "rings", "wallet", "annotate", "models", "reports", "graph_lab")


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    d = tmp_path_factory.mktemp("populated")
    summary = build_fixture_store(d / "fixture.duckdb", d)
    return d / "fixture.duckdb", summary


def open_page(monkeypatch, db: Path, page: str, **params) -> AppTest:
    monkeypatch.setenv("LEDGERLENS_DB", str(db))
    monkeypatch.setenv("LEDGERLENS_HOME", str(db.parent / "home"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def df(at: AppTest, *columns: str):
    """The first table shown whose columns include `columns` (non-selectable tables carry no key in AppTest)."""
    for d in at.dataframe:
        if set(columns) <= set(d.value.columns):
            return d.value
    raise AssertionError(f"no table with columns {columns}")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# -- empty store -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_an_empty_store_says_what_to_do(monkeypatch, tmp_path, page):
    at = open_page(monkeypatch, tmp_path / "empty.duckdb", page)
    shown = " ".join(texts(at, "info") + texts(at, "warning") + texts(at, "caption"))
    expected = {
        "overview": "Open **Ingest**", "rings": "Open **Ingest**", "wallet": "Enter a wallet address",
        "annotate": "run `python -m engine score`", "models": "run `python -m engine train`",
        "reports": "No report yet", "ingest": "Store holds 0 trades", "graph_lab": "python -m engine snapshot",
    }[page]  # fmt: skip
    assert expected in shown
    if page == "overview":
        assert metrics(at) == {"Trades": "0", "Wallets": "0", "Pairs": "0", "Flagged wallets": "0"}


# -- populated store --------------------------------------------------------------------------------


def test_overview_counts_table_and_volumes(monkeypatch, populated):
    db, s = populated
    at = open_page(monkeypatch, db, "overview")
    assert metrics(at) == {"Trades": "43", "Wallets": "15", "Pairs": "2", "Flagged wallets": "3"}
    top = at.dataframe(key="top_flagged").value
    assert list(top["score"]) == [91, 85, 72] and top["wallet"].iloc[0] == s.top_wallet
    assert "3 flagged rows" in texts(at, "caption")
    vol = df(at, "reported_volume").set_index("pair_id")
    usd = vol.iloc[0]
    assert (usd["n_trades"], usd["reported_volume"], usd["volume_without_rings"]) == (42, 1_050_000_000, 750_000_000)
    assert vol.loc[EVIL_PAIR, "n_trades"] == 1  # the markup asset code is a plain table value


def test_overview_sort_filter_and_pagination_are_done_in_the_store(monkeypatch, populated):
    db, s = populated
    at = open_page(monkeypatch, db, "overview")
    at.toggle(key="ov_desc").set_value(False).run()
    assert list(at.dataframe(key="top_flagged").value["score"]) == [72, 85, 91]
    at.text_input(key="ov_prefix").set_value(s.top_wallet[:10]).run()
    assert list(at.dataframe(key="top_flagged").value["wallet"]) == [s.top_wallet]
    assert "1 flagged rows" in texts(at, "caption")


def test_overview_escapes_a_markup_pair_in_headings(monkeypatch, populated):
    db, _ = populated
    at = open_page(monkeypatch, db, "overview", pair=EVIL_PAIR)
    heading = [h for h in texts(at, "subheader") if h.startswith("Benford")][0]
    assert "<img" not in heading and "&lt;img" in heading
    assert metrics(at)["Trades"] == "1"
    assert all("<img" not in m for m in texts(at, "markdown") + texts(at, "caption"))


def test_rings_lists_the_ring_expands_neighbours_and_opens_a_wallet(monkeypatch, populated):
    db, s = populated
    at = open_page(monkeypatch, db, "rings")
    table = df(at, "ring_id", "closed_loop_share")
    assert list(table["ring_id"]) == [RING_ID] and int(table["max_score"].iloc[0]) == 91
    assert any(c.startswith("3 wallets, 3 trade edges") for c in texts(at, "caption"))
    page = at.get("iframe")[0].proto.srcdoc
    assert "physics" in page and json.dumps(s.top_wallet) in page
    at.multiselect(key=f"expand_{RING_ID}").set_value([s.top_wallet]).run()
    assert any(c.startswith("4 wallets, 4 trade edges") for c in texts(at, "caption"))
    assert at.selectbox(key="ring_open_pick").value == s.top_wallet  # riskiest member first
    # the button's st.switch_page is exercised in the browser flow (AppTest keeps its own page on a script rerun)
    at.switch_page("pages/wallet.py")
    at.query_params["wallet"] = at.selectbox(key="ring_open_pick").value
    at.run()
    assert metrics(at)["Risk score"] == "91"


def test_wallet_shows_score_lineage_rings_and_takes_a_label(monkeypatch, populated):
    db, s = populated
    at = open_page(monkeypatch, db, "wallet", wallet=s.top_wallet)
    m = metrics(at)
    assert (m["Risk score"], m["Confidence"], m["Benford flag"], m["Ring"]) == ("91", "80", "yes", RING_ID)
    assert list(df(at, "ring_id", "closed_loop_share")["ring_id"]) == [RING_ID]
    assert df(at, "funder", "created_at")["account_id"].tolist() == sorted(RING[1:], key=RING.index)
    assert df(at, "n_sold_to")["n_trades"].sum() == 9
    at.radio(key="label_choice").set_value("wash")
    at.text_input(key="label_note").set_value("closed loop with siblings")
    at.button[0].click().run()
    assert "1 label(s) on record" in texts(at, "caption")
    labels = df(at, "annotator_id")
    assert labels["label"].tolist() == ["wash"] and labels["note"].tolist() == ["closed loop with siblings"]


def test_wallet_escapes_an_address_typed_by_the_user(monkeypatch, populated):
    db, _ = populated
    at = open_page(monkeypatch, db, "wallet", wallet=EVIL_CODE)
    assert texts(at, "warning") and all("<img" not in w for w in texts(at, "warning"))
    assert "&lt;img" in texts(at, "warning")[0]


def test_annotate_queue_takes_the_most_uncertain_first(monkeypatch, tmp_path):
    db = tmp_path / "annotate.duckdb"
    build_fixture_store(db, tmp_path)
    at = open_page(monkeypatch, db, "annotate")
    assert metrics(at)["Score"] == "72"
    at.radio(key="queue_label").set_value("legit")
    at.button[0].click().run()
    assert metrics(at)["Score"] == "55"
    assert "1 of 7 scored (wallet, pair) labelled" in at.get("progress")[0].proto.text


def test_ingest_runs_a_horizon_range_in_the_background(monkeypatch, tmp_path):
    from engine.ingest.replay import ReplayServer

    folder = tmp_path / "horizon"
    folder.mkdir()
    write_jsonl(folder / "trades.jsonl", [horizon_trade(i) for i in range(40)])
    db = tmp_path / "ingest.duckdb"
    with ReplayServer(folder) as server:
        at = open_page(monkeypatch, db, "ingest")
        at.radio(key="ingest_source").set_value("Horizon").run()
        at.text_input(key="ingest_url").set_value(server.url)
        at.number_input(key="ingest_start").set_value(1000)
        at.number_input(key="ingest_end").set_value(1013)
        at.button[0].click().run()
        jobs = JOBS.of(str(db.resolve()))
        assert jobs and jobs[0].label == "horizon ledgers 1000-1013"
        job = JOBS.get(str(db.resolve()), jobs[0].job_id).join(timeout=30)
    assert job.state == "done", job.message
    at.run()
    assert "Store holds 40 trades" in " ".join(texts(at, "caption"))
    runs = df(at, "n_quarantined", "params")
    assert runs["status"].tolist() == ["done"] and runs["n_trades"].tolist() == [40]


def test_models_reports_and_graph_lab_on_the_populated_store(monkeypatch, populated, tmp_path):
    db, s = populated
    assert "run `python -m engine train`" in " ".join(texts(open_page(monkeypatch, db, "models"), "warning"))
    lab = open_page(monkeypatch, db, "graph_lab")
    assert metrics(lab) == {"Snapshot rows": "not computed yet", "Embedding rows": "not computed yet"}
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    db2 = tmp_path / "reports.duckdb"
    with Store(db2) as st:
        st.record_report(fingerprint="ab" * 32, wallet=s.top_wallet, pair_id="P", fmt="pdf", path=str(pdf),
                         model_version="fixture-v1")
    at = open_page(monkeypatch, db2, "reports")
    assert df(at, "fingerprint")["fingerprint"].tolist() == ["ab" * 32]
    assert "1 report(s) generated" in texts(at, "caption")


def test_ring_graph_html_escapes_every_ledger_string():
    import polars as pl

    nodes = pl.DataFrame({"account_id": [EVIL_CODE, "GOOD"], "ring_id": ["<b>r</b>", None], "max_score": [80, None]})
    edges = pl.DataFrame({"source": [EVIL_CODE], "target": ["GOOD"], "kind": ["trade"], "n": [3], "volume": [10]})
    pos = graph_layout(["GOOD", EVIL_CODE], edges, seed=1)
    page = ring_graph_html(nodes, edges, pos)
    assert "<img src=x" not in page and "<b>r</b>" not in page
    # JSON inside <script> (pyvis encodes & as \u0026): the browser decodes it to &lt;img…&gt;, which the
    # tooltip's innerHTML shows as text
    assert '"title": "\\u0026lt;img src=x onerror=alert(1)\\u0026gt;\\nrisk: 80\\nring: \\u0026lt;b\\u0026gt;r' in page
    assert pos.equals(graph_layout(["GOOD", EVIL_CODE], edges, seed=1))  # seeded: same layout every time
