"""Streaming writers: resolve index tables to ids and write JSON lines / CSV in chunks."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from engine.synthetic.family import LEGIT_PATTERN
from engine.synthetic.horizon_records import (
    SYNTHETIC_OFFER_BIT,
    asset_fragments,
    asset_names,
    operation_lines,
    reduced_ratio,
    trade_lines,
)
from engine.synthetic.population import World

CHUNK_ROWS = 100_000


def _issuer_ids(world: World, account_ids: np.ndarray) -> list[str | None]:
    return [None if i < 0 else str(account_ids[i]) for i in world.asset_issuer]


def _lookup(values: np.ndarray, index: pl.Series) -> pl.Series:
    """values[index] with null where index < 0."""
    series = pl.Series(values, dtype=pl.String)
    return series.gather(index.clip(lower_bound=0)).zip_with(index >= 0, pl.Series([None] * len(index), dtype=pl.String))


def resolve_trades(fills: pl.DataFrame, world: World, account_ids: np.ndarray) -> pl.DataFrame:
    """Fills -> the base/counter view Horizon serves (columns trade_lines needs)."""
    base_is_maker = fills["maker_asset"] < fills["taker_asset"]
    maker_acct, pool = _lookup(account_ids, fills["maker"]), _lookup(world.pool_ids, fills["pool"])
    taker_acct = _lookup(account_ids, fills["taker"])
    taker_offer = fills["op_id"] | SYNTHETIC_OFFER_BIT

    def pick(a, b):
        return a.zip_with(base_is_maker, b)

    base_amount = pick(fills["maker_amount"], fills["taker_amount"]).to_numpy()
    counter_amount = pick(fills["taker_amount"], fills["maker_amount"]).to_numpy()
    pn, pd = reduced_ratio(counter_amount, base_amount)
    return pl.DataFrame({
        "op_id": fills["op_id"], "fill_idx": fills["fill_idx"], "close_unix": fills["close_unix"],
        "is_pool": fills["pool"] >= 0, "base_asset": pick(fills["maker_asset"], fills["taker_asset"]),
        "counter_asset": pick(fills["taker_asset"], fills["maker_asset"]), "base_amount": base_amount,
        "counter_amount": counter_amount, "base_is_seller": base_is_maker, "price_n": pn, "price_d": pd,
        "base_account": pick(maker_acct, taker_acct), "base_pool": pick(pool, pl.Series([None] * len(pool), dtype=pl.String)),
        "base_offer": pick(fills["maker_offer"], taker_offer),
        "counter_account": pick(taker_acct, maker_acct), "counter_pool": pick(pl.Series([None] * len(pool), dtype=pl.String), pool),
        "counter_offer": pick(taker_offer, fills["maker_offer"]),
    })


def write_trades(path: Path, fills: pl.DataFrame, world: World, account_ids: np.ndarray) -> int:
    issuers = _issuer_ids(world, account_ids)
    base = asset_fragments(world.asset_code, issuers, "base_asset_")
    counter = asset_fragments(world.asset_code, issuers, "counter_asset_")
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for start in range(0, fills.height, CHUNK_ROWS):
            lines = trade_lines(resolve_trades(fills.slice(start, CHUNK_ROWS), world, account_ids), base, counter)
            _write_lines(out, lines)
    return fills.height


def write_operations(path: Path, ops: pl.DataFrame, world: World, account_ids: np.ndarray) -> int:
    issuers = _issuer_ids(world, account_ids)
    frags = {p: asset_fragments(world.asset_code, issuers, p) for p in ("asset_", "source_asset_", "selling_asset_", "buying_asset_")}
    names = asset_names(world.asset_code, issuers)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for start in range(0, ops.height, CHUNK_ROWS):
            chunk = ops.slice(start, CHUNK_ROWS)
            chunk = chunk.with_columns(src_id=_lookup(account_ids, chunk["src"]),
                                       dst_id=_lookup(account_ids, chunk["dst"].fill_null(-1)))
            _write_lines(out, operation_lines(chunk, frags, names))
    return ops.height


def _write_lines(out, lines: pl.Series) -> None:
    if lines.null_count():
        raise AssertionError(f"{lines.null_count()} records could not be rendered (a required field is missing)")
    out.flush()
    pl.DataFrame({"line": lines}).write_csv(out.buffer if hasattr(out, "buffer") else out, include_header=False,
                                            quote_style="never")


def ring_id(members: list[str]) -> str:
    """`ring_<12 hex of sha256 over the sorted member ids>` (the design's ring id rule)."""
    return "ring_" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:12]


def write_labels(path: Path, world: World, account_ids: np.ndarray, ring_ids: list[str], specs: list) -> None:
    """labels.csv: account, role, is_wash (1 for ring members, controllers, hops, ring issuers), ring_id,
    pattern (the ring's pattern; 'funding_hop' for its throwaway intermediaries; for legitimate
    accounts the role's trap name, family.LEGIT_PATTERN) and funding (the ring's funding style, on
    every account of a ring; empty for legitimate accounts)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["account", "role", "is_wash", "ring_id", "pattern", "funding"])
        for acct, role, ring in zip(account_ids, world.role, world.ring, strict=True):
            if ring >= 0:
                pattern = "funding_hop" if role == "ring_intermediary" else specs[ring].pattern
                w.writerow([acct, role, 1, ring_ids[ring], pattern, specs[ring].funding])
            else:
                w.writerow([acct, role, 0, "", LEGIT_PATTERN.get(role, role), ""])
