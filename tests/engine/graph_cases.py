"""Small hand-made trade and funding frames shared by the graph and ring tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from engine.schemas import TRADES_SCHEMA, conform

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BASE, COUNTER = "AAA:GISSUER", "XLM:native"
PAIR = f"{BASE}/{COUNTER}"
FUNDING_SCHEMA = {
    "id": pl.Int64, "ledger": pl.Int64, "closed_at": pl.Datetime("us", "UTC"), "type": pl.String,
    "from_account": pl.String, "to_account": pl.String, "asset": pl.String, "amount": pl.Int64,
}  # fmt: skip
NO_FUNDING = pl.DataFrame(schema=FUNDING_SCHEMA)


def trade(i, seller, buyer, *, minutes, base=100_000_000, counter=None, sells_base=True, pair=PAIR):
    """Trade i: `seller` sold base (or counter) to `buyer` at T0 + minutes."""
    b, c = pair.split("/")
    counter = base // 2 if counter is None else counter
    return {
        "id": f"{1000 + i}-0", "op_id": 1000 + i, "ledger": 1000 + i, "closed_at": T0 + timedelta(minutes=minutes),
        "trade_type": "orderbook", "pair_id": pair, "seller_account": seller, "buyer_account": buyer,
        "sold_asset": b if sells_base else c, "sold_amount": base if sells_base else counter,
        "bought_asset": c if sells_base else b, "bought_amount": counter if sells_base else base,
        "price_n": counter if sells_base else base, "price_d": base if sells_base else counter, "source": "synthetic",
    }  # fmt: skip


def trades_frame(rows):
    return conform(pl.DataFrame(rows), TRADES_SCHEMA)


def funding_frame(pairs, *, kind="create_account", at=T0):
    """Funding edges (funder, account), one second apart from `at`."""
    rows = [
        {"id": i, "ledger": 10 + i, "closed_at": at + timedelta(seconds=i), "type": kind,
         "from_account": a, "to_account": b, "asset": COUNTER, "amount": 10**8}
        for i, (a, b) in enumerate(pairs)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=FUNDING_SCHEMA)


def ping_pong(a="A", b="B", *, n=6, start=0):
    rows = []
    for k in range(n):
        rows += [trade(start + 2 * k, a, b, minutes=5 * k), trade(start + 2 * k + 1, b, a, minutes=5 * k + 1)]
    return rows


def three_cycle(a="C", b="D", c="E", *, n=4, start=100):
    rows = []
    for k in range(n):
        rows += [trade(start + 3 * k, a, b, minutes=7 * k), trade(start + 3 * k + 1, b, c, minutes=7 * k + 2),
                 trade(start + 3 * k + 2, c, a, minutes=7 * k + 4)]  # fmt: skip
    return rows
