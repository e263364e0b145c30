"""What the browser tests share: Debian chromium through Playwright, and the app started as `streamlit run`.

As Streamlit's own e2e tests do: start the app on a free port, poll /_stcore/health, drive Chromium.
Every request the page makes is recorded (`page.requests`), so a test can check that nothing leaves loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
VIEWPORT = {"width": 1440, "height": 1000}
LOCAL_SCHEMES = ("data", "blob", "about")


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make system-deps)")


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


@contextmanager
def running_app(db: Path, home: Path, **env: str) -> Iterator[str]:
    """`streamlit run app.py` against `db` on a free loopback port; yields its base URL."""
    port = _free_port()
    environ = {**os.environ, "LEDGERLENS_DB": str(db), "LEDGERLENS_HOME": str(home), "PYTHONPATH": str(ROOT), **env}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def browser_page() -> Iterator:
    """A Chromium page at 1440x1000 (downloads accepted) that records every request URL and any dialog."""
    from playwright.sync_api import sync_playwright

    need_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.requests, page.dialogs = [], []  # any alert() means markup from the ledger ran
        context.on("request", lambda req: page.requests.append(req.url))
        page.on("dialog", lambda dlg: (page.dialogs.append(dlg.message), dlg.dismiss()))
        try:
            yield page
        finally:
            browser.close()


def off_loopback(urls: list[str]) -> list[str]:
    """The requests that went anywhere but this machine."""
    return [u for u in urls if urlparse(u).scheme not in LOCAL_SCHEMES and urlparse(u).hostname not in
            ("127.0.0.1", "localhost", "::1")]  # fmt: skip


def wait_idle(page) -> None:
    """Until Streamlit's "running" indicator is gone."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def open_view(page, url: str, ready_text: str) -> None:
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for()
    wait_idle(page)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
