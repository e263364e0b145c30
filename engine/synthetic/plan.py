"""How big each part of the simulated market is, from `scale` and `days`.

scale = 1 means about 100,000 trades over the default 7 days (about 14,300 trades
per simulated day); the trade count grows linearly with scale and with days.
scale = 10 gives about a million trades; scale = 0.05 a few thousand (tests, demo).
Account counts grow with scale too, so per-account activity stays realistic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

TRADES_PER_DAY_AT_SCALE_1 = 100_000 / 7


@dataclass(frozen=True)
class Plan:
    scale: float
    days: int
    n_trades_target: int
    n_exchanges: int
    n_funders: int
    n_market_makers: int
    n_arbitrage_bots: int
    n_scheduled_buyers: int
    n_organic: int
    n_crowds: int
    n_airdrop_farms: int
    n_rings: int
    wash_share: float  # share of all trades that are wash trades (before camouflage)

    def as_dict(self) -> dict:
        return asdict(self)


def vary_plan(plan: Plan, rng: np.random.Generator) -> Plan:
    """The same market with its mix drawn from `rng` (a family seed): rings x0.5-2, wash share
    4-15%, every legitimate trap population x0.5-2 (each at least its minimum)."""
    def times(n: int, low: int) -> int:
        return max(low, round(n * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))))

    return replace(plan, n_market_makers=times(plan.n_market_makers, 3), n_arbitrage_bots=times(plan.n_arbitrage_bots, 2),
                   n_scheduled_buyers=times(plan.n_scheduled_buyers, 4), n_crowds=times(plan.n_crowds, 1),
                   n_airdrop_farms=times(plan.n_airdrop_farms, 1), n_rings=times(plan.n_rings, 3),
                   wash_share=float(rng.uniform(0.04, 0.15)))


def make_plan(*, scale: float, days: int) -> Plan:
    """The sizes of every population for `scale` and `days` (see module docstring)."""
    if scale <= 0 or days <= 0:
        raise ValueError(f"scale ({scale}) and days ({days}) must be positive")
    n_trades = max(500, int(round(TRADES_PER_DAY_AT_SCALE_1 * scale * days)))
    root = scale**0.5
    return Plan(
        scale=scale,
        days=days,
        n_trades_target=n_trades,
        n_exchanges=4,
        n_funders=3,
        n_market_makers=max(5, round(7 * root)),
        n_arbitrage_bots=max(2, round(4 * root)),
        n_scheduled_buyers=max(6, round(40 * scale * min(1.0, days / 7) ** 0)),
        n_organic=max(120, round(2400 * scale * (days / 7) ** 0.5)),
        n_crowds=max(2, round(5 * root)),
        n_airdrop_farms=max(2, round(4 * root)),
        n_rings=max(3, round(12 * scale**0.6)),
        wash_share=0.09,
    )
