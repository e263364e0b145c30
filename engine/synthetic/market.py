"""`generate_market`: the whole simulated market, written as Horizon JSON lines
(trades.jsonl, operations.jsonl) with labels.csv and meta.json beside them.

Numbers are generated for the whole span at once (a few dozen bytes per trade);
JSON text is built and written in chunks, so memory stays bounded by the numeric
tables and a million trades take well under a minute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from engine.progress import Progress, no_progress
from engine.strkey import hex_ids, random_account_ids
from engine.synthetic import funding, legit
from engine.synthetic.assemble import fix_merges, maker_offers, taker_amounts
from engine.synthetic.events import Flow, concat_flows
from engine.synthetic.family import FamilyConfig
from engine.synthetic.manipulation import member_chains, ring_accounts, ring_flow
from engine.synthetic.plan import Plan, make_plan, vary_plan
from engine.synthetic.population import World, build_world
from engine.synthetic.rings import RingSpec, draw_ring_specs
from engine.synthetic.timeline import Timeline, assign_ids, make_timeline
from engine.synthetic.writer import ring_id, write_labels, write_operations, write_trades

GENERATOR_VERSION = "ledgerlens-synth/2"
FIRST_LEDGER = 50_000_000
START_UNIX = 1_709_251_200  # 2024-03-01T00:00:00Z


@dataclass(frozen=True)
class MarketSummary:
    out_dir: Path
    trades_path: Path
    operations_path: Path
    labels_path: Path
    meta_path: Path
    seed: int
    scale: float
    days: int
    n_trades: int
    n_operations: int
    n_accounts: int
    n_rings: int
    n_wash_trades: int  # trades between two members of one ring
    first_ledger: int
    last_ledger: int  # the last ledger with an operation (so a replay of the files holds every ledger asked for)


def _flows(rng, world: World, plan: Plan, specs: list[RingSpec]) -> Flow:
    target = plan.n_trades_target
    parts = [ring_flow(rng, world, spec) for spec in specs]
    parts += [legit.scheduled_buyers(rng, world), legit.arbitrage(rng, world, int(0.045 * target)),
              legit.triangle_arbitrage(rng, world, int(0.01 * target)),
              legit.mm_rebalancing(rng, world, int(0.04 * target)), funding.crowds(rng, world),
              funding.airdrop_farms(rng, world)]
    so_far = sum(p.fills.height for p in parts)
    parts.append(legit.organic_trades(rng, world, max(50, int((target - so_far) / 1.22))))
    extra = pl.concat([funding.legit_creations(rng, world), funding.payments(rng, world, int(0.05 * target)),
                       funding.merges(rng, world)])
    flow = concat_flows(parts)
    return Flow(pl.concat([flow.ops, extra]), flow.fills)


def family_plan(family: FamilyConfig, *, scale: float, days: int) -> Plan:
    """The plan for `scale` and `days`, its mix varied by the family's seed (if any), with at
    least one ring per selected pattern (or exactly `family.n_rings`)."""
    plan = make_plan(scale=scale, days=days)
    if family.seed is not None:
        plan = vary_plan(plan, np.random.default_rng(family.seed))
    return replace(plan, n_rings=family.n_rings or max(plan.n_rings, len(family.patterns)))


def simulate(*, seed: int, scale: float, days: int, family: FamilyConfig | None = None
             ) -> tuple[World, list[RingSpec], Timeline, pl.DataFrame, pl.DataFrame, np.ndarray]:
    """The market as tables: (world, ring specs, timeline, ops with ids, fills with op ids, account ids)."""
    family = family or FamilyConfig()
    rng = np.random.default_rng(seed)
    plan = family_plan(family, scale=scale, days=days)
    specs = draw_ring_specs(rng, n_rings=plan.n_rings, n_wash_trades=int(plan.n_trades_target * plan.wash_share),
                            family=family)
    world = build_world(rng, plan, specs)
    flow = _flows(rng, world, plan, specs)
    fills, offer_ops = maker_offers(rng, world, flow.fills)
    ops = taker_amounts(pl.concat([flow.ops, offer_ops], how="diagonal_relaxed"), fills)
    ops = fix_merges(ops, fills, world.seconds)
    timeline = make_timeline(rng, first_ledger=FIRST_LEDGER, start_unix=START_UNIX, seconds=world.seconds)
    ops = assign_ids(ops.sort("op_key"), timeline, rng)
    ops = _balance_ids(rng, ops)
    fills = fills.join(ops.select("op_key", "op_id", "close_unix"), on="op_key", how="inner")
    account_ids = random_account_ids(rng, world.role.size)
    return world, specs, timeline, ops.sort("op_id"), fills.sort("op_id", "fill_idx"), account_ids


def _balance_ids(rng, ops: pl.DataFrame) -> pl.DataFrame:
    creates = ops.filter(pl.col("type") == "create_claimable_balance").sort("op_key")
    ids = pl.Series("balance_id", np.char.add("00000000", hex_ids(rng, creates.height)))
    table = creates.select(pl.col("op_key").alias("claim_of")).with_columns(ids)
    own = creates.select("op_key").with_columns(ids.alias("own_id"))
    ops = ops.join(table, on="claim_of", how="left").join(own, on="op_key", how="left")
    return ops.with_columns(balance_id=pl.coalesce("balance_id", "own_id")).drop("own_id")


def generate_market(out_dir: Path, *, seed: int = 42, scale: float = 1.0, days: int = 7,
                    family: FamilyConfig | None = None, progress: Progress = no_progress) -> MarketSummary:
    """Simulate one market of `family` (default: every pattern and funding style) and write
    trades.jsonl, operations.jsonl, labels.csv and meta.json into `out_dir` (created).
    The same (seed, scale, days, family) gives byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    family = family or FamilyConfig()
    world, specs, timeline, ops, fills, account_ids = simulate(seed=seed, scale=scale, days=days, family=family)
    progress(done=1, total=3, records=0, unit="steps")
    rings = [ring_accounts(world, s.index) for s in specs]
    ring_ids = [ring_id([str(account_ids[m]) for m in r["members"]]) for r in rings]
    paths = {name: out_dir / name for name in ("trades.jsonl", "operations.jsonl", "labels.csv", "meta.json")}
    n_trades = write_trades(paths["trades.jsonl"], fills, world, account_ids)
    progress(done=2, total=3, records=n_trades, unit="steps")
    n_ops = write_operations(paths["operations.jsonl"], ops, world, account_ids)
    write_labels(paths["labels.csv"], world, account_ids, ring_ids, specs)
    ring_of = pl.Series(world.ring)
    inside = fills.filter((pl.col("maker") >= 0) & (ring_of.gather(fills["taker"]) >= 0)
                          & (ring_of.gather(fills["maker"].clip(lower_bound=0)) == ring_of.gather(fills["taker"])))
    summary = MarketSummary(
        out_dir=out_dir, trades_path=paths["trades.jsonl"], operations_path=paths["operations.jsonl"],
        labels_path=paths["labels.csv"], meta_path=paths["meta.json"], seed=seed, scale=scale, days=days,
        n_trades=n_trades, n_operations=n_ops, n_accounts=int(world.role.size), n_rings=len(specs),
        n_wash_trades=inside.height, first_ledger=timeline.first_ledger,
        last_ledger=int(ops["ledger"].max()),  # the last ledger holding a record (a replay's latest)
    )
    meta = _meta(summary, world, specs, rings, ring_ids, account_ids, ops)
    meta["family"] = family.as_dict()
    paths["meta.json"].write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    progress(done=3, total=3, records=n_trades + n_ops, unit="steps")
    return summary


def _meta(summary: MarketSummary, world: World, specs, rings, ring_ids, account_ids, ops) -> dict:
    def ids(idx):
        return [str(account_ids[i]) for i in idx]

    ring_meta = []
    for spec, acc, rid in zip(specs, rings, ring_ids, strict=True):
        ring_meta.append({
            **spec.as_dict(), "ring_id": rid, "members": ids(acc["members"]), "controller": ids(acc["controller"])[0],
            "intermediaries": ids(acc["hops"]), "chains": [ids(c) for c in member_chains(spec, acc["hops"])],
            "issuer": ids(acc["issuer"])[0] if acc["issuer"].size else None,
            "pair": _pair_ids(world, account_ids, int(world.ring_pair[spec.index])),
            "pair2": _pair_ids(world, account_ids, int(world.ring_pair2[spec.index])),
        })
    return {
        "generator_version": GENERATOR_VERSION, "seed": summary.seed, "scale": summary.scale, "days": summary.days,
        "first_ledger": summary.first_ledger, "last_ledger": summary.last_ledger, "start_unix": START_UNIX,
        "counts": {"trades": summary.n_trades, "operations": summary.n_operations, "accounts": summary.n_accounts,
                   "rings": summary.n_rings, "wash_trades": summary.n_wash_trades,
                   "operations_by_type": dict(sorted(ops["type"].value_counts().iter_rows()))},
        "parameters": world.plan.as_dict(),
        "roles": dict(sorted(pl.Series(world.role).value_counts().iter_rows())),
        "rings": ring_meta,
        "traps": _traps(world, account_ids),
        "notes": "labels.csv is_wash=1 for ring members (role wash_trader), controllers, intermediaries and "
                 "ring token issuers; pattern = the ring's pattern (intermediaries: funding_hop) or the legitimate "
                 "role's trap name; funding styles: controller (create_account from the controller), chain (each "
                 "member's own chain controller -> hops -> member, rings[].chains, controller side first), "
                 "exchange_topup (created by exchanges, paid by the controller later). Wash legs through a pool "
                 "(pool_layered) are not counted in counts.wash_trades (a pool is one side).",
    }


def _traps(world: World, account_ids: np.ndarray) -> dict:
    """Which legitimate accounts play which trap (labels.csv names their pattern; this says more)."""
    def ids(idx):
        return [str(account_ids[i]) for i in idx]

    farms = world.farm_of[world.groups["airdrop_farmer"]]
    return {
        "triangle_arbitrage_bots": ids(legit.triangle_bots(world)),
        "pool_book_arbitrage_bots": ids(legit.pool_book_bots(world)),
        "airdrop_farms": [{"funder": ids(world.groups["farm_funder"][[f]])[0],
                           "farmers": ids(world.groups["airdrop_farmer"][farms == f])}
                          for f in range(world.groups["farm_funder"].size)],
        "triangle_slot_seconds": legit.TRIANGLE_SLOT,
    }


def _pair_ids(world: World, account_ids: np.ndarray, pair: int) -> list[str] | None:
    if pair < 0:
        return None
    return [_asset_id(world, account_ids, int(world.pair_base[pair])), _asset_id(world, account_ids, int(world.pair_counter[pair]))]


def _asset_id(world: World, account_ids: np.ndarray, asset: int) -> str:
    issuer = world.asset_issuer[asset]
    return "XLM:native" if issuer < 0 else f"{world.asset_code[asset]}:{account_ids[issuer]}"
