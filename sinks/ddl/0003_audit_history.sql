-- One row per accepted audit event, with the audit status it led to. Redelivery writes the same
-- (project, audit_id, seq, event_id) again. seq is the review system's numbering; events cipulse
-- makes itself (compensations, manual repairs) reuse the seq they were validated against and are
-- told apart by their deterministic event_id. ReplacingMergeTree keeps the last ingested copy on
-- merge and every query reads with FINAL, so nothing counts twice.
-- Day partitions + ttl_only_drop_parts: expiry drops whole parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.audit_events
(
    audit_id      String,
    seq           UInt64,
    event_id      String,
    event_time    DateTime64(3, 'UTC'),
    project       LowCardinality(String),
    pipeline      String,
    subject_kind  LowCardinality(String),
    subject_id    String,
    kind          LowCardinality(String),
    status_after  LowCardinality(String),
    decision      LowCardinality(String),
    decision_id   String,
    actor         String,
    reason        String,
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3),
    -- The timeline API looks audits up by id alone, which the sorting key cannot serve.
    INDEX idx_audit_id audit_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (project, audit_id, seq, event_id)
TTL toDateTime(event_time) + INTERVAL {raw_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;

-- One row per audit: every accepted event writes the audit's full state with a higher
-- revision; the highest revision wins (FINAL on read, merges later). requested_at is fixed at
-- the audit's first accepted event, so all revisions of an audit share one partition and
-- deduplicate against each other.
CREATE TABLE IF NOT EXISTS {database}.audit_state
(
    audit_id           String,
    project            LowCardinality(String),
    pipeline           String,
    subject_kind       LowCardinality(String),
    subject_id         String,
    status             LowCardinality(String),
    decision           LowCardinality(String),
    decision_id        String,
    reviewers          Array(String),
    requested_at       DateTime64(3, 'UTC'),
    review_started_at  Nullable(DateTime64(3, 'UTC')),
    decided_at         Nullable(DateTime64(3, 'UTC')),
    synced_at          Nullable(DateTime64(3, 'UTC')),
    repaired_at        Nullable(DateTime64(3, 'UTC')),
    is_open            UInt8,
    revision           UInt64,
    updated_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(requested_at)
ORDER BY (project, audit_id)
TTL toDateTime(requested_at) + INTERVAL {results_retention_days} DAY;
