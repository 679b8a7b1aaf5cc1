-- One row per delivery attempt of a notification message, written by the notifier after the
-- attempt ended: delivered (the receiver acknowledged with 2xx), retry (failed, tried again
-- later), gave_up (failed for the last time, dead-lettered) or deduplicated (the notification
-- log already held an acknowledged send, so nothing was sent; attempt 0). notification_id is
-- the message's Idempotency-Key and attempted_at is the attempt's own time, not the clock at
-- write time, so a redelivered row has the same key in the same partition and FINAL keeps one.
-- Day partitions + ttl_only_drop_parts: expiry drops whole parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.notification_deliveries
(
    notification_id  String,
    subscription_id  String,
    channel          LowCardinality(String),
    project          LowCardinality(String),
    subject_kind     LowCardinality(String),
    subject_id       String,
    transition       LowCardinality(String),
    attempt          UInt16,
    outcome          LowCardinality(String),
    http_status      UInt16,
    error            String,
    latency_ms       Float64,
    attempted_at     DateTime64(3, 'UTC'),
    grouped_count    UInt32,
    -- The delivery-log API looks a notification up by its id alone, which the sorting key
    -- cannot serve.
    INDEX idx_notification_id notification_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(attempted_at)
ORDER BY (project, subscription_id, notification_id, attempt)
TTL toDateTime(attempted_at) + INTERVAL {raw_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;
