"""The small market the feature parity tests share: a seeded random market in a
real store, with ring members and closed loops saved as the rings step would.

`tests/engine/golden/features_*.parquet` hold the feature matrix and Benford table
that the whole-market implementation (before issue 18's bounded-memory rework)
computed on it; `python -m tests.engine.feature_market` wrote them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from engine.features.random_market import START, random_market
from storage.store import Store

GOLDEN = Path(__file__).parent / "golden"
AS_OF = START + timedelta(days=3, hours=12)  # later trades must be left out
HAND_AS_OF = datetime(2026, 1, 5, tzinfo=UTC)  # the "as of" of hand-counted trades


def hand_trades(rows: list[tuple]) -> pl.DataFrame:
    """(seconds before HAND_AS_OF, seller, buyer or None (a pool), base amount in units[, base asset]) -> trades of
    the pair (base asset)/XLM:native, A:x by default; the seller sells the base."""
    base = [r[4] if len(r) > 4 else "A:x" for r in rows]
    return pl.DataFrame({
        "id": [f"{i}-0" for i in range(1, len(rows) + 1)],
        "closed_at": [HAND_AS_OF - timedelta(seconds=s) for s, *_ in rows],
        "op_id": list(range(1, len(rows) + 1)), "pair_id": [f"{b}/XLM:native" for b in base],
        "seller_account": [r[1] for r in rows], "seller_pool_id": [None] * len(rows),
        "buyer_account": [r[2] for r in rows], "buyer_pool_id": ["P1" if r[2] is None else None for r in rows],
        "sold_asset": base, "sold_amount": [int(r[3] * 10_000_000) for r in rows],
        "bought_asset": ["XLM:native"] * len(rows), "bought_amount": [7] * len(rows),
    }, schema_overrides={"closed_at": pl.Datetime("us", "UTC"), "seller_pool_id": pl.String})  # fmt: skip


def build_store(path: Path) -> Store:
    """A store holding the reference market (the caller closes it)."""
    trades, ops, _ = random_market(n_trades=8_000, n_wallets=80, n_pairs=6, days=4, seed=11)
    seconds = (pl.col("closed_at") - pl.lit(START)).dt.total_seconds()
    ops = ops.with_columns(ledger=50_000_000 + seconds // 5, source=pl.lit("synthetic"))  # the market clock
    store = Store(path)
    store.write_batch(run_id=None, trades=trades, operations=ops)
    washers = store.accounts().filter(pl.col("funder").str.starts_with("GFUNDER"))
    store.save_derived("ring_members", washers.select("account_id", ring_id=pl.col("funder")))
    in_loops = trades.filter(pl.col("seller_account").is_in(washers["account_id"].implode())).gather_every(3)
    loops = in_loops.group_by("pair_id").agg(trade_ids=pl.col("id").sort()).sort("pair_id")
    store.save_derived("closed_loops", loops.with_columns(loop_id=pl.col("pair_id")))
    return store


def _freeze() -> None:
    """Write the golden outputs with the current implementation (run only on purpose)."""
    import tempfile

    from engine.services.analyse import compute_features

    with tempfile.TemporaryDirectory() as tmp, build_store(Path(tmp) / "s.duckdb") as store:
        run = compute_features(store, as_of=AS_OF)
        benford = store.load_derived("benford")
    run.matrix.write_parquet(GOLDEN / "features_matrix.parquet")
    benford.write_parquet(GOLDEN / "features_benford.parquet")
    print(f"matrix {run.matrix.shape}, benford {benford.shape}")


if __name__ == "__main__":
    _freeze()


def golden() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(feature matrix, Benford table) the whole-market implementation computed."""
    return pl.read_parquet(GOLDEN / "features_matrix.parquet"), pl.read_parquet(GOLDEN / "features_benford.parquet")


MATRIX_KEY = ["wallet", "pair_id"]
BENFORD_KEY = ["scope", "wallet", "pair_id", "asset", "window", "test"]


def assert_same_frame(got: pl.DataFrame, want: pl.DataFrame, *, key: list[str], rel: float = 1e-9) -> None:
    """Same columns and dtypes, same rows (matched on `key`), same nulls, floats within `rel`
    (sums may add up in another order), everything else equal."""
    assert got.schema == want.schema, (got.schema, want.schema)
    assert got.height == want.height, (got.height, want.height)
    got, want = got.sort(key, nulls_last=True), want.sort(key, nulls_last=True)
    for name in want.columns:
        g, w = got.get_column(name), want.get_column(name)
        assert g.is_null().to_list() == w.is_null().to_list(), f"{name}: nulls differ"
        if w.dtype == pl.Float64:
            g, w = g.drop_nulls().to_numpy(), w.drop_nulls().to_numpy()
            close = abs(g - w) <= rel * abs(w) + 1e-12
            assert close.all(), f"{name}: {int((~close).sum())} values differ, e.g. {g[~close][:3]} vs {w[~close][:3]}"
        else:
            assert g.to_list() == w.to_list(), f"{name} differs"
