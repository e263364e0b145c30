"""Annotate: the active-learning queue end to end: one item per wallet (its pairs listed), labelled with the
keyboard (W wash, L legit, U unsure, S skip) by the session's annotator; progress; PR-AUC after each retrain."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from engine.active import LABEL_KEYS, STRATEGIES, active_settings
from engine.ring_order import plural
from engine.services.label import build_queue, record_wallet_label
from engine.services.retrain import maybe_retrain, retrain_log
from pages import _annotator, _model_views, _show, _ui
from storage.store import Store


@st.cache_data(ttl=600, show_spinner="Ranking the queue…", max_entries=32)
def _queue(db: str, data_version: str, model: str | None, strategy: str, size: int, _store, _settings):
    result = build_queue(_store, _settings, strategy=strategy, size=size, by_wallet=True)
    return result.queue, result.source, result.n_pool, result.n_rejected


f = _ui.frame()
st.title("Annotate")
settings = _ui.settings()
al = active_settings(settings)
if _ui.read(Store.label_progress)["n_scored"] == 0:
    _show.not_computed("Risk scores (the queue is built from them)")
    st.stop()
c = st.columns(2)
strategy = c[0].selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(al.strategy), key="al_strategy")
size = int(c[1].number_input("Wallets in the batch", min_value=1, max_value=500, value=al.batch_size, key="al_size"))
annotator = _annotator.annotator(key="al_annotator")


def _retrain(force: bool) -> None:
    with st.spinner("Retraining…" if force else "Checking whether to retrain…"):
        record = maybe_retrain(_ui.store(), settings, now=datetime.now(UTC), force=force)
    if record.status != "skipped":
        st.session_state["al_last_retrain"] = f"{record.status}: {record.message}"


def _label(item: dict, label: str | None) -> None:
    """Button callback (runs before the rerun): label every listed pair of the wallet, or skip it this session."""
    if label is None:
        st.session_state.setdefault("al_skipped", []).append(item["wallet"])
    else:
        record_wallet_label(_ui.store(), settings, wallet=item["wallet"], pairs=list(item["pairs"]), label=label,
                            annotator=annotator, now=datetime.now(UTC), note=st.session_state.get("queue_note") or None)
        st.session_state["al_last_label"] = f"{_show.short(item['wallet'])}: {label}"
        _ui.clear_caches()
        _retrain(force=False)
    st.session_state.queue_note = ""


def _progress() -> None:
    progress = _ui.read(Store.label_progress)
    done = progress["n_labelled"]
    st.progress(min(1.0, done / progress["n_scored"]),
                text=f"{done:,} of {progress['n_scored']:,} scored (wallet, pair) labelled — "
                     f"wash {progress['n_wash']}, legit {progress['n_legit']}, unsure {progress['n_unsure']}")  # fmt: skip


@st.fragment
def queue() -> None:
    with _show.guard():
        _progress()
        rows, source, n_pool, n_rejected = _queue(_ui.db_key(), _ui.version(), _model_views.model_version(),
                                                  strategy, size, _ui.store(), settings)  # fmt: skip
        skipped = st.session_state.get("al_skipped", [])
        rows = rows.filter(~rows["wallet"].is_in(skipped))
        if f.pair_id:  # the sidebar's pair: only the batch's wallets with an unlabelled row on it
            rows = rows.filter(rows["pairs"].list.contains(f.pair_id))
        st.caption(f"{plural(rows.height, 'wallet')} of {n_pool:,} unlabelled (wallet, pair), ranked by {strategy} "
                   f"from {source}" + (f"; {len(skipped)} skipped this session" if skipped else "") +
                   (f"; with the pair {_show.esc(f.pair_id)}" if f.pair_id else ""))  # fmt: skip
        if n_rejected:
            st.warning(f"{plural(n_rejected, 'stored label')} failed HMAC verification: ignored for evidence and training.")
        if rows.height == 0:
            st.success("The queue is empty: every candidate (wallet, pair) has a label" +
                       (" or was skipped." if skipped else "."))  # fmt: skip
            return
        item = rows.row(0, named=True)
        st.subheader(_show.esc(item["wallet"]))
        m = st.columns(4)
        m[0].metric("Priority", f"{item['priority']:.3f}")
        m[1].metric("Model p(wash)", "–" if item["p"] is None else f"{item['p']:.2f}")
        m[2].metric("Ring", item["ring_id"] or "–")
        m[3].page_link(_show.PAGES["wallet"], label="Open wallet page", query_params={"wallet": item["wallet"]})
        st.caption(f"{plural(item['n_pairs'], 'pair')}: " + ", ".join(_show.esc(p) for p in item["pairs"]) +
                   (f" · evidence: {_show.esc(item['evidence'])}" if item["evidence"] else ""))  # fmt: skip
        st.text_input("Note (optional)", key="queue_note")
        b = st.columns(4)
        for col, (label, key) in zip(b, LABEL_KEYS.items(), strict=False):
            col.button(f"{label.capitalize()}", key=f"queue_{label}", shortcut=key, on_click=_label,
                       args=(item, label), disabled=annotator is None, width="stretch")  # fmt: skip
        b[3].button("Skip", key="queue_skip", shortcut="S", on_click=_label, args=(item, None), width="stretch")
        st.caption("Keys: **W** wash · **L** legit · **U** unsure · **S** skip (a label covers every pair listed)"
                   + (f" · last: {_show.esc(st.session_state['al_last_label'])}" if "al_last_label" in st.session_state
                      else ""))  # fmt: skip
        st.markdown(f"**Next in queue** ({rows.height - 1} more shown)")
        st.dataframe(rows.slice(1).select("wallet", "pairs", "priority", "evidence", "ring_id"), hide_index=True,
                     key="queue_table")  # fmt: skip


queue()

st.subheader("Model after each retrain")
st.caption(f"Retrains after {al.retrain_threshold} new labels; a new model whose ROC-AUC drops more than "
           f"{al.rollback_auc_drop} below the current one is not promoted (rolled back).")  # fmt: skip
if st.button("Retrain now", key="al_retrain_now"):
    with _show.guard():
        _retrain(force=True)
if "al_last_retrain" in st.session_state:
    st.info(st.session_state["al_last_retrain"])
history = retrain_log(settings)
if history.height:
    st.dataframe(history.select("at", "status", "version", "n_labels", "pr_auc", "roc_auc", "previous_roc_auc"),
                 hide_index=True, key="retrain_history")  # fmt: skip
    scored = history.filter(history["pr_auc"].is_not_null())
    if scored.height:
        st.line_chart(scored.select("n_labels", "pr_auc").to_pandas(), x="n_labels", y="pr_auc")
else:
    st.caption("No retrain yet.")
