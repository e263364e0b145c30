"""The trade-shape features of the feature matrix: one SQL definition for every engine.

Sixteen features of a (wallet, pair) are counts, shares, orderings and sums over the
wallet's own trades (its "sides": one row per account side of a trade, pools being
counterparties, never wallets), in the pair and across its pairs; all are plain SQL, so
they are defined once, here, in DuckDB's dialect (FEATURE_DICTIONARY in
engine.features.dictionary says what each means):

    wallet | pair_id | n_trades | counterparty_hhi | volume_per_counterparty | net_flow_ratio |
    flow_balance | fixed_lot_share | round_number_share | off_hours_ratio | intra_minute_share |
    inter_arrival_cv | volume_spike_ratio | size_tail_exponent | pair_diversity |
    cross_pair_synchrony | cross_pair_cp_overlap | cross_pair_volume_corr

Two queries: `market_hours_sql`, the market's sides per UTC hour (whose quietest hours
are "off hours"), over the whole window; `shape_features_sql`, the features of the
wallets of one wallet partition (the source's `seller_part` / `buyer_part`, see
engine.features.partitions), reading the market hours. The features step runs both on
DuckDB, the first on the store and the second in memory on each partition's trades
(storage.partition_features: one partition's sorts fit in memory, the market's spill, at
10M trades n^1.3); Spark runs the first transpiled to Spark SQL and the second as DuckDB
does, per partition on its executors (engine.spark.features; transpiled, it gives the same
features on Spark SQL too, with every side in partition 0); compiled for BigQuery,
Hubble's home, both are kept as golden SQL (tests/engine/golden). The features that join
the sides to the market's other inputs (offers, accounts, funding lineage, rings) are SQL
too (storage.context_features); the rest of the matrix needs more than SQL (the Benford
statistics, round trips' as-of joins, PageRank) and is one polars definition run per
wallet partition by both engines (engine.features.partitions).

The account, pool, pair and trade id columns may be ids or integer keys (they are only
grouped and compared; a trade id also breaks ties of time and op_id, so its keys must order
the trades of one op_id as their ids do); the counterparty is the pair (cp_account,
cp_pool), so pools and accounts never mix types.
Times are whole seconds since 1970 (floored), days and hours UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import duckdb
import polars as pl

from storage.sql_dialects import table_name, transpile

SHAPE_FEATURES = (
    "n_trades", "counterparty_hhi", "volume_per_counterparty", "net_flow_ratio", "flow_balance", "fixed_lot_share",
    "round_number_share", "off_hours_ratio", "intra_minute_share", "inter_arrival_cv", "volume_spike_ratio",
    "size_tail_exponent", "pair_diversity", "cross_pair_synchrony", "cross_pair_cp_overlap", "cross_pair_volume_corr",
)  # fmt: skip
SOURCE_COLUMNS = (
    "id", "closed_at", "op_id", "pair_id", "seller_account", "seller_pool_id", "buyer_account", "buyer_pool_id",
    "sold_asset", "sold_amount", "bought_asset", "bought_amount", "seller_part", "buyer_part",
)  # fmt: skip
HOURS_COLUMNS = ("hour", "n")  # the market hours: UTC hour of day, sides
STROOPS_PER_UNIT = 10_000_000
NATIVE = "XLM:native"  # engine.schemas.NATIVE_ASSET
# 1.0 is a DECIMAL(2, 1) to Spark, and its mean is rounded to a few decimals: doubles are written as casts
ONE, ZERO = "CAST(1 AS DOUBLE)", "CAST(0 AS DOUBLE)"
_HOUR = "CAST(FLOOR(MOD(ts, 86400) / 3600) AS BIGINT)"


class ShapeOptions(Protocol):
    """What the definition reads of the features' options (engine.features.sides.FeatureConfig)."""

    lookback: timedelta
    cluster_seconds: int
    sync_seconds: int
    spike_baseline_days: int
    off_hours: int
    min_trades_shape: int


def _first_is_base(a: str, b: str) -> str:
    """Whether asset id `a` is the base of the pair of `a` and `b` (engine.assets.pair_id_expr, the
    canonical pair id every trade's pair_id is): the native asset is always the counter asset,
    otherwise the smaller id is the base."""
    return f"({b} = '{NATIVE}' OR ({a} <> '{NATIVE}' AND {a} <= {b}))"


def _window(source: str) -> str:
    """The trades of the lookback window, with their time in seconds and the pair's base asset
    (from the two assets, so the pair_id is only grouped and compared: it may be a key)."""
    base = f"CASE WHEN {_first_is_base('sold_asset', 'bought_asset')} THEN sold_asset ELSE bought_asset END"
    return (
        "SELECT id, pair_id, op_id, seller_account, seller_pool_id, buyer_account, buyer_pool_id, sold_asset, "
        "sold_amount, bought_asset, bought_amount, seller_part, buyer_part, "
        f"CAST(FLOOR(EPOCH(closed_at)) AS BIGINT) AS ts, {base} AS base_asset "
        f"FROM {table_name(source)} WHERE closed_at > $since AND closed_at <= $as_of"
    )


def _side(wallet: str, cp: str, gave: str, got: str) -> str:
    """One account side of the window's trades, of the partition's wallets: who traded, with
    whom, and its base amount."""
    sold_base = f"({gave}_asset = base_asset)"
    return (
        f"SELECT {wallet}_account AS wallet, pair_id, {cp}_account AS cp_account, "
        f"CASE WHEN {cp}_account IS NULL THEN {cp}_pool_id END AS cp_pool, id, op_id, ts, {sold_base} AS sold_base, "
        f"CASE WHEN {sold_base} THEN {gave}_amount ELSE {got}_amount END AS base_amount "
        f"FROM w WHERE {wallet}_account IS NOT NULL AND {wallet}_part = $part"
    )


def sides_ctes(source: str) -> str:
    """The CTEs `w` (the window's trades, `_window`) and `sides` (the partition's wallets'
    account sides: wallet, pair_id, cp_account, cp_pool, id, op_id, ts, sold_base,
    base_amount), which every per-wallet definition starts from. Parameters: since, as_of, part."""
    return (f"w AS ({_window(source)}),\n"
            f"sides AS ({_side('seller', 'buyer', 'sold', 'bought')} UNION ALL {_side('buyer', 'seller', 'bought', 'sold')})")


def market_hours_sql(*, source: str = "trades", dialect: str = "duckdb") -> str:
    """The market's account sides per UTC hour of day over the window (HOURS_COLUMNS), from
    `source` (SOURCE_COLUMNS, the parts unread). Parameters: since, as_of."""
    sides = "CASE WHEN seller_account IS NULL THEN 0 ELSE 1 END + CASE WHEN buyer_account IS NULL THEN 0 ELSE 1 END"
    sql = f"WITH w AS ({_window(source)}) SELECT {_HOUR} AS hour, SUM({sides}) AS n FROM w GROUP BY {_HOUR}"
    return transpile(sql, dialect)


def shape_features_sql(
    options: ShapeOptions, *, source: str = "trades", hours: str = "market_hours", dialect: str = "duckdb"
) -> str:
    """The features of the wallets of partition $part, from the relations `source`
    (SOURCE_COLUMNS) and `hours` (the market hours, HOURS_COLUMNS), in `dialect` (sqlglot's
    names: "duckdb", "spark", "bigquery", ...). Parameters: since, as_of and part
    (`shape_feature_params`); the options' integers are written into the SQL."""
    hours = table_name(hours)
    few = int(options.min_trades_shape)
    cluster, spike_days, off_hours = int(options.cluster_seconds), int(options.spike_baseline_days), int(options.off_hours)
    # a whole number of units with at most two significant digits (100, 250, 5000): the amount in
    # stroops is a multiple of 10^(its digits - 2), written with POWER so every dialect has it
    is_round = (f"(MOD(base_amount, {STROOPS_PER_UNIT}) = 0 AND "
                "MOD(base_amount, CAST(POWER(10, LENGTH(CAST(base_amount AS VARCHAR)) - 2) AS BIGINT)) = 0)")  # fmt: skip
    every_hour = " UNION ALL ".join(f"SELECT {h} AS hour" for h in range(24))
    by_wp = "PARTITION BY wallet, pair_id"
    # a wallet's trades in order, ties broken alike by every window over it (none of these is null:
    # NULLS FIRST only spares BigQuery a clause it lacks in a framed window)
    by_w = "PARTITION BY wallet ORDER BY ts NULLS FIRST, op_id NULLS FIRST, id NULLS FIRST"
    sync = int(options.sync_seconds)
    n_hours = f"CAST({int(options.lookback.total_seconds() // 3600)} AS DOUBLE)"
    sql = f"""
WITH {sides_ctes(source)},
activity AS (
    SELECT wallet, pair_id, COUNT(*) AS n,
           SUM(CAST(base_amount AS DOUBLE) / {STROOPS_PER_UNIT}) AS volume,
           SUM(CASE WHEN sold_base THEN 0 ELSE CAST(base_amount AS DOUBLE) / {STROOPS_PER_UNIT} END) AS bought,
           SUM(CASE WHEN sold_base THEN CAST(base_amount AS DOUBLE) / {STROOPS_PER_UNIT} ELSE 0 END) AS sold,
           AVG(CASE WHEN {is_round} THEN {ONE} ELSE {ZERO} END) AS round_share
    FROM sides GROUP BY wallet, pair_id),
per_cp AS (SELECT wallet, pair_id, COUNT(*) AS n FROM sides GROUP BY wallet, pair_id, cp_account, cp_pool),
concentration AS (
    SELECT c.wallet, c.pair_id, COUNT(*) AS n_cps, SUM(POWER(CAST(c.n AS DOUBLE) / a.n, 2)) AS hhi
    FROM per_cp c JOIN activity a ON a.wallet = c.wallet AND a.pair_id = c.pair_id GROUP BY c.wallet, c.pair_id),
lots AS (
    SELECT wallet, pair_id, MAX(n) AS top_lot
    FROM (SELECT wallet, pair_id, COUNT(*) AS n FROM sides GROUP BY wallet, pair_id, base_amount) GROUP BY wallet, pair_id),
gaps AS (
    SELECT wallet, pair_id, ts - LAG(ts) OVER ({by_wp} ORDER BY ts, op_id) AS dt_prev,
           LEAD(ts) OVER ({by_wp} ORDER BY ts, op_id) - ts AS dt_next
    FROM sides),
timing AS (
    SELECT wallet, pair_id, COUNT(*) AS n,
           AVG(CASE WHEN dt_prev <= {cluster} OR dt_next <= {cluster} THEN {ONE} ELSE {ZERO} END) AS intra,
           AVG(CAST(dt_prev AS DOUBLE)) AS gap_mean, STDDEV_SAMP(CAST(dt_prev AS DOUBLE)) AS gap_std
    FROM gaps GROUP BY wallet, pair_id),
hours AS (SELECT wallet, pair_id, {_HOUR} AS hour FROM sides),
market_hours AS (
    SELECT h.hour, COALESCE(c.n, 0) AS n
    FROM ({every_hour}) h LEFT JOIN (SELECT hour, SUM(n) AS n FROM {hours} GROUP BY hour) c ON c.hour = h.hour),
quiet AS (  -- the off_hours hours with the fewest sides, ties to the earlier hour (a rank without a window
    -- over the whole table, which Spark would gather on one executor)
    SELECT a.hour FROM market_hours a JOIN market_hours b ON b.n < a.n OR (b.n = a.n AND b.hour <= a.hour)
    GROUP BY a.hour HAVING COUNT(*) <= {off_hours}),
off_hours AS (
    SELECT s.wallet, s.pair_id, AVG(CASE WHEN q.hour IS NULL THEN {ZERO} ELSE {ONE} END) AS off
    FROM hours s LEFT JOIN quiet q ON q.hour = s.hour GROUP BY s.wallet, s.pair_id),
daily AS (
    SELECT wallet, pair_id, CAST(FLOOR(ts / 86400) AS BIGINT) AS day, SUM(CAST(base_amount AS DOUBLE)) AS v
    FROM sides GROUP BY wallet, pair_id, CAST(FLOOR(ts / 86400) AS BIGINT)),
baselines AS (
    SELECT wallet, pair_id, v,
           SUM(v) OVER ({by_wp} ORDER BY day NULLS FIRST RANGE BETWEEN {spike_days} PRECEDING AND 1 PRECEDING) / {spike_days} AS base
    FROM daily),  -- day is never null: NULLS FIRST only spares BigQuery a clause it lacks
spikes AS (
    SELECT wallet, pair_id, MAX(CASE WHEN base > 0 THEN v / base END) AS ratio FROM baselines GROUP BY wallet, pair_id),
ranked AS (
    SELECT wallet, pair_id, base_amount, ROW_NUMBER() OVER ({by_wp} ORDER BY base_amount DESC) AS r,
           COUNT(*) OVER ({by_wp}) AS n
    FROM sides WHERE base_amount > 0),
tail AS (SELECT *, CAST(GREATEST(FLOOR(SQRT(n)), 2) AS BIGINT) AS k FROM ranked),
thresholds AS (SELECT wallet, pair_id, base_amount AS threshold FROM tail WHERE r = k + 1),
hill AS (
    SELECT t.wallet, t.pair_id, MAX(t.n) AS n, MAX(t.k) AS k,
           SUM(CASE WHEN t.r <= t.k THEN LN(CAST(t.base_amount AS DOUBLE) / h.threshold) END) AS logsum
    FROM tail t LEFT JOIN thresholds h ON h.wallet = t.wallet AND h.pair_id = t.pair_id GROUP BY t.wallet, t.pair_id),
diversity AS (
    SELECT wallet, COUNT(*) AS n_pairs, -SUM(share * LN(share)) AS entropy
    FROM (SELECT wallet, CAST(n AS DOUBLE) / SUM(n) OVER (PARTITION BY wallet) AS share FROM activity) GROUP BY wallet),
marks AS (  -- a run is a wallet's consecutive trades in one pair; its first trade knows the time of the
    -- other pair's trade just before it, its last the one just after (the id only orders ties alike)
    SELECT wallet, pair_id, ts,
           CASE WHEN LAG(pair_id) OVER ({by_w}) = pair_id THEN NULL ELSE LAG(ts) OVER ({by_w}) END AS before_run,
           CASE WHEN LEAD(pair_id) OVER ({by_w}) = pair_id THEN NULL ELSE LEAD(ts) OVER ({by_w}) END AS after_run,
           op_id, id
    FROM sides),
synchrony AS (  -- a trade's nearest trades in the wallet's other pairs: its run's neighbours
    SELECT wallet, pair_id,
           AVG(CASE WHEN ts - prev_other <= {sync} OR next_other - ts <= {sync} THEN {ONE} ELSE {ZERO} END) AS share
    FROM (SELECT wallet, pair_id, ts,
                 LAST_VALUE(before_run IGNORE NULLS) OVER ({by_w} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                   AS prev_other,
                 FIRST_VALUE(after_run IGNORE NULLS) OVER ({by_w} ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
                   AS next_other
          FROM marks)
    GROUP BY wallet, pair_id),
pair_cps AS (SELECT DISTINCT wallet, pair_id, cp_account, cp_pool FROM sides),
cp_pairs AS (SELECT wallet, cp_account, cp_pool, COUNT(*) AS n FROM pair_cps GROUP BY wallet, cp_account, cp_pool),
overlap AS (
    SELECT x.wallet, x.pair_id, SUM(CASE WHEN c.n > 1 THEN 1 ELSE 0 END) AS shared, MAX(w.n_cps) AS n_cps
    FROM pair_cps x
    JOIN cp_pairs c ON c.wallet = x.wallet AND c.cp_account IS NOT DISTINCT FROM x.cp_account
                   AND c.cp_pool IS NOT DISTINCT FROM x.cp_pool
    JOIN (SELECT wallet, COUNT(*) AS n_cps FROM cp_pairs GROUP BY wallet) w ON w.wallet = x.wallet
    GROUP BY x.wallet, x.pair_id),
hourly AS (  -- trades per (wallet, pair, hour): the hours without any add zeros to the sums
    SELECT wallet, pair_id, CAST(FLOOR(ts / 3600) AS BIGINT) AS h, CAST(COUNT(*) AS DOUBLE) AS x
    FROM sides GROUP BY wallet, pair_id, CAST(FLOOR(ts / 3600) AS BIGINT)),
wallet_hourly AS (SELECT wallet, h, SUM(x) AS t FROM hourly GROUP BY wallet, h),
wallet_sums AS (SELECT wallet, SUM(t) AS st, SUM(t * t) AS st2 FROM wallet_hourly GROUP BY wallet),
pair_sums AS (
    SELECT x.wallet, x.pair_id, SUM(x.x) AS sx, SUM(x.x * x.x) AS sx2, SUM(t.t * x.x) AS stx
    FROM hourly x JOIN wallet_hourly t ON t.wallet = x.wallet AND t.h = x.h GROUP BY x.wallet, x.pair_id),
moments AS (  -- x: the pair's hourly counts, y: the other pairs', over the lookback's hours
    SELECT p.wallet, p.pair_id, {n_hours} * (p.stx - p.sx2) - p.sx * (w.st - p.sx) AS cov,
           {n_hours} * p.sx2 - p.sx * p.sx AS vx,
           {n_hours} * (w.st2 - 2 * p.stx + p.sx2) - (w.st - p.sx) * (w.st - p.sx) AS vy
    FROM pair_sums p JOIN wallet_sums w ON w.wallet = p.wallet)
SELECT a.wallet, a.pair_id,
       CAST(a.n AS DOUBLE) AS n_trades,
       c.hhi AS counterparty_hhi,
       a.volume / c.n_cps AS volume_per_counterparty,
       (a.bought - a.sold) / NULLIF(a.bought + a.sold, 0) AS net_flow_ratio,
       {ONE} - ABS((a.bought - a.sold) / NULLIF(a.bought + a.sold, 0)) AS flow_balance,
       CASE WHEN a.n >= {few} THEN CAST(l.top_lot AS DOUBLE) / a.n END AS fixed_lot_share,
       CASE WHEN a.n >= {few} THEN a.round_share END AS round_number_share,
       CASE WHEN a.n >= {few} THEN o.off END AS off_hours_ratio,
       CASE WHEN t.n >= 2 THEN t.intra END AS intra_minute_share,
       CASE WHEN t.n >= 3 AND t.gap_mean > 0 THEN t.gap_std / t.gap_mean END AS inter_arrival_cv,
       p.ratio AS volume_spike_ratio,
       CASE WHEN h.n >= {2 * few} AND h.logsum > 0 THEN h.k / h.logsum END AS size_tail_exponent,
       d.entropy AS pair_diversity,
       CASE WHEN d.n_pairs > 1 THEN y.share END AS cross_pair_synchrony,
       CASE WHEN d.n_pairs > 1 THEN CAST(v.shared AS DOUBLE) / v.n_cps END AS cross_pair_cp_overlap,
       CASE WHEN d.n_pairs > 1 AND m.vx > 0 AND m.vy > 0 THEN m.cov / SQRT(m.vx * m.vy) END AS cross_pair_volume_corr
FROM activity a
JOIN concentration c ON c.wallet = a.wallet AND c.pair_id = a.pair_id
JOIN lots l ON l.wallet = a.wallet AND l.pair_id = a.pair_id
JOIN timing t ON t.wallet = a.wallet AND t.pair_id = a.pair_id
JOIN off_hours o ON o.wallet = a.wallet AND o.pair_id = a.pair_id
JOIN spikes p ON p.wallet = a.wallet AND p.pair_id = a.pair_id
LEFT JOIN hill h ON h.wallet = a.wallet AND h.pair_id = a.pair_id
JOIN diversity d ON d.wallet = a.wallet
JOIN synchrony y ON y.wallet = a.wallet AND y.pair_id = a.pair_id
JOIN overlap v ON v.wallet = a.wallet AND v.pair_id = a.pair_id
JOIN moments m ON m.wallet = a.wallet AND m.pair_id = a.pair_id
"""
    return transpile(sql.strip(), dialect)


def shape_feature_params(as_of: datetime, options: ShapeOptions, *, part: int = 0) -> dict:
    """The parameters of the two queries: the lookback window (since, as_of] and the partition."""
    return {"since": as_of - options.lookback, "as_of": as_of, "part": part}


def market_hours_of(trades: pl.DataFrame, *, as_of: datetime, options: ShapeOptions) -> pl.DataFrame:
    """The market hours of trades in memory (an in-memory DuckDB)."""
    frame = trades.with_columns(seller_part=pl.lit(0, pl.Int64), buyer_part=pl.lit(0, pl.Int64))
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", frame.select(SOURCE_COLUMNS).to_arrow())
        sql, params = market_hours_sql(), shape_feature_params(as_of, options)
        return pl.from_arrow(con.sql(sql, params={k: params[k] for k in ("since", "as_of")}).to_arrow_table())
