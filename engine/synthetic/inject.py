"""Plant labelled fraud structures into an existing Horizon trades export.

Injected accounts are woven into what is there: each structure is funded by an
account that already trades in the export (create_account operations, written to
a sibling `<output>.operations.jsonl`), trades an existing pair at about its
observed price, in ledgers that already hold trades (so close times are real and
the activity interleaves with the real one), and also trades with existing
accounts. Injected records carry `"synthetic_fraud": true`, `"fraud_pattern"`
(`sybil_cluster` / `wash_trading_loop`) and `"fraud_group"`; input records are
copied unchanged and the output is ordered by paging token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from engine.strkey import hex_ids, random_account_ids
from engine.synthetic.horizon_records import SYNTHETIC_OFFER_BIT
from storage.errors import BadInput

INJECTED_TX_BASE = 900_000  # tx indexes far above any real ledger's (< 2^20)


@dataclass(frozen=True)
class InjectSummary:
    input_path: str
    output_path: str
    operations_path: str
    n_input_trades: int
    n_injected_trades: int
    n_injected_operations: int
    n_injected_accounts: int
    groups: list = field(default_factory=list)  # one dict per structure

    def as_dict(self) -> dict:
        return asdict(self)


def read_trade_records(path: Path) -> tuple[list[str], pl.DataFrame]:
    """Raw JSON text per trade and a frame of its fields, from JSON Lines or a Horizon page."""
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"_embedded"' in text[:4000]:
        try:
            records = json.loads(text)["_embedded"]["records"]
        except (ValueError, KeyError) as exc:
            raise BadInput(f"{path}: not a Horizon page ({exc}); give JSON Lines of trades or a /trades page") from exc
        raw = [json.dumps(r, separators=(",", ":")) for r in records]
    else:
        raw = [line for line in text.splitlines() if line.strip()]
    if not raw:
        raise BadInput(f"{path}: holds no trades; give a Horizon trades export (JSON Lines)")
    frame = pl.read_ndjson("\n".join(raw).encode(), infer_schema_length=None)
    missing = {"paging_token", "ledger_close_time", "base_amount", "counter_amount"} - set(frame.columns)
    if missing:
        raise BadInput(f"{path}: records lack {sorted(missing)}; is it a Horizon trades export?")
    return raw, frame


def _context(frame: pl.DataFrame) -> dict:
    """Ledgers (with close times), accounts and pairs (with typical size and price) of the export."""
    op_id = pl.col("paging_token").str.split("-").list.first().cast(pl.Int64)
    for col in ("base_account", "counter_account"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    frame = frame.with_columns(op_id=op_id, ledger=op_id // (1 << 32),
                               base_units=pl.col("base_amount").cast(pl.Float64),
                               counter_units=pl.col("counter_amount").cast(pl.Float64))
    ledgers = frame.group_by("ledger").agg(pl.col("ledger_close_time").first()).sort("ledger")
    asset_cols = [c for c in frame.columns if c.startswith(("base_asset_", "counter_asset_"))]
    pairs = frame.group_by(asset_cols).agg(
        n=pl.len(), size=pl.col("base_units").median(), price=(pl.col("counter_units") / pl.col("base_units")).median(),
        accounts=pl.col("base_account").append(pl.col("counter_account")).drop_nulls().unique().sort(),
    ).sort(asset_cols, nulls_last=True)
    accounts = pl.concat([frame.get_column(c) for c in ("base_account", "counter_account") if c in frame.columns]).drop_nulls().unique().sort()
    if accounts.is_empty():
        raise BadInput("the export has no account-side trades to weave injected accounts into")
    return {"frame": frame, "ledgers": ledgers, "pairs": pairs, "asset_cols": asset_cols, "accounts": accounts.to_list()}


def _amount(units: float) -> str:
    stroops = max(1, int(round(units * 10_000_000)))
    return f"{stroops // 10_000_000}.{stroops % 10_000_000:07d}"


class _Ids:
    """TOIDs for injected operations: existing ledgers, tx indexes from INJECTED_TX_BASE up."""

    def __init__(self):
        self.next_tx = INJECTED_TX_BASE

    def op_id(self, ledger: int) -> int:
        self.next_tx += 1
        return (ledger << 32) | (self.next_tx << 12) | 1


def _trade(ids: _Ids, ledger: int, close: str, pair: dict, asset_cols, giver: str, taker_gets: str, base_units, price,
           giver_is_maker: bool, tag: dict, offer_id: int) -> dict:
    """An order-book trade where `giver` hands `base_units` of the base asset to `taker_gets`."""
    op_id = ids.op_id(ledger)
    counter_units = base_units * price
    base_offer = offer_id if giver_is_maker else op_id | SYNTHETIC_OFFER_BIT
    counter_offer = op_id | SYNTHETIC_OFFER_BIT if giver_is_maker else offer_id
    rec = {"id": f"{op_id}-0", "paging_token": f"{op_id}-0", "ledger_close_time": close, "trade_type": "orderbook",
           "base_offer_id": str(base_offer), "base_account": giver, "base_amount": _amount(base_units)}
    rec.update({c: pair[c] for c in asset_cols if c.startswith("base_asset_") and pair[c] is not None})
    rec.update({"counter_offer_id": str(counter_offer), "counter_account": taker_gets,
                "counter_amount": _amount(counter_units)})
    rec.update({c: pair[c] for c in asset_cols if c.startswith("counter_asset_") and pair[c] is not None})
    b, c = int(round(base_units * 1e7)), int(round(counter_units * 1e7))
    g = int(np.gcd(b, max(c, 1)))
    rec.update({"base_is_seller": giver_is_maker, "price": {"n": str(max(c, 1) // g), "d": str(b // g)}, **tag})
    return rec


def _create_op(ids: _Ids, ledger: int, close: str, tx_hash: str, funder: str, account: str, balance: float,
               tag: dict) -> dict:
    op_id = ids.op_id(ledger)
    return {"id": str(op_id), "paging_token": str(op_id), "transaction_successful": True, "source_account": funder,
            "type": "create_account", "type_i": 0, "created_at": close, "transaction_hash": tx_hash,
            "starting_balance": _amount(balance),
            "funder": funder, "account": account, **tag}


def _structure(rng, ctx: dict, ids: _Ids, *, pattern: str, group: str, size: int) -> tuple[list, list, dict]:
    """One sybil cluster (random matching) or wash loop (a cycle, 3 rounds): trades, funding ops, meta."""
    pairs = ctx["pairs"]
    pair = pairs.row(int(rng.choice(pairs.height, p=(pairs["n"] / pairs["n"].sum()).to_numpy())), named=True)
    members = random_account_ids(rng, size).tolist()
    funder = str(rng.choice(ctx["accounts"]))
    n_inner, n_camo = 3 * size, max(1, size // 2)
    ledgers = ctx["ledgers"]
    at = np.sort(rng.integers(0, ledgers.height, n_inner + n_camo + 1))
    ledger, close = ledgers["ledger"].to_numpy()[at], ledgers["ledger_close_time"].to_numpy()[at]
    tag = {"synthetic_fraud": True, "fraud_pattern": pattern, "fraud_group": group}
    hashes = hex_ids(rng, size)
    ops = [_create_op(ids, int(ledger[0]), str(close[0]), str(hashes[i]), funder, m,
                      float(np.round(rng.uniform(20, 500))), tag) for i, m in enumerate(members)]
    k = np.arange(n_inner)
    if pattern == "wash_trading_loop":
        giver, getter = k % size, (k + 1) % size
        lots = pair["size"] * rng.uniform(0.8, 1.2) * rng.uniform(0.99, 1.01, n_inner)
    else:
        giver = rng.integers(0, size, n_inner)
        getter = (giver + rng.integers(1, size, n_inner)) % size
        lots = pair["size"] * np.exp(rng.normal(0, 0.4, n_inner))
    prices = pair["price"] * (1 + rng.normal(0, 0.002, n_inner + n_camo))
    makers = rng.random(n_inner + n_camo) < 0.5
    offer_ids = rng.integers(1_000_000_000, 2_000_000_000, n_inner + n_camo)
    trades = [_trade(ids, int(ledger[i + 1]), str(close[i + 1]), pair, ctx["asset_cols"], members[giver[i]],
                     members[getter[i]], float(lots[i]), float(prices[i]), bool(makers[i]), tag, int(offer_ids[i]))
              for i in range(n_inner)]
    outsiders = pair["accounts"] or ctx["accounts"]
    for j in range(n_inner, n_inner + n_camo):
        member, other = members[int(rng.integers(0, size))], str(rng.choice(outsiders))
        giver_, getter_ = (member, other) if rng.random() < 0.5 else (other, member)
        trades.append(_trade(ids, int(ledger[j + 1]), str(close[j + 1]), pair, ctx["asset_cols"], giver_, getter_,
                             float(pair["size"] * np.exp(rng.normal(0, 0.5))), float(prices[j]), bool(makers[j]),
                             tag, int(offer_ids[j])))
    meta = {"group": group, "pattern": pattern, "members": members, "funder": funder, "n_trades": len(trades),
            "n_trades_with_existing_accounts": n_camo, "first_close_time": str(close[0]), "last_close_time": str(close[-1]),
            "pair": {c: pair[c] for c in ctx["asset_cols"] if pair[c] is not None}}
    return trades, ops, meta


def _paging_key(tokens: pl.Series) -> np.ndarray:
    parts = tokens.str.split("-")
    return np.stack([parts.list.first().cast(pl.Int64).to_numpy(), parts.list.last().cast(pl.Int64).to_numpy()], axis=1)


def inject_fraud(input_path: Path, output_path: Path, *, summary_path: Path | None = None,
                 operations_path: Path | None = None, sybil_clusters: int = 3, sybil_cluster_size: int = 8,
                 wash_loops: int = 2, wash_loop_size: int = 5, seed: int = 42) -> InjectSummary:
    """Copy the trades at `input_path` to `output_path` with labelled structures woven in.

    Funding operations of injected accounts go to `operations_path` (default
    `<output stem>.operations.jsonl`); a JSON summary to `summary_path` if given.
    """
    if sybil_cluster_size < 2 or wash_loop_size < 2:
        raise BadInput("a sybil cluster and a wash loop need at least 2 accounts each")
    raw, frame = read_trade_records(Path(input_path))
    ctx, rng, ids = _context(frame), np.random.default_rng(seed), _Ids()
    trades, ops, groups = [], [], []
    plan = [("sybil_cluster", sybil_cluster_size)] * sybil_clusters + [("wash_trading_loop", wash_loop_size)] * wash_loops
    for i, (pattern, size) in enumerate(plan):
        t, o, meta = _structure(rng, ctx, ids, pattern=pattern, group=f"{pattern}_{i + 1}", size=size)
        trades += t
        ops += o
        groups.append(meta)
    new_lines = [json.dumps(r, separators=(",", ":")) for r in trades]
    keys = np.concatenate([_paging_key(frame["paging_token"]),
                           _paging_key(pl.Series([r["paging_token"] for r in trades], dtype=pl.String))]) if trades else _paging_key(frame["paging_token"])
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    lines = raw + new_lines
    output_path = Path(output_path)
    output_path.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    operations_path = Path(operations_path) if operations_path else output_path.with_name(output_path.stem + ".operations.jsonl")
    ops.sort(key=lambda r: int(r["id"]))
    operations_path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in ops), encoding="utf-8")
    summary = InjectSummary(str(input_path), str(output_path), str(operations_path), len(raw), len(trades), len(ops),
                            sum(len(g["members"]) for g in groups), groups)
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(summary.as_dict(), indent=1) + "\n", encoding="utf-8")
    return summary
