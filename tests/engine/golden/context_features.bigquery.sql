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
), keys AS (
  SELECT DISTINCT
    wallet,
    pair_id
  FROM sides
), pairs AS (
  SELECT DISTINCT
    pair_id,
    LEAST(sold_asset, bought_asset) AS lo,
    GREATEST(sold_asset, bought_asset) AS hi
  FROM w
), cancels AS (
  SELECT
    o.wallet,
    p.pair_id,
    o.rate
  FROM (
    SELECT
      source_account AS wallet,
      LEAST(asset, buying_asset) AS lo,
      GREATEST(asset, buying_asset) AS hi,
      AVG(
        CASE
          WHEN offer_id <> 0 AND amount = 0
          THEN CAST(1 AS FLOAT64)
          WHEN NOT (
            offer_id <> 0 AND amount = 0
          )
          THEN CAST(0 AS FLOAT64)
        END
      ) AS rate
    FROM offers
    WHERE
      type IN ('manage_sell_offer', 'manage_buy_offer', 'create_passive_sell_offer')
      AND COALESCE(successful, TRUE)
      AND closed_at > @since
      AND closed_at <= @as_of
      AND NOT asset IS NULL
      AND NOT buying_asset IS NULL
    GROUP BY
      source_account,
      LEAST(asset, buying_asset),
      GREATEST(asset, buying_asset)
  ) AS o
  JOIN pairs AS p
    ON p.lo = o.lo AND p.hi = o.hi
), created AS (
  SELECT
    account_id,
    MIN(created_at) AS created_at
  FROM accounts
  WHERE
    created_at <= @as_of
  GROUP BY
    account_id
), ancestry AS (
  SELECT
    account_id,
    ancestor
  FROM lineage
  WHERE
    depth <= 4
), lineage_sets AS (
  SELECT
    account_id,
    account_id AS node
  FROM ancestry
  UNION DISTINCT
  SELECT
    account_id,
    ancestor AS node
  FROM ancestry
  WHERE
    ancestor <> account_id
), set_sizes AS (
  SELECT
    account_id,
    COUNT(*) AS size
  FROM lineage_sets
  GROUP BY
    account_id
), per_cp AS (
  SELECT
    wallet,
    pair_id,
    cp_account,
    COUNT(*) AS n
  FROM sides
  WHERE
    NOT cp_account IS NULL
  GROUP BY
    wallet,
    pair_id,
    cp_account
), shared AS (
  SELECT
    l.wallet,
    l.cp_account,
    COUNT(*) AS n_shared
  FROM (
    SELECT DISTINCT
      wallet,
      cp_account
    FROM per_cp
  ) AS l
  JOIN lineage_sets AS sw
    ON sw.account_id = l.wallet
  JOIN lineage_sets AS sc
    ON sc.account_id = l.cp_account AND sc.node = sw.node
  GROUP BY
    l.wallet,
    l.cp_account
), links AS (
  SELECT
    p.wallet,
    p.pair_id,
    p.n,
    COALESCE(s.n_shared, 0) AS n_shared,
    CAST(COALESCE(s.n_shared, 0) AS FLOAT64) / (
      sw.size + COALESCE(sc.size, 1) - COALESCE(s.n_shared, 0)
    ) AS jaccard
  FROM per_cp AS p
  JOIN set_sizes AS sw
    ON sw.account_id = p.wallet
  LEFT JOIN set_sizes AS sc
    ON sc.account_id = p.cp_account
  LEFT JOIN shared AS s
    ON s.wallet = p.wallet AND s.cp_account = p.cp_account
), controller AS (
  SELECT
    wallet,
    pair_id,
    CAST(SUM(CASE WHEN n_shared > 0 THEN n ELSE 0 END) AS FLOAT64) / SUM(n) AS same,
    SUM(n * jaccard) / SUM(n) AS similarity
  FROM links
  GROUP BY
    wallet,
    pair_id
), members AS (
  SELECT DISTINCT
    account_id,
    ring_id
  FROM ring_members
), ring_sizes AS (
  SELECT
    ring_id,
    COUNT(*) AS size
  FROM members
  GROUP BY
    ring_id
), own_ring AS (
  SELECT
    account_id,
    ring_id,
    size
  FROM (
    SELECT
      m.account_id,
      m.ring_id,
      s.size,
      ROW_NUMBER() OVER (PARTITION BY m.account_id ORDER BY s.size DESC, m.ring_id NULLS LAST) AS r
    FROM members AS m
    JOIN ring_sizes AS s
      ON s.ring_id = m.ring_id
  )
  WHERE
    r = 1
), rings AS (
  SELECT
    s.wallet,
    s.pair_id,
    COALESCE(MAX(o.size), 0) AS size,
    AVG(
      CASE WHEN c.account_id IS NULL THEN CAST(0 AS FLOAT64) ELSE CAST(1 AS FLOAT64) END
    ) AS cp_share
  FROM sides AS s
  LEFT JOIN own_ring AS o
    ON o.account_id = s.wallet
  LEFT JOIN members AS c
    ON c.account_id = s.cp_account AND c.ring_id = o.ring_id
  WHERE
    s.wallet IS DISTINCT FROM s.cp_account OR s.sold_base
  GROUP BY
    s.wallet,
    s.pair_id
), looped AS (
  SELECT DISTINCT
    trade_id
  FROM loop_trades
), loops AS (
  SELECT
    s.wallet,
    s.pair_id,
    AVG(CASE WHEN l.trade_id IS NULL THEN CAST(0 AS FLOAT64) ELSE CAST(1 AS FLOAT64) END) AS share
  FROM sides AS s
  LEFT JOIN looped AS l
    ON l.trade_id = s.id
  GROUP BY
    s.wallet,
    s.pair_id
)
SELECT
  k.wallet,
  k.pair_id,
  c.rate AS offer_cancel_rate,
  (
    UNIX_MICROS(@as_of) - UNIX_MICROS(a.created_at)
  ) / CAST(86400000000 AS FLOAT64) AS account_age_days,
  f.same AS same_controller_rate,
  f.similarity AS funding_similarity,
  CAST(r.size AS FLOAT64) AS ring_size,
  r.cp_share AS ring_cp_share,
  l.share AS loop_share
FROM keys AS k
LEFT JOIN cancels AS c
  ON c.wallet = k.wallet AND c.pair_id = k.pair_id
LEFT JOIN created AS a
  ON a.account_id = k.wallet
LEFT JOIN controller AS f
  ON f.wallet = k.wallet AND f.pair_id = k.pair_id
JOIN rings AS r
  ON r.wallet = k.wallet AND r.pair_id = k.pair_id
JOIN loops AS l
  ON l.wallet = k.wallet AND l.pair_id = k.pair_id
