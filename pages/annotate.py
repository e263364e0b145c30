"""Annotate: the active-learning queue end to end (strategy, label, progress, PR-AUC after each retrain)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from engine.active import LABELS, STRATEGIES, active_settings
from engine.services.label import build_queue
from engine.services.retrain import maybe_retrain, retrain_log
from pages import _model_views, _show, _ui
from storage.store import Store


@st.cache_data(ttl=600, show_spinner="Ranking the queue…", max_entries=32)
def _queue(db: str, data_version: str, model: str | None, strategy: str, size: int, _store, _settings):
    result = build_queue(_store, _settings, strategy=strategy, size=size)
    return result.queue, result.source, result.n_pool, result.n_rejected


_ui.frame()
st.title("Annotate")
settings = _ui.settings()
al = active_settings(settings)
progress = _ui.read(Store.label_progress)
if progress["n_scored"] == 0:
    _show.not_computed("Risk scores (the queue is built from them)")
    st.stop()
done = progress["n_labelled"]
st.progress(min(1.0, done / progress["n_scored"]),
            text=f"{done:,} of {progress['n_scored']:,} scored (wallet, pair) labelled — "
                 f"wash {progress['n_wash']}, legit {progress['n_legit']}, unsure {progress['n_unsure']}")  # fmt: skip
c = st.columns(3)
strategy = c[0].selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(al.strategy), key="al_strategy")
size = int(c[1].number_input("Batch size", min_value=1, max_value=500, value=al.batch_size, key="al_size"))
annotator = c[2].text_input("Annotator", value="analyst", key="al_annotator")


def _retrain(force: bool) -> None:
    with st.spinner("Retraining…" if force else "Checking whether to retrain…"):
        record = maybe_retrain(_ui.store(), settings, now=datetime.now(UTC), force=force)
    if record.status != "skipped":
        st.session_state["al_last_retrain"] = f"{record.status}: {record.message}"


@st.fragment
def queue() -> None:
    with _show.guard():
        rows, source, n_pool, n_rejected = _queue(_ui.db_key(), _ui.version(), _model_views.model_version(),
                                                  strategy, size, _ui.store(), settings)  # fmt: skip
        st.caption(f"{rows.height} of {n_pool:,} unlabelled (wallet, pair), ranked by {strategy} from {source}")
        if n_rejected:
            st.warning(f"{n_rejected} stored label(s) fail HMAC verification: ignored for evidence and training.")
        if rows.height == 0:
            st.success("The queue is empty: every candidate (wallet, pair) has a label.")
            return
        item = rows.row(0, named=True)
        st.subheader(_show.esc(item["wallet"]))
        m = st.columns(4)
        m[0].metric("Priority", f"{item['priority']:.3f}")
        m[1].metric("Model p(wash)", "–" if item["p"] is None else f"{item['p']:.2f}")
        m[2].metric("Ring", item["ring_id"] or "–")
        m[3].page_link(_show.PAGES["wallet"], label="Open wallet page", query_params={"wallet": item["wallet"]})
        st.caption(f"pair {_show.esc(item['pair_id'])}" + (f" · evidence: {_show.esc(item['evidence'])}"
                                                         if item["evidence"] else ""))  # fmt: skip
        with st.form("queue_form", clear_on_submit=True, enter_to_submit=True):
            label = st.radio("Label (Tab to move, arrows to choose, Enter to save)", LABELS, horizontal=True,
                             key="queue_label")  # fmt: skip
            note = st.text_input("Note", key="queue_note")
            if st.form_submit_button("Save and next", type="primary"):
                _model_views.label_wallet(wallet=item["wallet"], pair_id=item["pair_id"], label=label, note=note,
                                 annotator=annotator)  # fmt: skip
                _retrain(force=False)
                st.rerun(scope="app")
        st.markdown(f"**Next in queue** ({rows.height - 1} more shown)")
        st.dataframe(rows.slice(1).select("wallet", "pair_id", "priority", "evidence", "ring_id"), hide_index=True,
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
