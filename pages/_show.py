"""How pages show things: the page files, errors (guard), ledger text made safe, units, short ids, hints."""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import polars as pl
import streamlit as st

from storage.errors import UserFacingError

log = logging.getLogger("ledgerlens.app")
PAGES = {
    "ingest": "pages/ingest.py", "overview": "pages/overview.py", "rings": "pages/rings.py",
    "wallet": "pages/wallet.py", "annotate": "pages/annotate.py", "models": "pages/models.py",
    "reports": "pages/reports.py", "graph_lab": "pages/graph_lab.py",
    "live": "pages/live.py",
}  # fmt: skip


def esc(text: object) -> str:
    """Ledger text made safe for st.markdown: HTML-escaped and with markdown syntax neutralised.

    Quotes stay quotes (quote=False): no attribute is written here, and an entity such as &#x27; would show
    literally once its '#' is escaped for markdown."""
    s = html.escape(str(text), quote=False)
    for ch in "\\`*_[]()#|<>!~$":
        s = s.replace(ch, "\\" + ch)
    return s


def in_units(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Stroop columns as asset units (1 unit = 10^7 stroops), for display only."""
    return frame.with_columns([pl.col(c) / 10_000_000 for c in columns])


def units_column(label: str):
    """Column config of a volume shown in asset units."""
    return st.column_config.NumberColumn(f"{label} (units)", format="localized")


def xlm_column(label: str):
    """Column config of an XLM volume (XLM stroops shown in XLM; the XLM legs of the trades it sums)."""
    return st.column_config.NumberColumn(f"{label} (XLM)", format="localized",
                                         help="XLM leg of each trade (the pair's own price); – when no leg is XLM")


def short(account: str | None) -> str:
    if not account:
        return "–"
    return account if len(account) <= 14 else f"{account[:6]}…{account[-6:]}"


def share_link() -> None:
    """The view's address with its filters (and wallet / ring), in a code block: it has a copy button."""
    base = (st.context.url or "").split("?")[0]
    query = urlencode({k: st.query_params.get(k) for k in st.query_params})
    st.sidebar.caption("Link to this view (filters included)")
    st.sidebar.code(f"{base}?{query}" if query else base or "(this page)", language=None)


def empty_store_hint() -> None:
    st.info("The store holds no trades yet. Open **Ingest** to load a ledger range from Horizon, files or the "
            "demo market, then press **Run analysis**.")
    st.page_link(PAGES["ingest"], label="Go to Ingest", icon=":material/download:")


def not_computed(what: str) -> None:
    """What is missing and the in-app step that makes it. Never a CLI command: while the app runs it holds the
    store open read-write, so the CLI's commands would be refused ("open read-write in another process")."""
    st.warning(f"{what} not computed yet: press **Run analysis** on Overview (rings, features, scores).")
    st.page_link(PAGES["overview"], label="Go to Overview", icon=":material/dashboard:")


def frame_or_none(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    return frame if frame is not None and frame.height else None


@contextmanager
def guard() -> Iterator[None]:
    """User-facing errors -> st.error + stop; anything else -> logged with an incident id."""
    try:
        yield
    except UserFacingError as exc:
        st.error(str(exc))
        st.stop()
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unexpected error (incident %s)", incident)
        st.error(f"Something went wrong on our side (incident {incident}). The details are in the server log; "
                 "retry, and quote the incident id if it happens again.")
        st.stop()
