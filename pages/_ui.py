"""What every page shares: settings, the cached Store, cached typed reads, filters, errors.

Not a page (app.py's st.navigation lists the pages explicitly). Rules kept here:
- `st.cache_resource` holds only the Store (one per DuckDB path); verified models and their SHAP
  explainers live in the one model cache of engine.services.models (the reports share it);
- query results go through `st.cache_data`, keyed by small values: the store path,
  the store's data version (changes after ingest, scoring, labels, reports), the
  query (a Store method called by name) and its arguments;
- session_state holds widget selections only; shareable filters live in st.query_params.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st

from engine.settings import Settings, load_settings
from pages import _routing, _show
from storage.store import Store

T = TypeVar("T")
# Settings app.py read (every run: same environment, same values). Process-wide, not per thread: fragment
# reruns do not run app.py.
_current: dict[str, Settings] = {}

ALL_PAIRS = "(all pairs)"
WINDOWS = {"all": None, "24h": 1, "7d": 7, "30d": 30, "90d": 90}


@dataclass(frozen=True)
class Filters:
    pair_id: str | None
    window: str
    window_days: int | None


def set_settings(settings: Settings) -> None:
    _current["settings"] = settings


def settings() -> Settings:
    _routing.leave_pages_directory_routing()
    s = _current.get("settings")
    if s is None:  # a page script run on its own
        s = load_settings()
        set_settings(s)
    return s


@st.cache_resource(show_spinner=False)
def open_store(path: str) -> Store:
    return Store(path)


def db_key() -> str:
    return str(settings().db_path.resolve())


def store() -> Store:
    """The Store of the configured DuckDB file (one per process and path)."""
    return open_store(db_key())


def version() -> str:
    """Cache key part that changes when the stored data changes (a handful of count(*)s)."""
    return store().data_version()


@st.cache_data(ttl=600, show_spinner=False, max_entries=512)
def _cached(db: str, data_version: str, query: str, key: tuple, _read: Callable, _kwargs: dict):
    return _read(open_store(db), **_kwargs)


def read(query: Callable[..., T], **kwargs) -> T:
    """`query(store, **kwargs)`: a Store read called by name (`_ui.read(Store.wallet_scores, wallet=w)`),
    cached per store, data version, query and arguments (dict / list arguments are keyed by value)."""
    key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    return _cached(db_key(), version(), query.__qualname__, key, query, kwargs)


def clear_caches() -> None:
    """After a write from this session (labels, reports) the data version changes anyway; this is a belt."""
    _cached.clear()


def filters() -> Filters:
    """Pair and time-window filters from the sidebar (mirrored in st.query_params)."""
    pair = st.session_state.get("flt_pair", st.query_params.get("pair", ALL_PAIRS))
    window = st.session_state.get("flt_window", st.query_params.get("window", "all"))
    window = window if window in WINDOWS else "all"
    return Filters(None if pair in (None, ALL_PAIRS) else pair, window, WINDOWS[window])


def _restore(name: str, default: str) -> None:
    """Set the filter widget before it is drawn. Streamlit drops a page's widget state and its query parameters
    on a page change, so the session keeps the chosen value outside the widget (`kept_*`, updated by the
    widget's on_change); a URL value this session did not write itself (a shared link) replaces it."""
    widget, kept, synced = f"flt_{name}", f"kept_{name}", f"synced_{name}"
    wanted = st.query_params.get(name)
    if wanted is not None and wanted != st.session_state.get(synced):
        st.session_state[kept] = wanted
    st.session_state[widget] = st.session_state.get(kept, default)


def _keep(name: str) -> None:
    st.session_state[f"kept_{name}"] = st.session_state[f"flt_{name}"]


def frame() -> Filters:
    """Called first by every page: the sidebar (store, pair, window) and the filters it sets."""
    with _show.guard():
        return sidebar(read(Store.pair_list))


def sidebar(pairs: list[str]) -> Filters:
    """Store path, pair and window widgets; keeps them in the URL so a view can be shared."""
    st.sidebar.caption("Store")
    st.sidebar.code(str(settings().db_path), language=None)
    _restore("pair", ALL_PAIRS)
    _restore("window", "all")
    options = [ALL_PAIRS] + pairs
    if st.session_state.flt_pair not in options:
        options.append(st.session_state.flt_pair)  # a shared link naming a pair not (yet) in this store
    if st.session_state.flt_window not in WINDOWS:
        st.session_state.flt_window = "all"
    st.sidebar.selectbox("Pair", options, key="flt_pair", on_change=_keep, args=("pair",))
    st.sidebar.radio("Time window", list(WINDOWS), key="flt_window", horizontal=True, on_change=_keep,
                     args=("window",))
    f = filters()
    _sync_param("pair", f.pair_id)
    _sync_param("window", None if f.window == "all" else f.window)
    _show.share_link()
    return f


def _sync_param(name: str, value: str | None) -> None:
    st.session_state[f"synced_{name}"] = value
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value
