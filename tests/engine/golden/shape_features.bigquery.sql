WITH w AS (
  SELECT
    id,
    pair_id,
    op_id,
    seller_account,
    seller_pool_id,
    buyer_account,
    buyer_pool_id,
    sold_asset,
    sold_amount,
    bought_asset,
    bought_amount,
    seller_part,
    buyer_part,
    CAST(FLOOR(UNIX_SECONDS(closed_at)) AS INT64) AS ts,
    CASE
      WHEN (
        bought_asset = 'XLM:native'
        OR (
          sold_asset <> 'XLM:native' AND sold_asset <= bought_asset
        )
      )
      THEN sold_asset
      ELSE bought_asset
    END AS base_asset
  FROM trades
  WHERE
    closed_at > @since AND closed_at <= @as_of
), sides AS (
  SELECT
    seller_account AS wallet,
    pair_id,
    buyer_account AS cp_account,
    CASE WHEN buyer_account IS NULL THEN buyer_pool_id END AS cp_pool,
    id,
    op_id,
    ts,
    (
      sold_asset = base_asset
    ) AS sold_base,
    CASE WHEN (
      sold_asset = base_asset
    ) THEN sold_amount ELSE bought_amount END AS base_amount
  FROM w
  WHERE
    NOT seller_account IS NULL AND seller_part = @part
  UNION ALL
  SELECT
    buyer_account AS wallet,
    pair_id,
    seller_account AS cp_account,
    CASE WHEN seller_account IS NULL THEN seller_pool_id END AS cp_pool,
    id,
    op_id,
    ts,
    (
      bought_asset = base_asset
    ) AS sold_base,
    CASE WHEN (
      bought_asset = base_asset
    ) THEN bought_amount ELSE sold_amount END AS base_amount
  FROM w
  WHERE
    NOT buyer_account IS NULL AND buyer_part = @part
), activity AS (
  SELECT
    wallet,
    pair_id,
    COUNT(*) AS n,
    SUM(CAST(base_amount AS FLOAT64) / 10000000) AS volume,
    SUM(CASE WHEN sold_base THEN 0 ELSE CAST(base_amount AS FLOAT64) / 10000000 END) AS bought,
    SUM(CASE WHEN sold_base THEN CAST(base_amount AS FLOAT64) / 10000000 ELSE 0 END) AS sold,
    AVG(
      CASE
        WHEN (
          MOD(base_amount, 10000000) = 0
          AND MOD(base_amount, CAST(POWER(10, LENGTH(CAST(base_amount AS STRING)) - 2) AS INT64)) = 0
        )
        THEN CAST(1 AS FLOAT64)
        ELSE CAST(0 AS FLOAT64)
      END
    ) AS round_share
  FROM sides
  GROUP BY
    wallet,
    pair_id
), per_cp AS (
  SELECT
    wallet,
    pair_id,
    COUNT(*) AS n
  FROM sides
  GROUP BY
    wallet,
    pair_id,
    cp_account,
    cp_pool
), concentration AS (
  SELECT
    c.wallet,
    c.pair_id,
    COUNT(*) AS n_cps,
    SUM(POWER(CAST(c.n AS FLOAT64) / a.n, 2)) AS hhi
  FROM per_cp AS c
  JOIN activity AS a
    ON a.wallet = c.wallet AND a.pair_id = c.pair_id
  GROUP BY
    c.wallet,
    c.pair_id
), lots AS (
  SELECT
    wallet,
    pair_id,
    MAX(n) AS top_lot
  FROM (
    SELECT
      wallet,
      pair_id,
      COUNT(*) AS n
    FROM sides
    GROUP BY
      wallet,
      pair_id,
      base_amount
  )
  GROUP BY
    wallet,
    pair_id
), gaps AS (
  SELECT
    wallet,
    pair_id,
    ts - LAG(ts) OVER (PARTITION BY wallet, pair_id ORDER BY ts NULLS LAST, op_id NULLS LAST) AS dt_prev,
    LEAD(ts) OVER (PARTITION BY wallet, pair_id ORDER BY ts NULLS LAST, op_id NULLS LAST) - ts AS dt_next
  FROM sides
), timing AS (
  SELECT
    wallet,
    pair_id,
    COUNT(*) AS n,
    AVG(
      CASE
        WHEN dt_prev <= 60 OR dt_next <= 60
        THEN CAST(1 AS FLOAT64)
        ELSE CAST(0 AS FLOAT64)
      END
    ) AS intra,
    AVG(CAST(dt_prev AS FLOAT64)) AS gap_mean,
    STDDEV_SAMP(CAST(dt_prev AS FLOAT64)) AS gap_std
  FROM gaps
  GROUP BY
    wallet,
    pair_id
), hours AS (
  SELECT
    wallet,
    pair_id,
    CAST(FLOOR(MOD(ts, 86400) / 3600) AS INT64) AS hour
  FROM sides
), market_hours AS (
  SELECT
    h.hour,
    COALESCE(c.n, 0) AS n
  FROM (
    SELECT
      0 AS hour
    UNION ALL
    SELECT
      1 AS hour
    UNION ALL
    SELECT
      2 AS hour
    UNION ALL
    SELECT
      3 AS hour
    UNION ALL
    SELECT
      4 AS hour
    UNION ALL
    SELECT
      5 AS hour
    UNION ALL
    SELECT
      6 AS hour
    UNION ALL
    SELECT
      7 AS hour
    UNION ALL
    SELECT
      8 AS hour
    UNION ALL
    SELECT
      9 AS hour
    UNION ALL
    SELECT
      10 AS hour
    UNION ALL
    SELECT
      11 AS hour
    UNION ALL
    SELECT
      12 AS hour
    UNION ALL
    SELECT
      13 AS hour
    UNION ALL
    SELECT
      14 AS hour
    UNION ALL
    SELECT
      15 AS hour
    UNION ALL
    SELECT
      16 AS hour
    UNION ALL
    SELECT
      17 AS hour
    UNION ALL
    SELECT
      18 AS hour
    UNION ALL
    SELECT
      19 AS hour
    UNION ALL
    SELECT
      20 AS hour
    UNION ALL
    SELECT
      21 AS hour
    UNION ALL
    SELECT
      22 AS hour
    UNION ALL
    SELECT
      23 AS hour
  ) AS h
  LEFT JOIN (
    SELECT
      hour,
      SUM(n) AS n
    FROM market_hours
    GROUP BY
      hour
  ) AS c
    ON c.hour = h.hour
), quiet AS (
  /* over the whole table, which Spark would gather on one executor) */
  SELECT
    a.hour
  FROM market_hours AS a
  JOIN market_hours AS b
    ON b.n < a.n OR (
      b.n = a.n AND b.hour <= a.hour
    )
  GROUP BY
    a.hour
  HAVING
    COUNT(*) <= 6
), off_hours AS (
  SELECT
    s.wallet,
    s.pair_id,
    AVG(CASE WHEN q.hour IS NULL THEN CAST(0 AS FLOAT64) ELSE CAST(1 AS FLOAT64) END) AS off
  FROM hours AS s
  LEFT JOIN quiet AS q
    ON q.hour = s.hour
  GROUP BY
    s.wallet,
    s.pair_id
), daily AS (
  SELECT
    wallet,
    pair_id,
    CAST(FLOOR(ts / 86400) AS INT64) AS day,
    SUM(CAST(base_amount AS FLOAT64)) AS v
  FROM sides
  GROUP BY
    wallet,
    pair_id,
    CAST(FLOOR(ts / 86400) AS INT64)
), baselines AS (
  SELECT
    wallet,
    pair_id,
    v,
    SUM(v) OVER (
      PARTITION BY wallet, pair_id
      ORDER BY day
      RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING
    ) / 7 AS base
  FROM daily
), spikes /* day is never null: NULLS FIRST only spares BigQuery a clause it lacks */ AS (
  SELECT
    wallet,
    pair_id,
    MAX(CASE WHEN base > 0 THEN v / base END) AS ratio
  FROM baselines
  GROUP BY
    wallet,
    pair_id
), ranked AS (
  SELECT
    wallet,
    pair_id,
    base_amount,
    ROW_NUMBER() OVER (PARTITION BY wallet, pair_id ORDER BY base_amount DESC) AS r,
    COUNT(*) OVER (PARTITION BY wallet, pair_id) AS n
  FROM sides
  WHERE
    base_amount > 0
), tail AS (
  SELECT
    *,
    CAST(GREATEST(FLOOR(SQRT(n)), 2) AS INT64) AS k
  FROM ranked
), thresholds AS (
  SELECT
    wallet,
    pair_id,
    base_amount AS threshold
  FROM tail
  WHERE
    r = k + 1
), hill AS (
  SELECT
    t.wallet,
    t.pair_id,
    MAX(t.n) AS n,
    MAX(t.k) AS k,
    SUM(CASE WHEN t.r <= t.k THEN LN(CAST(t.base_amount AS FLOAT64) / h.threshold) END) AS logsum
  FROM tail AS t
  LEFT JOIN thresholds AS h
    ON h.wallet = t.wallet AND h.pair_id = t.pair_id
  GROUP BY
    t.wallet,
    t.pair_id
), diversity AS (
  SELECT
    wallet,
    COUNT(*) AS n_pairs,
    -SUM(share * LN(share)) AS entropy
  FROM (
    SELECT
      wallet,
      CAST(n AS FLOAT64) / SUM(n) OVER (PARTITION BY wallet) AS share
    FROM activity
  )
  GROUP BY
    wallet
), marks AS (
  /* other pair's trade just before it, its last the one just after (the id only orders ties alike) */
  SELECT
    wallet,
    pair_id,
    ts,
    CASE
      WHEN LAG(pair_id) OVER (PARTITION BY wallet ORDER BY ts, op_id, id) = pair_id
      THEN NULL
      ELSE LAG(ts) OVER (PARTITION BY wallet ORDER BY ts, op_id, id)
    END AS before_run,
    CASE
      WHEN LEAD(pair_id) OVER (PARTITION BY wallet ORDER BY ts, op_id, id) = pair_id
      THEN NULL
      ELSE LEAD(ts) OVER (PARTITION BY wallet ORDER BY ts, op_id, id)
    END AS after_run,
    op_id,
    id
  FROM sides
), synchrony AS (
  SELECT
    wallet,
    pair_id,
    AVG(
      CASE
        WHEN ts - prev_other <= 60 OR next_other - ts <= 60
        THEN CAST(1 AS FLOAT64)
        ELSE CAST(0 AS FLOAT64)
      END
    ) AS share
  FROM (
    SELECT
      wallet,
      pair_id,
      ts,
      LAST_VALUE(before_run IGNORE NULLS) OVER (
        PARTITION BY wallet
        ORDER BY ts, op_id, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS prev_other,
      FIRST_VALUE(after_run IGNORE NULLS) OVER (
        PARTITION BY wallet
        ORDER BY ts, op_id, id
        ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
      ) AS next_other
    FROM marks
  )
  GROUP BY
    wallet,
    pair_id
), pair_cps AS (
  SELECT DISTINCT
    wallet,
    pair_id,
    cp_account,
    cp_pool
  FROM sides
), cp_pairs AS (
  SELECT
    wallet,
    cp_account,
    cp_pool,
    COUNT(*) AS n
  FROM pair_cps
  GROUP BY
    wallet,
    cp_account,
    cp_pool
), overlap AS (
  SELECT
    x.wallet,
    x.pair_id,
    SUM(CASE WHEN c.n > 1 THEN 1 ELSE 0 END) AS shared,
    MAX(w.n_cps) AS n_cps
  FROM pair_cps AS x
  JOIN cp_pairs AS c
    ON c.wallet = x.wallet
    AND c.cp_account IS NOT DISTINCT FROM x.cp_account
    AND c.cp_pool IS NOT DISTINCT FROM x.cp_pool
  JOIN (
    SELECT
      wallet,
      COUNT(*) AS n_cps
    FROM cp_pairs
    GROUP BY
      wallet
  ) AS w
    ON w.wallet = x.wallet
  GROUP BY
    x.wallet,
    x.pair_id
), hourly AS (
  SELECT
    wallet,
    pair_id,
    CAST(FLOOR(ts / 3600) AS INT64) AS h,
    CAST(COUNT(*) AS FLOAT64) AS x
  FROM sides
  GROUP BY
    wallet,
    pair_id,
    CAST(FLOOR(ts / 3600) AS INT64)
), wallet_hourly AS (
  SELECT
    wallet,
    h,
    SUM(x) AS t
  FROM hourly
  GROUP BY
    wallet,
    h
), wallet_sums AS (
  SELECT
    wallet,
    SUM(t) AS st,
    SUM(t * t) AS st2
  FROM wallet_hourly
  GROUP BY
    wallet
), pair_sums AS (
  SELECT
    x.wallet,
    x.pair_id,
    SUM(x.x) AS sx,
    SUM(x.x * x.x) AS sx2,
    SUM(t.t * x.x) AS stx
  FROM hourly AS x
  JOIN wallet_hourly AS t
    ON t.wallet = x.wallet AND t.h = x.h
  GROUP BY
    x.wallet,
    x.pair_id
), moments AS (
  SELECT
    p.wallet,
    p.pair_id,
    CAST(720 AS FLOAT64) * (
      p.stx - p.sx2
    ) - p.sx * (
      w.st - p.sx
    ) AS cov,
    CAST(720 AS FLOAT64) * p.sx2 - p.sx * p.sx AS vx,
    CAST(720 AS FLOAT64) * (
      w.st2 - 2 * p.stx + p.sx2
    ) - (
      w.st - p.sx
    ) * (
      w.st - p.sx
    ) AS vy
  FROM pair_sums AS p
  JOIN wallet_sums AS w
    ON w.wallet = p.wallet
)
SELECT
  a.wallet,
  a.pair_id,
  CAST(a.n AS FLOAT64) AS n_trades,
  c.hhi AS counterparty_hhi,
  a.volume / c.n_cps AS volume_per_counterparty,
  (
    a.bought - a.sold
  ) / NULLIF(a.bought + a.sold, 0) AS net_flow_ratio,
  CAST(1 AS FLOAT64) - ABS((
    a.bought - a.sold
  ) / NULLIF(a.bought + a.sold, 0)) AS flow_balance,
  CASE WHEN a.n >= 5 THEN CAST(l.top_lot AS FLOAT64) / a.n END AS fixed_lot_share,
  CASE WHEN a.n >= 5 THEN a.round_share END AS round_number_share,
  CASE WHEN a.n >= 5 THEN o.off END AS off_hours_ratio,
  CASE WHEN t.n >= 2 THEN t.intra END AS intra_minute_share,
  CASE WHEN t.n >= 3 AND t.gap_mean > 0 THEN t.gap_std / t.gap_mean END AS inter_arrival_cv,
  p.ratio AS volume_spike_ratio,
  CASE WHEN h.n >= 10 AND h.logsum > 0 THEN h.k / h.logsum END AS size_tail_exponent,
  d.entropy AS pair_diversity,
  CASE WHEN d.n_pairs > 1 THEN y.share END AS cross_pair_synchrony,
  CASE WHEN d.n_pairs > 1 THEN CAST(v.shared AS FLOAT64) / v.n_cps END AS cross_pair_cp_overlap,
  CASE
    WHEN d.n_pairs > 1 AND m.vx > 0 AND m.vy > 0
    THEN m.cov / SQRT(m.vx * m.vy)
  END AS cross_pair_volume_corr
FROM activity AS a
JOIN concentration AS c
  ON c.wallet = a.wallet AND c.pair_id = a.pair_id
JOIN lots AS l
  ON l.wallet = a.wallet AND l.pair_id = a.pair_id
JOIN timing AS t
  ON t.wallet = a.wallet AND t.pair_id = a.pair_id
JOIN off_hours AS o
  ON o.wallet = a.wallet AND o.pair_id = a.pair_id
JOIN spikes AS p
  ON p.wallet = a.wallet AND p.pair_id = a.pair_id
LEFT JOIN hill AS h
  ON h.wallet = a.wallet AND h.pair_id = a.pair_id
JOIN diversity AS d
  ON d.wallet = a.wallet
JOIN synchrony AS y
  ON y.wallet = a.wallet AND y.pair_id = a.pair_id
JOIN overlap AS v
  ON v.wallet = a.wallet AND v.pair_id = a.pair_id
JOIN moments AS m
  ON m.wallet = a.wallet AND m.pair_id = a.pair_id
