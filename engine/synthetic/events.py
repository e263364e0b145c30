"""Event tables every generator produces, and the helpers they share.

A generator returns a `Flow`: `ops` (one row per operation, OPS columns) and
`fills` (one row per trade, FILLS columns). Account, asset, pair and pool columns
are integer indices into the `World`; ids and strings come at the very end.
Taker operations are listed with null amounts: `taker_ops_amounts` fills them in
from their fills, so an operation always agrees with the trades it made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.synthetic.population import World

OPS = {
    "op_key": pl.Int64, "t": pl.Float64, "tx_key": pl.Int64, "op_seq": pl.Int8, "type": pl.String,
    "src": pl.Int32, "dst": pl.Int32, "asset": pl.Int32, "amount": pl.Int64, "asset2": pl.Int32,
    "amount2": pl.Int64, "offer_id": pl.Int64, "claim_of": pl.Int64,
}
FILLS = {
    "op_key": pl.Int64, "fill_idx": pl.Int32, "t": pl.Float64, "pair": pl.Int32, "taker": pl.Int32,
    "maker": pl.Int32, "pool": pl.Int32, "offer_group": pl.Int64, "maker_asset": pl.Int32,
    "maker_amount": pl.Int64, "taker_asset": pl.Int32, "taker_amount": pl.Int64,
}
TAKER_TYPES = ("manage_sell_offer", "manage_buy_offer", "path_payment_strict_send", "path_payment_strict_receive")
STROOPS = 10_000_000


@dataclass(frozen=True)
class Flow:
    ops: pl.DataFrame  # OPS
    fills: pl.DataFrame  # FILLS


def keys(namespace: int, n: int) -> np.ndarray:
    """`n` unique int64 keys in `namespace` (one namespace per generator call)."""
    return (np.int64(namespace) << np.int64(36)) + np.arange(n, dtype=np.int64)


def frame(columns: dict, schema: dict) -> pl.DataFrame:
    """A frame with exactly `schema`'s columns; missing ones are null (-1 for index columns)."""
    n = len(next(iter(columns.values())))
    cols = {}
    for name, dtype in schema.items():
        if name in columns:
            cols[name] = pl.Series(name, columns[name]).cast(dtype)
        else:
            cols[name] = pl.Series(name, [None] * n, dtype=dtype)
    return pl.DataFrame(cols)


def stroops(units: np.ndarray) -> np.ndarray:
    """Units -> int64 stroops, at least 1."""
    return np.maximum(1, np.round(np.asarray(units, dtype=np.float64) * STROOPS)).astype(np.int64)


def round_lot(x: np.ndarray) -> np.ndarray:
    """Largest of 1, 2, 2.5, 5 x 10^k not above `x` (how people and bots pick lot sizes)."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-7)
    mag = 10.0 ** np.floor(np.log10(x))
    m = x / mag
    lead = np.select([m >= 5, m >= 2.5, m >= 2], [5.0, 2.5, 2.0], 1.0)
    return lead * mag


def round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """`x` rounded to `digits` significant digits."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-7)
    mag = 10.0 ** (np.floor(np.log10(x)) - digits + 1)
    return np.round(x / mag) * mag


def human_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """One time per row in [lo, hi), thinned to waking hours in local time `tz` (hours)."""
    n = np.asarray(lo).size
    cand = lo[:, None] + rng.random((n, 6)) * (hi - lo)[:, None]
    hour = ((cand / 3600 + tz[:, None]) % 24).astype(int)
    weight = np.array([.15, .08, .05, .04, .04, .06, .15, .35, .6, .8, .9, 1, 1, 1, 1, 1, 1, .95, 1, 1, .95, .8, .6, .35])
    ok = rng.random((n, 6)) < weight[hour]
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), 5)
    return cand[np.arange(n), first]


def trade_fills(world: World, *, op_key, fill_idx, t, pair, taker, maker, pool, offer_group,
                maker_sells_base, maker_units, markup) -> pl.DataFrame:
    """Fills where the maker gives `maker_units` of one side of `pair` and the taker pays
    the current price times (1 + markup) in the other (FILLS columns)."""
    p = world.price_at(pair, t)
    base, counter = world.pair_base[pair], world.pair_counter[pair]
    taker_units = np.where(maker_sells_base, maker_units * p, maker_units / p) * (1 + markup)
    return frame({
        "op_key": op_key, "fill_idx": fill_idx, "t": t, "pair": pair, "taker": taker, "maker": maker,
        "pool": pool, "offer_group": offer_group,
        "maker_asset": np.where(maker_sells_base, base, counter), "maker_amount": stroops(maker_units),
        "taker_asset": np.where(maker_sells_base, counter, base), "taker_amount": stroops(taker_units),
    }, FILLS)


def taker_ops(op_key, t, src, types, *, dst=None, tx_key=None, op_seq=None) -> pl.DataFrame:
    """Taker operation rows (amounts are filled in later from their fills)."""
    n = len(op_key)
    return frame({
        "op_key": op_key, "t": t, "tx_key": op_key if tx_key is None else tx_key,
        "op_seq": np.zeros(n, dtype=np.int8) if op_seq is None else op_seq, "type": types, "src": src,
        "dst": src if dst is None else dst, "offer_id": np.zeros(n, dtype=np.int64),
    }, OPS)


def units_of(world: World, asset: np.ndarray, value_xlm: np.ndarray) -> np.ndarray:
    """How many units of `asset` are worth `value_xlm` XLM (at reference value)."""
    return value_xlm / world.asset_value[asset]


def concat_flows(flows: list[Flow]) -> Flow:
    return Flow(pl.concat([f.ops for f in flows]), pl.concat([f.fills for f in flows]))
