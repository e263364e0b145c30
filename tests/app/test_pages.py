"""AppTest for every page, on an empty store and on the populated fixture store."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.drawing import graph_layout
from engine.ring_graph import ring_graph_html
from engine.ring_order import order_rings, plural
from engine.scoring import combined_score, evidence_points
from engine.services.ingest import JOBS
from storage.store import Store
from tests.app.fixture_store import EVIL_CODE, EVIL_PAIR, build_fixture_store, open_page

PAGES = ("overview", "ingest", "rings", "wallet", "annotate", "models", "reports", "graph_lab")


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """(db, FixtureSummary, expected): the demo fixture store and what the store's own queries say
    (read before any page opens the file)."""
    d = tmp_path_factory.mktemp("populated")
    s = build_fixture_store(d / "fixture.duckdb")
    with Store(s.db_path, read_only=True) as store:
        expected = {
            "counts": store.overview_counts(threshold=70),
            "top": store.top_flagged(threshold=70, limit=25),
            "volumes": store.pair_volumes(limit=15),
            "rings": store.rings(),
            "ring": store.neighbourhood(ring_id=s.ring_id),
            "members": store.ring_members(s.ring_id),
            "expanded": store.neighbourhood(ring_id=s.ring_id, expand=(s.top_wallet,)),
            "wallet": store.wallet_scores(s.top_wallet),
            "counterparties": store.counterparties(s.top_wallet, limit=100),
            "lineage": store.funding_lineage(s.top_wallet),
            "features": store.load_derived("features"),
        }
    return s.db_path, s, expected


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
        "annotate": "press **Run analysis** on Overview", "models": "press **Train a model** below",
        "reports": "No report yet", "ingest": "Store holds 0 trades", "graph_lab": "stop the app and run",
    }[page]  # fmt: skip
    assert expected in shown
    # while the app runs it holds the store: a hint naming a CLI command would send the analyst into a refusal
    assert "python -m engine" not in shown
    if page == "overview":
        assert metrics(at) == {"Trades": "0", "Wallets": "0", "Pairs": "0", "Flagged wallets": "0"}


# -- populated store (the demo store + one markup-named asset) ----------------------------------------------


def _edge_caption(nodes, edges) -> str:
    n_trade, n_funding = (edges.filter(edges["kind"] == k).height for k in ("trade", "funding"))
    return f"{plural(nodes.height, 'wallet')}, {plural(n_trade, 'trade edge')}, {plural(n_funding, 'funding edge')}"


def test_overview_counts_table_and_volumes(monkeypatch, populated):
    db, s, x = populated
    at = open_page(monkeypatch, db, "overview")
    c = x["counts"]
    assert c["n_trades"] == s.n_trades and c["n_flagged"] == s.n_flagged > 0  # the store agrees with itself
    assert metrics(at) == {"Trades": f"{s.n_trades:,}", "Wallets": f"{c['n_wallets']:,}", "Pairs": str(c["n_pairs"]),
                           "Flagged wallets": str(s.n_flagged)}  # fmt: skip
    top, total = x["top"]
    shown = at.dataframe(key="top_flagged").value
    assert list(shown["wallet"]) == top["wallet"].to_list() and shown["score"].iloc[0] == s.top_score
    assert f"{total:,} flagged rows" in texts(at, "caption")
    vol = df(at, "reported_xlm")
    assert vol["pair_id"].tolist() == x["volumes"]["pair_id"].to_list()
    assert "reported_volume" not in vol.columns  # base units of different assets are never shown side by side
    assert vol["reported_xlm"].fillna(-1).tolist() == pytest.approx(
        [-1 if v is None else v / 10**7 for v in x["volumes"]["reported_xlm"]])  # null: a pair without XLM
    ring_xlm = float((vol["reported_xlm"] - vol["without_rings_xlm"]).fillna(0).sum())  # one unit: XLM, summable
    assert x["volumes"]["ring_volume"].sum() > 0 and ring_xlm > 0  # detected rings trade in the demo market


def test_overview_sort_filter_and_pagination_are_done_in_the_store(monkeypatch, populated):
    db, s, x = populated
    at = open_page(monkeypatch, db, "overview")
    at.toggle(key="ov_desc").set_value(False).run()
    ascending = at.dataframe(key="top_flagged").value["score"].tolist()
    assert ascending == sorted(ascending) and ascending[0] >= 70
    at.text_input(key="ov_prefix").set_value(s.top_wallet[:12]).run()
    rows = at.dataframe(key="top_flagged").value
    n_top = int((x["wallet"]["score"] >= 70).sum())
    assert set(rows["wallet"]) == {s.top_wallet} and len(rows) == n_top
    assert f"{n_top} flagged rows" in texts(at, "caption")


def test_overview_escapes_a_markup_pair_in_headings(monkeypatch, populated):
    db, _, _ = populated
    at = open_page(monkeypatch, db, "overview", pair=EVIL_PAIR)
    heading = [h for h in texts(at, "subheader") if h.startswith("Benford")][0]
    assert "<img" not in heading and "&lt;img" in heading
    assert metrics(at)["Trades"] == "1"
    assert all("<img" not in m for m in texts(at, "markdown") + texts(at, "caption"))


def test_rings_lists_the_ring_expands_neighbours_and_opens_a_wallet(monkeypatch, populated):
    db, s, x = populated
    at = open_page(monkeypatch, db, "rings", ring=s.ring_id)
    table = df(at, "ring_id", "closed_loop_share")
    assert table["ring_id"].tolist() == order_rings(x["rings"])["ring_id"].to_list() and len(table) == 5
    assert f"{len(table):,} rings detected" in texts(at, "caption")
    assert any(c.startswith(_edge_caption(*x["ring"])) for c in texts(at, "caption"))
    page = at.get("iframe")[0].proto.srcdoc
    assert "physics" in page and json.dumps(s.top_wallet) in page
    assert "stroops" not in page and " XLM)" in page  # edge tooltips in XLM
    members = at.dataframe(key=f"members_{s.ring_id}").value
    stored = x["members"]
    assert "volume" not in members.columns and members["account_id"].tolist() == stored["account_id"].to_list()
    assert members["volume_xlm"].tolist() == pytest.approx([v / 10**7 for v in stored["volume_xlm"]])
    at.multiselect(key=f"expand_{s.ring_id}").set_value([s.top_wallet]).run()
    nodes, edges = x["expanded"]
    assert nodes.height > x["ring"][0].height
    assert any(c.startswith(_edge_caption(nodes, edges)) for c in texts(at, "caption"))
    members = at.selectbox(key="ring_open_pick").options
    assert s.top_wallet in members and len(members) == x["ring"][0]["ring_id"].is_not_null().sum()
    # the button's st.switch_page is exercised in the browser flow (AppTest keeps its own page on a script rerun)
    at.switch_page("pages/wallet.py")
    at.query_params["wallet"] = s.top_wallet
    at.run()
    assert metrics(at)["Risk score"] == str(s.top_score)


def test_a_ring_graph_draws_the_funder_its_members_share(tmp_path):
    s = build_fixture_store(tmp_path / "funders.duckdb")
    with Store(s.db_path, read_only=True) as store:
        drawn = 0
        for ring_id in store.rings()["ring_id"]:
            nodes, edges = store.neighbourhood(ring_id=ring_id)
            members = set(nodes.filter(nodes["ring_id"].is_not_null())["account_id"])
            funding = edges.filter(edges["kind"] == "funding")
            for funder in set(funding["source"]) - members:  # a node only because it funds two or more members
                assert len(set(funding.filter(funding["source"] == funder)["target"]) & members) >= 2
                drawn += 1
    assert drawn >= 1  # the demo's rings share funders


def test_wallet_shows_score_lineage_rings_and_takes_a_label(monkeypatch, populated):
    db, s, x = populated
    at = open_page(monkeypatch, db, "wallet", wallet=s.top_wallet)
    first = x["wallet"].row(0, named=True)
    assert at.selectbox(key="wallet_pair").value == s.top_pair == first["pair_id"]
    m = metrics(at)
    assert (m["Risk score"], m["Confidence"], m["Ring"]) == (str(s.top_score), str(first["confidence"]), s.ring_id)
    assert m["Benford flag"] == ("yes" if first["benford_flag"] else "no")
    assert s.ring_id in df(at, "ring_id", "closed_loop_share")["ring_id"].tolist()
    ancestors, siblings = x["lineage"]
    assert df(at, "funder", "created_at")["account_id"].tolist() == siblings["account_id"].to_list()
    assert df(at, "n_sold_to")["n_trades"].sum() == x["counterparties"]["n_trades"].sum() > 0
    assert at.button(key="label_wash").disabled  # labelling waits for the session's annotator
    at.selectbox(key="wallet_annotator_pick").set_value("someone new…").run()
    at.text_input(key="wallet_annotator_new").set_value("ana")
    at.button(key="wallet_annotator_start").click().run()
    assert "Labelling as **ana** (this browser session)" in texts(at, "caption")
    at.text_input(key="label_note").set_value("closed loop with siblings")
    at.button(key="label_wash").click().run()
    assert at.text_input(key="label_note").value == ""
    assert "1 label on record" in texts(at, "caption")
    labels = df(at, "annotator_id")
    assert labels["label"].tolist() == ["wash"] and labels["note"].tolist() == ["closed loop with siblings"]
    assert labels["annotator_id"].tolist() == ["ana"]


def test_wallet_shap_waterfall_adds_up_to_the_members_mean_score(monkeypatch, populated):
    from engine.explain import explain_wallet
    from engine.services.models import load_model as load_current_model
    from tests.app.fixture_store import settings_for

    db, s, x = populated
    at = open_page(monkeypatch, db, "wallet", wallet=s.top_wallet)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    fall = next(t for t in spec["data"] if t["type"] == "waterfall")
    loaded = load_current_model(settings_for(db))
    assert loaded.version == s.model_version  # the demo trained the model that scored the store
    expl = explain_wallet(loaded, x["features"], s.top_wallet, s.top_pair, top=len(loaded.feature_columns))
    # base + every contribution (12 largest + "other N features") = the mean of the member scores
    assert fall["base"] == pytest.approx(expl.base_value)
    assert fall["base"] + sum(fall["x"]) == pytest.approx(float(np.mean(expl.member_scores)), abs=1e-6)
    assert len(fall["x"]) == 14 and fall["y"][12] == f"other {len(loaded.feature_columns) - 12} features"
    assert fall["y"][0] == expl.contributions[0].feature
    # the model's probability is the members' median (outlier trimmed); the risk score on the page
    # adds the mechanism evidence points of the same feature row (engine.scoring)
    row = x["features"].filter((pl.col("wallet") == s.top_wallet) & (pl.col("pair_id") == s.top_pair))
    combined = combined_score(np.array([expl.score / 100]), evidence_points(row))[0]
    assert np.floor(10 * combined + 0.5) / 10 == s.top_score  # one decimal
    shap_rows = df(at, "shap", "description")
    assert shap_rows["feature"].tolist() == [c.feature for c in expl.contributions[:15]]
    # the page spells the score out: model points + mechanism points = total -> the score shown
    parts = df(at, "part", "points", "reading").set_index("part")["points"]
    assert parts[["model", "closed loops", "own ring", "funding kin, flat", "weak signals"]].sum() == pytest.approx(parts["total"])
    assert parts["model"] == pytest.approx(0.8 * expl.score)
    assert np.floor(10 * parts["score"] + 0.5) / 10 == s.top_score


def test_wallet_escapes_an_address_typed_by_the_user(monkeypatch, populated):
    db, _, _ = populated
    at = open_page(monkeypatch, db, "wallet", wallet=EVIL_CODE)
    assert texts(at, "warning") and all("<img" not in w for w in texts(at, "warning"))
    assert "&lt;img" in texts(at, "warning")[0]


def test_ingest_loads_the_demo_market_into_an_empty_store(monkeypatch, tmp_path):
    db = tmp_path / "first-start.duckdb"
    at = open_page(monkeypatch, db, "ingest")
    at.radio(key="ingest_source").set_value("Demo market").run()
    at.select_slider(key="demo_scale").set_value(0.02).run()
    at.button(key="demo_go").click().run()
    jobs = JOBS.of(str(db.resolve()))
    assert jobs[0].label == "demo market (scale 0.02)"
    job = JOBS.get(str(db.resolve()), jobs[0].job_id).join(timeout=60)
    assert job.state == "done", job.message
    assert "steps: rings, features, train, score" in job.message
    at.run()
    n_trades = int(job.message.split(" trades")[0].split()[-1].replace(",", ""))
    assert f"Store holds {n_trades:,} trades" in " ".join(texts(at, "caption"))
    overview = open_page(monkeypatch, db, "overview")
    assert metrics(overview)["Trades"] == f"{n_trades:,}"
    assert int(metrics(overview)["Flagged wallets"]) > 0
    assert (tmp_path / "home" / "models" / "CURRENT").exists()  # the model lives under the app's models_dir


def test_models_page_shows_the_registry_metrics_curves_and_drift(monkeypatch, populated):
    from models.registry import current_version, list_versions

    db, s, x = populated
    models_dir = s.home / "models"
    at = open_page(monkeypatch, db, "models")
    assert metrics(at)["Current model"] == current_version(models_dir) == s.model_version
    assert df(at, "version", "created_at", "current")["version"].tolist() == [v["version"] for v in list_versions(models_dir)]
    meta = json.loads((models_dir / s.model_version / "model_metadata.json").read_text())
    assert meta["params"]["n_estimators"] == 40 and meta["label_source"] == "simulator"
    table = df(at, "model", "pr_auc").set_index("model")
    assert table.loc["ensemble", "roc_auc"] == pytest.approx(meta["metrics"]["ensemble"]["roc_auc"])
    assert table.loc["baseline", "pr_auc"] == pytest.approx(meta["metrics"]["baseline"]["pr_auc"])
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    pr = {t["name"]: t for t in charts[0]["data"]}
    assert set(pr) == {"ensemble", "baseline"}
    assert pr["ensemble"]["y"] == meta["pr_curves"]["ensemble"]["precision"]
    assert pr["baseline"]["x"] == meta["pr_curves"]["baseline"]["recall"]
    bars = charts[1]["data"][0]
    top = max(meta["feature_importance"], key=meta["feature_importance"].get)
    assert bars["y"][0] == top and bars["x"][0] == pytest.approx(meta["feature_importance"][top])
    drift = df(at, "psi", "status")
    assert len(drift) == len(meta["feature_columns"])
    assert (drift["psi"].fillna(0) < 0.1).all()  # the store's features are the training data: no drift
    assert f"0 of {len(drift)} features drifted" in " ".join(texts(at, "caption"))


def test_models_page_retrains_and_promotes_or_archives(monkeypatch, tmp_path):
    from models.registry import current_version, list_versions

    db = tmp_path / "retrain.duckdb"
    s = build_fixture_store(db)
    at = open_page(monkeypatch, db, "models")
    at.number_input(key="retrain_trees").set_value(20)
    at.button(key="retrain").click().run()
    assert not at.exception, [e.value for e in at.exception]
    versions = list_versions(s.home / "models")
    assert len(versions) == 2
    new = versions[0]["version"]
    done = " ".join(texts(at, "success") + texts(at, "warning"))
    assert at.get("progress")[0].proto.value == 100
    if current_version(s.home / "models") == new:  # promoted, and the store re-scored with it
        assert f"retrained and promoted {new}" in done and f"vs {s.model_version}" in done
        from pages._ui import open_store

        latest = open_store(str(db.resolve())).wallet_scores(s.top_wallet)
        assert set(latest["model_version"].to_list()) == {new}
    else:  # a regression beyond 0.01 AUC: archived, the old one stays current
        assert "NOT promoted" in done and current_version(s.home / "models") == s.model_version


def test_reports_lists_a_recorded_report(monkeypatch, populated, tmp_path):
    _, s, _ = populated
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    db2 = tmp_path / "reports.duckdb"
    with Store(db2) as st:
        st.record_report(fingerprint="ab" * 32, wallet=s.top_wallet, pair_id="P", fmt="pdf", path=str(pdf),
                         model_version="fixture-v1")
    at = open_page(monkeypatch, db2, "reports")
    assert df(at, "fingerprint")["fingerprint"].tolist() == ["ab" * 32]
    assert "1 report generated" in texts(at, "caption")


def test_ring_graph_html_escapes_every_ledger_string():
    import polars as pl

    nodes = pl.DataFrame({"account_id": [EVIL_CODE, "GOOD"], "ring_id": ["</script><b>r</b>", None],
                          "max_score": [80, None]})
    edges = pl.DataFrame({"source": [EVIL_CODE], "target": ["GOOD"], "kind": ["trade"], "n": [3], "volume": [10]})
    pos = graph_layout(["GOOD", EVIL_CODE], edges, seed=1)
    page = ring_graph_html(nodes, edges, pos)
    assert "<img src=x" not in page and "<b>r</b>" not in page and "</script><b>" not in page
    # the data is JSON inside <script> with markup characters as \u escapes; the page shows it as text only
    assert '"ring": "\\u003c/script\\u003e\\u003cb\\u003er' in page
    assert ".innerHTML" not in page.split("<script>")[-1]
    assert "http://" not in page.split("<script>")[-1] and "cdn." not in page
    assert pos.equals(graph_layout(["GOOD", EVIL_CODE], edges, seed=1))  # seeded: same layout every time


def test_wallet_page_and_report_give_the_same_shap_explanation(monkeypatch, populated, tmp_path):
    """One SHAP road: the Wallet page and the JSON / PDF report explain a wallet's score with the same
    contributions, base and member scores, from the same verified model held in one cache."""
    from engine.services import models
    from engine.services.report import generate_report, verify_report_file
    from reports.canonical import parse_published
    from reports.verify import envelope_of
    from tests.app.fixture_store import settings_for

    db, s, _ = populated
    at = open_page(monkeypatch, db, "wallet", wallet=s.top_wallet)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    fall = next(t for t in spec["data"] if t["type"] == "waterfall")
    on_page = df(at, "shap", "description")
    settings = settings_for(db)
    loads = models._loaded.cache_info()
    with Store(db) as store:
        for fmt in ("json", "pdf"):
            made = generate_report(store, wallet=s.top_wallet, pair_id=s.top_pair, fmt=fmt, settings=settings,
                                   out=tmp_path / f"report.{fmt}")  # fmt: skip
            assert verify_report_file(made.path, settings=settings).ok
            published, problems = parse_published(envelope_of(made.path.read_bytes(), fmt))
            assert not problems
            shap = published.report["attributions"]["shap"]
            assert shap["available"] and shap["model_version"] == s.model_version
            assert shap["base_value"] == pytest.approx(fall["base"])
            rows = shap["contributions"]
            assert [r["feature"] for r in rows] == on_page["feature"].tolist()[: len(rows)] and len(rows) == 10
            assert [r["shap"] for r in rows] == pytest.approx(on_page["shap"].tolist()[:10])
            assert [r["population_percentile"] for r in rows] == pytest.approx(
                on_page["population_percentile"].tolist()[:10], nan_ok=True)
    after = models._loaded.cache_info()
    assert after.misses == loads.misses  # the reports reused the model the page verified and loaded


def test_the_shipped_config_hides_deploy_and_the_developer_menu():
    import tomllib

    from tests.conftest import ROOT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"
