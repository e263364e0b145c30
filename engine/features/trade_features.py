"""Per (wallet, pair) trade-pattern features from the side view (engine.features.sides).

Each function returns one row per (wallet, pair_id) present in `sides`, with
its feature columns; a value that cannot be computed is null (the matrix adds
the `<name>_missing` indicators), never 0. All vectorised polars.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl

from engine.assets import pair_id_expr
from engine.features.sides import OPERATION_COLUMNS, Codes, FeatureConfig, categorical, ranked, require
from engine.schemas import OFFER_TYPES, STROOPS_PER_UNIT

KEY = ["wallet", "pair_id"]


def activity_features(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """n_trades, counterparty_hhi, volume_per_counterparty,
    net_flow_ratio, flow_balance, fixed_lot_share, round_number_share."""
    units = pl.col("base_amount").cast(pl.Float64) / STROOPS_PER_UNIT
    stripped = pl.col("base_amount").cast(pl.String).str.strip_chars_end("0").str.len_chars()
    is_round = (pl.col("base_amount") % STROOPS_PER_UNIT == 0) & (stripped <= 2)
    # Row-wise terms first, plain aggregations after: filters, conditions or a
    # group's total mixed with its rows (n / n.sum()) inside an aggregation take
    # polars' slow per-group path.
    main = sides.select(
        *KEY, "sold_base", _units=units, _round=is_round
    ).group_by(KEY).agg(
        n_trades=pl.len(),
        volume=pl.col("_units").sum(),
        bought=pl.col("_units").filter(~pl.col("sold_base")).sum(),
        sold=pl.col("_units").filter(pl.col("sold_base")).sum(),
        round_share=pl.col("_round").mean(),
    )
    per_cp = sides.group_by(*KEY, "counterparty").agg(n=pl.len()).join(main.select(*KEY, "n_trades"), on=KEY)
    conc = per_cp.group_by(KEY).agg(
        n_counterparties=pl.len(), counterparty_hhi=((pl.col("n") / pl.col("n_trades")) ** 2).sum()
    )
    lots = sides.group_by(*KEY, "base_amount").agg(n=pl.len()).group_by(KEY).agg(top_lot=pl.col("n").max())
    few = pl.col("n_trades") < cfg.min_trades_shape
    net = (pl.col("bought") - pl.col("sold")) / (pl.col("bought") + pl.col("sold"))
    return (
        main.join(conc, on=KEY).join(lots, on=KEY)
        .with_columns(net_flow_ratio=net)
        .with_columns(
            volume_per_counterparty=pl.col("volume") / pl.col("n_counterparties"),
            flow_balance=1.0 - pl.col("net_flow_ratio").abs(),
            fixed_lot_share=pl.when(few).then(None).otherwise(pl.col("top_lot") / pl.col("n_trades")),
            round_number_share=pl.when(few).then(None).otherwise("round_share"),
        )
        .select(*KEY, "n_trades", "counterparty_hhi", "volume_per_counterparty",
                "net_flow_ratio", "flow_balance", "fixed_lot_share", "round_number_share")
    )  # fmt: skip


def timing_features(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """intra_minute_share, inter_arrival_cv (off_hours_ratio needs the whole
    market's quiet hours: see `side_hours` and `off_hours_ratio`)."""
    s = ranked(sides.select(*KEY, "ts", "op_id"), KEY, ["ts", "op_id"]).with_columns(
        dt_prev=pl.when("_same").then(pl.col("ts") - pl.col("ts").shift(1)),
        dt_next=pl.when(pl.col("_same").shift(-1)).then(pl.col("ts").shift(-1) - pl.col("ts")),
    )
    clustered = (pl.col("dt_prev") <= cfg.cluster_seconds) | (pl.col("dt_next") <= cfg.cluster_seconds)
    # Row-wise terms first, plain aggregations after (polars' fast group_by path).
    s = s.with_columns(_intra=clustered.fill_null(False), _gap=pl.col("dt_prev").cast(pl.Float64))
    agg = s.group_by(KEY).agg(
        n=pl.len(), intra=pl.col("_intra").mean(), gap_mean=pl.col("_gap").mean(), gap_std=pl.col("_gap").std()
    )
    return agg.select(
        *KEY,
        intra_minute_share=pl.when(pl.col("n") < 2).then(None).otherwise("intra"),
        inter_arrival_cv=pl.when((pl.col("n") < 3) | (pl.col("gap_mean") <= 0)).then(None)
        .otherwise(pl.col("gap_std") / pl.col("gap_mean")),
    )  # fmt: skip


def side_hours(sides: pl.DataFrame) -> pl.DataFrame:
    """Trades per (wallet, pair_id) and UTC hour of day: additive over any split of
    the wallets, so the market's quiet hours follow from the parts.

    Shapes: wallet, pair_id, hour (Int8), n (UInt32).
    """
    return sides.group_by(*KEY, hour=pl.col("closed_at").dt.hour().cast(pl.Int8)).agg(n=pl.len())


def quiet_hours(hours: pl.DataFrame, *, cfg: FeatureConfig) -> pl.Series:
    """The `cfg.off_hours` UTC hours with the fewest trades (sides) in the market;
    ties go to the earlier hour. hours: `side_hours` of the whole market (or their concatenation)."""
    hourly = hours.group_by("hour").agg(n=pl.col("n").sum())
    all_hours = pl.DataFrame({"hour": pl.int_range(0, 24, eager=True).cast(pl.Int8)})
    return all_hours.join(hourly, on="hour", how="left").fill_null(0).sort("n", "hour").head(cfg.off_hours)["hour"]


def off_hours_ratio(hours: pl.DataFrame, *, quiet: pl.Series, cfg: FeatureConfig) -> pl.DataFrame:
    """off_hours_ratio: share of the wallet's trades in the pair at the market's quiet hours;
    null below `min_trades_shape` trades."""
    agg = hours.with_columns(_off=pl.col("n") * pl.col("hour").is_in(quiet.implode())).group_by(KEY).agg(
        n=pl.col("n").sum(), off=pl.col("_off").sum()
    )
    return agg.select(
        *KEY, off_hours_ratio=pl.when(pl.col("n") < cfg.min_trades_shape).then(None).otherwise(pl.col("off") / pl.col("n"))
    )


def volume_spike(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """volume_spike_ratio: max over days of day volume / mean daily volume of the
    `spike_baseline_days` days before it (zeros included); null without a baseline.

    Days are UTC calendar days. One group_by to daily volumes, then a dense
    (wallet-pair x day) numpy grid: the baseline is a sum of shifted columns.
    """
    daily = sides.group_by(*KEY, day=pl.col("ts") // 86400).agg(v=pl.col("base_amount").cast(pl.Float64).sum())
    if daily.height == 0:
        return daily.select(*KEY, volume_spike_ratio=pl.lit(None, dtype=pl.Float64))
    pair = daily.get_column("pair_id").to_physical().to_numpy().astype(np.int64)
    both = (daily.get_column("wallet").to_physical().to_numpy().astype(np.int64) << 32) | pair
    _, first, k = np.unique(both, return_index=True, return_inverse=True)
    day = daily.get_column("day").to_numpy()
    d = day - day.min()
    volume = np.zeros((len(first), int(d.max()) + 1))
    volume[k, d] = daily.get_column("v").to_numpy()
    window = np.zeros_like(volume)
    for lag in range(1, cfg.spike_baseline_days + 1):
        window[:, lag:] += volume[:, :-lag]
    # in polars: it divides by a constant through its reciprocal, as the former rolling
    # expression did, so the ratios stay bit for bit the same
    base = pl.Series(window[k, d]) / cfg.spike_baseline_days
    day_ratio = (daily.get_column("v") / base).to_numpy()
    ratio = np.full(len(first), -np.inf)
    ok = (base > 0).to_numpy()
    np.maximum.at(ratio, k[ok], day_ratio[ok])
    return daily.select(KEY)[first].with_columns(
        volume_spike_ratio=pl.Series(np.where(np.isinf(ratio), np.nan, ratio), nan_to_null=True)
    )


def size_tail(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """size_tail_exponent: Hill estimator of the base-amount upper tail,
    k = max(2, floor(sqrt(n))) top amounts; null when n < 2 * min_trades_shape
    or the top amounts are all equal (no tail)."""
    x = pl.col("base_amount").cast(pl.Float64)
    s = ranked(sides.filter(pl.col("base_amount") > 0).select(*KEY, "base_amount"), KEY, ["base_amount"],
               descending=True)  # fmt: skip
    n = s.group_by(KEY).agg(n=pl.len()).with_columns(
        k=pl.max_horizontal(pl.col("n").cast(pl.Float64).sqrt().floor(), pl.lit(2.0)).cast(pl.Int64)
    )
    s = s.join(n, on=KEY)
    threshold = s.filter(pl.col("_r") == pl.col("k") + 1).select(*KEY, threshold=x)
    s = s.join(threshold, on=KEY, how="left")
    top = pl.when(pl.col("_r") <= pl.col("k")).then((x / pl.col("threshold")).log())
    agg = s.with_columns(_top=top).group_by(KEY).agg(n=pl.first("n"), k=pl.first("k"), logsum=pl.col("_top").sum())
    ok = (pl.col("n") >= 2 * cfg.min_trades_shape) & (pl.col("logsum") > 0)
    return agg.select(*KEY, size_tail_exponent=pl.when(ok).then(pl.col("k") / pl.col("logsum")))


def round_trips(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """round_trip_rate: share of the wallet's gives in the pair after which the same
    asset came back to it (it got that asset) within `round_trip_ledgers` ledgers
    with an amount within `round_trip_tolerance`.

    Vectorised as as-of joins on (wallet, pair, asset, log-amount bucket): an
    amount within x % lies in the give's bucket or a neighbour (bucket width
    log(1+x)), so three forward as-of joins find the next candidate in each,
    then the exact ledger and amount tests apply. Only the next candidate of a
    bucket is examined (a later one behind a non-matching first is missed).
    """
    width = math.log1p(cfg.round_trip_tolerance)
    # The as-of joins match on one integer packing (wallet, pair) (its rank), the asset (within a
    # pair, whether it is the pair's base) and the bucket: several times faster than on four
    # columns, one of them a string.
    wp = pl.col("wallet").to_physical().cast(pl.UInt64) * (1 << 32) + pl.col("pair_id").to_physical().cast(pl.UInt64)
    packed = sides.select(
        *KEY, "op_id", "ledger", "gave_amount", "got_amount", "sold_base", wp=wp.rank("dense").cast(pl.Int64) * (1 << 20)
    )
    gives = packed.filter(pl.col("gave_amount") > 0).select(
        *KEY, "op_id", "ledger", amt="gave_amount", key=pl.col("wp") + _asset_bucket(pl.col("sold_base"), "gave_amount", width=width),
    ).with_row_index("gid").sort("op_id")  # fmt: skip
    gets = packed.filter(pl.col("got_amount") > 0).select(
        "op_id", r_ledger="ledger", r_amt="got_amount", key=pl.col("wp") + _asset_bucket(~pl.col("sold_base"), "got_amount", width=width),
    ).sort("op_id")  # fmt: skip
    ok = (pl.col("r_ledger") - pl.col("ledger") <= cfg.round_trip_ledgers) & (
        (pl.col("r_amt") - pl.col("amt")).abs() <= cfg.round_trip_tolerance * pl.col("amt")
    )
    hits = [
        gives.with_columns(key=pl.col("key") + shift)
        .join_asof(gets, on="op_id", by="key", strategy="forward", allow_exact_matches=False,
                   check_sortedness=False)  # both sides sorted by op_id above
        .filter(ok).select("gid")
        for shift in (-1, 0, 1)
    ]  # fmt: skip
    done = pl.concat(hits).unique()
    return (
        gives.join(done.with_columns(hit=pl.lit(True)), on="gid", how="left")
        .group_by(KEY).agg(round_trip_rate=pl.col("hit").fill_null(False).mean())
    )  # fmt: skip


def _asset_bucket(is_base: pl.Expr, amount: str, *, width: float) -> pl.Expr:
    """The pair's asset (1: its base) and the log-amount bucket (shifted to >= 1, so a neighbour
    stays >= 0) in the low 20 bits: buckets of positive stroop amounts stay below 2^13."""
    bucket = (pl.col(amount).cast(pl.Float64).log() / width).floor().cast(pl.Int64)
    return is_base.cast(pl.Int64) * (1 << 16) + bucket + 1


def offer_cancellations(
    operations: pl.DataFrame | None, *, as_of: datetime, cfg: FeatureConfig, codes: Codes | None = None
) -> pl.DataFrame:
    """offer_cancel_rate per (wallet, pair_id): share of the wallet's successful
    manage-offer operations in the pair (within the lookback) that delete an
    offer (offer_id != 0 and amount 0, written `0.0000000`). Wallets without
    offer operations in a pair have no row (the feature is missing)."""
    if operations is None:
        empty = pl.DataFrame(schema={"wallet": pl.String, "pair_id": pl.String, "offer_cancel_rate": pl.Float64})
        return categorical(empty, "wallet", "pair_id", codes=codes)
    ops = require(operations, OPERATION_COLUMNS, "operations").filter(
        pl.col("type").is_in(list(OFFER_TYPES)) & pl.col("successful").fill_null(True)
        & (pl.col("closed_at") <= as_of) & (pl.col("closed_at") > as_of - cfg.lookback)
        & pl.col("asset").is_not_null() & pl.col("buying_asset").is_not_null()
    )  # fmt: skip
    cancel = (pl.col("offer_id") != 0) & (pl.col("amount") == 0)
    rate = ops.group_by(wallet=pl.col("source_account"), pair_id=pair_id_expr("asset", "buying_asset")).agg(
        offer_cancel_rate=cancel.mean()
    )
    return categorical(rate, "wallet", "pair_id", codes=codes)
