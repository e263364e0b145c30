"""The versioned DuckDB schema. Each migration is applied once, in order, inside a
transaction that also bumps `schema_version`; opening an older file upgrades it.

Append a new migration to `MIGRATIONS` to change the schema; never edit one that
has shipped.
"""

from __future__ import annotations

MIGRATION_1 = """
CREATE TABLE trades (
    id              VARCHAR NOT NULL,      -- Horizon paging token "{op_id}-{index}"; unique (see Store)
    op_id           BIGINT NOT NULL,
    ledger          BIGINT NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL,
    trade_type      VARCHAR NOT NULL,      -- orderbook | liquidity_pool
    pair_id         VARCHAR NOT NULL,
    seller_account  VARCHAR,
    seller_offer_id BIGINT,
    seller_pool_id  VARCHAR,
    buyer_account   VARCHAR,
    buyer_offer_id  BIGINT,
    buyer_pool_id   VARCHAR,
    sold_asset      VARCHAR NOT NULL,
    sold_amount     BIGINT NOT NULL CHECK (sold_amount > 0),     -- stroops
    bought_asset    VARCHAR NOT NULL,
    bought_amount   BIGINT NOT NULL CHECK (bought_amount > 0),   -- stroops
    price_n         BIGINT NOT NULL,
    price_d         BIGINT NOT NULL,
    source          VARCHAR NOT NULL,
    run_id          BIGINT
);
CREATE TABLE operations (
    id              BIGINT NOT NULL,       -- unique (see Store)
    ledger          BIGINT NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL,
    type            VARCHAR NOT NULL,
    tx_hash         VARCHAR,
    successful      BOOLEAN,
    source_account  VARCHAR,
    from_account    VARCHAR,
    to_account      VARCHAR,
    asset           VARCHAR,
    amount          BIGINT,
    source_asset    VARCHAR,
    source_amount   BIGINT,
    offer_id        BIGINT,
    buying_asset    VARCHAR,
    price_n         BIGINT,
    price_d         BIGINT,
    balance_id      VARCHAR,
    memo            VARCHAR,
    source          VARCHAR NOT NULL,
    run_id          BIGINT
);
CREATE TABLE accounts (
    account_id        VARCHAR PRIMARY KEY,
    created_at        TIMESTAMPTZ,
    funder            VARCHAR,
    starting_balance  BIGINT,
    first_seen_ledger BIGINT,
    last_seen_ledger  BIGINT
);
CREATE TABLE assets (
    asset             VARCHAR PRIMARY KEY,
    code              VARCHAR NOT NULL,
    issuer            VARCHAR,
    first_seen_ledger BIGINT
);
CREATE TABLE liquidity_pools (
    pool_id           VARCHAR PRIMARY KEY,
    pair_id           VARCHAR,
    first_seen_ledger BIGINT
);
CREATE SEQUENCE ingest_run_ids START 1;
CREATE TABLE ingest_runs (
    run_id        BIGINT PRIMARY KEY DEFAULT nextval('ingest_run_ids'),
    source        VARCHAR NOT NULL,
    params        VARCHAR NOT NULL,     -- JSON of the request (range, pair, paths, url)
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    status        VARCHAR NOT NULL,     -- running | done | failed | interrupted
    n_trades      BIGINT DEFAULT 0,     -- new rows written
    n_operations  BIGINT DEFAULT 0,
    n_quarantined BIGINT DEFAULT 0,
    n_ledgers     BIGINT DEFAULT 0,
    error         VARCHAR
);
CREATE TABLE ingest_cursors (
    source     VARCHAR NOT NULL,
    stream     VARCHAR NOT NULL,        -- trades | operations | ledgers | file
    scope      VARCHAR NOT NULL,        -- the request it belongs to (range, pair, path)
    position   VARCHAR NOT NULL,        -- paging token, ledger, line number
    done       BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, stream, scope)
);
CREATE SEQUENCE quarantine_ids START 1;
CREATE TABLE quarantine (
    key            VARCHAR PRIMARY KEY,  -- md5 of source|location|reason|raw: re-runs do not repeat rows
    id             BIGINT NOT NULL DEFAULT nextval('quarantine_ids'),
    run_id         BIGINT,
    source         VARCHAR NOT NULL,
    location       VARCHAR NOT NULL,
    record_id      VARCHAR,
    reason         VARCHAR NOT NULL,
    raw            VARCHAR,
    quarantined_at TIMESTAMPTZ NOT NULL
);
CREATE VIEW funding_edges AS
    SELECT id, ledger, closed_at, type, from_account, to_account, asset, amount
    FROM operations
    WHERE type IN ('create_account', 'payment', 'path_payment_strict_send',
                   'path_payment_strict_receive', 'account_merge',
                   'create_claimable_balance', 'claim_claimable_balance')
      AND coalesce(successful, TRUE)
      AND from_account IS NOT NULL AND to_account IS NOT NULL
      AND from_account <> to_account;
"""

MIGRATION_2 = """
CREATE TABLE scores (                    -- every scoring run appends: history is kept
    wallet          VARCHAR NOT NULL,
    pair_id         VARCHAR NOT NULL,
    score           INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    benford_flag    BOOLEAN NOT NULL,
    ml_flag         BOOLEAN NOT NULL,
    timestamp       BIGINT NOT NULL,      -- ledger close (unix s) the score is "as of"
    confidence      INTEGER NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    ring_id         VARCHAR,
    model_version   VARCHAR NOT NULL,
    bft_divergence  BOOLEAN NOT NULL,
    scored_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (wallet, pair_id, model_version, timestamp)
);
CREATE SEQUENCE annotation_ids START 1;
CREATE TABLE annotations (               -- append-only: a relabel is a new row
    id            BIGINT PRIMARY KEY DEFAULT nextval('annotation_ids'),
    wallet        VARCHAR NOT NULL,
    pair_id       VARCHAR,
    label         VARCHAR NOT NULL CHECK (label IN ('wash', 'legit', 'unsure')),
    note          VARCHAR,
    annotator_id  VARCHAR NOT NULL,
    annotated_at  TIMESTAMPTZ NOT NULL,
    label_source  VARCHAR NOT NULL,      -- analyst | import | simulator | silver
    hmac          VARCHAR NOT NULL       -- HMAC-SHA256 over wallet|label|annotator_id|annotated_at
);
CREATE TABLE reports (
    fingerprint   VARCHAR PRIMARY KEY,   -- SHA-256 of the canonical JSON report
    wallet        VARCHAR NOT NULL,
    pair_id       VARCHAR NOT NULL,
    format        VARCHAR NOT NULL,
    path          VARCHAR NOT NULL,
    generated_at  TIMESTAMPTZ NOT NULL,
    model_version VARCHAR
);
"""

# Trades store a small integer per account instead of the 56-character id: the file
# is about 5x smaller and a million-trade batch writes in half the time (compressing
# two columns of account ids was most of the cost). The `trades` view gives back the
# canonical seller/buyer form, column for column, so every reader is unchanged.
MIGRATION_3 = """
CREATE SEQUENCE account_key_ids START 1;
CREATE TABLE account_keys (
    account_id  VARCHAR PRIMARY KEY,
    account_key INTEGER NOT NULL UNIQUE DEFAULT nextval('account_key_ids')
);
INSERT INTO account_keys (account_id)
    SELECT a FROM (SELECT seller_account AS a FROM trades UNION SELECT buyer_account FROM trades)
    WHERE a IS NOT NULL ORDER BY a;
CREATE TABLE trade_rows (
    id              VARCHAR NOT NULL,      -- Horizon paging token "{op_id}-{index}"; unique (see Store)
    op_id           BIGINT NOT NULL,
    ledger          BIGINT NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL,
    trade_type      VARCHAR NOT NULL,      -- orderbook | liquidity_pool
    pair_id         VARCHAR NOT NULL,
    seller_key      INTEGER,               -- account_keys.account_key
    seller_offer_id BIGINT,
    seller_pool_id  VARCHAR,
    buyer_key       INTEGER,
    buyer_offer_id  BIGINT,
    buyer_pool_id   VARCHAR,
    sold_asset      VARCHAR NOT NULL,
    sold_amount     BIGINT NOT NULL CHECK (sold_amount > 0),     -- stroops
    bought_asset    VARCHAR NOT NULL,
    bought_amount   BIGINT NOT NULL CHECK (bought_amount > 0),   -- stroops
    price_n         BIGINT NOT NULL,
    price_d         BIGINT NOT NULL,
    source          VARCHAR NOT NULL,
    run_id          BIGINT
);
INSERT INTO trade_rows
    SELECT t.id, t.op_id, t.ledger, t.closed_at, t.trade_type, t.pair_id, s.account_key, t.seller_offer_id,
           t.seller_pool_id, b.account_key, t.buyer_offer_id, t.buyer_pool_id, t.sold_asset, t.sold_amount,
           t.bought_asset, t.bought_amount, t.price_n, t.price_d, t.source, t.run_id
    FROM trades t
    LEFT JOIN account_keys s ON s.account_id = t.seller_account
    LEFT JOIN account_keys b ON b.account_id = t.buyer_account
    ORDER BY t.op_id, t.id;
DROP TABLE trades;
CREATE VIEW trades AS
    SELECT t.id, t.op_id, t.ledger, t.closed_at, t.trade_type, t.pair_id, s.account_id AS seller_account,
           t.seller_offer_id, t.seller_pool_id, b.account_id AS buyer_account, t.buyer_offer_id,
           t.buyer_pool_id, t.sold_asset, t.sold_amount, t.bought_asset, t.bought_amount, t.price_n,
           t.price_d, t.source, t.run_id
    FROM trade_rows t
    LEFT JOIN account_keys s ON s.account_key = t.seller_key
    LEFT JOIN account_keys b ON b.account_key = t.buyer_key;
"""

# Live watch (engine.services.watch): every alert it raised, once per (wallet, pair, ledger).
# delivered_at stays NULL until a channel took it, so a restarted watch re-delivers
# what a kill interrupted between storing and sending.
MIGRATION_4 = """
CREATE SEQUENCE alert_ids START 1;
CREATE TABLE alerts (
    id             BIGINT NOT NULL DEFAULT nextval('alert_ids'),
    wallet         VARCHAR NOT NULL,
    pair_id        VARCHAR NOT NULL,
    score          INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    ring_id        VARCHAR,
    ledger         BIGINT NOT NULL,
    closed_at      TIMESTAMPTZ NOT NULL,  -- close of the ledger the score is "as of"
    detected_at    TIMESTAMPTZ NOT NULL,  -- wall clock when the watch decided
    reasons        VARCHAR NOT NULL,      -- JSON list of the top evidence
    model_version  VARCHAR NOT NULL,
    delivered_at   TIMESTAMPTZ,
    PRIMARY KEY (wallet, pair_id, ledger)
);
"""

# Scores carry one decimal (engine.scoring: 31 integers cannot order a hundred wallets in clear
# rings). DuckDB cannot retype a column under a CHECK, so both tables are rebuilt, rows kept.
MIGRATION_5 = """
CREATE TABLE scores_v5 (
    wallet          VARCHAR NOT NULL,
    pair_id         VARCHAR NOT NULL,
    score           DOUBLE NOT NULL CHECK (score BETWEEN 0 AND 100),
    benford_flag    BOOLEAN NOT NULL,
    ml_flag         BOOLEAN NOT NULL,
    timestamp       BIGINT NOT NULL,
    confidence      INTEGER NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    ring_id         VARCHAR,
    model_version   VARCHAR NOT NULL,
    bft_divergence  BOOLEAN NOT NULL,
    scored_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (wallet, pair_id, model_version, timestamp)
);
INSERT INTO scores_v5 SELECT * FROM scores;
DROP TABLE scores;
ALTER TABLE scores_v5 RENAME TO scores;
CREATE TABLE alerts_v5 (
    id             BIGINT NOT NULL DEFAULT nextval('alert_ids'),
    wallet         VARCHAR NOT NULL,
    pair_id        VARCHAR NOT NULL,
    score          DOUBLE NOT NULL CHECK (score BETWEEN 0 AND 100),
    ring_id        VARCHAR,
    ledger         BIGINT NOT NULL,
    closed_at      TIMESTAMPTZ NOT NULL,
    detected_at    TIMESTAMPTZ NOT NULL,
    reasons        VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    delivered_at   TIMESTAMPTZ,
    PRIMARY KEY (wallet, pair_id, ledger)
);
INSERT INTO alerts_v5 SELECT * FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v5 RENAME TO alerts;
"""

# Operations store integer account keys too (storage.schema MIGRATION_3, the same `account_keys`,
# which now holds every account of a trade or an operation): at 2M operations the batches
# wrote in 4.1 s against 6.8 s, into half the file (three columns of 56-character ids were
# most of the cost). The `operations` view gives back the canonical form, column for column;
# the physical rows keep their order (the live watch reads them past a rowid).
MIGRATION_6 = """
INSERT INTO account_keys (account_id)
    SELECT a FROM (SELECT source_account AS a FROM operations UNION SELECT from_account FROM operations
                   UNION SELECT to_account FROM operations)
    WHERE a IS NOT NULL AND a NOT IN (SELECT account_id FROM account_keys) ORDER BY a;
CREATE TABLE operation_rows (
    id              BIGINT NOT NULL,       -- unique (see Store)
    ledger          BIGINT NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL,
    type            VARCHAR NOT NULL,
    tx_hash         VARCHAR,
    successful      BOOLEAN,
    source_key      INTEGER,               -- account_keys.account_key
    from_key        INTEGER,
    to_key          INTEGER,
    asset           VARCHAR,
    amount          BIGINT,
    source_asset    VARCHAR,
    source_amount   BIGINT,
    offer_id        BIGINT,
    buying_asset    VARCHAR,
    price_n         BIGINT,
    price_d         BIGINT,
    balance_id      VARCHAR,
    memo            VARCHAR,
    source          VARCHAR NOT NULL,
    run_id          BIGINT
);
INSERT INTO operation_rows
    SELECT o.id, o.ledger, o.closed_at, o.type, o.tx_hash, o.successful, s.account_key, f.account_key, t.account_key,
           o.asset, o.amount, o.source_asset, o.source_amount, o.offer_id, o.buying_asset, o.price_n, o.price_d,
           o.balance_id, o.memo, o.source, o.run_id
    FROM operations o
    LEFT JOIN account_keys s ON s.account_id = o.source_account
    LEFT JOIN account_keys f ON f.account_id = o.from_account
    LEFT JOIN account_keys t ON t.account_id = o.to_account
    ORDER BY o.rowid;
DROP VIEW funding_edges;
DROP TABLE operations;
CREATE VIEW operations AS
    SELECT o.id, o.ledger, o.closed_at, o.type, o.tx_hash, o.successful, s.account_id AS source_account,
           f.account_id AS from_account, t.account_id AS to_account, o.asset, o.amount, o.source_asset,
           o.source_amount, o.offer_id, o.buying_asset, o.price_n, o.price_d, o.balance_id, o.memo, o.source, o.run_id
    FROM operation_rows o
    LEFT JOIN account_keys s ON s.account_key = o.source_key
    LEFT JOIN account_keys f ON f.account_key = o.from_key
    LEFT JOIN account_keys t ON t.account_key = o.to_key;
CREATE VIEW funding_edges AS
    SELECT o.id, o.ledger, o.closed_at, o.type, f.account_id AS from_account, t.account_id AS to_account, o.asset, o.amount
    FROM operation_rows o
    JOIN account_keys f ON f.account_key = o.from_key
    JOIN account_keys t ON t.account_key = o.to_key
    WHERE o.type IN ('create_account', 'payment', 'path_payment_strict_send',
                     'path_payment_strict_receive', 'account_merge',
                     'create_claimable_balance', 'claim_claimable_balance')
      AND coalesce(o.successful, TRUE)
      AND o.from_key <> o.to_key;
"""

MIGRATIONS: tuple[str, ...] = (MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4, MIGRATION_5, MIGRATION_6)
SCHEMA_VERSION = len(MIGRATIONS)
