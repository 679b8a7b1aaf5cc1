-- Quality gate decisions, one row per decision the gate agent published to gate-decisions (only
-- changes are published). decision_id is the sha256 of (gate, result, failing rules, input
-- revision): a decision republished after a replay has the same id, and FINAL keeps one row.
-- input_revision grows with every input a gate applied, so the newest decision of a gate is the
-- one with the highest input_revision. failing and inputs are the JSON the API returns.
-- Month partitions; decisions are rare (one per change of a gate), kept like build results.
CREATE TABLE IF NOT EXISTS {database}.gate_decisions
(
    decision_id      String,
    gate             String,
    project          LowCardinality(String),
    pipeline         String,
    branch           String,
    result           LowCardinality(String),
    previous_result  LowCardinality(String),
    failing          String,
    failing_rules    Array(String),
    inputs           String,
    input_revision   UInt64,
    decided_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(decided_at)
ORDER BY (gate, decision_id)
TTL toDateTime(decided_at) + INTERVAL {results_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;
