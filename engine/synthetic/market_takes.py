"""Taking liquidity the way ordinary accounts do: from market makers' round-lot
offers (often sweeping a few), from liquidity pools (path payments, sometimes to
someone else) or from another trader's resting offer.

Used by organic traders, crowds and the camouflage trades of rings alike, so these
trades look the same whoever makes them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.synthetic.events import (
    FILLS,
    OPS,
    Flow,
    concat_flows,
    keys,
    round_lot,
    round_sig,
    taker_ops,
    trade_fills,
    units_of,
)
from engine.synthetic.population import World


def mm_lot_value(world: World) -> np.ndarray:
    """Each market maker's typical lot, in XLM (deterministic from the world's size)."""
    n = world.plan.n_market_makers
    return 2000.0 * np.exp(np.sin(np.arange(n) * 2.4) * 1.2)


def pick_makers(rng: np.random.Generator, world: World, pair: np.ndarray) -> np.ndarray:
    """A quoting market maker per row, by each book's (concentrated) shares; account indices."""
    cum = np.cumsum(world.mm_weights[pair], axis=1)
    choice = (cum < rng.random(pair.size)[:, None] * cum[:, -1:]).sum(axis=1)
    choice = np.minimum(choice, world.mm_weights.shape[1] - 1)
    return world.groups["market_maker"][choice]


def mm_offer_group(maker: np.ndarray, pair: np.ndarray, sells_base: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Market makers keep an offer up for a while: fills in one 10-minute window share it."""
    return ((maker.astype(np.int64) * 4096 + pair) * 2 + sells_base) * 1_000_000 + (t // 600).astype(np.int64)


def market_takes(rng, world: World, *, namespace: int, taker, t, pair, value_xlm, round_share: float = 0.25,
                 p_pool: float = 0.25, p_peer: float = 0.15) -> Flow:
    """Taker operations by `taker` at `t` on `pair` worth about `value_xlm` each."""
    n = taker.size
    op_key = keys(namespace, n)
    u = rng.random(n)
    has_pool = world.pair_pool[pair] >= 0
    to_pool = has_pool & (u < p_pool)
    to_peer = ~to_pool & (u > 1 - p_peer)
    to_mm = ~to_pool & ~to_peer
    sells_base = rng.random(n) < 0.5
    flows = [
        _pool_takes(rng, world, op_key[to_pool], t[to_pool], pair[to_pool], taker[to_pool], value_xlm[to_pool], sells_base[to_pool]),
        _peer_takes(rng, world, op_key[to_peer], t[to_peer], pair[to_peer], taker[to_peer], value_xlm[to_peer], sells_base[to_peer]),
        _mm_takes(rng, world, op_key[to_mm], t[to_mm], pair[to_mm], taker[to_mm], value_xlm[to_mm], sells_base[to_mm], round_share),
    ]
    return concat_flows(flows)


def _pool_takes(rng, world, op_key, t, pair, taker, value, sells_base) -> Flow:
    asset = np.where(sells_base, world.pair_base[pair], world.pair_counter[pair])
    units = units_of(world, asset, value)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(op_key.size), t=t, pair=pair, taker=taker,
                        maker=np.full(op_key.size, -1), pool=world.pair_pool[pair], offer_group=np.full(op_key.size, -1),
                        maker_sells_base=sells_base, maker_units=units, markup=0.003 + 0.004 * rng.random(op_key.size))
    settled = _settled_organic(world)
    others = settled[rng.integers(0, settled.size, op_key.size)]
    dst = np.where(rng.random(op_key.size) < 0.2, others, taker)
    types = np.where(rng.random(op_key.size) < 0.7, "path_payment_strict_send", "path_payment_strict_receive")
    return Flow(taker_ops(op_key, t, taker, types, dst=dst), fills)


def _peer_takes(rng, world, op_key, t, pair, taker, value, sells_base) -> Flow:
    organic = _settled_organic(world)
    maker = organic[rng.integers(0, organic.size, op_key.size)]
    maker = np.where(maker == taker, organic[(np.searchsorted(organic, maker) + 1) % organic.size], maker)
    asset = np.where(sells_base, world.pair_base[pair], world.pair_counter[pair])
    units = units_of(world, asset, value)
    units = np.where(rng.random(op_key.size) < 0.5, round_sig(units, 3), units)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(op_key.size), t=t, pair=pair, taker=taker, maker=maker,
                        pool=np.full(op_key.size, -1), offer_group=-(op_key + 1), maker_sells_base=sells_base,
                        maker_units=units, markup=rng.normal(0, 0.004, op_key.size))
    types = np.where(rng.random(op_key.size) < 0.7, "manage_sell_offer", "manage_buy_offer")
    return Flow(taker_ops(op_key, t, taker, types), fills)


def _mm_takes(rng, world, op_key, t, pair, taker, value, sells_base, round_share) -> Flow:
    """Sweeps 1 + Poisson(0.35) offers: every fill but the last takes a whole round lot."""
    k = 1 + rng.poisson(0.35, op_key.size)
    row = np.repeat(np.arange(op_key.size), k)
    fill_idx = np.arange(row.size) - np.repeat(np.cumsum(k) - k, k)
    last = fill_idx == k[row] - 1
    maker = pick_makers(rng, world, pair[row])
    mm_rank = np.searchsorted(world.groups["market_maker"], maker)
    asset = np.where(sells_base[row], world.pair_base[pair[row]], world.pair_counter[pair[row]])
    lot = round_lot(units_of(world, asset, mm_lot_value(world)[mm_rank] * rng.choice([1, 2, 5], row.size)))
    partial = units_of(world, asset, value[row])
    partial = np.where(rng.random(row.size) < round_share, round_sig(partial, 2), partial)
    whole = ~last | ((k[row] == 1) & (rng.random(row.size) < 0.2))
    units = np.where(whole, lot, np.minimum(partial, lot))
    fills = trade_fills(world, op_key=op_key[row], fill_idx=fill_idx, t=t[row], pair=pair[row], taker=taker[row],
                        maker=maker, pool=np.full(row.size, -1),
                        offer_group=mm_offer_group(maker, pair[row], sells_base[row], t[row]),
                        maker_sells_base=sells_base[row], maker_units=units,
                        markup=0.001 + 0.002 * rng.random(row.size))
    types = np.where(rng.random(op_key.size) < 0.7, "manage_sell_offer", "manage_buy_offer")
    return Flow(taker_ops(op_key, t, taker, types), fills)


def _settled_organic(world: World) -> np.ndarray:
    """Organic accounts that existed before the window (safe makers / payees at any time)."""
    org = world.groups["organic"]
    return org[np.isnan(world.created_t[org])]


def empty_flow() -> Flow:
    return Flow(pl.DataFrame(schema=OPS), pl.DataFrame(schema=FILLS))
