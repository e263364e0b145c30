"""Account creation, payments, deposits, merges, claimable-balance airdrops and the
crowds they produce (many accounts created by one funder, never trading together),
and airdrop farms (one funder's many accounts, each trading a little with the market).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.synthetic.events import (
    FILLS,
    OPS,
    Flow,
    concat_flows,
    frame,
    keys,
    round_lot,
    round_sig,
    stroops,
    taker_ops,
    trade_fills,
)
from engine.synthetic.legit import active_from, human_times_for
from engine.synthetic.market_takes import market_takes, pick_makers
from engine.synthetic.population import World

NS_CREATE, NS_PAY, NS_MERGE, NS_CROWD_OPS, NS_CROWD_TRADES, NS_AIRDROP_SALES, NS_CB, NS_CLAIM = 10, 11, 12, 13, 14, 15, 16, 17
NS_FARM_CREATE, NS_FARM_TRADES, NS_FARM_SWEEP = 18, 19, 20


def value_ops(namespace: int, type_, t, src, dst, asset, amount_stroops, *, claim_of=None) -> pl.DataFrame:
    """Operations moving value from `src` to `dst` (OPS columns)."""
    k = keys(namespace, len(t))
    cols = {"op_key": k, "t": t, "tx_key": k, "op_seq": np.zeros(len(t), dtype=np.int8),
            "type": np.broadcast_to(np.asarray(type_), (len(t),)), "src": src, "dst": dst,
            "asset": asset, "amount": amount_stroops}
    if claim_of is not None:
        cols["claim_of"] = claim_of
    return frame(cols, OPS)


def legit_creations(rng, world: World) -> pl.DataFrame:
    """create_account for every legit account born inside the window."""
    born = np.flatnonzero(~np.isnan(world.created_t) & (world.funder >= 0)
                          & ~np.isin(world.role, ["crowd", "airdrop_farmer"]))
    balance = round_sig(np.exp(rng.normal(np.log(60), 1.4, born.size)) + 1.5, 2)
    return value_ops(NS_CREATE, "create_account", world.created_t[born], world.funder[born], born,
                     np.zeros(born.size), stroops(balance))


def payments(rng, world: World, n: int) -> pl.DataFrame:
    """Payments between people, deposits to and withdrawals from exchanges, in XLM or USDC."""
    org, exch = world.groups["organic"], world.groups["exchange"]
    kind = rng.random(n)
    a, b = org[rng.integers(0, org.size, n)], org[rng.integers(0, org.size, n)]
    e = exch[rng.integers(0, exch.size, n)]
    src = np.where(kind < 0.4, a, np.where(kind < 0.7, a, e))
    dst = np.where(kind < 0.4, b, np.where(kind < 0.7, e, a))
    keep = src != dst
    src, dst = src[keep], dst[keep]
    lo = np.maximum(active_from(world, src, delay=120), active_from(world, dst, delay=120))
    t = human_times_for(rng, world, np.where(np.isin(src, exch), dst, src), lo)
    usdc = 1
    asset = np.where(rng.random(src.size) < 0.7, 0, usdc)
    value = np.exp(rng.normal(np.log(120), 1.6, src.size))
    amount = round_sig(value / world.asset_value[asset], 3)
    return value_ops(NS_PAY, "payment", t, src, dst, asset, stroops(amount))


def merges(rng, world: World) -> pl.DataFrame:
    """Some accounts born in the window are merged back into their funder a few days later."""
    born = np.flatnonzero(~np.isnan(world.created_t) & (world.funder >= 0) & (world.role == "organic"))
    chosen = born[rng.random(born.size) < 0.03]
    t = world.created_t[chosen] + rng.uniform(2, 6, chosen.size) * 86_400
    ok = t < world.seconds
    chosen, t = chosen[ok], t[ok]
    return value_ops(NS_MERGE, "account_merge", t, chosen, world.funder[chosen], np.zeros(chosen.size),
                     np.zeros(chosen.size, dtype=np.int64))


def crowds(rng, world: World) -> Flow:
    """Crowds: one funder creates 10-60 accounts within two hours with the same starting
    balance; half get an equal airdrop (claimable balances) and sell it, the rest trade a
    little on popular pairs. Members never trade with each other."""
    members = world.groups["crowd"]
    crowd = world.crowd_of[members]
    n_crowds = int(crowd.max()) + 1
    created, funder = world.created_t[members], world.funder[members]
    funder_c = np.zeros(n_crowds, dtype=np.int32)
    funder_c[crowd] = funder
    balance_c = rng.choice([2.0, 3.5, 5.0, 10.0, 25.0], n_crowds)
    creates = value_ops(NS_CROWD_OPS, "create_account", created, funder, members, np.zeros(members.size),
                        stroops(balance_c[crowd]))
    airdrop_c = rng.random(n_crowds) < 0.5
    air = airdrop_c[crowd]
    flows = [Flow(creates, frame({"op_key": []}, FILLS)),
             _airdrops(rng, world, members[air], crowd[air], funder_c, created[air]),
             _crowd_trades(rng, world, members[~air], created[~air])]
    return concat_flows(flows)


def _crowd_trades(rng, world: World, members: np.ndarray, created: np.ndarray) -> Flow:
    n_each = rng.integers(1, 6, members.size)
    who = np.repeat(np.arange(members.size), n_each)
    taker = members[who]
    t = human_times_for(rng, world, taker, created[who] + 900)
    liquid = np.argsort(-world.pair_weight)[:5]
    pair = rng.choice(liquid, taker.size)
    value = np.exp(rng.normal(np.log(40), 1.0, taker.size))
    return market_takes(rng, world, namespace=NS_CROWD_TRADES, taker=taker, t=t, pair=pair, value_xlm=value,
                        p_peer=0.0)


def _airdrops(rng, world: World, members, crowd, funder_c, created) -> Flow:
    """Equal claimable balances of one token per crowd, claimed, then sold whole for XLM."""
    n_crowds = funder_c.size
    tokens = np.flatnonzero(np.isin(world.asset_code, ["AQUA"]) | (np.arange(world.asset_code.size) > 10))
    tokens = tokens[world.asset_issuer[tokens] >= 0]
    tokens = tokens[np.isin(world.role[world.asset_issuer[tokens]], ["issuer"])]
    token_c = rng.choice(tokens, n_crowds)
    amount_c = round_lot(rng.uniform(20, 300, n_crowds) / world.asset_value[token_c])
    t_cb = created + rng.uniform(60, 900, members.size)
    cb = value_ops(NS_CB, "create_claimable_balance", t_cb, funder_c[crowd], members,
                   token_c[crowd], stroops(amount_c[crowd]))
    t_claim = human_times_for(rng, world, members, t_cb + 600)
    claim = value_ops(NS_CLAIM, "claim_claimable_balance", t_claim, members, members, token_c[crowd],
                      stroops(amount_c[crowd]), claim_of=cb["op_key"].to_numpy())
    sold = rng.random(members.size) < 0.8
    t_sell = human_times_for(rng, world, members[sold], t_claim[sold] + 300)
    sales = _sell_whole(rng, world, members[sold], t_sell, token_c[crowd][sold], amount_c[crowd][sold])
    return concat_flows([Flow(pl.concat([cb, claim]), frame({"op_key": []}, FILLS)), sales])


def _sell_whole(rng, world: World, taker, t, token, units) -> Flow:
    """Sell exactly `units` of `token` for XLM, to the token's pool or its market makers."""
    xlm_pair = np.full(world.asset_code.size, -1, dtype=np.int32)
    native = world.pair_base == 0
    xlm_pair[world.pair_counter[native]] = np.flatnonzero(native)
    pair = xlm_pair[token]
    op_key = keys(NS_AIRDROP_SALES, taker.size)
    to_pool = world.pair_pool[pair] >= 0
    p = world.price_at(pair, t) * 1.003  # token per XLM: maker sells XLM (base)
    maker = np.where(to_pool, -1, pick_makers(rng, world, pair))
    fills = trade_fills(world, op_key=op_key, fill_idx=np.zeros(taker.size), t=t, pair=pair, taker=taker, maker=maker,
                        pool=np.where(to_pool, world.pair_pool[pair], -1), offer_group=-(op_key + 1),
                        maker_sells_base=np.ones(taker.size, dtype=bool), maker_units=units / p,
                        markup=np.full(taker.size, 0.003))
    fills = fills.with_columns(taker_amount=stroops(units))
    types = np.where(to_pool, "path_payment_strict_send", "manage_sell_offer")
    return Flow(taker_ops(op_key, t, taker, types), fills)


def airdrop_farms(rng, world: World) -> Flow:
    """Airdrop farmers: one funder creates 8-40 accounts over about a day with the same balance;
    each makes 2-6 small trades with the market (makers, pools; never with each other), mostly
    on the farm's target pair; in half the farms every account later sweeps most of its XLM back."""
    members = world.groups["airdrop_farmer"]
    if members.size == 0:
        return Flow(pl.DataFrame(schema=OPS), frame({"op_key": []}, FILLS))
    farm, created, funder = world.farm_of[members], world.created_t[members], world.funder[members]
    n_farms = int(farm.max()) + 1
    balance_f = rng.choice([5.0, 10.0, 20.0, 50.0, 100.0], n_farms)
    creates = value_ops(NS_FARM_CREATE, "create_account", created, funder, members, np.zeros(members.size),
                        stroops(balance_f[farm]))
    n_each = rng.integers(2, 7, members.size)
    who = np.repeat(np.arange(members.size), n_each)
    t = human_times_for(rng, world, members[who], created[who] + 900)
    liquid = np.argsort(-world.pair_weight)[:10]
    target_f = rng.choice(liquid, n_farms)
    pair = np.where(rng.random(who.size) < 0.7, target_f[farm[who]], rng.choice(liquid[:5], who.size))
    value = np.exp(rng.normal(np.log(balance_f[farm[who]] * 0.3), 0.5))
    trades = market_takes(rng, world, namespace=NS_FARM_TRADES, taker=members[who], t=t, pair=pair, value_xlm=value,
                          p_peer=0.0)
    last = np.zeros(members.size)
    np.maximum.at(last, who, t)
    sweep = (rng.random(n_farms) < 0.5)[farm] & (last + 3600 < world.seconds - 600)
    t_sweep = np.minimum(last[sweep] + rng.uniform(3600, 3 * 86_400, int(sweep.sum())), world.seconds - 600)
    sweeps = value_ops(NS_FARM_SWEEP, "payment", t_sweep, members[sweep], funder[sweep], np.zeros(int(sweep.sum())),
                       stroops(round_sig(balance_f[farm[sweep]] * rng.uniform(0.5, 0.8, int(sweep.sum())), 2)))
    return concat_flows([Flow(pl.concat([creates, sweeps]), frame({"op_key": []}, FILLS)), trades])
