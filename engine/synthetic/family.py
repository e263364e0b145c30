"""The market family: which ring patterns and funding styles a simulated market
draws from, and the ranges every ring draws its behaviour from.

`generate_market(..., family=FamilyConfig(...))` simulates one member of the
family; the market seed draws every ring's pattern, size, funding, amounts,
timing, camouflage, active window and lot size from these ranges. Holding a
family out for evaluation is a matter of configuration:

    FamilyConfig(exclude_patterns=("cycle",))       # train without directed cycles
    FamilyConfig(only_patterns=("cycle",))          # test on cycles only
    FamilyConfig(exclude_funding=("chain",))        # train without chain funding

Ring patterns (labels.csv `pattern` of ring accounts):
  ping_pong        2 members hand a lot back and forth
  cycle            a directed cycle of 3-8 members: A sells the lot to B, B to C, ...,
                   the last to A; one direction per member pair, net positions near 0
  random_matching  random trades inside a group of 3-8
  pool_layered     a cycle (or ping-pong) of 2-8 where some legs go through the pair's
                   liquidity pool: A sells into the pool, B buys about the same amount
                   out of it within seconds (same or next ledger)
  two_pair         2-8 members wash one asset on two pairs (X/XLM and X/USDC)
Funding styles (labels.csv `funding`):
  controller       the controller creates the members
  chain            each member is reached through its own chain of 1-3 throwaway
                   accounts, each forwarding >= 95% of what it got within minutes to hours
  exchange_topup   exchanges create the members; the controller later tops them up
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from storage.errors import BadInput

PATTERNS = ("ping_pong", "cycle", "random_matching", "pool_layered", "two_pair")
FUNDING = ("controller", "chain", "exchange_topup")
AMOUNT_STYLES = ("fixed", "round", "jittered", "lognormal")
TIMING = ("burst", "clock", "poisson", "human_hours")
# labels.csv `pattern` of legitimate accounts, by role (roles not listed keep their name)
LEGIT_PATTERN = {"scheduled_buyer": "dca_bot", "farm_funder": "airdrop_farmer"}


@dataclass(frozen=True)
class FamilyConfig:
    """Which patterns / funding styles rings draw from, and the ranges of everything else.

    only_* (None = all) and exclude_* select the patterns and funding styles; every
    selected one appears in a market with at least as many rings as selected patterns.
    Ranges are (low, high), inclusive; lot values are drawn log-uniformly.
    """

    only_patterns: tuple[str, ...] | None = None
    exclude_patterns: tuple[str, ...] = ()
    only_funding: tuple[str, ...] | None = None
    exclude_funding: tuple[str, ...] = ()
    amount_styles: tuple[str, ...] = AMOUNT_STYLES
    timings: tuple[str, ...] = TIMING
    cycle_members: tuple[int, int] = (3, 8)  # cycle, random_matching; pool_layered / two_pair start at 2
    chain_hops: tuple[int, int] = (1, 3)  # throwaway accounts per member (chain funding)
    camouflage: tuple[float, float] = (0.0, 1 / 3)  # share of members' trades with outsiders
    lot_value_xlm: tuple[float, float] = (20.0, 20_000.0)
    jitter: float = 0.05  # 'jittered' amounts: each leg within +/- this of the lot
    own_token_share: float = 0.4  # rings pumping a token their controller issued
    n_rings: int | None = None  # None: from the plan (scale), at least one ring per selected pattern
    seed: int | None = None  # when set, the market's mix (rings, wash share, trap sizes) varies with it

    def __post_init__(self):
        for name, value in (("only_patterns", self.only_patterns), ("exclude_patterns", self.exclude_patterns),
                            ("only_funding", self.only_funding), ("exclude_funding", self.exclude_funding),
                            ("amount_styles", self.amount_styles), ("timings", self.timings)):
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        _check("pattern", PATTERNS, *(self.only_patterns or ()), *self.exclude_patterns)
        _check("funding style", FUNDING, *(self.only_funding or ()), *self.exclude_funding)
        _check("amount style", AMOUNT_STYLES, *self.amount_styles)
        _check("timing", TIMING, *self.timings)
        if not self.patterns or not self.funding_styles or not self.amount_styles or not self.timings:
            raise BadInput(f"the family selects no ring pattern, funding style, amount style or timing: {self}; "
                           "leave at least one of each")
        lo, hi = self.cycle_members
        if not 3 <= lo <= hi or not 1 <= self.chain_hops[0] <= self.chain_hops[1]:
            raise BadInput(f"cycle_members {self.cycle_members} must be 3 <= low <= high and chain_hops "
                           f"{self.chain_hops} 1 <= low <= high")
        if not 0 <= self.camouflage[0] <= self.camouflage[1] < 0.9:
            raise BadInput(f"camouflage {self.camouflage} must be 0 <= low <= high < 0.9")

    @property
    def patterns(self) -> tuple[str, ...]:
        """The ring patterns this family draws from, in PATTERNS order."""
        chosen = self.only_patterns or PATTERNS
        return tuple(p for p in PATTERNS if p in chosen and p not in self.exclude_patterns)

    @property
    def funding_styles(self) -> tuple[str, ...]:
        chosen = self.only_funding or FUNDING
        return tuple(f for f in FUNDING if f in chosen and f not in self.exclude_funding)

    def as_dict(self) -> dict:
        return {**asdict(self), "patterns": list(self.patterns), "funding_styles": list(self.funding_styles)}


def _check(kind: str, known: tuple[str, ...], *names: str) -> None:
    bad = sorted(set(names) - set(known))
    if bad:
        raise BadInput(f"unknown {kind} {', '.join(bad)}; choose from {', '.join(known)}")
