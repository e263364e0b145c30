"""The simulated world: accounts by role, assets, pairs, pools, market makers, prices.

Indices are plain integers here; StrKey ids are given at the end (strkey.py).
Nothing in this module draws a feature from a range reserved to one population:
ring tokens are named like small legitimate tokens, trade on pools like them, and
ring members are created the same ways organic accounts are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.strkey import hex_ids
from engine.synthetic.plan import Plan
from engine.synthetic.rings import RingSpec

MAJORS = (  # code, value in XLM per unit
    ("USDC", 8.5), ("EURC", 9.2), ("BTC", 580_000.0), ("ETH", 31_000.0), ("AQUA", 0.008),
    ("yXLM", 1.0), ("SHX", 0.04), ("VELO", 0.3), ("MOBI", 0.5), ("LSP", 0.02),
)
CROSS_PAIRS = (("USDC", "EURC"), ("BTC", "USDC"), ("ETH", "USDC"), ("AQUA", "USDC"), ("yXLM", "USDC"))
N_SMALL_TOKENS = 5
DAY = 86_400


@dataclass(frozen=True)
class World:
    plan: Plan
    seconds: int
    role: np.ndarray  # str per account
    ring: np.ndarray  # int32, -1 outside rings
    created_t: np.ndarray  # float seconds; NaN = existed before the window
    funder: np.ndarray  # int32 creator of legit accounts created in the window, -1 otherwise
    tz: np.ndarray  # int8 local-time offset, hours
    groups: dict  # role -> int array of account indices
    asset_code: np.ndarray  # str; "XLM" for native (index 0)
    asset_issuer: np.ndarray  # int32 account index, -1 for native
    asset_value: np.ndarray  # float, XLM per unit
    pair_base: np.ndarray  # int32 asset index (the lower index is the base)
    pair_counter: np.ndarray
    pair_weight: np.ndarray  # organic popularity, sums to 1
    pair_pool: np.ndarray  # int32 pool index or -1
    pool_ids: np.ndarray  # str, 64 hex
    mm_weights: np.ndarray  # (n_pairs, n_market_makers) quoting shares, rows sum to 1
    price: np.ndarray  # (n_pairs, n_minutes + 1) counter units per base unit
    ring_pair: np.ndarray  # int32 pair each ring trades
    ring_pair2: np.ndarray  # int32 second pair of two_pair rings, -1 otherwise
    crowd_of: np.ndarray  # int32 crowd index per account, -1 otherwise
    farm_of: np.ndarray  # int32 airdrop farm per account (farm funder and its farmers), -1 otherwise

    def price_at(self, pair: np.ndarray, t: np.ndarray) -> np.ndarray:
        minute = np.clip((t // 60).astype(np.int64), 0, self.price.shape[1] - 1)
        return self.price[pair, minute]


def _token_codes(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    lengths = rng.integers(3, 6, size=n)
    return [bytes(letters[rng.integers(0, 26, size=k)]).decode() for k in lengths]


def _roles(plan: Plan, rings: list[RingSpec], crowd_sizes: np.ndarray, farm_sizes: np.ndarray,
           n_issuers: int) -> list[tuple[str, int]]:
    hops = sum(r.n_hops for r in rings)
    return [
        ("exchange", plan.n_exchanges), ("funder", plan.n_funders), ("issuer", n_issuers),
        ("market_maker", plan.n_market_makers), ("arbitrage_bot", plan.n_arbitrage_bots),
        ("scheduled_buyer", plan.n_scheduled_buyers), ("organic", plan.n_organic),
        ("crowd", int(crowd_sizes.sum())), ("farm_funder", farm_sizes.size), ("airdrop_farmer", int(farm_sizes.sum())),
        ("ring_controller", len(rings)), ("ring_intermediary", hops),
        ("ring_issuer", sum(r.own_token for r in rings)), ("wash_trader", sum(r.n_members for r in rings)),
    ]


def _accounts(rng, plan: Plan, rings, crowd_sizes, farm_sizes, n_issuers, seconds):
    blocks = _roles(plan, rings, crowd_sizes, farm_sizes, n_issuers)
    role = np.concatenate([np.full(n, name, dtype=object) for name, n in blocks]).astype(str)
    groups = {name: np.flatnonzero(role == name).astype(np.int32) for name, _ in blocks}
    n = role.size
    ring = np.full(n, -1, dtype=np.int32)
    ring[groups["ring_controller"]] = np.arange(len(rings))
    ring[groups["ring_intermediary"]] = np.repeat([r.index for r in rings], [r.n_hops for r in rings])
    ring[groups["ring_issuer"]] = [r.index for r in rings if r.own_token]
    ring[groups["wash_trader"]] = np.repeat([r.index for r in rings], [r.n_members for r in rings])
    crowd_of = np.full(n, -1, dtype=np.int32)
    crowd_of[groups["crowd"]] = np.repeat(np.arange(crowd_sizes.size), crowd_sizes)
    farm_of = np.full(n, -1, dtype=np.int32)
    farm_of[groups["farm_funder"]] = np.arange(farm_sizes.size)
    farm_of[groups["airdrop_farmer"]] = np.repeat(np.arange(farm_sizes.size), farm_sizes)
    tz = rng.choice(np.array([-8, -6, -5, -3, 0, 1, 2, 3, 5, 8, 9], dtype=np.int8), size=n)
    created_t, funder = _legit_creation(rng, groups, n, seconds)
    _crowd_creation(rng, groups, crowd_of, crowd_sizes.size, created_t, funder, seconds)
    _farm_creation(rng, groups, farm_of, created_t, funder, seconds)
    return role, ring, crowd_of, farm_of, tz, created_t, funder, groups


def _legit_creation(rng, groups: dict, n: int, seconds: int):
    """Creation time and funder of legit accounts born inside the window (NaN/-1: existed before)."""
    created_t = np.full(n, np.nan)
    funder = np.full(n, -1, dtype=np.int32)
    for role, share in (("organic", 0.35), ("scheduled_buyer", 0.3)):
        idx = groups[role]
        born = idx[rng.random(idx.size) < share]
        created_t[born] = rng.uniform(0.0, 0.85 * seconds, size=born.size)
        kind = rng.random(born.size)
        old_organic = groups["organic"][np.isnan(created_t[groups["organic"]])]
        funder[born] = np.where(
            kind < 0.7, rng.choice(groups["exchange"], size=born.size),
            np.where(kind < 0.8, rng.choice(groups["funder"], size=born.size),
                     rng.choice(old_organic, size=born.size)))
    return created_t, funder


def _crowd_creation(rng, groups, crowd_of, n_crowds, created_t, funder, seconds) -> None:
    """Each crowd is created by one exchange or funder within two hours (fills the arrays)."""
    members = groups["crowd"]
    crowd = crowd_of[members]
    funders = np.concatenate([groups["exchange"], groups["funder"]])
    funder_c = funders[rng.integers(0, funders.size, n_crowds)]
    t0_c = rng.uniform(0.05, 0.8, n_crowds) * seconds
    created_t[members] = t0_c[crowd] + rng.uniform(0, 7200, members.size)
    funder[members] = funder_c[crowd]


def _farm_creation(rng, groups, farm_of, created_t, funder, seconds) -> None:
    """Each farm's funder (an old account) creates its farmers over about a day (fills the arrays)."""
    members = groups["airdrop_farmer"]
    farm = farm_of[members]
    t0 = rng.uniform(0.03, 0.6, groups["farm_funder"].size) * seconds
    created_t[members] = t0[farm] + rng.uniform(0, 86_400, members.size)
    funder[members] = groups["farm_funder"][farm]


def _assets(rng, rings: list[RingSpec], groups: dict):
    small_codes = _token_codes(rng, N_SMALL_TOKENS + sum(r.own_token for r in rings))
    codes = ["XLM"] + [c for c, _ in MAJORS] + small_codes
    values = [1.0] + [v for _, v in MAJORS] + list(np.exp(rng.uniform(np.log(0.005), np.log(2.0), len(small_codes))))
    n_legit = 1 + len(MAJORS) + N_SMALL_TOKENS
    issuers = np.concatenate([[-1], groups["issuer"], groups["ring_issuer"]]).astype(np.int32)
    kinds = ["native"] + ["major"] * len(MAJORS) + ["small"] * N_SMALL_TOKENS + ["ring"] * (len(codes) - n_legit)
    return np.array(codes), issuers, np.array(values), np.array(kinds)


def _pairs(rng, codes: np.ndarray, kinds: np.ndarray, rings: list[RingSpec]):
    """Every asset against XLM, the cross pairs, and TOKEN/USDC for two-pair rings' own tokens.
    Pools: on every pair of a major, half the others, and every own-token pair of a pool_layered ring."""
    index = {c: i for i, c in enumerate(codes)}
    ring_tokens = np.flatnonzero(kinds == "ring")
    token_rings = [r for r in rings if r.own_token]
    extra = [int(t) for t, r in zip(ring_tokens, token_rings, strict=True) if r.pattern == "two_pair"]
    a = [i for i in range(1, len(codes))] + [index[x] for x, _ in CROSS_PAIRS] + extra
    b = [0] * (len(codes) - 1) + [index[y] for _, y in CROSS_PAIRS] + [index["USDC"]] * len(extra)
    base, counter = np.minimum(a, b).astype(np.int32), np.maximum(a, b).astype(np.int32)
    tier = np.where(kinds[counter] == "major", 1.0, 0.05)
    weight = tier * (1.0 / np.arange(1, base.size + 1)) ** 0.8
    n_xlm = len(codes) - 1
    weight[n_xlm:n_xlm + len(CROSS_PAIRS)] *= 0.5
    has_pool = (kinds[counter] == "major") | (rng.random(base.size) < 0.5)
    layered = [int(t) for t, r in zip(ring_tokens, token_rings, strict=True) if r.pattern == "pool_layered"]
    has_pool[np.isin(counter, layered) & (base == 0)] = True
    has_pool[n_xlm + len(CROSS_PAIRS):] |= rng.random(len(extra)) < 0.5
    pair_pool = np.where(has_pool, np.cumsum(has_pool) - 1, -1).astype(np.int32)
    return base, counter, weight / weight.sum(), pair_pool, int(has_pool.sum())


def _mm_weights(rng, n_pairs: int, n_mm: int) -> np.ndarray:
    """A few market makers dominate each book: Pareto shares over 2-4 quoting makers."""
    w = np.zeros((n_pairs, n_mm))
    for p in range(n_pairs):
        k = int(rng.integers(2, min(4, n_mm) + 1))
        makers = rng.choice(n_mm, size=k, replace=False)
        w[p, makers] = np.sort(rng.pareto(1.2, size=k) + 0.05)[::-1]
    return w / w.sum(axis=1, keepdims=True)


def _prices(rng, base, counter, values, kinds, rings, ring_pair, ring_pair2, seconds) -> np.ndarray:
    """Per-minute random-walk prices (counter per base); ring tokens get pumped in their window."""
    n_min = seconds // 60 + 1
    daily_vol = np.where(kinds[counter] == "major", rng.uniform(0.02, 0.06, base.size), rng.uniform(0.05, 0.15, base.size))
    steps = rng.standard_normal((base.size, n_min)) * (daily_vol / np.sqrt(1440))[:, None]
    log_p = np.log(values[base] / values[counter])[:, None] + np.cumsum(steps, axis=1)
    minutes = np.arange(n_min)
    for spec, pair, pair2 in zip(rings, ring_pair, ring_pair2, strict=True):
        if not spec.own_token:
            continue
        lo, hi = spec.start_frac * seconds / 60, spec.end_frac * seconds / 60
        gain = rng.uniform(0.3, 1.2)
        ramp = np.clip((minutes - lo) / max(hi - lo, 1), 0, 1) * gain
        crash = np.clip((minutes - hi) / 240, 0, 1) * gain * 0.6
        # the token is the counter asset of TOKEN/XLM (XLM has index 0): a pump lowers tokens per XLM
        log_p[pair] -= ramp - crash
        if pair2 >= 0:  # TOKEN/USDC: the token is the counter asset there too
            log_p[pair2] -= ramp - crash
    return np.exp(log_p)


def _ring_pairs(rng, rings, base, counter, kinds, weight, pair_pool, codes) -> tuple[np.ndarray, np.ndarray]:
    """The pair each ring washes on, and the second pair of two_pair rings (-1 otherwise).

    Own-token rings use TOKEN/XLM (and TOKEN/USDC); two_pair rings without a token wash a
    major on X/XLM and X/USDC; pool_layered rings pick a liquid pair with a pool."""
    token_pairs = np.flatnonzero((kinds[counter] == "ring") & (base == 0))
    liquid = np.argsort(-weight)[:8]
    pooled = liquid[pair_pool[liquid] >= 0]
    index = {c: i for i, c in enumerate(codes)}
    crossed = [index[x] for x, y in CROSS_PAIRS if y == "USDC"] + [index[y] for x, y in CROSS_PAIRS if x == "USDC"]

    def pair_of(x, y):
        lo, hi = min(x, y), max(x, y)
        return int(np.flatnonzero((base == lo) & (counter == hi))[0])

    first, second, next_token = [], [], 0
    for spec in rings:
        if spec.own_token:
            token = int(counter[token_pairs[next_token]])
            next_token += 1
            first.append(pair_of(0, token))
            second.append(pair_of(index["USDC"], token) if spec.pattern == "two_pair" else -1)
        elif spec.pattern == "two_pair":
            x = int(rng.choice(crossed))
            first.append(pair_of(0, x))
            second.append(pair_of(index["USDC"], x))
        else:
            first.append(int(rng.choice(pooled if spec.pattern == "pool_layered" else liquid)))
            second.append(-1)
    return np.array(first, dtype=np.int32), np.array(second, dtype=np.int32)


def build_world(rng: np.random.Generator, plan: Plan, rings: list[RingSpec]) -> World:
    """Accounts, assets, pairs, pools, market-maker books and price paths for `plan`."""
    seconds = plan.days * DAY
    crowd_sizes = rng.integers(10, 30 if plan.scale < 0.5 else 60, size=plan.n_crowds)
    farm_sizes = rng.integers(8, 25 if plan.scale < 0.5 else 40, size=plan.n_airdrop_farms)
    n_issuers = len(MAJORS) + N_SMALL_TOKENS
    role, ring, crowd_of, farm_of, tz, created_t, funder, groups = _accounts(
        rng, plan, rings, crowd_sizes, farm_sizes, n_issuers, seconds)
    codes, issuers, values, kinds = _assets(rng, rings, groups)
    base, counter, weight, pair_pool, n_pools = _pairs(rng, codes, kinds, rings)
    ring_pair, ring_pair2 = _ring_pairs(rng, rings, base, counter, kinds, weight, pair_pool, codes)
    return World(
        plan=plan, seconds=seconds, role=role, ring=ring, created_t=created_t, funder=funder, tz=tz,
        groups=groups, asset_code=codes, asset_issuer=issuers, asset_value=values,
        pair_base=base, pair_counter=counter, pair_weight=weight, pair_pool=pair_pool,
        pool_ids=hex_ids(rng, n_pools), mm_weights=_mm_weights(rng, base.size, plan.n_market_makers),
        price=_prices(rng, base, counter, values, kinds, rings, ring_pair, ring_pair2, seconds),
        ring_pair=ring_pair, ring_pair2=ring_pair2, crowd_of=crowd_of, farm_of=farm_of,
    )
