"""The whole investigation in Chromium, with no command line (issue #16), and a shared link kept on every page.

(a) Upload files on Ingest (one of them empty) -> Run analysis -> the top ring opens -> a wallet's trades and
    SHAP -> label it with the keyboard -> download the PDF and verify it (the service verify-report uses),
    then check it on the Reports page.
(b) Open a shared link with ?pair=...&window=7d, go through every page from the sidebar: the filters stay in
    the URL and the sidebar, and every count checked matches the store's own answer for that pair and window;
    a link naming a pair whose asset code is markup shows it as text and runs nothing.

Each test runs `streamlit run app.py` on its own copy of the fixture store (tests/app/fixture_store.py).
Screenshots of every page at 1440x1000 go to test-artifacts/ (gitignored). Nothing leaves loopback.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest

from engine.ring_order import order_rings, plural
from engine.services.report import verify_report_file
from storage.store import Store
from tests.app import chromium
from tests.app.fixture_store import EVIL_CODE, EVIL_PAIR, build_fixture_store, settings_for
from tests.factories import horizon_trade, write_jsonl

pytestmark = pytest.mark.browser
N_UPLOADED = 30


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    chromium.wait_idle(page)


def _dismiss_page_not_found(page) -> None:
    """A deep link served before app.py's router ran may show Streamlit's "Page not found" notice."""
    if page.get_by_text("Page not found").count():
        page.keyboard.press("Escape")
        page.get_by_text("Page not found").wait_for(state="detached", timeout=10_000)


def test_the_whole_investigation_in_the_browser(tmp_path):
    chromium.need_chromium()
    s = build_fixture_store(tmp_path / "fixture.duckdb")
    upload = tmp_path / "upload"
    upload.mkdir()
    good = write_jsonl(upload / "my trades.jsonl", [horizon_trade(i, ledger=7000 + i) for i in range(N_UPLOADED)])
    (upload / "empty.jsonl").write_bytes(b"")
    with chromium.running_app(s.db_path, s.home) as url, chromium.browser_page() as page:
        try:
            _journey(page, url, s, [good, upload / "empty.jsonl"])
        except Exception:
            chromium.shot(page, "failure-journey")
            raise
        assert page.dialogs == [] and chromium.off_loopback(page.requests) == [], chromium.off_loopback(page.requests)


def _journey(page, url: str, s, files: list[Path]) -> None:
    chromium.open_view(page, f"{url}/ingest", "Run history")
    page.get_by_text("Files", exact=True).first.click()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(f) for f in files])
    page.get_by_role("button", name="Ingest files").click()
    page.get_by_text("done in").first.wait_for(timeout=60_000)
    page.get_by_text("Not ingested: empty.jsonl: the file is empty").wait_for()
    page.get_by_text(f"Store holds {s.n_trades + N_UPLOADED:,} trades").wait_for()
    chromium.shot(page, "01-ingest-done")

    page.get_by_role("button", name="Run analysis").click()
    page.get_by_text("Analysis done").first.wait_for(timeout=240_000)
    chromium.wait_idle(page)
    chromium.shot(page, "02-ingest-analysed")

    _nav(page, "Rings")
    page.get_by_text("rings detected").first.wait_for()
    top = page.get_by_role("combobox", name="Ring", exact=True).input_value()
    graph = page.frame_locator("iframe").first
    graph.locator("canvas").first.wait_for()
    assert graph.locator("#legend").inner_text().startswith("risk ≥ 70")
    chromium.shot(page, "03-rings-top-ring")
    page.get_by_role("button", name="Open wallet page").click()
    page.get_by_text("Risk score", exact=True).wait_for()
    chromium.wait_idle(page)
    assert "ring_" in top

    page.get_by_text("from this wallet's point of view").first.wait_for()  # the Trades tab opens first
    page.get_by_text(re.compile(r"Download all [\d,]+ trades \(CSV\)")).first.wait_for()
    chromium.shot(page, "04-wallet-trades")
    page.get_by_role("tab", name="Explanation").click()
    page.get_by_text("How the risk score is made").wait_for()
    page.get_by_test_id("stPlotlyChart").first.scroll_into_view_if_needed()
    chromium.shot(page, "05-wallet-shap")

    who = page.get_by_role("combobox", name="Who is labelling?")
    who.click()
    who.fill("someone new")
    page.keyboard.press("Enter")
    page.get_by_label("New name").fill("Ana Analyst")
    page.get_by_role("button", name="Start labelling").click()
    page.get_by_text("Labelling as Ana Analyst").wait_for()
    page.get_by_role("heading", name="Wallet").first.click()  # focus out of any input: keys go to the page
    page.keyboard.press("w")
    page.get_by_text("1 label on record").wait_for()
    page.get_by_text("labelled wash").scroll_into_view_if_needed()
    chromium.shot(page, "06-wallet-labelled")

    page.get_by_role("button", name="Generate report").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download PDF").click()
    pdf = chromium.ARTIFACTS / "report.pdf"
    Path(download.value.path()).replace(pdf)
    verdict = verify_report_file(pdf, settings=settings_for(s.db_path))
    assert verdict.ok, verdict
    _nav(page, "Reports")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(pdf))
    page.get_by_text("Intact").first.scroll_into_view_if_needed()
    chromium.shot(page, "07-reports-verified")


def test_a_shared_link_keeps_its_filters_on_every_page(tmp_path):
    chromium.need_chromium()
    s = build_fixture_store(tmp_path / "fixture.duckdb")
    pair, window = s.top_pair, "7d"
    with Store(s.db_path, read_only=True) as store:  # what the pages must show, from the store itself
        counts = store.overview_counts(threshold=70, pair_id=pair, window_days=7)
        _, n_flagged_rows = store.top_flagged(threshold=70, pair_id=pair, window_days=7)
        rings = order_rings(store.rings(pair_id=pair, window_days=7))
        _, n_wallet_trades = store.wallet_trades(s.top_wallet, pair_id=pair, window_days=7, limit=1)
    with chromium.running_app(s.db_path, s.home) as url, chromium.browser_page() as page:
        try:
            _shared_link(page, url, s, pair, window, counts, n_flagged_rows, rings, n_wallet_trades)
        except Exception:
            chromium.shot(page, "failure-shared-link")
            raise
        assert page.dialogs == [] and chromium.off_loopback(page.requests) == [], chromium.off_loopback(page.requests)


def _filters_kept(page, pair: str, window: str) -> None:
    page.wait_for_function(f"location.search.includes('window={window}')", timeout=10_000)
    query = parse_qs(urlparse(page.url).query)
    assert query.get("pair") == [pair] and query.get("window") == [window], page.url


def _shared_link(page, url, s, pair, window, counts, n_flagged_rows, rings, n_wallet_trades) -> None:
    chromium.open_view(page, f"{url}/overview?pair={quote(pair, safe='')}&window={window}", "Top flagged")
    _dismiss_page_not_found(page)
    assert page.get_by_text("Deploy", exact=True).count() == 0  # client.toolbarMode = "viewer"
    titles = [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    assert {"Overview", "Ingest", "Rings", "Wallet", "Annotate", "Models", "Reports", "Graph Lab"} <= set(titles)
    for title in titles:
        _nav(page, title)
        _filters_kept(page, pair, window)
        sidebar = page.get_by_test_id("stSidebar")
        assert sidebar.get_by_role("combobox", name="Pair").input_value() == pair
        assert sidebar.get_by_role("radio", name=window).is_checked()
        if title == "Overview":
            metrics = page.get_by_test_id("stMetricValue").all_inner_texts()
            assert metrics[0] == f"{counts['n_trades']:,}" and metrics[3] == f"{counts['n_flagged']:,}"
            page.get_by_text(f"{n_flagged_rows:,} flagged rows").wait_for()
        elif title == "Rings":
            page.get_by_text(f"{plural(rings.height, 'ring')} detected with ring trades on").first.wait_for()
            page.frame_locator("iframe").first.locator("canvas").first.wait_for()  # the graph drawn, then the shot
        elif title == "Wallet":
            page.get_by_label("Wallet (G…)").fill(s.top_wallet)
            page.keyboard.press("Enter")
            page.get_by_text(f"{n_wallet_trades:,} trades on").first.wait_for()
            chromium.wait_idle(page)
            _filters_kept(page, pair, window)
        chromium.shot(page, f"1{titles.index(title)}-{title.lower().replace(' ', '_')}-filtered")
    assert rings.height >= 1
    # a shared link naming a pair whose asset code is markup: shown as text, nothing runs
    chromium.open_view(page, f"{url}/overview?pair={quote(EVIL_PAIR, safe='')}", "Benford first digit")
    page.get_by_role("heading", name=f"Benford first digit — {EVIL_PAIR}").wait_for()
    assert page.locator("img[src='x']").count() == 0 and EVIL_CODE not in page.title()
