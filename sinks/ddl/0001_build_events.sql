-- One row per accepted build event (one change set). Redelivery writes the same
-- (project, pipeline, build_id, seq) again; ReplacingMergeTree keeps the last ingested copy on
-- merge and every query reads with FINAL, so duplicates never count twice before a merge.
-- Day partitions + ttl_only_drop_parts: expiry drops whole parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.build_events
(
    build_id              String,
    seq                   UInt64,
    event_id              String,
    event_time            DateTime64(3, 'UTC'),
    project               LowCardinality(String),
    pipeline              LowCardinality(String),
    scope                 LowCardinality(String),
    stage_id              String,
    task_id               String,
    node_status           LowCardinality(String),
    build_status          LowCardinality(String),
    previous_build_status LowCardinality(String),
    trigger_reason        LowCardinality(String),
    trigger_user          String,
    branch                String,
    error_reason          String,
    termination_reason    String,
    ingested_at           DateTime64(3, 'UTC') DEFAULT now64(3),
    -- The API looks builds up by id alone, which the sorting key cannot serve.
    INDEX idx_build_id build_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (project, pipeline, build_id, seq)
TTL toDateTime(event_time) + INTERVAL {raw_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;
