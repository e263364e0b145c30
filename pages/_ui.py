"""What every page shares: settings, the cached Store, cached queries, filters, errors.

Not a page (app.py's st.navigation lists the pages explicitly). Rules kept here:
- `st.cache_resource` holds only the Store (one per DuckDB path) and verified models / their SHAP
  explainers (keyed on the model version);
- query results go through `st.cache_data`, keyed by small values: the store path,
  the store's data version (changes after ingest, scoring, labels, reports), the
  query name and its arguments;
- session_state holds widget selections only; shareable filters live in st.query_params.
"""

from __future__ import annotations

import html
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import streamlit as st

from engine.settings import Settings
from storage import queries
from storage.errors import UserFacingError
from storage.store import Store

log = logging.getLogger("ledgerlens.app")
# Settings app.py read (every run: same environment, same values). Process-wide, not per thread: fragment
# reruns do not run app.py.
_current: dict[str, Settings] = {}

ALL_PAIRS = "(all pairs)"
WINDOWS = {"all": None, "24h": 1, "7d": 7, "30d": 30, "90d": 90}
PAGES = {
    "ingest": "pages/ingest.py", "overview": "pages/overview.py", "rings": "pages/rings.py",
    "wallet": "pages/wallet.py", "annotate": "pages/annotate.py", "models": "pages/models.py",
    "reports": "pages/reports.py", "graph_lab": "pages/graph_lab.py",
}  # fmt: skip


@dataclass(frozen=True)
class Filters:
    pair_id: str | None
    window: str
    window_days: int | None


def set_settings(settings: Settings) -> None:
    _current["settings"] = settings


def settings() -> Settings:
    _leave_pages_directory_routing()
    s = _current.get("settings")
    if s is None:  # a page script run on its own
        from engine.settings import load_settings

        s = load_settings()
        set_settings(s)
    return s


def _leave_pages_directory_routing() -> None:
    """A page ran without app.py: Streamlit's legacy `pages/` routing served a deep link (e.g. /rings) before
    app.py ever ran in this process. Switch the process to st.navigation routing and run again through app.py."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or getattr(ctx, "fragment_ids_this_run", None):
        return  # a fragment rerun never runs app.py; it is not a routing problem
    from streamlit.runtime import Runtime

    if type(Runtime._instance) is not Runtime:
        return  # AppTest re-enables pages/ routing on every run; pages draw their own frame (see frame())
    if PagesManager.uses_pages_directory and not getattr(ctx, "_ledgerlens_routed", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def mark_routed() -> None:
    """Called by app.py: this session's runs go through the router (fragment reruns skip app.py)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        ctx._ledgerlens_routed = True


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> Store:
    return Store(path)


def db_key() -> str:
    return str(settings().db_path.resolve())


def store() -> Store:
    """The Store of the configured DuckDB file (one per process and path)."""
    return _open_store(db_key())


def version() -> str:
    """Cache key part that changes when the stored data changes (a handful of count(*)s)."""
    return queries.data_version(store())


@st.cache_data(ttl=600, show_spinner=False, max_entries=512)
def _cached(db: str, data_version: str, name: str, args: tuple):
    return getattr(queries, name)(_open_store(db), **dict(args))


def q(name: str, **kwargs):
    """storage.queries.<name>(store, **kwargs), cached per store, data version and arguments."""
    args = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    return _cached(db_key(), version(), name, args)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def _cached_store_call(db: str, data_version: str, method: str, args: tuple):
    kwargs = {k: dict(v) if k == "where" and v is not None else v for k, v in args}
    return getattr(_open_store(db), method)(**kwargs)


def sq(method: str, **kwargs):
    """Store.<method>(**kwargs) (a read), cached like `q`."""
    args = tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in kwargs.items()))
    return _cached_store_call(db_key(), version(), method, args)


def clear_caches() -> None:
    """After a write from this session (labels, reports) the data version changes anyway; this is a belt."""
    _cached.clear()
    _cached_store_call.clear()


def filters() -> Filters:
    """Pair and time-window filters from the sidebar (mirrored in st.query_params)."""
    pair = st.session_state.get("flt_pair", st.query_params.get("pair", ALL_PAIRS))
    window = st.session_state.get("flt_window", st.query_params.get("window", "all"))
    window = window if window in WINDOWS else "all"
    return Filters(None if pair in (None, ALL_PAIRS) else pair, window, WINDOWS[window])


def frame() -> Filters:
    """Called first by every page: the sidebar (store, pair, window) and the filters it sets."""
    with guard():
        return sidebar(q("pair_list"))


def sidebar(pairs: list[str]) -> Filters:
    """Store path, pair and window widgets; keeps them in the URL so a view can be shared."""
    st.sidebar.caption("Store")
    st.sidebar.code(str(settings().db_path), language=None)
    if "flt_pair" not in st.session_state:
        st.session_state.flt_pair = st.query_params.get("pair", ALL_PAIRS)
    if "flt_window" not in st.session_state:
        st.session_state.flt_window = st.query_params.get("window", "all")
    options = [ALL_PAIRS] + pairs
    if st.session_state.flt_pair not in options:
        options.append(st.session_state.flt_pair)  # a shared link naming a pair not (yet) in this store
    if st.session_state.flt_window not in WINDOWS:
        st.session_state.flt_window = "all"
    st.sidebar.selectbox("Pair", options, key="flt_pair")
    st.sidebar.radio("Time window", list(WINDOWS), key="flt_window", horizontal=True)
    f = filters()
    _sync_param("pair", f.pair_id)
    _sync_param("window", None if f.window == "all" else f.window)
    return f


def _sync_param(name: str, value: str | None) -> None:
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def esc(text: object) -> str:
    """Ledger text made safe for st.markdown: HTML-escaped and with markdown syntax neutralised."""
    s = html.escape(str(text))
    for ch in "\\`*_[]()#|<>!~$":
        s = s.replace(ch, "\\" + ch)
    return s


def in_units(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Stroop columns as asset units (1 unit = 10^7 stroops), for display only."""
    return frame.with_columns([pl.col(c) / 10_000_000 for c in columns])


def units_column(label: str):
    """Column config of a volume shown in asset units."""
    return st.column_config.NumberColumn(f"{label} (units)", format="localized")


def short(account: str | None) -> str:
    if not account:
        return "–"
    return account if len(account) <= 14 else f"{account[:6]}…{account[-6:]}"


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


def empty_store_hint() -> None:
    st.info("The store holds no trades yet. Open **Ingest** to load a ledger range from Horizon, files or the "
            "demo market, or run `python -m engine demo` in a terminal.")
    st.page_link(PAGES["ingest"], label="Go to Ingest", icon=":material/download:")


def not_computed(what: str, command: str) -> None:
    st.warning(f"{what} not computed yet: run `{command}`.")


def frame_or_none(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    return frame if frame is not None and frame.height else None


@st.cache_data(ttl=600, show_spinner="Laying out the graph…", max_entries=64)
def _ring_graph(db: str, data_version: str, ring_id: str, expand: tuple, window_days, max_nodes: int, seed: int):
    from engine.workbench import graph_layout, ring_graph_html

    nodes, edges = queries.neighbourhood(_open_store(db), ring_id=ring_id, expand=expand,
                                         window_days=window_days, max_nodes=max_nodes)
    weights = edges.group_by("source", "target").agg(pl.col("n").sum())
    pos = graph_layout(nodes.get_column("account_id").to_list(), weights, seed=seed, weight="n")
    return nodes, edges, ring_graph_html(nodes, edges, pos)


def ring_graph(ring_id: str, *, expand: tuple[str, ...], window_days: int | None, max_nodes: int):
    """(nodes, edges, pyvis html) of a ring neighbourhood, laid out server-side (cached)."""
    return _ring_graph(db_key(), version(), ring_id, tuple(expand), window_days, max_nodes, settings().seed)


@st.cache_data(ttl=900, show_spinner="Laying out the market…", max_entries=8)
def _market(db: str, data_version: str, threshold: int, window_days, max_edges: int, seed: int):
    from engine.workbench import graph_layout

    edges, nodes = queries.market_graph(_open_store(db), threshold=threshold, window_days=window_days,
                                        max_edges=max_edges)
    pos = graph_layout(nodes.get_column("account_id").to_list(), edges, seed=seed, source="account_a",
                       target="account_b", weight="n_trades", iterations=150)
    return nodes, edges, pos


def market(*, window_days: int | None, max_edges: int):
    """(nodes, edges, positions) of the whole-market view (cached; deck built per run)."""
    s = settings()
    return _market(db_key(), version(), s.risk_score_flag_threshold, window_days, max_edges, s.seed)


# -- models (cache_resource: loaded models and their SHAP explainers, keyed on the version) ----------------


def model_version() -> str | None:
    """The promoted model version (a file read), None when no model was ever trained."""
    from models.registry import current_version

    return current_version(settings().models_dir)


def explainable_version(scored_with: str | None) -> str | None:
    """The version that produced a score when the registry still holds it, else the current one."""
    from models.registry import METADATA

    named = bool(scored_with and re.fullmatch(r"v[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}", scored_with))
    if named and (settings().models_dir / scored_with / METADATA).exists():
        return scored_with
    return model_version()


@st.cache_resource(show_spinner="Verifying and loading the model…", max_entries=4)
def _model(models_dir: str, version: str, trusted: frozenset):
    from models.registry import load_version

    return load_version(Path(models_dir), version, trusted_fingerprints=trusted)


def model(version: str | None = None):
    """The verified LoadedModel of `version` (default: the current one); None when there is no model.
    ModelIntegrityError (a UserFacingError) propagates: nothing unverified is ever loaded."""
    from engine.pipeline import trusted_fingerprints

    version = version or model_version()
    if version is None:
        return None
    s = settings()
    return _model(str(s.models_dir), version, trusted_fingerprints(s))


@st.cache_resource(show_spinner="Building SHAP explainers…", max_entries=4)
def _explainers(models_dir: str, version: str, trusted: frozenset) -> list:
    from engine.explain import tree_explainers

    return tree_explainers(_model(models_dir, version, trusted).model)


@st.cache_data(ttl=600, show_spinner="Explaining the score…", max_entries=128)
def _explanation(db: str, data_version: str, models_dir: str, version: str, trusted: frozenset, wallet: str,
                 pair_id: str):  # fmt: skip
    from engine.explain import explain_wallet

    loaded = _model(models_dir, version, trusted)
    features = _open_store(db).load_derived("features")
    if features is None:
        return None
    return explain_wallet(loaded, features, wallet, pair_id, top=len(loaded.feature_columns),
                          explainers=_explainers(models_dir, version, trusted))  # fmt: skip


def explanation(*, wallet: str, pair_id: str, version: str):
    """engine.explain.WalletExplanation of (wallet, pair) under model `version`, every feature's
    contribution included (so base + sum = the members' mean score); None without features."""
    from engine.pipeline import trusted_fingerprints

    s = settings()
    return _explanation(db_key(), queries.data_version(store()), str(s.models_dir), version, trusted_fingerprints(s), wallet, pair_id)


def score_breakdown(*, wallet: str, pair_id: str, model_score: float) -> pl.DataFrame | None:
    """engine.scoring.score_breakdown of (wallet, pair) from the stored features; None without them."""
    from engine.scoring import score_breakdown as breakdown

    row = sq("load_derived", name="features", where={"wallet": wallet, "pair_id": pair_id})
    if row is None or row.height == 0:
        return None
    return breakdown(model_score / 100.0, row.head(1))


def waterfall_rows(explanation, *, top: int = 12) -> pl.DataFrame:
    """The `top` largest contributions and one "other N features" row summing the rest.

    Shapes: [feature, shap (score points), value]; sum(shap) = sum of every contribution."""
    rows = pl.DataFrame(
        [(c.feature, c.shap, c.value) for c in explanation.contributions],
        schema={"feature": pl.String, "shap": pl.Float64, "value": pl.Float64}, orient="row",
    ).sort(pl.col("shap").abs(), descending=True, maintain_order=True)  # fmt: skip
    if rows.height <= top:
        return rows
    rest = rows.slice(top)
    other = pl.DataFrame({"feature": [f"other {rest.height} features"], "shap": [float(rest["shap"].sum())],
                          "value": [None]}, schema=rows.schema)  # fmt: skip
    return pl.concat([rows.head(top), other])


@st.cache_data(ttl=600, show_spinner="Computing drift…", max_entries=16)
def _drift(db: str, data_version: str, models_dir: str, version: str, trusted: frozenset):
    from engine.drift import psi_table

    features = _open_store(db).load_derived("features")
    if features is None:
        return None
    return psi_table(_model(models_dir, version, trusted).drift_reference, features)


def drift(version: str) -> pl.DataFrame | None:
    """engine.drift.psi_table of the stored features against `version`'s training reference (None without
    features). Shapes: feature, psi, missing_ref, missing_now, status."""
    from engine.pipeline import trusted_fingerprints

    s = settings()
    return _drift(db_key(), queries.data_version(store()), str(s.models_dir), version, trusted_fingerprints(s))


def model_versions() -> list[dict]:
    """models.registry.list_versions of the settings' models_dir (metadata JSON only; newest first)."""
    from models.registry import list_versions

    return list_versions(settings().models_dir)


METRIC_COLUMNS = ("roc_auc", "pr_auc", "prevalence", "f1_at_threshold", "precision_at_0.5pct", "precision_at_1pct",
                  "precision_at_2pct", "brier", "n", "n_wash")  # fmt: skip


def metrics_frame(metrics: dict) -> pl.DataFrame:
    """Held-out metrics of a version's metadata, one row per model (ensemble, members, baseline)."""
    rows = [{"model": name, **{c: m.get(c) for c in METRIC_COLUMNS}} for name, m in metrics.items()
            if isinstance(m, dict) and "roc_auc" in m]  # fmt: skip
    return pl.DataFrame(rows, schema={"model": pl.String, **{c: pl.Float64 for c in METRIC_COLUMNS}}, strict=False)


def importance_frame(importance: dict | None, *, top: int = 20) -> pl.DataFrame:
    """Shapes: [feature, mean_abs_shap], largest first, `top` rows."""
    items = sorted((importance or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return pl.DataFrame(items, schema={"feature": pl.String, "mean_abs_shap": pl.Float64}, orient="row")


def retrain(*, n_estimators: int, rescore: bool, bar):
    """engine.pipeline.retrain_and_promote on the open store, progress shown on `bar` (an st.progress)."""
    from engine.pipeline import retrain_and_promote

    def progress(*, done: int, total: int | None, records: int, unit: str = "steps") -> None:
        bar.progress(min(1.0, done / (total or 1)), text=f"training: step {done} of {total}")

    outcome = retrain_and_promote(store(), settings(), rescore=rescore, n_estimators=n_estimators, progress=progress)
    clear_caches()
    return outcome


def label_wallet(*, wallet: str, pair_id: str | None, label: str, note: str, annotator: str) -> None:
    """Append an analyst label (signed by engine.active) and drop cached query results."""
    from datetime import UTC, datetime

    from engine.active.service import record_label

    record_label(store(), settings(), wallet=wallet, label=label, annotator=annotator or "analyst",
                 now=datetime.now(UTC), note=note, pair_id=pair_id)
    clear_caches()
