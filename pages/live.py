"""Live: start / stop the live watch on this store and follow its alerts as they come (engine.services.watch_job).

The watch runs in this app's process on its open store; the alert feed and the watch's state refresh
on their own every two seconds. Each alert links to its wallet and its ring."""

from __future__ import annotations

import json

import streamlit as st

from engine.services.watch import WatchOptions
from engine.services.watch_job import recent_alerts, start_watch, stop_watch, watch_state
from pages import _model_views, _show, _ui

_ui.frame()
st.title("Live")
settings = _ui.settings()
state = watch_state(_ui.db_key())
has_model = _model_views.model_version() is not None
if not has_model:
    st.warning("The watch scores with the promoted model and there is none yet: train one on the Models page.")
with st.form("watch_form", border=True):
    kind = st.radio("Source", ["Horizon", "Data lake"], horizontal=True, key="live_kind")
    c = st.columns([3, 1, 1, 1])
    url = c[0].text_input("Horizon URL", value=settings.horizon_url, key="live_url")
    lake = c[0].text_input("Data lake (folder or https:// prefix)", value=settings.datalake_url, key="live_lake")
    from_ledger = int(c[1].number_input("From ledger (0 = now)", min_value=0, value=0, step=1, key="live_from"))
    threshold = int(c[2].number_input("Threshold", 1, 100, settings.risk_score_flag_threshold, key="live_threshold"))
    min_trades = int(c[3].number_input("Min trades", 1, 10_000, 20, key="live_min_trades"))
    start = st.form_submit_button("Start watch", type="primary", disabled=state.running or not has_model)
if start and kind == "Data lake" and not from_ledger:
    st.error("A data lake has no 'now': give the first ledger to read in From ledger.")
elif start:
    with _show.guard():
        source = {"horizon_url": url} if kind == "Horizon" else {"datalake": lake}
        start_watch(_ui.store(), settings, WatchOptions(**source, from_ledger=from_ledger or None, threshold=threshold,
                                                        min_trades=min_trades, seed=settings.seed),
                    store_key=_ui.db_key())  # fmt: skip
        st.rerun()
if state.running and st.button("Stop watch", key="live_stop"):
    with st.spinner("Stopping (the watch finishes its tick and saves its cursor)…"):
        stop_watch(_ui.db_key())
    st.rerun()


@st.fragment(run_every=2.0)
def feed() -> None:
    with _show.guard():
        now = watch_state(_ui.db_key())
        m = st.columns(5)
        m[0].metric("Watch", "running" if now.running else "stopped")
        m[1].metric("Cursor (ledger)", now.cursor_ledger or "–")
        m[2].metric("Ledgers behind", "–" if now.ledgers_behind is None else now.ledgers_behind)
        m[3].metric("Trades/s", f"{now.trades_per_s:,.0f}")
        m[4].metric("Alerts this run", now.n_alerts)
        if now.message:
            st.caption(f"last watch {_show.esc(now.message)}")
        alerts = recent_alerts(_ui.store(), limit=50)
        st.subheader(f"Alerts ({alerts.height} newest)")
        if alerts.height == 0:
            st.caption("no alert yet")
        for a in alerts.iter_rows(named=True):
            with st.container(border=True, key=f"alert_{a['id']}"):
                st.markdown(f"**{a['score']:.1f}** · {_show.esc(_show.short(a['wallet']))} · {_show.esc(a['pair_id'])} · "
                            f"ledger {a['ledger']} · closed {a['closed_at']:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
                st.caption(" · ".join(_show.esc(r) for r in json.loads(a["reasons"])[:3]))
                links = st.columns(2)
                links[0].page_link(_show.PAGES["wallet"], label="Open wallet", icon=":material/account_balance_wallet:",
                                   query_params={"wallet": a["wallet"]})  # fmt: skip
                if a["ring_id"]:
                    links[1].page_link(_show.PAGES["rings"], label=f"Open {a['ring_id']}", icon=":material/hub:",
                                       query_params={"ring": a["ring_id"]})  # fmt: skip


feed()
