"""The Wallet page's evidence tabs: individual trades (paged in the store, every row exportable) and Benford."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from engine.drawing import benford_expected
from pages import _show, _ui
from storage.store import Store

BENFORD_NUMBERS = ("mad", "expected_mad", "excess_mad", "p_value")
PAGE_SIZE = 50
_STROOPS = 10_000_000


def exact_units(column: str) -> pl.Expr:
    """Stroops as exact decimal text in asset units ("12.3456789"): the CSV carries no binary float."""
    c = pl.col(column)
    return pl.concat_str([(c // _STROOPS).cast(pl.String), pl.lit("."),
                          (c % _STROOPS).cast(pl.String).str.zfill(7)]).alias(column)  # fmt: skip


def _no_formula(column: str) -> pl.Expr:
    """Ledger text that a spreadsheet would run as a formula is quoted (CSV injection)."""
    c = pl.col(column)
    return pl.when(c.str.contains(r"^[=+\-@\t\r]")).then(pl.lit("'") + c).otherwise(c).alias(column)


def trades_csv(store: Store, *, wallet: str, pair_id: str | None, window_days: int | None, explorer: str) -> bytes:
    """Every trade of the wallet within the filter (not only the page shown), amounts in exact asset units."""
    rows, _ = store.wallet_trades(wallet, pair_id=pair_id, window_days=window_days)
    out = rows.with_columns(
        exact_units("base_amount"), exact_units("counter_amount"),
        *[_no_formula(c) for c in ("base_asset", "counter_asset", "counterparty", "pair_id")],
        closed_at=pl.col("closed_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        explorer_ledger=pl.format(f"{explorer}/ledger/{{}}", "ledger"),
        explorer_operation=pl.format(f"{explorer}/op/{{}}", "op_id"),
    )  # fmt: skip
    return out.write_csv().encode()


def trades_tab(wallet: str, f: _ui.Filters, timeline: pl.DataFrame) -> None:
    """The wallet's trades, newest first, from its own side, with links to the block explorer."""
    explorer = _ui.settings().explorer_url.rstrip("/")
    _, total = _ui.read(Store.wallet_trades, wallet=wallet, pair_id=f.pair_id, window_days=f.window_days, limit=1)
    n_pages = max(1, -(-total // PAGE_SIZE))
    if st.session_state.get("wt_page", 1) > n_pages:
        st.session_state.wt_page = n_pages
    page_no = int(st.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, step=1, key="wt_page"))
    rows, total = _ui.read(Store.wallet_trades, wallet=wallet, pair_id=f.pair_id, window_days=f.window_days,
                           offset=(page_no - 1) * PAGE_SIZE, limit=PAGE_SIZE)  # fmt: skip
    scope = " ".join(x for x in (f.pair_id and f"on {_show.esc(f.pair_id)}", f.window_days and f"in the last {f.window}") if x)
    st.caption(f"{total:,} trades {scope}".strip() + "; side, amounts and price from this wallet's point of view")
    shown = _show.in_units(rows, "base_amount", "counter_amount").with_columns(
        ledger_link=pl.format(f"{explorer}/ledger/{{}}", "ledger"), op_link=pl.format(f"{explorer}/op/{{}}", "op_id"))
    st.dataframe(shown.drop("ledger", "op_id"), hide_index=True, key="wallet_trades", column_config={
        "closed_at": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "side": st.column_config.TextColumn("side", help="buy / sell of the base asset, by this wallet"),
        "base_amount": _show.units_column("base"), "counter_amount": _show.units_column("counter"),
        "price": st.column_config.NumberColumn("price (counter per base)", format="%.7g"),
        "ledger_link": st.column_config.LinkColumn("ledger", display_text=r".*/ledger/(\d+)"),
        "op_link": st.column_config.LinkColumn("operation", display_text=r".*/op/(\d+)"),
    })  # fmt: skip
    st.download_button(f"Download all {total:,} trades (CSV)", key="wallet_trades_csv", mime="text/csv",
                       file_name=f"{wallet[:12]}-trades.csv", disabled=total == 0,
                       data=_ui.read(trades_csv, wallet=wallet, pair_id=f.pair_id, window_days=f.window_days,
                                     explorer=explorer))  # fmt: skip
    with st.expander("Trades per day"):
        st.bar_chart(timeline, x="day", y=["n_sells", "n_buys"], height=220)


def benford_tab(wallet: str, pair_id: str | None) -> None:
    """Per-window Benford tests (a window with too few trades says "insufficient data", not None) and digits."""
    windows = _ui.read(Store.load_derived, name="benford", where={"scope": "wallet", "wallet": wallet, "test": "first"})
    if windows is None:
        _show.not_computed("Benford tests per window")
    else:
        table = windows.select("window", "n", *BENFORD_NUMBERS, "verdict").with_columns(
            *[pl.col(c).round(4).cast(pl.String).fill_null("–") for c in BENFORD_NUMBERS],
            pl.col("verdict").fill_null("insufficient data"))  # fmt: skip
        st.dataframe(table, hide_index=True, key="wallet_benford")
    digits = benford_expected(_ui.read(Store.first_digit_counts, wallet=wallet, pair_id=pair_id))
    n = int(digits.get_column("n").sum())
    if n == 0:
        st.caption("First digits: insufficient data (no trade of this wallet on this pair).")
        return
    fig = go.Figure([go.Bar(x=digits["digit"].to_list(), y=digits["observed"].to_list(), name=f"observed (n={n})"),
                     go.Scatter(x=digits["digit"].to_list(), y=digits["expected"].to_list(), name="Benford expected")])
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, key="wallet_benford_chart")
    st.caption(f"first digit of this wallet's base amounts, all time: n = {n:,}")
