"""Wash-trading rings: their funding, their trades inside the ring and their
camouflage trades with outsiders, following each ring's `RingSpec`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.synthetic.events import (
    FILLS,
    Flow,
    concat_flows,
    frame,
    human_times,
    keys,
    round_lot,
    round_sig,
    stroops,
    taker_ops,
    trade_fills,
    units_of,
)
from engine.synthetic.funding import value_ops
from engine.synthetic.market_takes import market_takes
from engine.synthetic.population import World
from engine.synthetic.rings import RingSpec

NS_RING = 100  # ring r uses namespaces NS_RING + 8 r ... NS_RING + 8 r + 7


def ring_accounts(world: World, r: int) -> dict[str, np.ndarray]:
    """members, controller, hops (in chain order) and issuer of ring `r` (account indices)."""
    mine = world.ring == r
    return {role: np.flatnonzero(mine & (world.role == name)) for role, name in (
        ("members", "wash_trader"), ("controller", "ring_controller"), ("hops", "ring_intermediary"),
        ("issuer", "ring_issuer"))}


def ring_flow(rng, world: World, spec: RingSpec) -> Flow:
    """Funding, wash trades and camouflage of one ring."""
    acc = ring_accounts(world, spec.index)
    ws, we = spec.start_frac * world.seconds, spec.end_frac * world.seconds
    funding, members_ready = _funding(rng, world, spec, acc, ws)
    wash = _wash_trades(rng, world, spec, acc["members"], max(ws, members_ready), we)
    camo = _camouflage(rng, world, spec, acc["members"], max(ws, members_ready), we, wash.fills.height)
    return concat_flows([Flow(funding, frame({"op_key": []}, FILLS)), wash, camo])


def _create(ns, t, src, dst, balance) -> pl.DataFrame:
    return value_ops(ns, "create_account", np.atleast_1d(t), np.atleast_1d(src), np.atleast_1d(dst),
                     np.zeros(np.atleast_1d(dst).size), stroops(np.atleast_1d(balance)))


def _funding(rng, world: World, spec: RingSpec, acc: dict, ws: float) -> tuple[pl.DataFrame, float]:
    """Funding ops of the ring and the time from which all members exist."""
    ns = NS_RING + 8 * spec.index
    ctrl, members = int(acc["controller"][0]), acc["members"]
    exchanges = world.groups["exchange"]
    parts = []
    if rng.random() < 0.5:  # the controller itself is a fresh exchange customer
        parts.append(_create(ns, ws * rng.uniform(0, 0.05), rng.choice(exchanges), ctrl, round_sig(rng.uniform(200, 5000), 2)))
    t_members = ws * rng.uniform(0.3, 0.9, members.size)
    balance = round_sig(np.exp(rng.normal(np.log(80), 1.2, members.size)) + 2, 2)
    if spec.funding == "controller":
        parts.append(_create(ns + 1, t_members, np.full(members.size, ctrl), members, balance))
    elif spec.funding == "chain":
        hops = acc["hops"]
        t_hops = np.sort(ws * rng.uniform(0.06, 0.28, hops.size))
        chain_src = np.concatenate([[ctrl], hops[:-1]])
        parts.append(_create(ns + 2, t_hops, chain_src, hops, round_sig(rng.uniform(300, 3000, hops.size), 2)))
        parts.append(_create(ns + 1, t_members, np.full(members.size, hops[-1]), members, balance))
    else:
        fresh = rng.random(members.size) < 0.6
        parts.append(_create(ns + 1, t_members[fresh], rng.choice(exchanges, int(fresh.sum())), members[fresh], balance[fresh]))
    if acc["issuer"].size:
        parts.append(_token_issue(rng, world, spec, ctrl, int(acc["issuer"][0]), members, t_members, ns))
    if spec.top_ups:
        n_up = members.size * int(rng.integers(1, 4))
        who = members[rng.integers(0, members.size, n_up)]
        ready = max(ws, float(t_members.max()) + 600)
        t_up = rng.uniform(ready, max(ready + 1, spec.end_frac * world.seconds), n_up)
        amount = round_lot(np.exp(rng.normal(np.log(spec.lot_value_xlm), 0.8, n_up)))
        parts.append(value_ops(ns + 3, "payment", t_up, np.full(n_up, ctrl), who, np.zeros(n_up), stroops(amount)))
    return pl.concat(parts), float(t_members.max()) + 600


def _token_issue(rng, world, spec, ctrl, issuer, members, t_members, ns) -> pl.DataFrame:
    """The controller creates the token's issuer, which pays the token to every member."""
    t_issuer = float(t_members.min()) * rng.uniform(0.2, 0.8)
    token = int(np.flatnonzero(world.asset_issuer == issuer)[0])
    amount = round_lot(units_of(world, np.full(members.size, token), spec.lot_value_xlm * 50))
    pay = value_ops(ns + 4, "payment", t_members + rng.uniform(60, 1800, members.size), np.full(members.size, issuer),
                    members, np.full(members.size, token), stroops(amount))
    return pl.concat([_create(ns + 5, t_issuer, ctrl, issuer, 50.0), pay])


def _wash_times(rng, spec: RingSpec, n: int, ws: float, we: float) -> np.ndarray:
    if spec.timing == "burst":
        n_bursts = max(2, n // 25)
        centers = rng.uniform(ws, max(ws + 1, we - 3600), n_bursts)
        length = rng.uniform(600, 3600, n_bursts)
        b = rng.integers(0, n_bursts, n)
        t = centers[b] + rng.random(n) * length[b]
    elif spec.timing == "clock":
        step = (we - ws) / n
        t = ws + np.arange(n) * step + rng.normal(0, rng.uniform(1, 30), n)
    elif spec.timing == "human_hours":
        t = human_times(rng, np.full(n, ws), np.full(n, we), np.full(n, float(spec.tz_hours)))
    else:
        t = rng.uniform(ws, we, n)
    return np.sort(np.clip(t, ws, we - 1))


def _wash_sides(rng, spec: RingSpec, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Who hands the lot to whom: ping-pong, a k-cycle, or random matching inside the ring."""
    i = np.arange(n)
    if spec.topology == "ping_pong":
        seller = i % 2
        return seller, 1 - seller
    if spec.topology == "cycle":
        seller = i % k
        return seller, (seller + 1) % k
    seller = rng.integers(0, k, n)
    return seller, (seller + rng.integers(1, k, n)) % k


def _wash_lots(rng, spec: RingSpec, base_units: float, n: int) -> np.ndarray:
    if spec.amount_style == "fixed_lot":
        lot = round_sig(base_units, 3) if rng.random() < 0.5 else np.round(base_units, 4)
        return np.full(n, lot)
    if spec.amount_style == "round":
        return round_lot(base_units * np.exp(rng.normal(0, 0.7, n)))
    if spec.amount_style == "jittered_lot":
        return base_units * rng.uniform(0.96, 1.04, n)
    return base_units * np.exp(rng.uniform(-2.3, 2.3, n))  # log-uniform: first digits follow Benford


def _wash_trades(rng, world: World, spec: RingSpec, members: np.ndarray, ws: float, we: float) -> Flow:
    """Members trade a lot back and forth at about the market price (or the pumped price)."""
    n, pair = spec.n_trades, int(world.ring_pair[spec.index])
    t = _wash_times(rng, spec, n, ws, we)
    s_idx, b_idx = _wash_sides(rng, spec, n, members.size)
    lot_is_base = bool(rng.random() < 0.5)
    lot_asset = world.pair_base[pair] if lot_is_base else world.pair_counter[pair]
    lots = _wash_lots(rng, spec, float(units_of(world, np.array([lot_asset]), spec.lot_value_xlm)[0]), n)
    seller_makes = rng.random(n) < 0.5
    p = world.price_at(np.full(n, pair), t) * (1 + rng.normal(0, 0.0015, n))
    other_units = lots * p if lot_is_base else lots / p
    maker = np.where(seller_makes, members[s_idx], members[b_idx])
    taker = np.where(seller_makes, members[b_idx], members[s_idx])
    op_key = keys(NS_RING + 8 * spec.index + 6, n)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(n), t=t, pair=np.full(n, pair), taker=taker,
                        maker=maker, pool=np.full(n, -1), offer_group=-(op_key + 1),
                        maker_sells_base=np.where(seller_makes, lot_is_base, not lot_is_base),
                        maker_units=np.where(seller_makes, lots, other_units), markup=rng.normal(0, 0.001, n))
    fills = fills.with_columns(
        taker_amount=pl.when(pl.Series(~seller_makes)).then(pl.Series(stroops(lots))).otherwise(pl.col("taker_amount")))
    types = np.where(rng.random(n) < 0.6, "manage_sell_offer", "manage_buy_offer")
    return Flow(taker_ops(op_key, t, taker, types), fills)


def _camouflage(rng, world: World, spec: RingSpec, members, ws, we, n_wash: int) -> Flow:
    """Trades of ring members with outsiders (makers, pools, other traders), organic-looking."""
    n = int(round(n_wash * spec.camouflage / (1 - spec.camouflage)))
    if n == 0:
        return Flow(frame({"op_key": []}, taker_ops_schema()), frame({"op_key": []}, FILLS))
    taker = members[rng.integers(0, members.size, n)]
    t = human_times(rng, np.full(n, ws), np.full(n, we), np.full(n, float(spec.tz_hours)))
    liquid = np.argsort(-world.pair_weight)[:8]
    pair = np.where(rng.random(n) < 0.6, world.ring_pair[spec.index], rng.choice(liquid, n))
    value = np.exp(rng.normal(np.log(spec.lot_value_xlm), 1.3, n))
    return market_takes(rng, world, namespace=NS_RING + 8 * spec.index + 7, taker=taker, t=t, pair=pair,
                        value_xlm=value)


def taker_ops_schema() -> dict:
    from engine.synthetic.events import OPS

    return OPS
