"""Graphs over wallets: funding lineage, co-trade, closed loops, rings, time-windowed snapshots.

Everything here is pure (frames in, frames out); `engine.commands.rings` persists.
"""

from engine.graph.closed_loops import closed_loops, loop_trades
from engine.graph.cotrade import cotrade_edges, cotrade_graph, trader_trades
from engine.graph.funding import (
    ancestors,
    exchange_like,
    funding_parents,
    funding_roots,
    funding_siblings,
    shared_ancestors,
    siblings_from_ancestors,
)
from engine.graph.rings import (
    RingOptions,
    RingResult,
    RingRules,
    detect_rings,
    ring_features,
    ring_id_of,
    ring_recovery,
)
from engine.graph.snapshots import snapshot_edges

__all__ = [
    "RingOptions",
    "RingResult",
    "RingRules",
    "ancestors",
    "closed_loops",
    "cotrade_edges",
    "cotrade_graph",
    "detect_rings",
    "exchange_like",
    "funding_parents",
    "funding_roots",
    "funding_siblings",
    "loop_trades",
    "ring_features",
    "ring_id_of",
    "ring_recovery",
    "shared_ancestors",
    "siblings_from_ancestors",
    "snapshot_edges",
    "trader_trades",
]
