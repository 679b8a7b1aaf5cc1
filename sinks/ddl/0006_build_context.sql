-- What a retry of a build needs: its variables and trigger context, one row per build. Every
-- accepted change writes the build's full context with a higher revision; the highest revision
-- wins (FINAL on read, merges later). first_seen_at is fixed at the build's first accepted
-- event, so all revisions of a build share one day partition and deduplicate against each other.
-- The TTL is where the retry limit comes from: the API reads it back from system.tables (and the
-- oldest partition still holding rows from system.parts) instead of hard-coding a day count, so
-- ALTER TABLE ... MODIFY TTL moves the limit without a deploy or restart.
-- Day partitions + ttl_only_drop_parts: expiry drops whole parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.build_context
(
    project         LowCardinality(String),
    pipeline        LowCardinality(String),
    build_id        String,
    first_seen_at   DateTime64(3, 'UTC'),
    started_at      Nullable(DateTime64(3, 'UTC')),
    finished_at     Nullable(DateTime64(3, 'UTC')),
    status          LowCardinality(String),
    trigger_reason  LowCardinality(String),
    trigger_user    String,
    branch          String,
    commit_sha      String,
    executor        String,
    variables       Map(String, String),
    revision        UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    -- The retry API looks builds up by id alone, which the sorting key cannot serve.
    INDEX idx_build_id build_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMMDD(first_seen_at)
ORDER BY (project, pipeline, build_id)
TTL toDateTime(first_seen_at) + INTERVAL {context_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;

-- One row per retry decision the API made: a 'check' (may this build be retried?) or a 'retry'
-- (a retry was asked for), whether it was allowed and why, with the numbers it was decided on.
-- Decisions are events, not states: each one counts, so this is a plain MergeTree and the
-- dashboard counts rows. retry_id is '' unless a retry was started.
CREATE TABLE IF NOT EXISTS {database}.retry_decisions
(
    decided_at         DateTime64(3, 'UTC'),
    project            LowCardinality(String),
    pipeline           LowCardinality(String),
    build_id           String,
    action             LowCardinality(String),
    eligible           Bool,
    reason             LowCardinality(String),
    build_started_at   Nullable(DateTime64(3, 'UTC')),
    age_seconds        Float64,
    retention_seconds  Nullable(Float64),
    deadline           Nullable(DateTime64(3, 'UTC')),
    retry_id           String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(decided_at)
ORDER BY (project, decided_at, build_id)
TTL toDateTime(decided_at) + INTERVAL {results_retention_days} DAY;
