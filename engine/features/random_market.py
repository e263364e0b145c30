"""A quick random market in canonical frames, for feature tests and benchmarks.

Not the simulator (engine.synthetic): no order book, no realistic prices. It
draws honest wallets trading log-uniform (Benford-like) amounts with random
counterparties and pools, plus wash wallets trading fixed lots among ring-mates
they share a funder with. Fully vectorised, seeded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA, conform

START = datetime(2024, 1, 1, tzinfo=UTC)


def random_market(
    *, n_trades: int, n_wallets: int, n_pairs: int = 20, days: int = 40, wash_share: float = 0.05, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(trades, operations, accounts) of a random market; see the module docstring.

    Accounts: account_id, created_at, funder. Operations: create_account for
    every wallet and manage_sell_offer placements/cancellations.
    """
    rng = np.random.default_rng(seed)
    wallets = np.array([f"G{i:07d}" for i in range(n_wallets)])
    n_wash_wallets = max(4, int(n_wallets * 0.02))
    assets = ["XLM:native"] + [f"A{i}:GISSUER{i}" for i in range(n_pairs)]
    pairs = np.array([f"{a}/XLM:native" for a in assets[1:]])
    n_wash = int(n_trades * wash_share)
    n_honest = n_trades - n_wash
    seconds = days * 86400
    # honest: popular wallets trade more (Zipf-like), amounts log-uniform over 6 decades;
    # a third of the wallets often type round amounts. Wash wallets trade honestly too.
    weights = 1.0 / rng.permutation(np.arange(1, n_wallets + 1)) ** 0.8
    weights /= weights.sum()
    seller = rng.choice(n_wallets, n_honest, p=weights)
    buyer = rng.choice(n_wallets, n_honest, p=weights)
    pool = rng.random(n_honest) < 0.1
    h_amount = (10 ** rng.uniform(7, 13, n_honest)).astype(np.int64)
    rounder = (seller % 3 == 0) & (rng.random(n_honest) < rng.uniform(0, 0.6, n_wallets)[seller])
    h_amount = np.where(rounder, rng.integers(1, 100, n_honest) * 10 ** rng.integers(7, 11, n_honest), h_amount)
    h_pair = rng.integers(0, n_pairs, n_honest)
    h_time = rng.integers(0, seconds, n_honest)
    # wash: rings of 4 wallets; each ring has its own share of fixed lots and burstiness
    n_rings = n_wash_wallets // 4
    ring = rng.integers(0, n_rings, n_wash)
    w_seller = ring * 4 + rng.integers(0, 4, n_wash)
    w_buyer = ring * 4 + (w_seller - ring * 4 + rng.integers(1, 4, n_wash)) % 4
    lot = rng.random(n_wash) < rng.uniform(0.1, 1.0, n_rings)[ring]
    w_amount = np.where(lot, rng.choice(np.array([1000, 2500, 5000], dtype=np.int64) * 10_000_000, n_wash),
                        (10 ** rng.uniform(7, 12, n_wash)).astype(np.int64))  # fmt: skip
    w_pair = (ring + rng.integers(0, 2, n_wash) * rng.integers(0, 2, n_rings)[ring]) % n_pairs
    burst = rng.random(n_wash) < rng.uniform(0, 1, n_rings)[ring]
    w_time = np.where(burst, rng.integers(0, seconds // 600, n_wash) * 600 + rng.integers(0, 30, n_wash),
                      rng.integers(0, seconds, n_wash))  # fmt: skip
    seller = np.concatenate([seller, w_seller])
    buyer = np.concatenate([buyer, w_buyer])
    pool = np.concatenate([pool, np.zeros(n_wash, bool)])
    amount = np.concatenate([h_amount, w_amount])
    pair = np.concatenate([h_pair, w_pair])
    t = np.concatenate([h_time, w_time])
    order = np.argsort(t, kind="stable")
    trades = _trades(rng, wallets, pairs, seller[order], buyer[order], pool[order], amount[order], pair[order], t[order])
    accounts, ops = _accounts_and_ops(rng, wallets, n_wash_wallets, assets, days)
    return trades, ops, accounts


def _trades(rng, wallets, pairs, seller, buyer, pool, amount, pair, t) -> pl.DataFrame:
    n = len(t)
    ledger = 50_000_000 + t // 5
    op_id = (ledger << 32) + np.arange(n) % 1000 * 4096 + 1
    sells_base = rng.random(n) < 0.5
    price = 10 ** rng.normal(0, 0.3, n)
    other = np.maximum((amount * price).astype(np.int64), 1)
    base = np.array([p.split("/")[0] for p in pairs])[pair]
    frame = pl.DataFrame({
        "id": [f"{o}-0" for o in op_id.tolist()], "op_id": op_id, "ledger": ledger,
        "closed_at": pl.Series((START.timestamp() + t) * 1_000_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "trade_type": np.where(pool, "liquidity_pool", "orderbook"), "pair_id": pairs[pair],
        "seller_account": wallets[seller], "buyer_wallet": wallets[buyer], "pool": pool, "pair_ix": pair,
        "sold_asset": np.where(sells_base, base, "XLM:native"), "sold_amount": np.where(sells_base, amount, other),
        "bought_asset": np.where(sells_base, "XLM:native", base), "bought_amount": np.where(sells_base, other, amount),
        "price_n": np.ones(n, np.int64), "price_d": np.ones(n, np.int64), "source": ["synthetic"] * n,
    }).with_columns(
        buyer_account=pl.when(~pl.col("pool")).then(pl.col("buyer_wallet")),
        buyer_pool_id=pl.when(pl.col("pool")).then(pl.format("pool{}", pl.col("pair_ix"))),
    )  # fmt: skip
    return conform(frame, TRADES_SCHEMA)


def _accounts_and_ops(rng, wallets, n_wash_wallets, assets, days):
    n = len(wallets)
    exchange = "GEXCHANGE"
    funder = np.where(np.arange(n) < n_wash_wallets, np.array([f"GFUNDER{i // 4}" for i in range(n)]), exchange)
    created = START - timedelta(days=30) + pl.Series(rng.integers(0, (days + 20) * 86400, n) * 1_000_000).cast(pl.Duration("us"))
    accounts = pl.DataFrame({"account_id": wallets, "funder": funder}).with_columns(
        created_at=created.cast(pl.Datetime("us", "UTC"))
    )
    n_off = n * 3
    who = rng.integers(0, n, n_off)
    cancel = rng.random(n_off) < np.where(who < n_wash_wallets, 0.8, 0.2)
    off_t = START + pl.Series(rng.integers(0, days * 86400, n_off) * 1_000_000).cast(pl.Duration("us"))
    offers = pl.DataFrame({
        "id": np.arange(n_off, dtype=np.int64) + 1, "type": "manage_sell_offer", "successful": True,
        "source_account": wallets[who], "asset": np.array(assets[1:])[rng.integers(0, len(assets) - 1, n_off)],
        "buying_asset": "XLM:native", "amount": np.where(cancel, 0, 10_000_000), "offer_id": np.where(cancel, 7, 0),
    }).with_columns(closed_at=off_t.cast(pl.Datetime("us", "UTC")))  # fmt: skip
    creates = accounts.select(
        id=pl.int_range(0, n, dtype=pl.Int64) + 10_000_000, type=pl.lit("create_account"), successful=pl.lit(True),
        source_account="funder", from_account="funder", to_account="account_id", closed_at="created_at",
        asset=pl.lit("XLM:native"), amount=pl.lit(100_000_000, dtype=pl.Int64),
    )  # fmt: skip
    ops = pl.concat([conform(creates, OPERATIONS_SCHEMA), conform(offers, OPERATIONS_SCHEMA)])
    return accounts.select("account_id", "created_at", "funder"), ops
