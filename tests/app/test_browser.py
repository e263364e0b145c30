"""The workbench driven as a person would, in Debian chromium via Playwright.

Starts `streamlit run app.py` on a free port against the fixture store, polls
/_stcore/health, then: ingests a small ledger range from the replay server, opens
Overview, opens a ring, clicks through to a wallet, labels it, (generates and
downloads the PDF once the reports package provides it), and checks the Reports
page. A pair whose asset code is markup must show as text and run nothing.
Screenshots of every page go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from storage.store import Store
from tests.app.fixture_store import EVIL_CODE, EVIL_PAIR, build_fixture_store
from tests.factories import horizon_trade, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.browser
EXPECTED: dict = {}  # filled by the app_url fixture from the fixture store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make system-deps)")
    d = tmp_path_factory.mktemp("browser")
    s = build_fixture_store(d / "fixture.duckdb")
    with Store(s.db_path, read_only=True) as store:  # what the pages must show, read from the store itself
        _, n_flagged_rows = store.top_flagged(threshold=70)
        first_member = store.ring_members(s.ring_id).row(0, named=True)
    EXPECTED.update(n_trades=s.n_trades, n_flagged_rows=n_flagged_rows, ring_id=s.ring_id,
                    member_score=first_member["max_score"], top_pair=s.top_pair)  # fmt: skip
    port = _free_port()
    env = {**os.environ, "LEDGERLENS_DB": str(d / "fixture.duckdb"), "LEDGERLENS_HOME": str(d / "home"),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    from engine.ingest.replay import ReplayServer

    folder = tmp_path_factory.mktemp("horizon")
    write_jsonl(folder / "trades.jsonl", [horizon_trade(i, ledger=3000 + i // 2) for i in range(20)])
    with ReplayServer(folder) as server:
        yield server


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        p = context.new_page()
        p.set_default_timeout(30_000)
        p.dialogs = []  # any alert() means markup from the ledger ran
        p.on("dialog", lambda dlg: (p.dialogs.append(dlg.message), dlg.dismiss()))
        yield p
        browser.close()


def _open(page, url: str, ready_text: str) -> None:
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for()
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_analyst_flow(page, app_url, replay):
    try:
        _analyst_flow(page, app_url, replay)
    except Exception:
        _shot(page, "failure")
        raise


def _analyst_flow(page, app_url, replay):
    # ingest a small range from the replay server, in the background
    _open(page, f"{app_url}/ingest", "Run history")
    page.get_by_text("Horizon", exact=True).first.click()
    page.get_by_label("Horizon URL").fill(replay.url)
    page.get_by_label("Start ledger").fill("3000")
    page.get_by_label("End ledger").fill("3009")
    page.get_by_role("button", name="Start ingest").click()
    page.get_by_text("done in").first.wait_for(timeout=60_000)
    page.get_by_text(f"Store holds {EXPECTED['n_trades'] + 20:,} trades").wait_for()
    _shot(page, "01-ingest")

    _open(page, f"{app_url}/overview", "Top flagged")
    page.get_by_text(f"{EXPECTED['n_flagged_rows']:,} flagged rows").wait_for()
    assert page.get_by_test_id("stMetricValue").first.inner_text() == f"{EXPECTED['n_trades'] + 20:,}"
    _shot(page, "02-overview")

    # a pair whose asset code is markup: shown as text, nothing runs
    _open(page, f"{app_url}/overview?pair={quote(EVIL_PAIR)}", "Benford first digit")
    page.get_by_role("heading", name=f"Benford first digit — {EVIL_PAIR}").wait_for()
    assert page.locator("img[src='x']").count() == 0 and page.dialogs == []
    _shot(page, "03-overview-markup-pair")

    _open(page, f"{app_url}/rings?ring={EXPECTED['ring_id']}", "rings detected")
    frame = page.frame_locator("iframe").first
    frame.locator("canvas").first.wait_for()
    _shot(page, "04-rings")
    page.get_by_role("button", name="Open wallet page").click()
    page.get_by_text("Risk score", exact=True).wait_for()
    assert str(EXPECTED["member_score"]) in page.get_by_test_id("stMetricValue").first.inner_text()
    _shot(page, "05-wallet")

    page.get_by_text("wash", exact=True).click()
    page.get_by_label("Note").fill("loop with funding siblings")
    page.get_by_role("button", name="Save label").click()
    page.get_by_text("1 label(s) on record").wait_for()
    _shot(page, "06-wallet-labelled")

    page.get_by_role("button", name="Generate report").click()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download PDF").click()
    pdf = Path(dl.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")
    shutil.copy(dl.value.path(), ARTIFACTS / "report.pdf")
    _open(page, f"{app_url}/reports", "report(s) generated")
    page.get_by_text("1 report(s) generated").wait_for()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(ARTIFACTS / "report.pdf"))
    page.get_by_text("Intact").first.wait_for()
    _shot(page, "07-reports")


def test_every_page_renders(page, app_url):
    for i, (path, text) in enumerate([("annotate", "Annotate"), ("models", "Models"), ("reports", "Reports"),
                                      ("graph_lab", "Graph Lab")]):
        _open(page, f"{app_url}/{path}", text)
        _shot(page, f"1{i}-{path}")
    assert page.dialogs == [] and EVIL_CODE not in page.title()


def test_a_shared_link_keeps_its_filters_across_pages_and_analysis_runs_in_the_app(page, app_url):
    try:
        _shared_link_flow(page, app_url)
    except Exception:
        _shot(page, "failure-shared-link")
        raise


def _shared_link_flow(page, app_url):
    pair = EXPECTED["top_pair"]
    _open(page, f"{app_url}/overview?pair={quote(pair, safe='')}&window=7d", "Top flagged")
    # after the earlier deep links Streamlit may say "Page not found ... Running the app's main page" (it ran
    # Overview, the default page): close that notice, it blocks the page behind it
    if page.get_by_text("Page not found").count():
        page.keyboard.press("Escape")
        page.get_by_text("Page not found").wait_for(state="detached", timeout=10_000)
    assert page.get_by_text("Deploy", exact=True).count() == 0  # client.toolbarMode = "viewer"
    page.locator('[data-testid="stSidebarNav"] a', has_text="Rings").click()
    page.get_by_text("rings detected with ring trades on").first.wait_for()
    page.wait_for_function("location.search.includes('window=7d')", timeout=10_000)
    assert "pair=" in page.url and "/rings" in page.url
    _shot(page, "20-rings-filtered")
    page.locator('[data-testid="stSidebarNav"] a', has_text="Overview").click()
    page.get_by_role("button", name="Run analysis").click()
    page.get_by_text("Analysis done").first.wait_for(timeout=180_000)
    page.wait_for_function("location.search.includes('window=7d')", timeout=10_000)
    _shot(page, "21-overview-analysed")
    assert page.dialogs == []
