"""Ring results recorded on generated markets, so a faster or bounded-memory rings step can be
checked to give exactly the same answer (issue 18: "results identical to today's").

The markets are generated here (seeded, byte-identical on every run) and ingested into a
store; `digest` reduces a RingResult to plain JSON (every ring with its statistics, every
member row, every closed loop). `golden/rings_markets.json` holds the digests recorded with
the whole-table `detect_rings` of commit 12d2f4b, before the per-pair rewrite.

Re-record only when a change of detection semantics is intended (and say so in the commit):

    .venv/bin/python -m tests.engine.rings_golden
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

GOLDEN = Path(__file__).parent / "golden" / "rings_markets.json"

# name -> (seed, scale, days, FamilyConfig keyword arguments): every ring pattern (ping-pong,
# cycles, random matching, pool-layered legs, two-pair rings) and every funding style
MARKETS: dict[str, tuple[int, float, int, dict]] = {
    "all_patterns": (7, 0.2, 7, {}),
    "cycles_chain": (5, 0.1, 7, {"only_patterns": ("cycle",), "only_funding": ("chain",), "n_rings": 6}),
    "pool_legs_two_pair": (9, 0.1, 7, {"only_patterns": ("pool_layered", "two_pair"),
                                       "only_funding": ("exchange_topup",), "n_rings": 8}),
}


def build_market(store, folder: Path, name: str) -> None:
    """Generate market `name` into `folder` and ingest it into `store`."""
    from engine.ingest.files import ingest_files
    from engine.synthetic import FamilyConfig, generate_market

    seed, scale, days, family = MARKETS[name]
    summary = generate_market(folder, seed=seed, scale=scale, days=days, family=FamilyConfig(**family))
    ingest_files(store, [summary.trades_path, summary.operations_path])


def digest(result) -> dict:
    """A RingResult as JSON-ready lists (floats to 12 significant digits), rows sorted."""
    return {
        "rings": _rows(result.rings.sort("ring_id")),
        "ring_members": _rows(result.ring_members.sort("ring_id", "account_id")),
        "closed_loops": _rows(result.closed_loops.select("pair_id", "loop_id", "window", "n_members", "n_trades",
                                                          "volume").sort("loop_id")),
        "n_communities": result.communities.height,
    }


def _rows(frame: pl.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dicts()]


def _plain(value):
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.12g}")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (int, str, bool)) else str(value)


def record() -> None:
    """Generate every market, run today's rings step and write the golden file."""
    import tempfile

    from engine.graph.rings import detect_rings
    from storage.store import Store

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MARKETS:
            with Store(Path(tmp) / f"{name}.duckdb") as store:
                build_market(store, Path(tmp) / name, name)
                out[name] = digest(detect_rings(store.trades(), store.funding_edges()))
            print(f"{name}: {len(out[name]['rings'])} rings, {len(out[name]['closed_loops'])} loops")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    record()
