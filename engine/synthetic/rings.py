"""Ring specifications: how each simulated manipulation ring behaves.

Every axis an analyst meets varies independently from ring to ring, so no single
rule (fixed sizes, clock timing, one funder, one pair) finds them all, and each
axis is shared with some legitimate population.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOPOLOGIES = ("ping_pong", "cycle", "random_matching")
FUNDING = ("controller", "chain", "exchange")
AMOUNT_STYLES = ("fixed_lot", "round", "jittered_lot", "benford")
TIMING = ("burst", "clock", "poisson", "human_hours")


@dataclass(frozen=True)
class RingSpec:
    index: int
    topology: str
    n_members: int
    funding: str  # controller: created by the controller; chain: via hops; exchange: by an exchange
    n_hops: int  # intermediaries between controller and members (chain only)
    top_ups: bool  # later payments from the controller to members
    amount_style: str
    timing: str
    own_token: bool  # pumps a token its controller issued, else hides in a liquid pair
    start_frac: float  # active window, as fractions of the simulated span
    end_frac: float
    camouflage: float  # share of the members' trades that are with outsiders
    n_trades: int  # wash trades inside the ring
    lot_value_xlm: float  # typical size, in XLM
    tz_hours: int

    def as_dict(self) -> dict:
        return asdict(self)


def draw_ring_specs(rng: np.random.Generator, *, n_rings: int, n_wash_trades: int) -> list[RingSpec]:
    """`n_rings` ring specs sharing `n_wash_trades`; every category appears when n_rings >= 4."""
    shares = rng.dirichlet(np.full(n_rings, 2.0))
    counts = np.maximum(24, np.round(shares * n_wash_trades)).astype(int)
    specs = []
    for i in range(n_rings):
        topology = TOPOLOGIES[(i + rng.integers(0, 3)) % 3] if i >= 3 else TOPOLOGIES[i]
        n_members = 2 if topology == "ping_pong" else int(rng.integers(3, 9))
        start = float(rng.uniform(0.25, 0.6)) if rng.random() < 0.3 else float(rng.uniform(0.02, 0.1))
        end = float(rng.uniform(start + 0.25, 0.85)) if rng.random() < 0.3 else 1.0
        specs.append(
            RingSpec(
                index=i,
                topology=topology,
                n_members=n_members,
                funding=FUNDING[(i + int(rng.integers(0, 3))) % 3],
                n_hops=int(rng.integers(1, 4)),
                top_ups=bool(rng.random() < 0.5),
                amount_style=AMOUNT_STYLES[int(rng.integers(0, 4))],
                timing=TIMING[int(rng.integers(0, 4))],
                own_token=bool(rng.random() < 0.4),
                start_frac=start,
                end_frac=min(1.0, end),
                camouflage=float(rng.choice([0.0, 0.1, 0.25, 0.45])),
                n_trades=int(counts[i]),
                lot_value_xlm=float(np.exp(rng.normal(np.log(800), 1.3))),
                tz_hours=int(rng.choice([-8, -5, 0, 1, 3, 8, 9])),
            )
        )
    return specs
