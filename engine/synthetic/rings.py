"""Ring specifications: how each simulated manipulation ring behaves.

Every axis an analyst meets varies independently from ring to ring, so no single
rule (fixed sizes, clock timing, one funder, one pair, reciprocal pairs) finds
them all, and each axis is shared with some legitimate population. The ranges
and the patterns / funding styles to draw from come from a `FamilyConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.synthetic.family import FamilyConfig


@dataclass(frozen=True)
class RingSpec:
    index: int
    pattern: str  # family.PATTERNS
    shape: str  # who hands the lot to whom: ping_pong, cycle or random (pool_layered / two_pair use one too)
    n_members: int
    funding: str  # family.FUNDING
    hops: tuple[int, ...]  # throwaway accounts between the controller and each member (chain only)
    top_ups: bool  # later payments from the controller to members
    amount_style: str
    timing: str
    own_token: bool  # pumps a token its controller issued, else hides in a liquid pair
    start_frac: float  # active window, as fractions of the simulated span
    end_frac: float
    camouflage: float  # share of the members' trades that are with outsiders
    n_trades: int  # wash legs inside the ring
    lot_value_xlm: float  # typical size, in XLM
    tz_hours: int
    pool_share: float  # pool_layered: share of legs that go through the pool
    second_pair_share: float  # two_pair: share of legs on the second pair

    @property
    def n_hops(self) -> int:
        return int(sum(self.hops))

    def as_dict(self) -> dict:
        return {**asdict(self), "hops": list(self.hops), "n_hops": self.n_hops}


def _balanced(rng: np.random.Generator, options: tuple[str, ...], n: int) -> list[str]:
    """`n` draws from `options`, each option at least once when n >= len(options)."""
    first = [options[i] for i in rng.permutation(len(options))][:n]
    return first + [options[int(i)] for i in rng.integers(0, len(options), n - len(first))]


def _shape_and_size(rng, pattern: str, family: FamilyConfig) -> tuple[str, int]:
    lo, hi = family.cycle_members
    if pattern == "ping_pong":
        return "ping_pong", 2
    if pattern in ("cycle", "random_matching"):
        return ("cycle" if pattern == "cycle" else "random"), int(rng.integers(lo, hi + 1))
    n = int(rng.integers(2, hi + 1))
    if n == 2:
        return "ping_pong", 2
    if pattern == "pool_layered":
        return "cycle", n
    return ("cycle" if rng.random() < 0.5 else "random"), n


def draw_ring_specs(rng: np.random.Generator, *, n_rings: int, n_wash_trades: int,
                    family: FamilyConfig | None = None) -> list[RingSpec]:
    """`n_rings` ring specs sharing `n_wash_trades`; every pattern and funding style of
    the family appears when n_rings is at least the number of patterns (styles)."""
    family = family or FamilyConfig()
    shares = rng.dirichlet(np.full(n_rings, 2.0))
    counts = np.maximum(24, np.round(shares * n_wash_trades)).astype(int)
    patterns = _balanced(rng, family.patterns, n_rings)
    fundings = _balanced(rng, family.funding_styles, n_rings)
    log_lot = np.log(np.asarray(family.lot_value_xlm, dtype=float))
    specs = []
    for i in range(n_rings):
        shape, n_members = _shape_and_size(rng, patterns[i], family)
        start = float(rng.uniform(0.25, 0.6)) if rng.random() < 0.3 else float(rng.uniform(0.02, 0.1))
        end = float(rng.uniform(start + 0.25, 0.85)) if rng.random() < 0.3 else 1.0
        funding = fundings[i]
        hops = tuple(int(h) for h in rng.integers(family.chain_hops[0], family.chain_hops[1] + 1, n_members))
        specs.append(RingSpec(
            index=i, pattern=patterns[i], shape=shape, n_members=n_members, funding=funding,
            hops=hops if funding == "chain" else (),
            top_ups=funding == "exchange_topup" or bool(rng.random() < 0.3),
            amount_style=family.amount_styles[int(rng.integers(0, len(family.amount_styles)))],
            timing=family.timings[int(rng.integers(0, len(family.timings)))],
            own_token=bool(rng.random() < family.own_token_share),
            start_frac=start, end_frac=min(1.0, end),
            camouflage=float(rng.uniform(*family.camouflage)),
            n_trades=int(counts[i]),
            lot_value_xlm=float(np.exp(rng.uniform(*log_lot))),
            tz_hours=int(rng.choice([-8, -5, 0, 1, 3, 8, 9])),
            pool_share=float(rng.uniform(0.3, 1.0)) if patterns[i] == "pool_layered" else 0.0,
            second_pair_share=float(rng.uniform(0.3, 0.7)) if patterns[i] == "two_pair" else 0.0,
        ))
    return specs
