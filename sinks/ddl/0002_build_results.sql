-- One row per build: every accepted change writes the build's full state with
-- version = seq of the change; the highest version wins (FINAL on read, merges later).
-- first_seen_at is fixed at the build's first accepted event, so all versions of a build share
-- one partition and deduplicate against each other.
CREATE TABLE IF NOT EXISTS {database}.build_results
(
    build_id           String,
    project            LowCardinality(String),
    pipeline           LowCardinality(String),
    status             LowCardinality(String),
    version            UInt64,
    is_final           UInt8,
    first_seen_at      DateTime64(3, 'UTC'),
    queued_at          Nullable(DateTime64(3, 'UTC')),
    started_at         Nullable(DateTime64(3, 'UTC')),
    finished_at        Nullable(DateTime64(3, 'UTC')),
    duration_ms        Nullable(UInt64),
    queue_ms           Nullable(UInt64),
    trigger_reason     LowCardinality(String),
    trigger_user       String,
    branch             String,
    error_reason       String,
    termination_reason String,
    updated_at         DateTime64(3, 'UTC'),
    INDEX idx_build_id build_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(first_seen_at)
ORDER BY (project, pipeline, build_id)
TTL toDateTime(first_seen_at) + INTERVAL {results_retention_days} DAY;
