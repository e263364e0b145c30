"""A Stellar DEX market written independently of LedgerLens' simulator (issue 14).

Clean-room: written from DESIGN.md's data contracts, the ingest formats and the
recorded Stellar fixtures only, never from engine/synthetic, engine/graph, the
scoring or the features. It writes what a new user would download from Horizon:
`trades.jsonl` (Horizon trade records), `operations.jsonl` (Horizon operation
records: account creation, payments, merges, claimable balances, offers and path
payments) and, for the evaluator only, `labels.csv` and `meta.json`.

The market, with its own distributions:
- organic wallets with Pareto activity and lognormal size, a home pair, a buy/sell
  bias and a diurnal clock; 8% of order-book takers cross two offers in one operation;
- pairs from XLM/USDC-like majors to thin tokens, with constant-product-looking pools
  (fee 30 bp) on some, prices a geometric random walk per asset;
- exchanges creating and paying many accounts, users depositing back;
- legitimate look-alikes: market makers (round lots, a few regular clients both ways,
  many cancels, crossing each other's quotes), exchanges rebalancing on the DEX, DCA bots, triangle arbitrage bots (one path payment or three quick
  operations, always at a profit), airdrop farms (one funder, consolidation back),
  OTC desks (block trades with a few one-directional clients), two-wallet users moving
  funds between their own accounts, copy-trading groups (one payer funds wallets that
  trade the same side within minutes);
- planted rings: ping-pong (a pair, or a hub pinging two partners), directed cycles of
  3-8 (one direction per member pair, some legs through a pool), random matching
  rebalanced to flat, layering through a pool, a cycle spread over two pairs (each
  member pair always in the same pair, or each leg in either); amounts fixed, round, jittered or lognormal;
  camouflage trades with outsiders up to a share of the member's trades; funded by a
  controller (create_account or claimable balances), through chains of 1-3 throwaway
  hops (forward by payment or account_merge), or by an exchange plus top-ups from one
  common payer.

Hot paths are numpy arrays; loops run over rings, bots and groups, never over trades.

    .venv/bin/python benchmarks/foreign_market.py --out DIR [--preset A|B|tiny] [--seed S]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from stellar_sdk import StrKey

STROOPS = 10_000_000
POOL_FEE = 0.003
SYNTHETIC_OFFER_BIT = 1 << 62
_NONE = -(10**9)  # no counterparty
PATTERNS = ("ping_pong", "cycle", "random_matching", "pool_layered", "two_pair")
FUNDINGS = ("controller", "chain", "exchange_topup")
LEGIT_ROLES = ("organic", "market_maker", "mm_client", "dca_bot", "arbitrage_bot", "airdrop_farmer", "otc_desk",
               "otc_client", "two_wallet_user", "copy_trader", "exchange")

# code, price in XLM at the start, daily volatility, organic weight of its XLM pair
MAJORS = (("USDC", 9.1, 0.03, 40.0), ("EURC", 9.9, 0.03, 4.0), ("AQUA", 0.0071, 0.06, 10.0),
          ("yXLM", 1.0, 0.004, 3.0), ("SHX", 0.052, 0.07, 3.0), ("MOBI", 0.021, 0.08, 2.0))
TOKEN_CODES = ("LSP", "VELO", "KELP", "RIO", "GOLDX", "DOGET", "BTCLN", "SSLX", "ZIPCOIN", "FRED", "TERN", "WXT",
               "ARST", "NEBULA", "CNDY", "PIXLPUNK")


@dataclass(frozen=True)
class ForeignConfig:
    """One market's parameters; every random draw follows from `seed`."""

    seed: int
    days: int = 14
    n_organic: int = 8_000
    n_organic_trades: int = 75_000
    n_rings: int = 25
    n_tokens: int = 8
    n_ring_tokens: int = 3
    activity_alpha: float = 1.15
    pool_share: float = 0.3
    mm_share: float = 0.35
    max_camouflage: float = 1 / 3
    n_market_makers: int = 8
    n_dca: int = 10
    n_arbitrage: int = 3
    arbitrage_cycles: tuple[int, int] = (600, 2_000)
    n_farms: int = 3
    n_otc: int = 2
    n_two_wallet: int = 30
    n_copy_groups: int = 3
    n_exchanges: int = 5
    ring_rounds: tuple[int, int] = (8, 40)
    start: str = "2025-06-02T00:00:00Z"
    first_ledger: int = 57_300_000
    only_patterns: tuple[str, ...] = ()


PRESETS = {
    "A": ForeignConfig(seed=7301),
    "B": ForeignConfig(seed=9923, days=21, n_organic=12_000, n_organic_trades=118_000, n_rings=37, n_tokens=12,
                       n_ring_tokens=5, activity_alpha=1.05, pool_share=0.4, mm_share=0.3, n_market_makers=11,
                       n_dca=14, n_arbitrage=4, arbitrage_cycles=(500, 1_800), n_farms=4, n_otc=3, n_two_wallet=45,
                       n_copy_groups=4, n_exchanges=6, ring_rounds=(6, 50), start="2025-09-15T00:00:00Z",
                       first_ledger=58_700_000),
    "tiny": ForeignConfig(seed=11, days=3, n_organic=400, n_organic_trades=2_500, n_rings=5, n_tokens=3,
                          n_ring_tokens=1, n_market_makers=2, n_dca=1, n_arbitrage=1, arbitrage_cycles=(40, 60),
                          n_farms=1, n_otc=1, n_two_wallet=2, n_copy_groups=1, n_exchanges=2, ring_rounds=(4, 8)),
}


@dataclass
class _Accounts:
    """Every account of the market with its label (who it is, which ring)."""

    role: list[str] = field(default_factory=list)
    ring_id: list[str] = field(default_factory=list)
    pattern: list[str] = field(default_factory=list)
    funding: list[str] = field(default_factory=list)

    def add(self, n: int, role: str, *, ring_id: str = "", pattern: str = "", funding: str = "") -> np.ndarray:
        first = len(self.role)
        for column, value in ((self.role, role), (self.ring_id, ring_id), (self.pattern, pattern),
                              (self.funding, funding)):
            column.extend([value] * n)
        return np.arange(first, first + n)

    def relabel(self, ids: np.ndarray, role: str) -> None:
        for i in ids:
            self.role[i] = role


@dataclass
class _Market:
    """The market under construction: assets, pairs, pools, prices, accounts, fills, operations."""

    cfg: ForeignConfig
    rng: np.random.Generator
    assets: pl.DataFrame  # code, issuer (account index, -1 native), price0, vol
    pairs: pl.DataFrame  # base, counter (asset indices), weight, pool (index or -1)
    log_price: np.ndarray  # [hour, asset] log price in XLM
    accounts: _Accounts
    fills: list[dict] = field(default_factory=list)
    ops: list[dict] = field(default_factory=list)
    rings: list[dict] = field(default_factory=list)
    n_groups: int = 0
    keys: pl.Series | None = None  # account index -> G... StrKey, set when written

    @property
    def horizon(self) -> float:
        return self.cfg.days * 86_400.0

    def groups(self, n: int) -> np.ndarray:
        """Fresh operation keys: fills sharing a key are one operation (a path payment or a multi-fill offer)."""
        self.n_groups += n
        return np.arange(self.n_groups - n, self.n_groups)

    def price(self, asset: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Price of `asset` in XLM at times `t` (seconds from the start)."""
        hour = np.clip((t // 3600).astype(np.int64), 0, self.log_price.shape[0] - 1)
        return np.exp(self.log_price[hour, asset])

    def pair_assets(self, pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs["base"].to_numpy()[pair], self.pairs["counter"].to_numpy()[pair]


# ---------------------------------------------------------------- market setup


def _setup(cfg: ForeignConfig) -> _Market:
    rng = np.random.default_rng(cfg.seed)
    accounts = _Accounts()
    assets = _assets(rng, cfg, accounts)
    pairs = _pairs(rng, cfg, assets)
    hours = cfg.days * 24 + 2
    steps = rng.normal(0, 1, (hours, assets.height)) * (assets["vol"].to_numpy() / np.sqrt(24))
    steps[0] = 0
    log_price = np.log(assets["price0"].to_numpy()) + np.cumsum(steps, axis=0)
    log_price[:, 0] = 0.0  # XLM is the numeraire
    return _Market(cfg=cfg, rng=rng, assets=assets, pairs=pairs, log_price=log_price, accounts=accounts)


def _assets(rng: np.random.Generator, cfg: ForeignConfig, accounts: _Accounts) -> pl.DataFrame:
    """XLM, the majors, thin tokens (loguniform prices) and the rings' own tokens; each credit asset has an issuer."""
    tokens = [(code, float(np.exp(rng.uniform(np.log(1e-4), np.log(5)))), 0.12, float(rng.uniform(0.2, 2.0)))
              for code in rng.choice(TOKEN_CODES, cfg.n_tokens, replace=False)]
    ring_tokens = [(f"R{cfg.seed % 97}T{i}", float(np.exp(rng.uniform(np.log(1e-3), np.log(0.5)))), 0.05, 0.05)
                   for i in range(cfg.n_ring_tokens)]
    rows = [("XLM", 1.0, 0.0, 0.0), *MAJORS, *tokens, *ring_tokens]
    issuers = [-1] + [int(accounts.add(1, "issuer")[0]) for _ in rows[1:-len(ring_tokens) or None]]
    issuers += [int(accounts.add(1, "ring_issuer")[0]) for _ in ring_tokens]
    return pl.DataFrame({
        "code": [r[0] for r in rows], "issuer": issuers, "price0": [r[1] for r in rows],
        "vol": [r[2] for r in rows], "weight": [r[3] for r in rows],
        "ring_token": [False] * (len(rows) - len(ring_tokens)) + [True] * len(ring_tokens),
    })


def _pairs(rng: np.random.Generator, cfg: ForeignConfig, assets: pl.DataFrame) -> pl.DataFrame:
    """Every credit asset against XLM, plus a few cross pairs against USDC; pools on majors and some tokens."""
    n = assets.height
    weight = assets["weight"].to_list()
    rows = [(0, a, weight[a]) for a in range(1, n)]
    rows += [(1, 2, 3.0), (3, 1, 2.5)]  # USDC/EURC, AQUA/USDC
    rows += [(1, a, weight[a] / 3) for a in range(len(MAJORS) + 1, n) if rng.random() < 0.35]
    pool_p = np.array([0.95 if max(b, c) <= 3 else 0.55 for b, c, _ in rows])
    has_pool = rng.random(len(rows)) < pool_p
    pool = np.where(has_pool, np.cumsum(has_pool) - 1, -1)
    return pl.DataFrame({
        "base": [min(b, c) for b, c, _ in rows], "counter": [max(b, c) for b, c, _ in rows],
        "weight": [w for _, _, w in rows], "pool": pool,
    })


def _pair_of(market: _Market, a, b):
    """Index of the pair of assets a and b (arrays or ints), -1 where there is none."""
    lookup = np.full((market.assets.height,) * 2, -1)
    base, counter = market.pairs["base"].to_numpy(), market.pairs["counter"].to_numpy()
    lookup[base, counter] = lookup[counter, base] = np.arange(market.pairs.height)
    found = lookup[a, b]
    return int(found) if np.ndim(found) == 0 else found


# ---------------------------------------------------------------- fills and operations


def _add_fills(market: _Market, *, t, grp, pair, base_side, counter_side, base_is_maker, base_units,
               counter_units) -> None:
    """Record fills. A side is an account index, or -(pool + 1) for a liquidity pool (always the maker).

    The base side delivers `base_units` of the pair's base asset to the counter side, which
    delivers `counter_units` of the counter asset (Horizon's orientation).
    """
    n = len(t)
    b = np.broadcast_to
    base_side, counter_side = b(base_side, n).astype(np.int64), b(counter_side, n).astype(np.int64)
    maker = b(base_is_maker, n) | (base_side < 0)
    maker = np.where(counter_side < 0, False, maker)
    market.fills.append({
        "t": np.asarray(t, float), "grp": b(grp, n).astype(np.int64), "pair": b(pair, n).astype(np.int64),
        "base_side": base_side, "counter_side": counter_side, "base_is_maker": maker,
        "base_amt": _stroops(base_units, n), "counter_amt": _stroops(counter_units, n),
    })


def _stroops(units, n: int) -> np.ndarray:
    return np.maximum(np.round(np.broadcast_to(units, n) * STROOPS), 1).astype(np.int64)


def _trade(market: _Market, *, t, pair, giver, receiver, units, giver_gives_base, maker_is_giver,
           deviation: float = 0.002, grp=None) -> None:
    """Order-book fills at the market price (+- `deviation`): `giver` delivers `units` of one asset of the pair."""
    n = len(t)
    base, counter = market.pair_assets(np.broadcast_to(pair, n))
    rate = market.price(base, t) / market.price(counter, t) * market.rng.lognormal(0, deviation, n)
    base_units = np.where(giver_gives_base, units, units / rate)
    base_side = np.where(giver_gives_base, giver, receiver)
    counter_side = np.where(giver_gives_base, receiver, giver)
    _add_fills(market, t=t, grp=market.groups(n) if grp is None else grp, pair=pair, base_side=base_side,
               counter_side=counter_side, base_is_maker=np.asarray(maker_is_giver) == np.asarray(giver_gives_base),
               base_units=base_units, counter_units=base_units * rate)


def _swap(market: _Market, *, t, pair, taker, units, taker_gives_base, exact_out: bool = False, grp=None) -> None:
    """Pool fills: `taker` sells `units` into the pair's pool (or, `exact_out`, buys exactly `units` out of it)."""
    n = len(t)
    pair = np.broadcast_to(pair, n)
    pool = -(market.pairs["pool"].to_numpy()[pair] + 1)
    base, counter = market.pair_assets(pair)
    rate = market.price(base, t) / market.price(counter, t) * market.rng.lognormal(0, 0.001, n)
    per_given = np.where(taker_gives_base, rate, 1 / rate) * (1 - POOL_FEE)  # units received per unit given
    given = units / per_given if exact_out else units
    received = units if exact_out else units * per_given
    _add_fills(market, t=t, grp=market.groups(n) if grp is None else grp, pair=pair,
               base_side=np.where(taker_gives_base, taker, pool), counter_side=np.where(taker_gives_base, pool, taker),
               base_is_maker=~np.asarray(taker_gives_base), base_units=np.where(taker_gives_base, given, received),
               counter_units=np.where(taker_gives_base, received, given))


def _op(market: _Market, *, t, kind: str, src, dst, asset, units) -> None:
    """Record funding operations (create_account, payment, account_merge, create/claim_claimable_balance)."""
    n = len(np.atleast_1d(t))
    b = np.broadcast_to
    market.ops.append({"t": b(t, n).astype(float), "kind": np.full(n, kind), "src": b(src, n).astype(np.int64),
                       "dst": b(dst, n).astype(np.int64), "asset": b(asset, n).astype(np.int64),
                       "amt": _stroops(units, n)})


def _units(market: _Market, asset, value_xlm, t) -> np.ndarray:
    return np.asarray(value_xlm) / market.price(np.broadcast_to(asset, len(t)), t)


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to `digits` significant figures (people and bots type round amounts)."""
    mag = 10.0 ** (np.floor(np.log10(np.maximum(x, 1e-7))) - digits + 1)
    return np.maximum(np.round(x / mag), 1) * mag


def _diurnal_times(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    hour_w = 1 + 0.6 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    return rng.integers(0, days, n) * 86_400.0 + hour * 3600.0 + rng.uniform(0, 3600, n)


# ---------------------------------------------------------------- organic market


@dataclass(frozen=True)
class _Crowd:
    """Organic wallets: activity weight, home pair, buy bias, trade size in XLM."""

    ids: np.ndarray
    weight: np.ndarray
    home: np.ndarray
    bias: np.ndarray
    size: np.ndarray

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(len(self.ids), n, p=self.weight)


def _crowd(market: _Market) -> _Crowd:
    cfg, rng = market.cfg, market.rng
    ids = market.accounts.add(cfg.n_organic, "organic")
    weight = rng.pareto(cfg.activity_alpha, cfg.n_organic) + 1.0
    pw = market.pairs["weight"].to_numpy()
    return _Crowd(ids=ids, weight=weight / weight.sum(), home=rng.choice(len(pw), cfg.n_organic, p=pw / pw.sum()),
                  bias=rng.beta(2, 2, cfg.n_organic), size=rng.lognormal(np.log(60), 1.4, cfg.n_organic))


def _makers_by_pair(market: _Market, mms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each market maker quotes 1-3 pairs (majors first); a pair without a pool or a quote gets one.

    -> (maker ids sorted by pair, start, count per pair)."""
    rng = market.rng
    pw = market.pairs["weight"].to_numpy()
    quotes = [(p, mm) for mm in mms for p in rng.choice(len(pw), rng.integers(1, 4), replace=False, p=pw / pw.sum())]
    quoted = {p for p, _ in quotes} | set(np.flatnonzero(market.pairs["pool"].to_numpy() >= 0))
    quotes += [(p, int(rng.choice(mms))) for p in range(len(pw)) if p not in quoted]  # every book has a quote
    quotes.sort()
    pair_of = np.array([p for p, _ in quotes])
    count = np.bincount(pair_of, minlength=len(pw))
    return np.array([mm for _, mm in quotes]), np.concatenate([[0], np.cumsum(count)[:-1]]), count


def _organic(market: _Market, crowd: _Crowd, mms: tuple) -> None:
    """The organic tape: takers from the crowd meet pools, market makers or other organic makers."""
    cfg, rng = market.cfg, market.rng
    n = cfg.n_organic_trades
    k = crowd.pick(rng, n)
    taker, t = crowd.ids[k], _diurnal_times(rng, n, cfg.days)
    pw = market.pairs["weight"].to_numpy()
    pair = np.where(rng.random(n) < 0.7, crowd.home[k], rng.choice(len(pw), n, p=pw / pw.sum()))
    buys_base = rng.random(n) < crowd.bias[k]
    value = crowd.size[k] * rng.lognormal(0, 1.0, n)
    base, _ = market.pair_assets(pair)
    units = _units(market, base, value, t)
    units = np.where(rng.random(n) < 0.25, _round_sig(units, 2), units)
    route = rng.random(n)
    to_pool = (route < cfg.pool_share) & (market.pairs["pool"].to_numpy()[pair] >= 0)
    mm_ids, mm_start, mm_count = mms
    to_mm = ~to_pool & (route < cfg.pool_share + cfg.mm_share) & (mm_count[pair] > 0)
    maker = crowd.ids[crowd.pick(rng, n)]
    maker = np.where(maker == taker, crowd.ids[(k + 1) % len(crowd.ids)], maker)
    mm = mm_ids[np.minimum(mm_start[pair] + (rng.random(n) * mm_count[pair]).astype(int), len(mm_ids) - 1)]
    maker = np.where(to_mm, mm, maker)
    units = np.where(to_mm, _round_sig(units, 1), units)  # market makers quote round lots
    _swap(market, t=t[to_pool], pair=pair[to_pool], taker=taker[to_pool], units=units[to_pool],
          taker_gives_base=~buys_base[to_pool])
    book = ~to_pool
    grp = market.groups(n)[book]
    _trade(market, t=t[book], pair=pair[book], giver=np.where(buys_base, maker, taker)[book],
           receiver=np.where(buys_base, taker, maker)[book], units=units[book], giver_gives_base=True,
           maker_is_giver=buys_base[book], grp=grp)
    _second_fills(market, crowd, t[book], pair[book], taker[book], buys_base[book], units[book], grp)


def _second_fills(market: _Market, crowd: _Crowd, t, pair, taker, buys_base, units, grp) -> None:
    """8% of order-book takers cross a second offer in the same operation."""
    rng = market.rng
    two = rng.random(len(t)) < 0.08
    maker = crowd.ids[crowd.pick(rng, int(two.sum()))]
    maker = np.where(maker == taker[two], crowd.ids[0], maker)
    _trade(market, t=t[two], pair=pair[two], giver=np.where(buys_base[two], maker, taker[two]),
           receiver=np.where(buys_base[two], taker[two], maker), units=units[two] * rng.uniform(0.1, 0.9, two.sum()),
           giver_gives_base=True, maker_is_giver=buys_base[two], grp=grp[two])


def _exchanges(market: _Market, crowd: _Crowd) -> np.ndarray:
    """Exchange hot wallets: create 15% of the crowd, withdraw to and take deposits from the rest."""
    cfg, rng = market.cfg, market.rng
    ex = market.accounts.add(cfg.n_exchanges, "exchange")
    share = rng.dirichlet(np.full(cfg.n_exchanges, 0.7))
    new = rng.random(len(crowd.ids)) < 0.15
    who = ex[rng.choice(cfg.n_exchanges, len(crowd.ids), p=share)]
    created = rng.uniform(0, market.horizon * 0.8, len(crowd.ids))
    _op(market, t=created[new], kind="create_account", src=who[new], dst=crowd.ids[new],
        asset=0, units=_round_sig(rng.lognormal(np.log(80), 1.2, new.sum()), 2) + 1)
    n_pay = int(len(crowd.ids) * 1.5)
    k = crowd.pick(rng, n_pay)
    deposit = rng.random(n_pay) < 0.4
    t = np.maximum(rng.uniform(0, market.horizon, n_pay), np.where(new[k], created[k] + 600, 0))
    value = crowd.size[k] * rng.lognormal(1, 1, n_pay)
    asset = np.where(rng.random(n_pay) < 0.7, 0, 1)
    _op(market, t=t, kind="payment", src=np.where(deposit, crowd.ids[k], who[k]),
        dst=np.where(deposit, who[k], crowd.ids[k]), asset=asset, units=_units(market, asset, value, t))
    return ex


def _peer_payments(market: _Market, crowd: _Crowd) -> None:
    """Organic wallets pay each other now and then (friends, merchants)."""
    rng = market.rng
    n = len(crowd.ids) // 2
    a, b = crowd.ids[crowd.pick(rng, n)], crowd.ids[rng.integers(0, len(crowd.ids), n)]
    keep = a != b
    t = rng.uniform(0, market.horizon, keep.sum())
    _op(market, t=t, kind="payment", src=a[keep], dst=b[keep], asset=0,
        units=_round_sig(rng.lognormal(np.log(40), 1.3, keep.sum()), 2))


# ---------------------------------------------------------------- legitimate look-alikes


def _market_makers(market: _Market, crowd: _Crowd) -> tuple:
    """Market makers: quote round lots (in `_organic`), trade both ways with 2-5 regular clients, cancel a lot."""
    cfg, rng = market.cfg, market.rng
    mms = market.accounts.add(cfg.n_market_makers, "market_maker")
    quotes = _makers_by_pair(market, mms)
    mm_ids, start, count = quotes
    top = crowd.ids[np.argsort(-crowd.weight)[: max(20, cfg.n_market_makers * 5)]]
    for mm in mms:
        pairs = np.flatnonzero([mm in mm_ids[s:s + c] for s, c in zip(start, count, strict=True)])
        clients = rng.choice(top, rng.integers(2, 6), replace=False)
        market.accounts.relabel(clients, "mm_client")
        n = int(rng.integers(150, 600))
        t = np.sort(rng.uniform(0, market.horizon, n))
        pair = rng.choice(pairs, n)
        client = rng.choice(clients, n)
        base, _ = market.pair_assets(pair)
        units = _round_sig(_units(market, base, rng.lognormal(np.log(2_000), 0.8, n), t), 1)
        mm_sells = rng.random(n) < 0.5
        _trade(market, t=t, pair=pair, giver=np.where(mm_sells, mm, client), receiver=np.where(mm_sells, client, mm),
               units=units, giver_gives_base=True, maker_is_giver=mm_sells, deviation=0.001)
        n_cancel = int(n * 1.5)
        _op(market, t=rng.uniform(0, market.horizon, n_cancel), kind="cancel_offer", src=mm, dst=-1,
            asset=rng.choice(pairs, n_cancel), units=1e-7)
    return quotes


def _makers_crossing(market: _Market, quotes: tuple) -> None:
    """Market makers sharing a pair cross each other's quotes when they reprice: both ways, round lots,
    between wallets funded by nobody in common (a reciprocal pair that is not a ring)."""
    rng = market.rng
    mm_ids, start, count = quotes
    for pair in np.flatnonzero(count >= 2):
        makers = mm_ids[start[pair]:start[pair] + count[pair]]
        n = int(rng.integers(30, 200))
        a = rng.integers(0, len(makers), n)
        b = (a + rng.integers(1, len(makers), n)) % len(makers)
        t = rng.uniform(0, market.horizon, n)
        base, _ = market.pair_assets(np.full(n, pair))
        units = _round_sig(_units(market, base, rng.lognormal(np.log(3_000), 0.7, n), t), 1)
        _trade(market, t=t, pair=pair, giver=makers[a], receiver=makers[b], units=units, giver_gives_base=True,
               maker_is_giver=rng.random(n) < 0.5, deviation=0.001)


def _exchange_rebalancing(market: _Market, exchanges: np.ndarray, quotes: tuple) -> None:
    """Exchange hot wallets rebalance XLM/USDC on the DEX now and then, in large amounts."""
    rng = market.rng
    n = rng.integers(10, 40, len(exchanges))
    wallet = np.repeat(exchanges, n)
    t = rng.uniform(0, market.horizon, len(wallet))
    gives_base = rng.random(len(wallet)) < 0.5
    value = rng.lognormal(np.log(50_000), 0.8, len(wallet))
    _market_side_trades(market, quotes, t=t, wallet=wallet, pair=np.full(len(wallet), _pair_of(market, 0, 1)),
                        units=np.where(gives_base, value, _units(market, 1, value, t)), gives_base=gives_base)


def _dca_bots(market: _Market, exchanges: np.ndarray, quotes: tuple) -> None:
    """DCA bots buy a fixed amount every 1-24 h (+- seconds) from a pool or a market maker."""
    cfg, rng = market.cfg, market.rng
    bots = market.accounts.add(cfg.n_dca, "dca_bot")
    usdc_xlm = _pair_of(market, 0, 1)
    mm_ids, start, count = quotes
    for bot in bots:
        pair = usdc_xlm if rng.random() < 0.6 else int(rng.integers(0, market.pairs.height))
        every = float(rng.choice([3600, 4 * 3600, 6 * 3600, 12 * 3600, 86_400]))
        first = rng.uniform(0, every)
        t = np.arange(first, market.horizon, every) + rng.uniform(0, 40, int((market.horizon - first) // every + 1))
        t = t[t < market.horizon]
        base, counter = market.pair_assets(np.array([pair]))
        spend = float(_round_sig(_units(market, counter, rng.choice([20.0, 50.0, 100.0, 500.0]), t[:1]), 1)[0])
        _op(market, t=max(t[0] - 3600, 0), kind="payment", src=rng.choice(exchanges), dst=bot, asset=int(counter[0]),
            units=spend * len(t))
        if market.pairs["pool"][pair] >= 0 and (rng.random() < 0.6 or not count[pair]):
            _swap(market, t=t, pair=pair, taker=bot, units=spend, taker_gives_base=np.zeros(len(t), bool))
        else:
            maker = mm_ids[start[pair] + rng.integers(0, count[pair], len(t))]
            _trade(market, t=t, pair=pair, giver=bot, receiver=maker, units=spend,
                   giver_gives_base=np.zeros(len(t), bool), maker_is_giver=False)


def _arbitrage_bots(market: _Market, exchanges: np.ndarray, quotes: tuple) -> None:
    """Triangle arbitrage: XLM -> A -> B -> XLM across pools/books within seconds, ending with 0.08-0.6% more XLM.

    60% of cycles are one circular path payment (three fills of one operation), the rest three operations
    a few seconds apart. The counterparties (pools, market makers) are the mispriced side.
    """
    cfg, rng = market.cfg, market.rng
    triangles = [(0, a, b) for a, b in ((1, 2), (3, 1), (1, 3), (2, 1)) if _pair_of(market, a, b) >= 0]
    triangles += [(0, 1, int(c)) for c in market.pairs.filter(pl.col("base") == 1)["counter"] if c > 3]
    for bot in market.accounts.add(cfg.n_arbitrage, "arbitrage_bot"):
        n = int(rng.integers(*cfg.arbitrage_cycles))
        tri = np.array([triangles[i] for i in rng.choice(len(triangles), n)])
        t0 = np.sort(rng.uniform(3600, market.horizon, n))
        one_op = rng.random(n) < 0.6
        value = rng.lognormal(np.log(1_500), 0.9, n)
        profit = rng.uniform(0.0008, 0.006, n)
        grp = market.groups(n)
        for leg in range(3):
            t = t0 + np.where(one_op, 0.0, leg * rng.uniform(2, 8, n))
            _arbitrage_leg(market, quotes, bot=bot, t=t, sold=tri[:, leg], bought=tri[:, (leg + 1) % 3],
                           value_in=value * (1 + profit * leg / 3), value_out=value * (1 + profit * (leg + 1) / 3),
                           grp=np.where(one_op, grp, market.groups(n)))
        _op(market, t=np.array([1800.0]), kind="payment", src=rng.choice(exchanges), dst=bot, asset=0,
            units=float(_round_sig(value.max() * 3, 1)))


def _arbitrage_leg(market: _Market, quotes: tuple, *, bot, t, sold, bought, value_in, value_out, grp) -> None:
    pair = _pair_of(market, sold, bought)
    base, _ = market.pair_assets(pair)
    gives_base = sold == base
    units_in, units_out = _units(market, sold, value_in, t), _units(market, bought, value_out, t)
    mm_ids, start, count = quotes
    maker = mm_ids[np.minimum(start[pair] + (market.rng.random(len(t)) * count[pair]).astype(int), len(mm_ids) - 1)]
    pool = -(market.pairs["pool"].to_numpy()[pair] + 1)
    other = np.where(pool < 0, pool, np.where(count[pair] > 0, maker, _NONE))
    ok = other != _NONE
    _add_fills(market, t=t[ok], grp=grp[ok], pair=pair[ok], base_side=np.where(gives_base, bot, other)[ok],
               counter_side=np.where(gives_base, other, bot)[ok], base_is_maker=~gives_base[ok],
               base_units=np.where(gives_base, units_in, units_out)[ok],
               counter_units=np.where(gives_base, units_out, units_in)[ok])


def _market_side_trades(market: _Market, quotes: tuple, *, t, wallet, pair, units, gives_base) -> None:
    """Trades of a wallet against the market: the pair's pool when it has one, else one of its market makers."""
    rng = market.rng
    mm_ids, start, count = quotes
    pooled = (market.pairs["pool"].to_numpy()[pair] >= 0) & ((rng.random(len(t)) < 0.6) | (count[pair] == 0))
    _swap(market, t=t[pooled], pair=pair[pooled], taker=wallet[pooled], units=units[pooled],
          taker_gives_base=gives_base[pooled])
    book = ~pooled & (count[pair] > 0)
    maker = mm_ids[np.minimum(start[pair] + (rng.random(len(t)) * count[pair]).astype(int), len(mm_ids) - 1)]
    _trade(market, t=t[book], pair=pair[book], giver=wallet[book], receiver=maker[book], units=units[book],
           giver_gives_base=gives_base[book], maker_is_giver=False)


def _airdrop_farms(market: _Market, quotes: tuple) -> None:
    """One funder creates 15-120 farmers; each gets a token airdrop, sells it in 1-4 trades, half send XLM back."""
    cfg, rng = market.cfg, market.rng
    tokens = [a for a in range(len(MAJORS) + 1, market.assets.height) if not market.assets["ring_token"][a]]
    for _ in range(cfg.n_farms):
        funder = market.accounts.add(1, "airdrop_funder")[0]
        n = int(rng.integers(15, 121))
        farmers = market.accounts.add(n, "airdrop_farmer")
        token = int(rng.choice(tokens))
        t_create = rng.uniform(0, market.horizon * 0.5) + np.sort(rng.uniform(0, 6 * 3600, n))
        _op(market, t=t_create, kind="create_account", src=funder, dst=farmers, asset=0, units=rng.uniform(2, 4, n))
        drop = _round_sig(_units(market, np.full(n, token), np.full(n, 40.0), t_create), 1)
        span = min(3 * 86_400, (market.horizon - t_create.max()) / 1.5)
        t_drop = t_create + rng.uniform(0.05, 0.3, n) * span
        _op(market, t=t_drop, kind="payment", src=int(market.assets["issuer"][token]), dst=farmers, asset=token,
            units=drop)
        trades = rng.integers(1, 5, n)
        who = np.repeat(np.arange(n), trades)
        t = t_drop[who] + rng.uniform(0.05, 1.0, len(who)) * span
        ok = t < market.horizon
        _market_side_trades(market, quotes, t=t[ok], wallet=farmers[who][ok],
                            pair=np.full(ok.sum(), _pair_of(market, 0, token)),
                            units=(drop[who] / trades[who])[ok], gives_base=np.zeros(ok.sum(), bool))
        back = rng.random(n) < 0.5
        _op(market, t=np.minimum(t_create[back] + 4 * 86_400, market.horizon - 1), kind="payment",
            src=farmers[back], dst=funder, asset=0, units=rng.uniform(1, 3, back.sum()))


def _otc_desks(market: _Market, exchanges: np.ndarray, quotes: tuple) -> None:
    """OTC desks: big round block trades with 3-8 clients, each client always on one side; the desk hedges."""
    cfg, rng = market.cfg, market.rng
    usdc_xlm = _pair_of(market, 0, 1)
    for _ in range(cfg.n_otc):
        desk = market.accounts.add(1, "otc_desk")[0]
        clients = market.accounts.add(int(rng.integers(3, 9)), "otc_client")
        _op(market, t=rng.uniform(0, 3600, len(clients)), kind="create_account",
            src=rng.choice(exchanges, len(clients)), dst=clients, asset=0, units=rng.uniform(20, 100, len(clients)))
        client_buys = rng.random(len(clients)) < 0.5
        n = int(rng.integers(40, 150))
        c = rng.integers(0, len(clients), n)
        t = np.sort(rng.uniform(3 * 3600, market.horizon, n))
        units = _round_sig(rng.lognormal(np.log(80_000), 0.9, n), 1)
        _trade(market, t=t, pair=usdc_xlm, giver=np.where(client_buys[c], desk, clients[c]),
               receiver=np.where(client_buys[c], clients[c], desk), units=units, giver_gives_base=True,
               maker_is_giver=~client_buys[c], deviation=0.004)
        hedge_t = t + rng.uniform(30, 900, n)
        hedge = units * rng.uniform(0.6, 1.0, n)  # XLM
        _market_side_trades(market, quotes, t=hedge_t, wallet=np.full(n, desk), pair=np.full(n, usdc_xlm),
                            units=np.where(client_buys[c], _units(market, 1, hedge, hedge_t), hedge),
                            gives_base=~client_buys[c])


def _two_wallet_users(market: _Market, crowd: _Crowd) -> None:
    """A person with two accounts moves funds between them, both ways, and trades from both."""
    rng = market.rng
    active = crowd.ids[np.argsort(-crowd.weight)[: len(crowd.ids) // 4]]
    chosen = rng.choice(active, 2 * market.cfg.n_two_wallet, replace=False).reshape(-1, 2)
    market.accounts.relabel(chosen.ravel(), "two_wallet_user")
    n = rng.integers(4, 20, len(chosen))
    who = np.repeat(np.arange(len(chosen)), n)
    flip = rng.random(len(who)) < 0.5
    asset = np.where(rng.random(len(who)) < 0.6, 0, 1)
    t = rng.uniform(0, market.horizon, len(who))
    _op(market, t=t, kind="payment", src=np.where(flip, chosen[who, 0], chosen[who, 1]),
        dst=np.where(flip, chosen[who, 1], chosen[who, 0]), asset=asset,
        units=_units(market, asset, _round_sig(rng.lognormal(np.log(300), 1.0, len(who)), 2), t))


def _copy_traders(market: _Market, quotes: tuple) -> None:
    """A signal service: one payer funds 5-12 wallets that buy within minutes of a signal and sell hours later."""
    cfg, rng = market.cfg, market.rng
    for _ in range(cfg.n_copy_groups):
        payer = market.accounts.add(1, "copy_funder")[0]
        members = market.accounts.add(int(rng.integers(5, 13)), "copy_trader")
        _op(market, t=rng.uniform(0, 7200, len(members)), kind="create_account", src=payer, dst=members, asset=0,
            units=_round_sig(rng.lognormal(np.log(2_000), 0.7, len(members)), 1))
        n_sig = int(rng.integers(8, 30))
        sig_t = np.sort(rng.uniform(3 * 3600, market.horizon - 86_400, n_sig))
        sig_pair = rng.choice(np.flatnonzero(market.pairs["base"].to_numpy() == 0), n_sig)
        size = rng.lognormal(np.log(300), 0.6, len(members))
        s, m = np.meshgrid(np.arange(n_sig), np.arange(len(members)), indexing="ij")
        s, m = s.ravel(), m.ravel()
        for leg, delay in ((0, rng.uniform(5, 240, len(s))), (1, rng.uniform(2, 20, len(s)) * 3600)):
            t = sig_t[s] + delay
            _, token = market.pair_assets(sig_pair[s])
            _market_side_trades(market, quotes, t=t, wallet=members[m], pair=sig_pair[s],
                                units=_units(market, np.where(leg == 0, 0, token), size[m], t),
                                gives_base=np.full(len(s), leg == 0))


# ---------------------------------------------------------------- planted rings


@dataclass(frozen=True)
class _RingPlan:
    """What one ring does: members, where, when, how much, and how much it hides."""

    ring_id: str
    pattern: str
    funding: str
    members: np.ndarray
    pairs: tuple[int, ...]
    passed: int  # the asset passed around (the other asset of each pair pays for it)
    start: float
    end: float
    value_xlm: float
    amount_style: str
    pool_leg_share: float
    maker_is_giver: float  # chance the member delivering the passed asset is the resting offer
    camouflage: float
    pair_split: str = ""  # two_pair: "by_edge" (a member pair always uses the same pair) or "by_leg"


_SIZES = {"ping_pong": (2, 4), "cycle": (3, 9), "random_matching": (3, 10), "pool_layered": (3, 7), "two_pair": (2, 7)}


def _plan_ring(market: _Market, ring_id: str, pattern: str, funding: str) -> _RingPlan:
    cfg, rng = market.cfg, market.rng
    lo, hi = _SIZES[pattern]
    size = 2 if pattern == "ping_pong" and rng.random() < 0.7 else int(rng.integers(lo, hi))
    members = market.accounts.add(size, "ring_member", ring_id=ring_id, pattern=pattern, funding=funding)
    pairs, passed = _ring_pairs(market, pattern)
    start = rng.uniform(0.15, 0.6) * market.horizon
    pooled = market.pairs["pool"].to_numpy()[pairs[0]] >= 0
    return _RingPlan(
        ring_id=ring_id, pattern=pattern, funding=funding, members=members, pairs=pairs, passed=passed, start=start,
        end=start + rng.uniform(0.15, 1.0) * (market.horizon - start),
        value_xlm=float(np.clip(rng.lognormal(np.log(600), 1.2), 20, 200_000)),
        amount_style=str(rng.choice(["fixed", "round", "jittered", "lognormal"])),
        pool_leg_share=float(rng.uniform(0.15, 0.5)) if pattern == "cycle" and pooled and rng.random() < 0.5 else 0.0,
        maker_is_giver=float(rng.choice([0.0, 0.5, 1.0])), camouflage=float(rng.uniform(0, cfg.max_camouflage)),
        pair_split=str(rng.choice(["by_edge", "by_leg"])) if pattern == "two_pair" else "",
    )


def _ring_pairs(market: _Market, pattern: str) -> tuple[tuple[int, ...], int]:
    """(pairs, passed asset): a ring token, a thin token or a major pair; two pairs sharing an asset for two_pair."""
    rng = market.rng
    base, counter, pool = (market.pairs[c].to_numpy() for c in ("base", "counter", "pool"))
    if pattern == "two_pair":  # one asset passed around, paid for in two majors (e.g. TOKEN for XLM and USDC)
        options = [(int(a), (p, q)) for a in range(market.assets.height)
                   for p in np.flatnonzero((base == a) | (counter == a))
                   for q in np.flatnonzero((base == a) | (counter == a))
                   if p < q and max(base[p] + counter[p] - a, base[q] + counter[q] - a) <= len(MAJORS)]
        asset, pairs = options[rng.integers(0, len(options))]
        return tuple(int(p) for p in pairs), asset
    ring_token = market.assets["ring_token"].to_numpy()[counter]
    candidates = np.flatnonzero(pool >= 0) if pattern == "pool_layered" else np.arange(len(base))
    kind = rng.choice(["ring_token", "thin", "major"], p=[0.35, 0.35, 0.3])
    pick = {"ring_token": ring_token[candidates], "thin": counter[candidates] > len(MAJORS),
            "major": counter[candidates] <= len(MAJORS)}[str(kind)]
    chosen = candidates[pick] if pick.any() else candidates
    pair = int(rng.choice(chosen))
    return (pair,), int(rng.choice([base[pair], counter[pair]]))


def _ring_legs(market: _Market, plan: _RingPlan) -> dict:
    """Legs of the ring: [t, giver, receiver, pair, rel (amount relative to the round's), round, via_pool]."""
    rng = market.rng
    n_rounds = int(rng.integers(*market.cfg.ring_rounds))
    round_t = np.sort(rng.uniform(plan.start, plan.end, n_rounds))
    builder = {"ping_pong": _ping_pong, "cycle": _cycle, "random_matching": _random_matching,
               "pool_layered": _cycle, "two_pair": _cycle}[plan.pattern]
    giver, receiver, rel, rnd = builder(rng, plan.members, n_rounds, shuffle=plan.pattern == "pool_layered")
    step = np.minimum(rng.lognormal(np.log(90), 1.0, len(giver)), 3600)
    first = np.r_[True, rnd[1:] != rnd[:-1]]
    offset = np.cumsum(np.where(first, 0, step))
    offset -= np.maximum.accumulate(np.where(first, offset, 0))
    leg_no = np.cumsum(~first) - np.maximum.accumulate(np.where(first, np.cumsum(~first), 0))
    # by_edge: no single pair holds a closed loop; by_leg: each pair holds part of every round
    position = (giver - plan.members[0]) if plan.pair_split == "by_edge" else leg_no
    pair = np.asarray(plan.pairs)[position % len(plan.pairs)]
    via_pool = (plan.pattern == "pool_layered") | (rng.random(len(giver)) < plan.pool_leg_share)
    return {"t": round_t[rnd] + offset, "giver": giver, "receiver": receiver, "pair": pair, "rel": rel, "round": rnd,
            "via_pool": via_pool}


def _ping_pong(rng, members, n_rounds, *, shuffle=False):
    """A sends the asset to B and B sends the same amount back; with more members a hub pings each in turn."""
    partner = members[1 + np.arange(n_rounds) % (len(members) - 1)]
    giver = np.stack([np.full(n_rounds, members[0]), partner], 1).ravel()
    receiver = np.stack([partner, np.full(n_rounds, members[0])], 1).ravel()
    return giver, receiver, np.ones(2 * n_rounds), np.repeat(np.arange(n_rounds), 2)


def _cycle(rng, members, n_rounds, *, shuffle=False):
    """A -> B -> ... -> A each round, from a random starting member; `shuffle`: a new order every round."""
    k = len(members)
    order = np.array([rng.permutation(k) if shuffle else np.arange(k) for _ in range(n_rounds)])
    start = rng.integers(0, k, n_rounds)
    pos = (start[:, None] + np.arange(k)[None, :]) % k
    giver = members[np.take_along_axis(order, pos, 1)].ravel()
    receiver = members[np.take_along_axis(order, (pos + 1) % k, 1)].ravel()
    return giver, receiver, np.ones(n_rounds * k), np.repeat(np.arange(n_rounds), k)


def _random_matching(rng, members, n_rounds, *, shuffle=False):
    """Random member pairs with random amounts, then transfers that bring every member back to flat."""
    legs = []
    for r in range(n_rounds):
        n = int(rng.integers(2, len(members) + 2))
        pick = np.array([rng.choice(len(members), 2, replace=False) for _ in range(n)])
        rel = rng.uniform(0.3, 1.0, n)
        legs += [(a, b, x, r) for (a, b), x in zip(pick, rel, strict=True)]
        net = np.zeros(len(members))
        np.add.at(net, pick[:, 0], -rel)
        np.add.at(net, pick[:, 1], rel)
        while net.max() > 1e-9:
            a, b = int(np.argmax(net)), int(np.argmin(net))
            x = min(net[a], -net[b])
            legs.append((a, b, x, r))
            net[a] -= x
            net[b] += x
    a, b, rel, rnd = (np.array(c) for c in zip(*legs, strict=True))
    return members[a.astype(int)], members[b.astype(int)], rel.astype(float), rnd.astype(int)


def _leg_units(market: _Market, plan: _RingPlan, legs: dict) -> np.ndarray:
    """Units of the passed asset per leg, by the ring's amount style (priced at the round's first leg)."""
    rng = market.rng
    n_rounds = int(legs["round"].max()) + 1
    first_t = np.full(n_rounds, np.inf)
    np.minimum.at(first_t, legs["round"], legs["t"])
    price = market.price(np.full(n_rounds, plan.passed), first_t)
    style = plan.amount_style
    round_value = plan.value_xlm * {"fixed": np.ones(n_rounds), "round": np.ones(n_rounds),
                                    "jittered": 1 + rng.normal(0, 0.05, n_rounds),
                                    "lognormal": rng.lognormal(0, rng.uniform(0.4, 1.2), n_rounds)}[style]
    jitter = {"fixed": 0.0, "round": 0.0, "jittered": rng.uniform(0.01, 0.05), "lognormal": rng.uniform(0, 0.02)}[style]
    units = (round_value / price)[legs["round"]] * legs["rel"] * (1 + rng.normal(0, jitter, len(legs["t"])))
    if style in ("fixed", "round"):
        units = _round_sig(units, 2 if style == "fixed" else 1)
    return np.maximum(units, 1e-4)


def _ring_fills(market: _Market, plan: _RingPlan, legs: dict, units: np.ndarray) -> None:
    """Order-book legs (the giver or the receiver holds the resting offer) and pool legs (sell in, buy out)."""
    rng = market.rng
    base, _ = market.pair_assets(legs["pair"])
    gives_base = base == plan.passed
    book = ~legs["via_pool"]
    _trade(market, t=legs["t"][book], pair=legs["pair"][book], giver=legs["giver"][book],
           receiver=legs["receiver"][book], units=units[book], giver_gives_base=gives_base[book],
           maker_is_giver=rng.random(book.sum()) < plan.maker_is_giver, deviation=0.003)
    pool = legs["via_pool"]
    t = legs["t"][pool]
    _swap(market, t=t, pair=legs["pair"][pool], taker=legs["giver"][pool], units=units[pool],
          taker_gives_base=gives_base[pool])
    _swap(market, t=t + rng.uniform(4, 40, pool.sum()), pair=legs["pair"][pool], taker=legs["receiver"][pool],
          units=units[pool], taker_gives_base=~gives_base[pool], exact_out=True)


def _camouflage(market: _Market, plan: _RingPlan, crowd: _Crowd, quotes: tuple, legs: dict) -> int:
    """Trades with outsiders: `camouflage` of each member's trades, in the ring's window, both ways."""
    rng = market.rng
    n_ring = np.array([(legs["giver"] == m).sum() + (legs["receiver"] == m).sum() for m in plan.members])
    n_camo = np.round(n_ring * plan.camouflage / (1 - plan.camouflage)).astype(int)
    wallet = np.repeat(plan.members, n_camo)
    n = len(wallet)
    t = rng.uniform(plan.start, plan.end, n)
    xlm_pairs = np.flatnonzero(market.pairs["base"].to_numpy() == 0)
    pair = np.where(rng.random(n) < 0.7, rng.choice(np.asarray(plan.pairs), n), rng.choice(xlm_pairs, n))
    base, counter = market.pair_assets(pair)
    gives_base = rng.random(n) < 0.5
    units = _units(market, np.where(gives_base, base, counter), plan.value_xlm * rng.lognormal(0, 0.6, n), t)
    crowd_side = rng.random(n) < 0.4
    other = crowd.ids[crowd.pick(rng, n)]
    _trade(market, t=t[crowd_side], pair=pair[crowd_side], giver=wallet[crowd_side], receiver=other[crowd_side],
           units=units[crowd_side], giver_gives_base=gives_base[crowd_side],
           maker_is_giver=rng.random(crowd_side.sum()) < 0.5)
    rest = ~crowd_side
    _market_side_trades(market, quotes, t=t[rest], wallet=wallet[rest], pair=pair[rest], units=units[rest],
                        gives_base=gives_base[rest])
    return n


def _fund_ring(market: _Market, plan: _RingPlan, exchanges: np.ndarray, quotes: tuple) -> None:
    """XLM to every member before the ring starts (by the ring's funding style), then each member buys
    the non-XLM assets it passes around on the market."""
    rng = market.rng
    k = len(plan.members)
    done = plan.start - rng.uniform(600, 6 * 3600)
    begin = done * rng.uniform(0.3, 0.8)
    xlm = _round_sig(plan.value_xlm * rng.uniform(3, 8, k), 2) + 5
    controller = market.accounts.add(1, "ring_controller", ring_id=plan.ring_id, pattern=plan.pattern,
                                     funding=plan.funding)[0]
    _op(market, t=np.array([begin * 0.5]), kind="payment", src=rng.choice(exchanges), dst=controller, asset=0,
        units=float(xlm.sum() * 1.2))
    t = np.sort(rng.uniform(begin, done, k))
    if plan.funding == "controller":
        _fund_by_controller(market, plan, controller, t, xlm)
    elif plan.funding == "chain":
        _fund_by_chain(market, plan, controller, t, xlm)
    else:
        _fund_by_exchange_topup(market, plan, controller, exchanges, t, xlm, done)
    for asset in {int(a[0]) for p in plan.pairs for a in market.pair_assets(np.array([p]))} - {0}:
        buy_t = done + rng.uniform(60, 600, k)
        xlm_pair = _pair_of(market, 0, asset)
        _market_side_trades(market, quotes, t=buy_t, wallet=plan.members, pair=np.full(k, xlm_pair),
                            units=xlm / 3, gives_base=np.ones(k, bool))


def _fund_by_controller(market: _Market, plan: _RingPlan, controller: int, t: np.ndarray, xlm: np.ndarray) -> None:
    """The controller creates every member; in half the rings the bulk follows as claimable balances."""
    rng = market.rng
    claimable = rng.random() < 0.5
    _op(market, t=t, kind="create_account", src=controller, dst=plan.members, asset=0,
        units=np.where(claimable, rng.uniform(2, 5, len(t)), xlm))
    if claimable:
        _op(market, t=t + rng.uniform(60, 1800, len(t)), kind="create_claimable_balance", src=controller,
            dst=plan.members, asset=0, units=xlm)
        _op(market, t=t + rng.uniform(2000, 4000, len(t)), kind="claim_claimable_balance", src=plan.members,
            dst=plan.members, asset=0, units=xlm)


def _fund_by_chain(market: _Market, plan: _RingPlan, controller: int, t: np.ndarray, xlm: np.ndarray) -> None:
    """Each member is reached through its own chain of 1-3 throwaway accounts; every hop creates the next
    with 95-99% of what it got, minutes to hours later, and some hops then merge their dust into it."""
    rng = market.rng
    for member, t0, amount in zip(plan.members, t, xlm, strict=True):
        hops = market.accounts.add(int(rng.integers(1, 4)), "ring_hop", ring_id=plan.ring_id, pattern=plan.pattern,
                                   funding=plan.funding)
        path = [controller, *hops, member]
        keep = rng.uniform(0.95, 0.99, len(path) - 1)
        received = amount / np.cumprod(keep[::-1])[::-1]
        when = t0 - np.cumsum(rng.uniform(120, max(240.0, min(4 * 3600, t0 / 4)), len(path) - 1))[::-1]
        _op(market, t=when, kind="create_account", src=np.array(path[:-1]), dst=np.array(path[1:]), asset=0,
            units=received)
        merge = rng.random(len(hops)) < 0.4
        _op(market, t=when[1:][merge] + 30, kind="account_merge", src=hops[merge], dst=np.array(path[2:])[merge],
            asset=0, units=received[:-1][merge] * (1 - keep[1:][merge]))


def _fund_by_exchange_topup(market: _Market, plan: _RingPlan, controller: int, exchanges: np.ndarray, t: np.ndarray,
                            xlm: np.ndarray, done: float) -> None:
    """A big exchange creates the members (like any withdrawal), then one payer tops every member up."""
    rng = market.rng
    payer = market.accounts.add(1, "ring_payer", ring_id=plan.ring_id, pattern=plan.pattern, funding=plan.funding)[0]
    big = exchanges[0]
    _op(market, t=t - rng.uniform(0, 2 * 86_400, len(t)).clip(max=t * 0.5), kind="create_account", src=big,
        dst=plan.members, asset=0, units=_round_sig(rng.uniform(10, 60, len(t)), 1))
    _op(market, t=np.array([t.min() - 600]), kind="payment", src=controller, dst=payer, asset=0,
        units=float(xlm.sum() * 1.05))
    _op(market, t=np.minimum(t + rng.uniform(600, 7200, len(t)), done), kind="payment", src=payer, dst=plan.members,
        asset=0, units=xlm)


def _max_net(plan: _RingPlan, legs: dict, units: np.ndarray) -> float:
    """The largest net position a member ends with in the passed asset (ring legs only), in mean legs."""
    net = np.zeros(len(plan.members))
    np.add.at(net, legs["receiver"] - plan.members[0], units)
    np.add.at(net, legs["giver"] - plan.members[0], -units)
    return round(float(np.abs(net).max() / units.mean()), 3)


def _rings(market: _Market, crowd: _Crowd, quotes: tuple, exchanges: np.ndarray, prefix: str) -> None:
    """Plant `n_rings` rings; patterns and funding styles dealt evenly, then shuffled."""
    cfg, rng = market.cfg, market.rng
    patterns = cfg.only_patterns or PATTERNS
    pattern = rng.permutation(np.resize(np.array(patterns), cfg.n_rings))
    funding = rng.permutation(np.resize(np.array(FUNDINGS), cfg.n_rings))
    for i in range(cfg.n_rings):
        plan = _plan_ring(market, f"{prefix}ring{i:02d}", str(pattern[i]), str(funding[i]))
        legs = _ring_legs(market, plan)
        units = _leg_units(market, plan, legs)
        _ring_fills(market, plan, legs, units)
        n_camo = _camouflage(market, plan, crowd, quotes, legs)
        _fund_ring(market, plan, exchanges, quotes)
        market.rings.append({
            **{k: v for k, v in asdict(plan).items() if k != "members"}, "size": len(plan.members),
            "pairs": list(plan.pairs), "n_legs": len(legs["t"]), "n_pool_legs": int(legs["via_pool"].sum()),
            "n_camouflage_trades": n_camo, "member_index": plan.members.tolist(),
            "max_net_in_mean_legs": _max_net(plan, legs, units),
        })


# ---------------------------------------------------------------- Horizon records


_TYPE_I = {"create_account": 0, "payment": 1, "manage_sell_offer": 3, "account_merge": 8, "manage_buy_offer": 12,
           "path_payment_strict_send": 13, "create_claimable_balance": 14, "claim_claimable_balance": 15}


@dataclass(frozen=True)
class ForeignMarket:
    """A generated market: Horizon trade and operation records (JSON lines), labels and what was planted."""

    config: ForeignConfig
    trades: pl.DataFrame  # [op_id, line]
    operations: pl.DataFrame  # [op_id, line]
    labels: pl.DataFrame  # [wallet, role, is_ring, ring_id, pattern, funding]
    rings: list[dict]


def _account_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct, valid G... StrKeys (random ed25519 public keys)."""
    raw = rng.bytes(32 * n)
    return np.array([StrKey.encode_ed25519_public_key(raw[32 * i:32 * i + 32]) for i in range(n)])


def _hex(rng: np.random.Generator, n: int, n_bytes: int = 32) -> pl.Series:
    """n random lowercase hex strings (transaction hashes, pool and balance ids), without a Python loop."""
    text = rng.bytes(n_bytes * n).hex().encode()
    return pl.Series(np.frombuffer(text, dtype=f"S{2 * n_bytes}").astype(str))


def _amount(col: str) -> pl.Expr:
    """int64 stroops -> Horizon's 7-decimal amount string."""
    return (pl.col(col) // STROOPS).cast(pl.String) + "." + (pl.col(col) % STROOPS).cast(pl.String).str.zfill(7)


def _fills_frame(market: _Market) -> pl.DataFrame:
    """Every fill, in operation order, with who took it and what each side gave.

    Shapes: [seq, t, grp, pair, base_side, counter_side, base_is_maker, base_amt, counter_amt, base, counter,
    fill, taker, given_asset, given_amt, got_asset, got_amt, pooled]"""
    fills = pl.DataFrame({k: np.concatenate([c[k] for c in market.fills]) for k in market.fills[0]})
    base, counter = market.pair_assets(fills["pair"].to_numpy())
    fills = fills.with_columns(base=pl.Series(base), counter=pl.Series(counter)).with_row_index("seq")
    fills = fills.filter(pl.col("t") < market.horizon).sort("grp", "t", "seq")
    taker_is_base = ~pl.col("base_is_maker")
    return fills.with_columns(
        fill=pl.int_range(pl.len()).over("grp"),
        taker=pl.when(taker_is_base).then("base_side").otherwise("counter_side"),
        given_asset=pl.when(taker_is_base).then("base").otherwise("counter"),
        given_amt=pl.when(taker_is_base).then("base_amt").otherwise("counter_amt"),
        got_asset=pl.when(taker_is_base).then("counter").otherwise("base"),
        got_amt=pl.when(taker_is_base).then("counter_amt").otherwise("base_amt"),
        pooled=(pl.col("base_side") < 0) | (pl.col("counter_side") < 0),
    )


def _trade_ops(fills: pl.DataFrame) -> pl.DataFrame:
    """One operation per fill group: a path payment when a pool or more than one pair is involved, else an offer.

    Shapes: [grp, t, kind, src, dst, asset, amt, source_asset, source_amt]"""
    ops = fills.group_by("grp").agg(
        t=pl.col("t").first(), src=pl.col("taker").first(), got_asset=pl.col("got_asset").last(),
        got_amt=pl.col("got_amt").last(), given_asset=pl.col("given_asset").first(),
        given_first=pl.col("given_amt").first(), given_sum=pl.col("given_amt").sum(),
        path=pl.col("pooled").any() | (pl.col("pair").n_unique() > 1),
    )
    path = pl.col("path")
    return ops.select(
        "grp", "t",
        kind=pl.when(path).then(pl.lit("path_payment_strict_send"))
        .when(pl.col("grp") % 3 == 0).then(pl.lit("manage_buy_offer")).otherwise(pl.lit("manage_sell_offer")),
        src="src", dst=pl.col("src"),
        asset=pl.when(path).then("got_asset").otherwise("given_asset"),
        amt=pl.when(path).then("got_amt").otherwise("given_sum"),
        source_asset=pl.when(path).then("given_asset").otherwise("got_asset"),
        source_amt=pl.when(path).then("given_first").otherwise("got_amt"),
    )


def _all_ops(market: _Market, trade_ops: pl.DataFrame) -> pl.DataFrame:
    """Trade and funding operations with their Horizon ids: ledger from a 5-6.5 s close clock, then the
    transaction's order within the ledger (one operation per transaction).

    Shapes: [t, kind, src, dst, asset, amt, source_asset, source_amt, grp, ledger, closed, op_id]"""
    funding = pl.DataFrame({k: np.concatenate([c[k] for c in market.ops]) for k in market.ops[0]})
    funding = funding.filter((pl.col("t") >= 0) & (pl.col("t") < market.horizon)).with_columns(
        source_asset=pl.lit(None, pl.Int64), source_amt=pl.lit(None, pl.Int64), grp=pl.lit(None, pl.Int64))
    ops = pl.concat([funding, trade_ops.select(funding.columns)], how="vertical_relaxed").sort("t", "grp")
    closes = np.cumsum(market.rng.uniform(5.0, 6.5, int(market.horizon / 5) + 10))
    ledger = np.searchsorted(closes, ops["t"].to_numpy())
    ops = ops.with_columns(ledger=pl.Series(ledger + market.cfg.first_ledger, dtype=pl.Int64),
                           closed=pl.Series(np.floor(closes[ledger]), dtype=pl.Float64))
    tx = pl.int_range(1, pl.len() + 1).over("ledger")
    return ops.with_columns(op_id=(pl.col("ledger") * (1 << 32)) + tx * (1 << 12) + 1)


def _asset_fields(assets: pl.DataFrame, keys: pl.Series, col: str, prefix: str) -> list[pl.Expr]:
    """Horizon's three asset fields for the asset index in `col` (code and issuer absent for XLM)."""
    code = pl.col(col).replace_strict(list(range(assets.height)), assets["code"].to_list(), default=None)
    issuer_idx = pl.col(col).replace_strict(list(range(assets.height)), assets["issuer"].to_list(), default=-1)
    native = pl.col(col) == 0
    return [
        pl.when(native).then(pl.lit("native")).when(code.str.len_chars() <= 4).then(pl.lit("credit_alphanum4"))
        .otherwise(pl.lit("credit_alphanum12")).alias(f"{prefix}asset_type"),
        pl.when(~native).then(code).alias(f"{prefix}asset_code"),
        pl.when(~native).then(_gather(keys, issuer_idx))
        .alias(f"{prefix}asset_issuer"),
    ]


def _gather(values: pl.Series, index: pl.Expr) -> pl.Expr:
    """values[index] as an expression (null where index < 0)."""
    return pl.when(index >= 0).then(pl.lit(values).gather(index.clip(0)))


def _json_lines(frame: pl.DataFrame, columns: list) -> pl.Series:
    """One JSON object per row, fields in `columns` order, null fields left out (Horizon omits them)."""
    return frame.select(pl.struct(columns).struct.json_encode().str.replace_all(r',"[a-z_]+":null', "")).to_series()


def _time(col: str, start: datetime) -> pl.Expr:
    return (pl.lit(start) + pl.duration(seconds=pl.col(col))).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _trade_lines(market: _Market, fills: pl.DataFrame, ops: pl.DataFrame, keys: pl.Series, pools: pl.Series,
                 start: datetime) -> pl.DataFrame:
    """Horizon trade records. Shapes: [op_id, fill, line]"""
    f = fills.join(ops.filter(pl.col("grp").is_not_null()).select("grp", "op_id", "closed"), on="grp")
    g = np.gcd(f["base_amt"].to_numpy(), f["counter_amt"].to_numpy())
    f = f.with_columns(pn=pl.Series(f["counter_amt"].to_numpy() // g), pd=pl.Series(f["base_amt"].to_numpy() // g))
    cols: list = [
        (pl.col("op_id").cast(pl.String) + "-" + pl.col("fill").cast(pl.String)).alias("id"),
        (pl.col("op_id").cast(pl.String) + "-" + pl.col("fill").cast(pl.String)).alias("paging_token"),
        _time("closed", start).alias("ledger_close_time"),
        pl.when("pooled").then(pl.lit("liquidity_pool")).otherwise(pl.lit("orderbook")).alias("trade_type"),
        pl.when("pooled").then(pl.lit(30)).alias("liquidity_pool_fee_bp"),
    ]
    for side, maker in (("base", pl.col("base_is_maker")), ("counter", ~pl.col("base_is_maker"))):
        s = pl.col(f"{side}_side")
        offer = pl.when(maker).then(pl.lit(1_200_000_000) + pl.col("seq")).otherwise(pl.col("op_id") + SYNTHETIC_OFFER_BIT)
        cols += [
            pl.when(s >= 0).then(offer.cast(pl.String)).alias(f"{side}_offer_id"),
            _gather(keys, s).alias(f"{side}_account"),
            _gather(pools, -s - 1).alias(f"{side}_liquidity_pool_id"),
            _amount(f"{side}_amt").alias(f"{side}_amount"),
            *_asset_fields(market.assets, keys, side, f"{side}_"),
        ]
    cols += [pl.col("base_is_maker").alias("base_is_seller"),
             pl.struct(n=pl.col("pn").cast(pl.String), d=pl.col("pd").cast(pl.String)).alias("price")]
    return f.select("op_id", "fill", line=_json_lines(f, cols)).sort("op_id", "fill")


def _operation_lines(market: _Market, ops: pl.DataFrame, keys: pl.Series, start: datetime) -> pl.DataFrame:
    """Horizon operation records of every kind the market uses. Shapes: [op_id, fill (0), line]"""
    n = ops.height
    kind = pl.col("kind")
    cancel = kind == "cancel_offer"
    offer = kind.is_in(["manage_sell_offer", "manage_buy_offer"]) | cancel
    pays = kind.is_in(["payment", "path_payment_strict_send"])
    src, dst = _gather(keys, pl.col("src")), _gather(keys, pl.col("dst"))
    o = ops.with_columns(tx_hash=_hex(market.rng, n), balance=pl.lit("00000000") + _hex(market.rng, n))
    # a claim names the balance its create made: the k-th claim of a member follows its k-th create
    claim_key = pl.when(kind.is_in(["create_claimable_balance", "claim_claimable_balance"])).then(
        pl.col("dst").cast(pl.String) + ":" + pl.int_range(pl.len()).over("dst", "kind").cast(pl.String))
    o = o.with_columns(claim_key=claim_key).with_columns(
        balance=pl.col("balance").first().over("claim_key", order_by="t"),
        pair_base=pl.col("asset").replace_strict(list(range(market.pairs.height)), market.pairs["base"].to_list(),
                                                 default=None),
        pair_counter=pl.col("asset").replace_strict(list(range(market.pairs.height)),
                                                    market.pairs["counter"].to_list(), default=None),
    ).with_columns(
        sell_asset=pl.when(cancel).then("pair_base").otherwise("asset"),
        buy_asset=pl.when(cancel).then("pair_counter").otherwise("source_asset"),
    )
    g = np.gcd(o["amt"].fill_null(1).to_numpy(), o["source_amt"].fill_null(1).to_numpy())
    o = o.with_columns(pn=pl.Series(o["source_amt"].fill_null(1).to_numpy() // g),
                       pd=pl.Series(o["amt"].fill_null(1).to_numpy() // g))
    cols = [
        pl.col("op_id").cast(pl.String).alias("id"), pl.col("op_id").cast(pl.String).alias("paging_token"),
        pl.lit(True).alias("transaction_successful"), src.alias("source_account"),
        pl.when(cancel).then(pl.lit("manage_sell_offer")).otherwise(kind).alias("type"),
        pl.when(cancel).then(pl.lit(3)).otherwise(kind.replace_strict(_TYPE_I, default=None)).alias("type_i"),
        _time("closed", start).alias("created_at"), pl.col("tx_hash").alias("transaction_hash"),
        *_operation_bodies(market, cancel, offer, pays, src, dst),
    ]
    return o.select("op_id", fill=pl.lit(0), line=_json_lines(o, cols))


def _only(cond: pl.Expr, exprs: list[pl.Expr]) -> list[pl.Expr]:
    """Each expression where `cond` holds (null elsewhere), keeping its name."""
    return [pl.when(cond).then(e).alias(e.meta.output_name()) for e in exprs]


def _operation_bodies(market: _Market, cancel, offer, pays, src, dst) -> list[pl.Expr]:
    kind = pl.col("kind")
    create, merge = kind == "create_account", kind == "account_merge"
    claimable, claim = kind == "create_claimable_balance", kind == "claim_claimable_balance"
    path = kind == "path_payment_strict_send"
    asset_id = pl.when(pl.col("asset") == 0).then(pl.lit("native")).otherwise(
        pl.concat_str(_asset_fields(market.assets, market.keys, "asset", "")[1:], separator=":"))
    return [
        pl.when(create).then(_amount("amt")).alias("starting_balance"),
        pl.when(create).then(src).alias("funder"),
        pl.when(create).then(dst).when(merge).then(src).alias("account"),
        pl.when(merge).then(dst).alias("into"),
        pl.when(claimable).then(asset_id).alias("asset"),
        pl.when(claimable).then(pl.concat_list(pl.struct(destination=dst, predicate=pl.struct(
            unconditional=pl.lit(True))))).alias("claimants"),
        pl.when(claimable | claim).then(pl.col("balance")).alias("balance_id"),
        pl.when(claim).then(dst).alias("claimant"),
        *_only(pays, _asset_fields(market.assets, market.keys, "asset", "")),
        pl.when(pays).then(src).alias("from"), pl.when(pays).then(dst).alias("to"),
        pl.when(pays | claimable).then(_amount("amt")).when(cancel).then(pl.lit("0.0000000"))
        .when(offer).then(_amount("amt")).alias("amount"),
        *_only(path, _asset_fields(market.assets, market.keys, "source_asset", "source_")),
        pl.when(path).then(_amount("source_amt")).alias("source_amount"),
        pl.when(path).then(_amount("amt")).alias("destination_min"),
        pl.when(path).then(pl.lit([], dtype=pl.List(pl.String))).alias("path"),
        pl.when(offer).then(pl.when(cancel).then(pl.lit(900_000_000) + pl.col("op_id") % 100_000_000)
                            .otherwise(pl.lit(0)).cast(pl.String)).alias("offer_id"),
        pl.when(offer).then((pl.col("pn") / pl.col("pd")).round(7).cast(pl.String)).alias("price"),
        pl.when(offer).then(pl.struct(n=pl.col("pn"), d=pl.col("pd"))).alias("price_r"),
        *_only(offer, _asset_fields(market.assets, market.keys, "sell_asset", "selling_")),
        *_only(offer, _asset_fields(market.assets, market.keys, "buy_asset", "buying_")),
    ]


# ---------------------------------------------------------------- entry points


def generate(config: ForeignConfig, *, prefix: str = "") -> ForeignMarket:
    """Build the whole market from `config` (deterministic in `config.seed`)."""
    market = _setup(config)
    crowd = _crowd(market)
    exchanges = _exchanges(market, crowd)
    quotes = _market_makers(market, crowd)
    _organic(market, crowd, quotes)
    _peer_payments(market, crowd)
    _makers_crossing(market, quotes)
    _exchange_rebalancing(market, exchanges, quotes)
    _dca_bots(market, exchanges, quotes)
    _arbitrage_bots(market, exchanges, quotes)
    _airdrop_farms(market, quotes)
    _otc_desks(market, exchanges, quotes)
    _two_wallet_users(market, crowd)
    _copy_traders(market, quotes)
    _rings(market, crowd, quotes, exchanges, prefix)
    return _render(market)


def _render(market: _Market) -> ForeignMarket:
    start = datetime.fromisoformat(market.cfg.start.replace("Z", "+00:00")).astimezone(UTC)
    market.keys = pl.Series(_account_ids(market.rng, len(market.accounts.role)))
    pools = _hex(market.rng, int(market.pairs["pool"].max()) + 1)
    fills = _fills_frame(market)
    ops = _all_ops(market, _trade_ops(fills))
    trades = _trade_lines(market, fills, ops, market.keys, pools, start)
    operations = _operation_lines(market, ops, market.keys, start).sort("op_id")
    acc = market.accounts
    labels = pl.DataFrame({"wallet": market.keys, "role": acc.role, "ring_id": acc.ring_id, "pattern": acc.pattern,
                           "funding": acc.funding}).with_columns(
        is_ring=(pl.col("role") == "ring_member").cast(pl.Int8)).select(
        "wallet", "role", "is_ring", "ring_id", "pattern", "funding")
    rings = [{**r, "members": market.keys.gather(r.pop("member_index")).to_list()} for r in market.rings]
    return ForeignMarket(config=market.cfg, trades=trades, operations=operations, labels=labels, rings=rings)


def write(market: ForeignMarket, out: Path) -> dict:
    """Write trades.jsonl, operations.jsonl, labels.csv and meta.json (config, seed, counts, rings) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("trades.jsonl", market.trades), ("operations.jsonl", market.operations)):
        (out / name).write_text("\n".join(frame["line"].to_list()) + "\n")
    market.labels.write_csv(out / "labels.csv")
    meta = {"generator": "benchmarks/foreign_market.py", "config": asdict(market.config),
            "counts": {"trades": market.trades.height, "operations": market.operations.height,
                       "accounts": market.labels.height,
                       "roles": dict(market.labels.group_by("role").len().sort("role").iter_rows()),
                       "rings": len(market.rings)},
            "rings": market.rings}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=_plain))
    return meta


def _plain(value):
    return value.item() if isinstance(value, np.generic) else list(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="A")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    args = parser.parse_args(argv)
    config = PRESETS[args.preset] if args.seed is None else replace(PRESETS[args.preset], seed=args.seed)
    meta = write(generate(config, prefix=f"{args.preset}-"), args.out)
    print(json.dumps(meta["counts"]))


if __name__ == "__main__":
    main()
