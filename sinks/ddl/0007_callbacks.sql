-- REST callback subscriptions, one row per version: creating, disabling, re-enabling and
-- deleting a callback each insert a new row with a higher version, and the highest version is
-- the callback's current state (FINAL on read). A delete is a version with status 'deleted'
-- (kept as a tombstone, so a concurrent disable cannot bring the callback back). Every worker
-- reads this table (through a short cache), so a callback created through any worker's API is
-- served by all of them. `secret` is the HMAC key; the API never returns it.
CREATE TABLE IF NOT EXISTS {database}.callback_subscriptions
(
    callback_id        String,
    project            String,
    pipeline           String,
    url                String,
    events             Array(String),
    secret             String,
    status             LowCardinality(String),
    status_reason      String,
    status_changed_at  DateTime64(3, 'UTC'),
    created_at         DateTime64(3, 'UTC'),
    version            UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY callback_id;

-- One row per HTTP attempt of a callback delivery (or one 'skipped' row, attempt 0, for an event
-- not attempted because its callback was disabled). delivery_id is the Idempotency-Key the
-- receiver saw; a delivery re-sent after a worker restart keeps its id and gets rows with the
-- new attempts' own times, so both runs stay visible. A row inserted twice (a retried insert)
-- has the same key, attempt and time, and FINAL keeps one.
-- Day partitions + ttl_only_drop_parts: expiry drops whole parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.callback_deliveries
(
    delivery_id   String,
    callback_id   String,
    project       LowCardinality(String),
    pipeline      LowCardinality(String),
    build_id      String,
    event         LowCardinality(String),
    stage_id      String,
    task_id       String,
    revision      UInt64,
    attempt       UInt16,
    outcome       LowCardinality(String),
    http_status   UInt16,
    error         String,
    latency_ms    Float64,
    attempted_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(attempted_at)
ORDER BY (callback_id, attempted_at, delivery_id, attempt)
TTL toDateTime(attempted_at) + INTERVAL {raw_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;
