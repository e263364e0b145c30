"""Closed loops across pairs: one asset passed round a group of wallets through two or more pairs.

A ring can pass a token round and pay for it in two majors: A sells VELO to B for XLM,
B sells it to C for USDC, C sells it back to A for XLM. No single pair holds a loop (each
pair's trader graph is one-way, and no member is flat in any one pair), yet every member
ends flat in VELO. `asset_loops` reads the trades that no per-pair loop took as transfers
of one asset (each trade twice: its base asset from seller to buyer, its counter asset the
other way), and runs the same search as engine.graph.closed_loops on a trader graph per
ASSET instead of per pair, flat in that asset (`balance="base"`: the money side mixes
assets). What it finds within one pair the per-pair search already judged, so only loops
whose trades span two or more pairs are kept, and each is reported once per pair it
touches (same window; members, trades and base volume of that pair), so the features and
the Closed loops view, which are per pair, read them like any other loop. Both readings of
every trade are searched together (a VELO/XLM trade and a USDC/VELO trade meet in the VELO
graph); a trade is in at most one loop.

The search runs on integer codes of the trade ids, pairs and assets (`_Names`), each code
the rank of its string, so every sort and tie-break is the one the strings give; the strings
come back only for the trades of the loops found, before the loops are built. Every trade is
read twice, so on a market of millions of candidates the strings would dominate the memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from engine.graph.closed_loops import CLOSED_LOOPS_SCHEMA, WINDOWS, trader_loops

MIN_PAIRS = 2  # a loop within one pair is the per-pair search's to judge
MIN_EDGE_TRADES = 2  # a cross-pair leg repeats: an edge with one trade on it is no candidate


def cross_pair_candidates(left: pl.DataFrame) -> pl.DataFrame:
    """The trader trades (engine.graph.cotrade.trader_trades, with `out_id`) a cross-pair loop may
    use, out of `left`, one batch of pairs' trades that no per-pair loop took: those on a
    directed edge (pair, giver -> receiver of the base asset) with at least MIN_EDGE_TRADES trades.
    A property of each pair alone, so the candidates of a market are the same however its pairs
    are split into batches; a one-off trade between strangers, most of a market, is left out."""
    edge = ["pair_id", "seller", "buyer", "seller_sold_base"]
    return left.filter(pl.len().over(edge) >= MIN_EDGE_TRADES)


def asset_loops(tt: pl.DataFrame, *, windows: tuple[str, ...] = WINDOWS) -> pl.DataFrame:
    """Cross-pair closed loops among trader trades `tt` (`cross_pair_candidates` of every batch).

    Shapes: -> CLOSED_LOOPS_SCHEMA rows (members keep `tt`'s account type), one per (loop, pair)."""
    names, coded = _Names.of(tt)
    view = pl.concat([_asset_view(coded, names, "base"), _asset_view(coded, names, "counter")])
    del coded
    loops = trader_loops(view, windows=windows, balance="base", decode=names.decode)
    spanning = _per_pair(_one_loop_per_trade(loops), names)
    if spanning.height == 0:
        return pl.DataFrame(schema={**CLOSED_LOOPS_SCHEMA, "members": pl.List(tt.schema["seller"])})
    return spanning.sort("pair_id", "window_start", "loop_id")


@dataclass(frozen=True)
class _Names:
    """Integer codes of the candidates' trade ids (ids and out_ids), pairs and assets, each the
    rank of its string among its kind, so codes sort as the strings do, and the strings back
    (`tt`'s own columns: no copy of millions of strings)."""

    tt: pl.DataFrame  # the candidates, strings
    id_codes: pl.Series  # the codes of tt's ids, then of its out_ids
    pairs: pl.DataFrame  # code, name, base, counter (the codes of the pair's assets)
    assets: pl.Series  # sorted: an asset's code is its position

    @staticmethod
    def of(tt: pl.DataFrame) -> tuple[_Names, pl.DataFrame]:
        """The names of trader trades `tt`, and `tt` with codes in place of ids and pairs."""
        id_codes = pl.concat([tt.get_column("id"), tt.get_column("out_id")]).rank("dense").cast(pl.Int64)
        pair_code = tt.get_column("pair_id").rank("dense").cast(pl.Int64)
        pairs = pl.DataFrame({"code": pair_code, "name": tt.get_column("pair_id")}).unique("code")
        assets = pairs.get_column("name").str.split("/").explode().unique().sort()
        side = pl.col("name").str.split("/").list
        pairs = pairs.with_columns(base=_position(side.get(0), assets), counter=_position(side.get(1), assets))
        coded = tt.with_columns(id=id_codes[: tt.height], out_id=id_codes[tt.height :], pair_id=pair_code)
        return _Names(tt=tt, id_codes=id_codes, pairs=pairs, assets=assets), coded

    def asset(self, pair_code: pl.Expr, side: str) -> pl.Expr:
        """The code of the base (`side` "base") or counter asset of a coded pair."""
        return pair_code.replace_strict(self.pairs.get_column("code"), self.pairs.get_column(side))

    def asset_name(self, code: pl.Expr) -> pl.Expr:
        """The asset id of an asset code."""
        return code.replace_strict(pl.int_range(len(self.assets), dtype=pl.Int64, eager=True), self.assets)

    def decode(self, trades: pl.DataFrame) -> pl.DataFrame:
        """Trades of the coded asset view (a loop's) with their ids and asset as strings."""
        book = self._book(pl.col("code").is_in(pl.concat([trades.get_column("id"), trades.get_column("out_id")]).implode()))
        return trades.with_columns(
            *(pl.col(c).replace_strict(book.get_column("code"), book.get_column("name"), default=None) for c in ("id", "out_id")),
            self.asset_name(pl.col("pair_id")),
        )  # fmt: skip

    def _book(self, which: pl.Expr) -> pl.DataFrame:
        """code, name of the trade ids `which` selects (each once)."""
        n = self.tt.height
        return pl.concat([
            pl.DataFrame({"code": self.id_codes[:n], "name": self.tt.get_column("id")}).filter(which),
            pl.DataFrame({"code": self.id_codes[n:], "name": self.tt.get_column("out_id")}).filter(which),
        ]).unique("code")  # fmt: skip


def _position(expr: pl.Expr, names: pl.Series) -> pl.Expr:
    """A string's position in the sorted `names`."""
    return expr.replace_strict(names, pl.int_range(len(names), dtype=pl.Int64, eager=True))


def _one_loop_per_trade(loops: pl.DataFrame) -> pl.DataFrame:
    """Loops of the asset view with every trade in one loop: a trade is read twice (once per
    asset), and where both readings closed a loop in the same window, the loop with more trades
    keeps it and the other is dropped."""
    ranked = loops.sort(["n_trades", "loop_id"], descending=[True, False]).with_row_index("_rank")
    owner = ranked.select("_rank", pl.col("trade_ids").alias("id")).explode("id").group_by("id").agg(pl.col("_rank").min())
    lost = ranked.select("_rank", pl.col("trade_ids").alias("id")).explode("id").join(owner, on="id").filter(
        pl.col("_rank") != pl.col("_rank_right"))
    return ranked.join(lost.select("_rank").unique(), on="_rank", how="anti").drop("_rank")


def _asset_view(tt: pl.DataFrame, names: _Names, side: str) -> pl.DataFrame:
    """Coded `tt` read as transfers of each trade's `side` asset: `pair_id` becomes that asset,
    base_amount is the asset's amount, and seller_sold_base says whether the seller gave it."""
    gave = pl.col("seller_sold_base") if side == "base" else ~pl.col("seller_sold_base")
    amount, other = ("base_amount", "counter_amount") if side == "base" else ("counter_amount", "base_amount")
    return tt.select(
        "id", "out_id", names.asset(pl.col("pair_id"), side).alias("pair_id"), "closed_at", "seller", "buyer",
        pl.col(amount).alias("base_amount"), pl.col(other).alias("counter_amount"), gave.alias("seller_sold_base"),
    )  # fmt: skip


def _per_pair(loops: pl.DataFrame, names: _Names) -> pl.DataFrame:
    """Loops (strings) of the asset view that span >= MIN_PAIRS real pairs, split into one row
    per pair."""
    if loops.height == 0:
        return loops
    trades = loops.select(pl.col("trade_ids").explode().unique().alias("id"))
    pair = names.pairs.select(pl.col("name").alias("_pair"), "base", "counter")
    legs = names.tt.join(trades, on="id", how="semi").select(  # the loops' trades, each read in both its assets
        "id", "out_id", pl.col("pair_id").alias("_pair"), "seller", "buyer", pl.col("base_amount").alias("_pair_base"),
    ).join(pair, on="_pair").unpivot(index=["id", "out_id", "_pair", "seller", "buyer", "_pair_base"],
                                     on=["base", "counter"], value_name="_code")  # fmt: skip
    legs = legs.with_columns(names.asset_name(pl.col("_code")).alias("_asset")).drop("variable", "_code")
    hit = loops.select("loop_id", pl.col("pair_id").alias("_asset"), "window", "window_start",
                       pl.col("trade_ids").alias("id")).explode("id").join(legs, on=["id", "_asset"])  # fmt: skip
    spanning = hit.group_by("loop_id").agg(pl.col("_pair").n_unique().alias("_n")).filter(pl.col("_n") >= MIN_PAIRS)
    hit = hit.join(spanning.select("loop_id"), on="loop_id", how="semi")
    rows = hit.group_by("loop_id", "_pair", "window", "window_start").agg(
        pl.col("seller").append(pl.col("buyer")).unique().sort().alias("members"),
        pl.len().cast(pl.UInt32).alias("n_trades"),
        pl.col("_pair_base").sum().alias("volume"),
        pl.col("id").append(pl.col("out_id").drop_nulls()).unique().sort().alias("trade_ids"),
    )
    rows = rows.with_columns(
        pl.col("members").list.len().cast(pl.UInt32).alias("n_members"),
        pl.struct("loop_id", "_pair").map_elements(_pair_loop_id, return_dtype=pl.String).alias("loop_id"),
    ).rename({"_pair": "pair_id"})
    return rows.select(list(CLOSED_LOOPS_SCHEMA)).cast({k: v for k, v in CLOSED_LOOPS_SCHEMA.items() if k != "members"})


def _pair_loop_id(row: dict) -> str:
    """`loop_` + 12 hex of sha256 over the cross-pair loop's id and the pair of this part."""
    return "loop_" + hashlib.sha256(f"{row['loop_id']}|{row['_pair']}".encode()).hexdigest()[:12]
