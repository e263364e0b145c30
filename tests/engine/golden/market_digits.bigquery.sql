WITH w AS (
  SELECT
    pair_id,
    sold_asset,
    sold_amount,
    bought_asset,
    bought_amount,
    CASE
      WHEN closed_at > @start_0
      THEN 0
      WHEN closed_at > @start_1
      THEN 1
      WHEN closed_at > @start_2
      THEN 2
      WHEN closed_at > @start_3
      THEN 3
      ELSE 4
    END AS bucket
  FROM trades
  WHERE
    closed_at > @start_4 AND closed_at <= @as_of
), amounts AS (
  SELECT
    'pair' AS scope,
    pair_id,
    CAST(NULL AS STRING) AS asset,
    bucket,
    CASE
      WHEN LEFT(pair_id, INSTR(pair_id, '/') - 1) = sold_asset
      THEN sold_amount
      ELSE bought_amount
    END AS amount
  FROM w
  UNION ALL
  SELECT
    'asset',
    CAST(NULL AS STRING),
    sold_asset,
    bucket,
    sold_amount
  FROM w
  UNION ALL
  SELECT
    'asset',
    CAST(NULL AS STRING),
    bought_asset,
    bucket,
    bought_amount
  FROM w
)
SELECT
  scope,
  pair_id,
  asset,
  bucket,
  CASE WHEN amount > 0 THEN CAST(LEFT(CAST(amount AS STRING), 2) AS INT64) ELSE 0 END AS digits,
  COUNT(*) AS n
FROM amounts
GROUP BY
  1,
  2,
  3,
  4,
  5
