"""The populated store the app tests and the browser test share: the demo store (engine.services.demo).

engine.services.demo.build_demo_store (a simulated market ingested through replay + stellar-sdk, rings,
features, a model trained on the market's ground truth, scores), plus ONE trade of an asset
whose code is markup (`<img src=x onerror=alert(1)>`) ingested through the normal file path
(tests.factories + engine.ingest.files), so every page's escaping is exercised.

The store is built once per process into a template directory and copied for each caller
(the same seed gives the same store; copying keeps the test files fast).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.services.demo import build_demo_store
from engine.settings import Settings
from storage.store import Store
from tests.conftest import ROOT
from tests.factories import ISSUER, account, horizon_trade

EVIL_CODE = "<img src=x onerror=alert(1)>"
EVIL_PAIR = f"{EVIL_CODE}:{ISSUER}/XLM:native"
SEED, SCALE, DAYS = 42, 0.05, 7
DB_NAME, HOME_NAME = "fixture.duckdb", "home"  # the app tests run with LEDGERLENS_HOME = <db dir>/home
_template: dict[str, Path] = {}


@dataclass(frozen=True)
class FixtureSummary:
    db_path: Path
    home: Path
    n_trades: int
    n_flagged: int  # wallets whose latest score on some pair is >= 70
    model_version: str
    top_wallet: str  # the riskiest wallet that belongs to a ring
    top_score: int
    top_pair: str  # the pair of its highest score
    ring_id: str  # its ring (the smallest id when in several)


def settings_for(db_path: Path) -> Settings:
    """The settings the app runs with against `db_path` in the tests."""
    return Settings(home=Path(db_path).parent / HOME_NAME, db=Path(db_path))


def build_fixture_store(db_path: Path, work_dir: Path | None = None) -> FixtureSummary:
    """Create the fixture store at `db_path` (models etc. under <its dir>/home) and describe it.

    `work_dir` is accepted for older callers and unused."""
    template = _template.get("dir") or _build_template()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / DB_NAME, db_path)
    shutil.copytree(template / HOME_NAME, db_path.parent / HOME_NAME, dirs_exist_ok=True)
    return describe(db_path)


def _build_template() -> Path:
    template = Path(tempfile.mkdtemp(prefix="ledgerlens-fixture-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    db = template / DB_NAME
    build_demo_store(db, seed=SEED, scale=SCALE, days=DAYS, market_dir=template / HOME_NAME / "demo_market",
                     settings=settings_for(db))  # fmt: skip
    with Store(db) as store:
        store.write_batch(run_id=None, trades=_evil_trade())
    _template["dir"] = template
    return template


def _evil_trade() -> pl.DataFrame:
    """A stored trade of XLM for an asset whose code is markup, between two accounts outside the demo market.

    Ingest now refuses such a code (Stellar allows [A-Za-z0-9] only), so it is written straight
    into the store, as a store filled before that check could hold it: the pages must escape it."""
    import json

    from engine.ingest.horizon_records import decode_trades

    rec = horizon_trade(5000, ledger=2100)
    rec["counter_asset_code"], rec["base_account"], rec["counter_account"] = "EVIL", account(1), account(2)
    trades, bad = decode_trades([json.dumps(rec)], source="files", locations=["evil.jsonl:1"])
    assert bad.height == 0, bad
    swap = [pl.col(c).str.replace("EVIL:", f"{EVIL_CODE}:", literal=True) for c in ("pair_id", "sold_asset", "bought_asset")]
    return trades.with_columns(swap)


def describe(db_path: Path) -> FixtureSummary:
    """The figures the tests expect, read from the store itself."""
    with Store(db_path, read_only=True) as store:
        latest = store.load_derived("scores_latest")
        members = store.load_derived("ring_members").group_by("account_id").agg(pl.min("ring_id"))
        n_trades = store.counts()["trades"]
    top = (
        latest.join(members, left_on="wallet", right_on="account_id", suffix="_member")
        .sort(["score", "wallet", "pair_id"], descending=[True, False, False])
        .row(0, named=True)
    )
    n_flagged = latest.filter(pl.col("score") >= 70).get_column("wallet").n_unique()
    return FixtureSummary(db_path, db_path.parent / HOME_NAME, n_trades, n_flagged, top["model_version"],
                          top["wallet"], top["score"], top["pair_id"], top["ring_id_member"])  # fmt: skip


def open_page(monkeypatch, db: Path, page: str, **params):
    """The app against `db` (settings as `settings_for`) on `page`, rendered, with query params."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEDGERLENS_DB", str(db))
    monkeypatch.setenv("LEDGERLENS_HOME", str(settings_for(db).home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
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


def ingest_range_on_page(at, url: str, *, start: int = 1000, end: int = 1013):
    """On an open Ingest page (AppTest): start a Horizon ingest of ledgers start..end from `url`; returns the job."""
    from engine.services.ingest import JOBS

    at.radio(key="ingest_source").set_value("Horizon").run()
    at.text_input(key="ingest_url").set_value(url)
    at.number_input(key="ingest_start").set_value(start)
    at.number_input(key="ingest_end").set_value(end)
    at.button[0].click().run()
    key = str(Path(os.environ["LEDGERLENS_DB"]).resolve())
    return JOBS.get(key, JOBS.of(key, owner=at.session_state["session_owner"])[0].job_id)
