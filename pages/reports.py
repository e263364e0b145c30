"""Reports: generated forensic reports, download, and verification of a report's fingerprint."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.ring_order import plural
from engine.services.report import verify_report
from pages import _show, _ui
from storage.store import Store

_ui.frame()
st.title("Reports")
reports = _ui.read(Store.reports)
st.caption(f"{plural(reports.height, 'report')} generated")
if reports.height == 0:
    st.info("No report yet: open a scored wallet on the **Wallet** page and press *Generate report*.")
else:
    st.dataframe(reports, hide_index=True, key="reports_table")
    pick = st.selectbox("Report", reports.get_column("fingerprint").to_list(), key="report_pick")
    row = reports.filter(reports["fingerprint"] == pick).row(0, named=True)
    path = Path(row["path"])
    if path.exists():
        st.download_button(f"Download {path.name}", path.read_bytes(), file_name=path.name, key="report_download")
    else:
        st.warning(f"The file {path} is gone; generate the report again.")

st.subheader("Verify a report")
upload = st.file_uploader("A LedgerLens report (PDF, JSON or Markdown)", key="verify_upload")
if upload is not None:
    with _show.guard():
        result = verify_report(upload.getvalue(), settings=_ui.settings())  # trusts the configured signing keys
        known = result.fingerprint in set(reports.get_column("fingerprint").to_list()) if reports.height else False
        if result.ok:
            st.success(f"Intact and signed by trusted key {result.signer}: fingerprint {result.fingerprint}"
                       + (" (generated here)" if known else ""))
        else:
            st.error("Not intact: " + "; ".join(result.problems))
