-- One row per repair of an audit's record status: automatic (cipulse compensated a lost
-- status sync) or manual (an operator, through the API). repair_id is deterministic from the
-- producer (audit_id + decision_id for automatic ones), and repaired_at comes from the repair
-- event, not from the clock at write time, so a redelivered repair lands in the same partition
-- with the same key and FINAL counts it once.
CREATE TABLE IF NOT EXISTS {database}.audit_repairs
(
    repair_id    String,
    audit_id     String,
    project      LowCardinality(String),
    mode         LowCardinality(String),
    from_status  LowCardinality(String),
    to_status    LowCardinality(String),
    decision_id  String,
    actor        String,
    reason       String,
    repaired_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(repaired_at)
ORDER BY (project, audit_id, repair_id)
TTL toDateTime(repaired_at) + INTERVAL {results_retention_days} DAY;

-- One row per alert delivered to the audit-alerts topic. alert_id is deterministic
-- (audit_id + kind + episode) and raised_at is the alert's own time, so redelivery of an alert
-- replaces itself and one stuck episode is one row.
CREATE TABLE IF NOT EXISTS {database}.audit_alerts
(
    alert_id     String,
    audit_id     String,
    project      LowCardinality(String),
    kind         LowCardinality(String),
    episode      UInt32,
    age_seconds  Float64,
    reviewers    Array(String),
    raised_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(raised_at)
ORDER BY (project, audit_id, alert_id)
TTL toDateTime(raised_at) + INTERVAL {results_retention_days} DAY;
