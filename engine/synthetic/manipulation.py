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
from engine.synthetic.market_takes import empty_flow, market_takes
from engine.synthetic.population import World
from engine.synthetic.rings import RingSpec

NS_RING = 10_000  # ring r uses namespaces NS_RING + 16 r ... NS_RING + 16 r + 15
MIN_HOP_DELAY = 12.0  # seconds: two ledgers, so a hop exists before it forwards


def ring_accounts(world: World, r: int) -> dict[str, np.ndarray]:
    """members, controller, hops (member 0's chain from the controller side, then member 1's, ...)
    and issuer of ring `r` (account indices)."""
    mine = world.ring == r
    return {role: np.flatnonzero(mine & (world.role == name)) for role, name in (
        ("members", "wash_trader"), ("controller", "ring_controller"), ("hops", "ring_intermediary"),
        ("issuer", "ring_issuer"))}


def member_chains(spec: RingSpec, hops: np.ndarray) -> list[np.ndarray]:
    """Each member's throwaway accounts, controller side first (empty unless chain funding)."""
    if not spec.hops:
        return [hops[:0] for _ in range(spec.n_members)]
    return np.split(hops, np.cumsum(spec.hops)[:-1])


def ring_flow(rng, world: World, spec: RingSpec) -> Flow:
    """Funding, wash trades and camouflage of one ring."""
    acc = ring_accounts(world, spec.index)
    ws, we = spec.start_frac * world.seconds, spec.end_frac * world.seconds
    funding, members_ready = _funding(rng, world, spec, acc, ws, we)
    start = min(max(ws, members_ready), ws + 0.5 * (we - ws))
    wash = _wash_trades(rng, world, spec, acc["members"], start, we)
    camo = _camouflage(rng, world, spec, acc["members"], start, we)
    return concat_flows([Flow(funding, frame({"op_key": []}, FILLS)), wash, camo])


def _create(ns, t, src, dst, balance) -> pl.DataFrame:
    return value_ops(ns, "create_account", np.atleast_1d(t), np.atleast_1d(src), np.atleast_1d(dst),
                     np.zeros(np.atleast_1d(dst).size), stroops(np.atleast_1d(balance)))


def _funding(rng, world: World, spec: RingSpec, acc: dict, ws: float, we: float) -> tuple[pl.DataFrame, float]:
    """Funding ops of the ring and the time from which all members exist (and hold their token)."""
    ns = NS_RING + 16 * spec.index
    ctrl, members = int(acc["controller"][0]), acc["members"]
    exchanges = world.groups["exchange"]
    parts = []
    if rng.random() < 0.5:  # the controller itself is a fresh exchange customer
        parts.append(_create(ns, ws * rng.uniform(0, 0.04), rng.choice(exchanges), ctrl, round_sig(rng.uniform(200, 5000), 2)))
    t_members = ws * rng.uniform(0.3, 0.9, members.size)
    balance = round_sig(np.exp(rng.normal(np.log(80), 1.2, members.size)) + 2, 2)
    if spec.funding == "controller":
        parts.append(_create(ns + 1, t_members, np.full(members.size, ctrl), members, balance))
    elif spec.funding == "chain":
        parts.append(_chains(rng, spec, ctrl, members, member_chains(spec, acc["hops"]), t_members, balance,
                             floor=ws * 0.05, ns=ns))
    else:  # exchange_topup: one or two exchanges create the members
        used = rng.choice(exchanges, size=int(rng.integers(1, 3)))
        parts.append(_create(ns + 1, t_members, used[rng.integers(0, used.size, members.size)], members, balance))
    ready = float(t_members.max()) + 600
    if acc["issuer"].size:
        issue, paid = _token_issue(rng, world, spec, ctrl, int(acc["issuer"][0]), members, t_members, ns)
        parts.append(issue)
        ready = max(ready, paid + 60)
    if spec.top_ups:
        parts.append(_top_ups(rng, spec, ctrl, members, t_members, max(ws, ready), we, ns))
    return pl.concat(parts), ready


def _top_ups(rng, spec: RingSpec, ctrl: int, members, t_members, lo: float, hi: float, ns: int) -> pl.DataFrame:
    """Payments from the controller: every member at least once, some up to three times."""
    extra = members.size * int(rng.integers(0, 3))
    who = np.concatenate([np.arange(members.size), rng.integers(0, members.size, extra)])
    t_up = np.maximum(rng.uniform(lo, max(lo + 1, hi - 60), who.size), t_members[who] + 600)
    amount = round_lot(np.exp(rng.normal(np.log(spec.lot_value_xlm), 0.8, who.size)))
    return value_ops(ns + 3, "payment", t_up, np.full(who.size, ctrl), members[who], np.zeros(who.size), stroops(amount))


def _chains(rng, spec: RingSpec, ctrl: int, members, chains: list[np.ndarray], t_members, balance, *,
            floor: float, ns: int) -> pl.DataFrame:
    """controller -> hop_1 -> ... -> hop_h -> member. Each hop is created (or created with a
    little and paid the rest moments later), waits minutes to a few hours and creates the next
    account with 95-99.5% of what it received; it never trades. The member gets `balance`."""
    sizes = np.array([c.size + 1 for c in chains])  # forwards per member: h hops + the member
    src = np.concatenate([np.concatenate([[ctrl], c]) for c in chains])
    dst = np.concatenate([np.concatenate([c, [m]]) for c, m in zip(chains, members, strict=True)])
    row = np.repeat(np.arange(members.size), sizes)
    is_member = np.zeros(row.size, dtype=bool)
    is_member[np.cumsum(sizes) - 1] = True
    # delay[j]: how long dst[j] holds the funds before forwarding (0 for the member)
    delay = np.where(is_member, 0.0, np.exp(rng.uniform(np.log(120), np.log(3 * 3600), row.size)))
    squeeze = np.minimum(1.0, (t_members - floor) / np.maximum(np.bincount(row, delay), 1.0))
    delay = np.where(is_member, 0.0, np.maximum(delay * squeeze[row], MIN_HOP_DELAY))
    t = t_members[row] - _suffix_within(delay, row, sizes)  # when dst[j] is created
    keep = np.where(is_member, 1.0, rng.uniform(0.95, 0.995, row.size))  # share dst[j] forwards
    received = balance[row] * np.exp(-_suffix_within(np.log(keep), row, sizes))
    small = (rng.random(row.size) < 0.4) & ~is_member
    start = np.where(small, rng.uniform(1, 2.5, row.size), received)
    parts = [_create(ns + 2, t, src, dst, start)]
    if small.any():
        n = int(small.sum())
        t_pay = t[small] + np.minimum(rng.uniform(6, 120, n), delay[small] / 2)
        parts.append(value_ops(ns + 4, "payment", t_pay, src[small], dst[small], np.zeros(n),
                               stroops(received[small] - start[small])))
    return pl.concat(parts)


def _suffix_within(x: np.ndarray, row: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum of `x` from each position to the end of its run (runs of equal `row`, lengths `sizes`)."""
    c = np.cumsum(x)
    run_total = np.repeat(c[np.cumsum(sizes) - 1], sizes)
    return run_total - c + x


def _token_issue(rng, world, spec, ctrl, issuer, members, t_members, ns) -> tuple[pl.DataFrame, float]:
    """The controller creates the token's issuer, which pays the token to every member."""
    t_issuer = float(t_members.min()) * rng.uniform(0.2, 0.8)
    token = int(np.flatnonzero(world.asset_issuer == issuer)[0])
    amount = round_lot(units_of(world, np.full(members.size, token), spec.lot_value_xlm * 50))
    t_pay = t_members + rng.uniform(60, 1800, members.size)
    pay = value_ops(ns + 5, "payment", t_pay, np.full(members.size, issuer), members, np.full(members.size, token),
                    stroops(amount))
    return pl.concat([_create(ns + 6, t_issuer, ctrl, issuer, 50.0), pay]), float(t_pay.max())


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


def _wash_sides(rng, shape: str, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Who hands the lot to whom (member positions): ping-pong, a directed k-cycle (member i
    only ever sells to member i + 1), or random matching inside the ring."""
    i = np.arange(n)
    if shape == "ping_pong":
        seller = i % 2
        return seller, 1 - seller
    if shape == "cycle":
        seller = i % k
        return seller, (seller + 1) % k
    seller = rng.integers(0, k, n)
    return seller, (seller + rng.integers(1, k, n)) % k


def _wash_lots(rng, spec: RingSpec, base_units: float, n: int, k: int) -> np.ndarray:
    """Lot per leg: one fixed lot; a round lot per round; the lot +/- 5% per leg; lognormal per round."""
    rounds = np.arange(n) // max(k, 2)
    n_rounds = int(rounds[-1]) + 1 if n else 0
    if spec.amount_style == "fixed":
        lot = round_sig(base_units, 3) if rng.random() < 0.5 else np.round(base_units, 4)
        return np.full(n, max(float(lot), 1e-4))
    if spec.amount_style == "round":
        return round_lot(base_units * np.exp(rng.normal(0, 0.7, n_rounds)))[rounds]
    if spec.amount_style == "jittered":
        return base_units * rng.uniform(0.95, 1.05, n)
    return (base_units * np.exp(rng.normal(0, rng.uniform(0.3, 1.2), n_rounds)))[rounds]


def _lot_asset(rng, world: World, spec: RingSpec) -> int:
    """The asset that goes round: the ring's token, the asset both pairs of a two_pair ring share,
    else either side of the pair."""
    pair = int(world.ring_pair[spec.index])
    base, counter = int(world.pair_base[pair]), int(world.pair_counter[pair])
    pair2 = int(world.ring_pair2[spec.index])
    if pair2 >= 0:
        return counter if counter in (world.pair_base[pair2], world.pair_counter[pair2]) else base
    if spec.own_token:
        return counter
    return base if rng.random() < 0.5 else counter


def _wash_trades(rng, world: World, spec: RingSpec, members: np.ndarray, ws: float, we: float) -> Flow:
    """Members hand a lot around at about the market price (or the pumped price); pool_layered
    legs go through the pool, two_pair legs are spread over both pairs."""
    n = spec.n_trades
    t = _wash_times(rng, spec, n, ws, we)
    s_idx, b_idx = _wash_sides(rng, spec.shape, n, members.size)
    pair = np.full(n, world.ring_pair[spec.index], dtype=np.int32)
    if world.ring_pair2[spec.index] >= 0:
        pair = np.where(rng.random(n) < spec.second_pair_share, world.ring_pair2[spec.index], pair).astype(np.int32)
    lot_asset = _lot_asset(rng, world, spec)
    lot_is_base = world.pair_base[pair] == lot_asset
    lots = _wash_lots(rng, spec, float(units_of(world, np.array([lot_asset]), spec.lot_value_xlm)[0]), n, members.size)
    via_pool = (rng.random(n) < spec.pool_share) & (world.pair_pool[pair] >= 0)
    ns = NS_RING + 16 * spec.index
    book = ~via_pool
    flows = [_book_legs(rng, world, ns + 7, t[book], pair[book], members[s_idx[book]], members[b_idx[book]],
                        lots[book], lot_is_base[book])]
    if via_pool.any():
        flows.append(_pool_legs(rng, world, ns + 8, t[via_pool], pair[via_pool], members[s_idx[via_pool]],
                                members[b_idx[via_pool]], lots[via_pool], lot_is_base[via_pool]))
    return concat_flows(flows)


def _book_legs(rng, world: World, ns: int, t, pair, seller, buyer, lots, lot_is_base) -> Flow:
    """Order-book trades where `seller` hands `lots` of the lot asset to `buyer` (either one makes)."""
    n = t.size
    seller_makes = rng.random(n) < 0.5
    p = world.price_at(pair, t) * (1 + rng.normal(0, 0.0015, n))
    other_units = np.where(lot_is_base, lots * p, lots / p)
    maker = np.where(seller_makes, seller, buyer)
    taker = np.where(seller_makes, buyer, seller)
    op_key = keys(ns, n)
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(n), t=t, pair=pair, taker=taker,
                        maker=maker, pool=np.full(n, -1), offer_group=-(op_key + 1),
                        maker_sells_base=np.where(seller_makes, lot_is_base, ~lot_is_base),
                        maker_units=np.where(seller_makes, lots, other_units), markup=rng.normal(0, 0.001, n))
    fills = fills.with_columns(
        taker_amount=pl.when(pl.Series(~seller_makes)).then(pl.Series(stroops(lots))).otherwise(pl.col("taker_amount")))
    types = np.where(rng.random(n) < 0.6, "manage_sell_offer", "manage_buy_offer")
    return Flow(taker_ops(op_key, t, taker, types), fills)


def _pool_legs(rng, world: World, ns: int, t, pair, seller, buyer, lots, lot_is_base) -> Flow:
    """`seller` sells `lots` into the pair's pool (exact amount in); within 0-6 s (the same or
    the next ledger) `buyer` buys about the same amount (+/- 0.5%) out of it (exact amount out)."""
    n = t.size
    pool = world.pair_pool[pair]
    t_out = np.minimum(t + rng.uniform(0, 6, n), world.seconds - 1)
    k_in, k_out = keys(ns, n), keys(ns + 1, n)
    p = world.price_at(pair, t)
    other_units = np.where(lot_is_base, lots * p, lots / p) / 1.003
    sell_in = trade_fills(world, op_key=k_in, fill_idx=np.zeros(n), t=t, pair=pair, taker=seller, maker=np.full(n, -1),
                          pool=pool, offer_group=np.full(n, -1), maker_sells_base=~lot_is_base,
                          maker_units=other_units, markup=np.full(n, 0.003))
    sell_in = sell_in.with_columns(taker_amount=stroops(lots))
    buy_out = trade_fills(world, op_key=k_out, fill_idx=np.zeros(n), t=t_out, pair=pair, taker=buyer,
                          maker=np.full(n, -1), pool=pool, offer_group=np.full(n, -1), maker_sells_base=lot_is_base,
                          maker_units=lots * (1 + rng.uniform(-0.005, 0.005, n)), markup=np.full(n, 0.003))
    ops = pl.concat([taker_ops(k_in, t, seller, np.full(n, "path_payment_strict_send")),
                     taker_ops(k_out, t_out, buyer, np.full(n, "path_payment_strict_receive"))])
    return Flow(ops, pl.concat([sell_in, buy_out]))


def _camouflage(rng, world: World, spec: RingSpec, members, ws, we) -> Flow:
    """Trades of ring members with outsiders (makers, pools, other traders), organic-looking:
    `spec.camouflage` of all the members' trades."""
    n = int(round(spec.n_trades * spec.camouflage / (1 - spec.camouflage)))
    if n == 0:
        return empty_flow()
    taker = members[rng.integers(0, members.size, n)]
    t = human_times(rng, np.full(n, ws), np.full(n, we), np.full(n, float(spec.tz_hours)))
    liquid = np.argsort(-world.pair_weight)[:8]
    own = np.where((world.ring_pair2[spec.index] >= 0) & (rng.random(n) < 0.5), world.ring_pair2[spec.index],
                   world.ring_pair[spec.index])
    pair = np.where(rng.random(n) < 0.6, own, rng.choice(liquid, n))
    value = np.exp(rng.normal(np.log(spec.lot_value_xlm), 1.3, n))
    return market_takes(rng, world, namespace=NS_RING + 16 * spec.index + 15, taker=taker, t=t, pair=pair,
                        value_xlm=value)
