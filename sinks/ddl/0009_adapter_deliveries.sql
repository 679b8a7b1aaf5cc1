-- Every request a CI adapter (GitHub, GitLab, CDEvents) authenticated, as it arrived: the body and
-- the headers the adapter reads (never a secret). Kept so a mapping bug can be fixed and the stored
-- deliveries translated again (`cipulse adapters replay`); translation is deterministic, so a
-- replay of deliveries that were mapped right changes nothing downstream.
-- One row per (adapter, delivery_key): a redelivered request carries the same key, FINAL keeps one.
-- Bodies compress well (repetitive JSON): ZSTD on the body column. Day partitions with the raw
-- tables' TTL, dropped whole (ttl_only_drop_parts).
CREATE TABLE IF NOT EXISTS {database}.adapter_deliveries
(
    adapter       LowCardinality(String),
    source        LowCardinality(String),
    delivery_key  String,
    event_type    LowCardinality(String),
    headers       Map(String, String),
    body          String CODEC(ZSTD(6)),
    received_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (adapter, delivery_key)
TTL toDateTime(received_at) + INTERVAL {raw_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;
