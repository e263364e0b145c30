"""The legitimate market, including what naive rules mistake for manipulation:
organic traders (sizes over many orders of magnitude, waking hours), market-maker
rebalancing in round lots, arbitrage bots (pool + order book in one transaction,
in bursts; and triangle cycles XLM -> USDC -> X -> XLM through three pairs in a few
seconds), scheduled fixed-size buyers ("DCA bots": clock timing, fixed amounts, one
counterparty), and crowds created by one funder that never trade with each other.
"""

from __future__ import annotations

import numpy as np

from engine.synthetic.events import (
    Flow,
    concat_flows,
    human_times,
    keys,
    round_lot,
    stroops,
    taker_ops,
    trade_fills,
    units_of,
)
from engine.synthetic.market_takes import market_takes, mm_offer_group, pick_makers
from engine.synthetic.population import World

NS_ORGANIC, NS_REBALANCE, NS_DCA, NS_ARB, NS_CROWD, NS_TRIANGLE = 1, 2, 3, 4, 5, 6


def active_from(world: World, accounts: np.ndarray, *, delay: float = 600.0) -> np.ndarray:
    """Earliest time `accounts` can act: creation + `delay`, or 0 when they pre-exist."""
    created = world.created_t[accounts]
    return np.where(np.isnan(created), 0.0, created + delay)


def organic_trades(rng, world: World, n_ops: int) -> Flow:
    """Heavy-tailed activity, 1-3 favourite pairs each, sizes log-normal over ~5 decades."""
    org = world.groups["organic"]
    activity = np.exp(rng.normal(0, 1.3, org.size))
    size_mu = rng.normal(np.log(150), 2.0, org.size)
    favourites = rng.choice(world.pair_weight.size, size=(org.size, 3), p=world.pair_weight)
    n_fav = rng.integers(1, 4, org.size)
    who = rng.choice(org.size, size=n_ops, p=activity / activity.sum())
    taker = org[who]
    lo = active_from(world, taker)
    t = human_times_for(rng, world, taker, lo)
    pair = favourites[who, (rng.random(n_ops) * n_fav[who]).astype(int)]
    value = np.exp(rng.normal(size_mu[who], 1.2))
    return market_takes(rng, world, namespace=NS_ORGANIC, taker=taker, t=t, pair=pair, value_xlm=value)


def human_times_for(rng, world: World, accounts: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return human_times(rng, lo, np.full(lo.size, float(world.seconds)), world.tz[accounts].astype(float))


def mm_rebalancing(rng, world: World, n_ops: int) -> Flow:
    """Market makers take round lots from pools to rebalance inventory, around the clock."""
    pooled = np.flatnonzero(world.pair_pool >= 0)
    pair = rng.choice(pooled, size=n_ops, p=world.pair_weight[pooled] / world.pair_weight[pooled].sum())
    maker = pick_makers(rng, world, pair)
    t = np.sort(rng.uniform(0, world.seconds, n_ops))
    sells_base = rng.random(n_ops) < 0.5
    asset = np.where(sells_base, world.pair_base[pair], world.pair_counter[pair])
    units = round_lot(units_of(world, asset, np.exp(rng.normal(np.log(3000), 0.8, n_ops))))
    op_key = keys(NS_REBALANCE, n_ops)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(n_ops), t=t, pair=pair, taker=maker,
                        maker=np.full(n_ops, -1), pool=world.pair_pool[pair], offer_group=np.full(n_ops, -1),
                        maker_sells_base=sells_base, maker_units=units, markup=0.003 + 0.003 * rng.random(n_ops))
    return Flow(taker_ops(op_key, t, maker, np.full(n_ops, "path_payment_strict_receive")), fills)


def scheduled_buyers(rng, world: World) -> Flow:
    """Each buyer spends the same amount on a clock (1 h - 1 day, a few seconds of jitter)."""
    buyers = world.groups["scheduled_buyer"]
    period = rng.choice([3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0], size=buyers.size)
    start = active_from(world, buyers) + rng.uniform(0, 1, buyers.size) * period
    count = np.maximum(0, np.floor((world.seconds - start) / period)).astype(int)
    liquid = np.argsort(-world.pair_weight)[:6]
    pair_b = rng.choice(liquid, size=buyers.size)
    buys_base = rng.random(buyers.size) < 0.5  # taker buys base: maker sells base
    spend_asset = np.where(buys_base, world.pair_counter[pair_b], world.pair_base[pair_b])
    spend = units_of(world, spend_asset, np.exp(rng.normal(np.log(400), 1.0, buyers.size)))
    spend = np.where(rng.random(buyers.size) < 0.7, round_lot(spend), np.round(spend, 2))
    row = np.repeat(np.arange(buyers.size), count)
    step = np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)
    t = start[row] + step * period[row] + rng.normal(0, rng.uniform(2, 90, buyers.size)[row])
    t = np.clip(t, 0, world.seconds - 1)
    pair, sells_base, op_key = pair_b[row], buys_base[row], keys(NS_DCA, row.size)
    to_pool = world.pair_pool[pair] >= 0
    p = world.price_at(pair, t) * 1.003
    maker_units = np.where(sells_base, spend[row] / p, spend[row] * p)
    maker = np.where(to_pool, -1, pick_makers(rng, world, pair))
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(row.size), t=t, pair=pair, taker=buyers[row],
                        maker=maker, pool=np.where(to_pool, world.pair_pool[pair], -1),
                        offer_group=mm_offer_group(maker, pair, sells_base, t), maker_sells_base=sells_base,
                        maker_units=maker_units, markup=np.full(row.size, 0.003))
    fills = fills.with_columns(taker_amount=stroops(spend[row]))  # the fixed side is exact
    types = np.where(to_pool, "path_payment_strict_send", "manage_sell_offer")
    return Flow(taker_ops(op_key, t, buyers[row], types), fills)


def pool_book_bots(world: World) -> np.ndarray:
    """The arbitrage bots that trade a pool against the order book (the others run triangles)."""
    bots = world.groups["arbitrage_bot"]
    return bots[: max(1, bots.size // 2)]


def triangle_bots(world: World) -> np.ndarray:
    bots = world.groups["arbitrage_bot"]
    return bots[max(1, bots.size // 2):] if bots.size > 1 else bots


def arbitrage(rng, world: World, n_events: int) -> Flow:
    """Pool leg and order-book leg in one transaction, bunched around price dislocations."""
    bots = pool_book_bots(world)
    pooled = np.flatnonzero(world.pair_pool >= 0)
    centers = rng.uniform(0, world.seconds, max(1, n_events // 6))
    t = np.clip(rng.choice(centers, n_events) + rng.exponential(40, n_events), 0, world.seconds - 1)
    pair = rng.choice(pooled, size=n_events, p=world.pair_weight[pooled] / world.pair_weight[pooled].sum())
    bot = bots[rng.integers(0, bots.size, n_events)]
    sells_base = rng.random(n_events) < 0.5
    asset = np.where(sells_base, world.pair_base[pair], world.pair_counter[pair])
    units = units_of(world, asset, np.exp(rng.normal(np.log(2500), 1.1, n_events)))
    k1, k2 = keys(NS_ARB, n_events), keys(NS_ARB, 2 * n_events)[n_events:]
    leg1 = trade_fills(world, op_key=k1, fill_idx=np.zeros(n_events), t=t, pair=pair, taker=bot,
                       maker=np.full(n_events, -1), pool=world.pair_pool[pair], offer_group=np.full(n_events, -1),
                       maker_sells_base=sells_base, maker_units=units, markup=np.full(n_events, 0.003))
    mm = pick_makers(rng, world, pair)
    back = leg1["taker_amount"].to_numpy() / 1e7 * (1 + rng.uniform(0.0005, 0.004, n_events))
    leg2 = trade_fills(world, op_key=k2, fill_idx=np.zeros(n_events), t=t, pair=pair, taker=bot, maker=mm,
                       pool=np.full(n_events, -1), offer_group=mm_offer_group(mm, pair, ~sells_base, t),
                       maker_sells_base=~sells_base, maker_units=back, markup=np.full(n_events, -0.002))
    ops = concat_flows([
        Flow(taker_ops(k1, t, bot, np.full(n_events, "path_payment_strict_send"), tx_key=k1), leg1),
        Flow(taker_ops(k2, t, bot, np.full(n_events, "manage_sell_offer"), tx_key=k1,
                       op_seq=np.ones(n_events, dtype=np.int8)), leg2),
    ])
    return ops


TRIANGLE_SLOT = 120.0  # seconds: a triangle bot runs at most one cycle per slot


def triangle_arbitrage(rng, world: World, n_cycles: int) -> Flow:
    """Triangle bots cycle XLM through three pairs and back (XLM -> USDC -> X -> XLM or the
    reverse, X a major quoted against both) for a small profit: three legs in one transaction
    or in consecutive ledgers, each through the pair's pool or a market maker. One account,
    one asset around a cycle of pairs: a closed loop that is not a ring."""
    bots = triangle_bots(world)
    index = {c: i for i, c in enumerate(world.asset_code)}
    usdc = index["USDC"]
    crossed = np.array([index[c] for c in ("EURC", "BTC", "ETH", "AQUA", "yXLM")])
    n_slots = int(world.seconds // TRIANGLE_SLOT) - 1
    n = min(n_cycles, n_slots * bots.size)
    slot = np.sort(rng.choice(n_slots * bots.size, n, replace=False))
    bot = bots[slot % bots.size]
    t0 = (slot // bots.size) * TRIANGLE_SLOT + rng.uniform(0, 60, n)
    x = crossed[rng.integers(0, crossed.size, n)]
    forward = rng.random(n) < 0.5
    path = np.stack([np.zeros(n, dtype=np.int64), np.where(forward, usdc, x), np.where(forward, x, usdc)], axis=1)
    same_tx = rng.random(n) < 0.5
    gap = np.where(same_tx[:, None], 0.0, rng.uniform(6.5, 9, (n, 2)))  # > 6 s: the next ledger
    t = np.minimum(np.concatenate([t0[:, None], t0[:, None] + np.cumsum(gap, axis=1)], axis=1), world.seconds - 1)
    k = keys(NS_TRIANGLE, 3 * n).reshape(n, 3)
    give = np.exp(rng.normal(np.log(3000), 1.0, n))  # XLM put in
    profit = rng.uniform(0.0005, 0.005, n)
    flows, amount = [], give
    for leg in range(3):
        a_in, a_out = path[:, leg], path[:, (leg + 1) % 3]
        out = give * (1 + profit) if leg == 2 else None
        flow, amount = _convert(rng, world, k[:, leg], t[:, leg], bot, a_in, a_out, amount, out,
                                tx_key=np.where(same_tx, k[:, 0], k[:, leg]), op_seq=np.where(same_tx, leg, 0))
        flows.append(flow)
    return concat_flows(flows)


def _convert(rng, world: World, op_key, t, taker, a_in, a_out, units_in, units_out, *, tx_key, op_seq):
    """`taker` sells exactly `units_in` of `a_in` for `a_out` on their pair, through the pool
    (70% where there is one) or a market maker; returns (flow, units received)."""
    table = np.full((world.asset_code.size,) * 2, -1, dtype=np.int32)
    table[world.pair_base, world.pair_counter] = np.arange(world.pair_base.size)
    pair = table[np.minimum(a_in, a_out), np.maximum(a_in, a_out)]
    maker_sells_base = world.pair_base[pair] == a_out
    p = world.price_at(pair, t)
    if units_out is None:
        units_out = np.where(maker_sells_base, units_in / p, units_in * p) / 1.003
    to_pool = (world.pair_pool[pair] >= 0) & (rng.random(pair.size) < 0.7)
    mm = pick_makers(rng, world, pair)
    maker = np.where(to_pool, -1, mm)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(pair.size), t=t, pair=pair, taker=taker, maker=maker,
                        pool=np.where(to_pool, world.pair_pool[pair], -1),
                        offer_group=np.where(to_pool, -1, mm_offer_group(mm, pair, maker_sells_base, t)),
                        maker_sells_base=maker_sells_base, maker_units=units_out, markup=np.full(pair.size, 0.003))
    fills = fills.with_columns(taker_amount=stroops(units_in))
    types = np.where(to_pool, "path_payment_strict_send", "manage_sell_offer")
    ops = taker_ops(op_key, t, taker, types, tx_key=tx_key, op_seq=op_seq.astype(np.int8))
    return Flow(ops, fills), fills["maker_amount"].to_numpy() / 1e7
