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
)
SELECT
  CAST(FLOOR(MOD(ts, 86400) / 3600) AS INT64) AS hour,
  SUM(
    CASE WHEN seller_account IS NULL THEN 0 ELSE 1 END + CASE WHEN buyer_account IS NULL THEN 0 ELSE 1 END
  ) AS n
FROM w
GROUP BY
  CAST(FLOOR(MOD(ts, 86400) / 3600) AS INT64)
