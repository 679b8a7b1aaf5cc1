"""The named analytics queries (see `sinks.analytics` for the dialect they are written in).

Grafana panels (`dashboards/grafana/generate.py`), `cipulse analytics run <name>` and
`dashboards/ANALYTICS.md` all take their SQL from `CATALOG`: change a query here, then run
`python dashboards/grafana/generate.py` to rewrite the dashboards and the document (a test fails
while they disagree).

Delivery (DORA-style) metrics follow `DELIVERY_DEFINITIONS`.
"""

from __future__ import annotations

from sinks.analytics import AnalyticsQuery, QueryParameter

DELIVERY_DEFINITIONS = """\
Delivery (DORA-style) definitions, over final builds of *production deploy pipelines*: pipelines
whose name matches the regular expression `deploy_pipelines` (default `(^deploy|-prod$)`: the
name starts with "deploy" or ends in "-prod", e.g. the demo's `deploy-prod`).
- deployment frequency: SUCCEEDED deploy builds per UTC day (by `finished_at`);
- change failure rate: FAILED / (SUCCEEDED + FAILED) deploy builds; a CANCELED deploy neither
  delivered nor failed a change and is left out (unlike the pipeline success rate, which counts
  it as not-success);
- time to restore: for each failure episode of one pipeline (consecutive FAILED deploys), the
  time from its first failure's `finished_at` to the next SUCCEEDED deploy's `finished_at`.
  Episodes are cut at the start of the range (a failure before it is not seen); an episode with
  no success yet is "still failing" (restored_at NULL).
"""

PROJECT = QueryParameter("project", "only this project ('' = all projects)", "")
DEPLOY_PIPELINES = QueryParameter(
    "deploy_pipelines",
    "regular expression (re2) matching production deploy pipeline names",
    "(^deploy|-prod$)",
)

_IN_PROJECT = "(${project:sqlstring} = '' OR project = ${project:sqlstring})"
_FINISHED = f"is_final = 1 AND $__timeFilter_ms(finished_at) AND {_IN_PROJECT}"
_DEPLOYS = (
    "is_final = 1 AND finished_at IS NOT NULL"
    " AND match(pipeline, ${deploy_pipelines:sqlstring})"
    f" AND {_IN_PROJECT}"
)

_SUCCESS_RATE = (
    "round(countIf(status = 'SUCCEEDED')"
    " / nullIf(countIf(status IN ('SUCCEEDED', 'FAILED', 'CANCELED')), 0), 4)"
)

_RESTORE_EPISODES = f"""SELECT project, pipeline,
    min(done_at) AS failed_at,
    restored_at,
    count() AS failed_deploys,
    round(dateDiff('millisecond', min(done_at), restored_at) / 60000, 1) AS restore_minutes
FROM (
    SELECT project, pipeline, status, done_at,
        minIf(toNullable(done_at), status = 'SUCCEEDED') OVER (
            PARTITION BY project, pipeline ORDER BY done_at
            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS restored_at
    FROM (
        SELECT project, pipeline, status, assumeNotNull(finished_at) AS done_at
        FROM build_results FINAL
        WHERE {_DEPLOYS} AND status IN ('SUCCEEDED', 'FAILED')
            AND finished_at >= $__fromTime_ms
    )
)
WHERE status = 'FAILED' AND done_at <= $__toTime_ms
GROUP BY project, pipeline, restored_at"""

_NOTIFY_PER_MESSAGE = f"""SELECT channel, subscription_id, notification_id,
        countIf(outcome = 'delivered') > 0 AS delivered,
        minIf(attempt, outcome = 'delivered') AS delivered_attempt,
        argMinIf(latency_ms, attempt, outcome = 'delivered') AS delivered_latency_ms,
        argMinIf(grouped_count, attempt, outcome = 'delivered') AS delivered_grouped_count,
        countIf(outcome = 'gave_up') > 0 AS gave_up,
        countIf(outcome = 'deduplicated') > 0 AS deduplicated
    FROM notification_deliveries FINAL
    WHERE $__timeFilter_ms(attempted_at) AND {_IN_PROJECT}
    GROUP BY channel, subscription_id, notification_id"""


def _query(name: str, title: str, description: str, columns: str, sql: str,
           *parameters: QueryParameter) -> AnalyticsQuery:
    return AnalyticsQuery(name, title, description, tuple(columns.split()), sql.strip(), parameters)


PIPELINE_QUERIES: tuple[AnalyticsQuery, ...] = (
    _query(
        "success_rate", "Success rate",
        "Final builds in the range: succeeded / (succeeded + failed + canceled). Canceled counts as not-success.",
        "finished succeeded success_rate",
        f"""SELECT count() AS finished, countIf(status = 'SUCCEEDED') AS succeeded, {_SUCCESS_RATE} AS success_rate
FROM build_results FINAL
WHERE {_FINISHED}""",
        PROJECT,
    ),
    _query(
        "pipeline_stats", "Pipelines",
        "Per pipeline: finished, succeeded, failed, canceled builds, success rate, exact duration p50/p95 and mean queue time (seconds).",
        "project pipeline finished succeeded failed canceled success_rate duration_p50_s duration_p95_s mean_queue_s",
        f"""SELECT project, pipeline,
    count() AS finished,
    countIf(status = 'SUCCEEDED') AS succeeded,
    countIf(status = 'FAILED') AS failed,
    countIf(status = 'CANCELED') AS canceled,
    {_SUCCESS_RATE} AS success_rate,
    round(quantilesExactInclusive(0.5, 0.95)(duration_ms)[1] / 1000, 1) AS duration_p50_s,
    round(quantilesExactInclusive(0.5, 0.95)(duration_ms)[2] / 1000, 1) AS duration_p95_s,
    round(avg(queue_ms) / 1000, 1) AS mean_queue_s
FROM build_results FINAL
WHERE {_FINISHED}
GROUP BY project, pipeline
ORDER BY project, pipeline""",
        PROJECT,
    ),
    _query(
        "build_outcomes_over_time", "Build outcomes",
        "Final builds per time bucket (by finished_at) and outcome.",
        "time succeeded failed canceled",
        f"""SELECT $__timeInterval(finished_at) AS time,
    countIf(status = 'SUCCEEDED') AS succeeded,
    countIf(status = 'FAILED') AS failed,
    countIf(status = 'CANCELED') AS canceled
FROM build_results FINAL
WHERE {_FINISHED}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "duration_over_time", "Build duration p50 / p95",
        "Exact duration percentiles (seconds) of the builds finished in each time bucket.",
        "time duration_p50_s duration_p95_s",
        f"""SELECT $__timeInterval(finished_at) AS time,
    round(quantilesExactInclusive(0.5, 0.95)(duration_ms)[1] / 1000, 1) AS duration_p50_s,
    round(quantilesExactInclusive(0.5, 0.95)(duration_ms)[2] / 1000, 1) AS duration_p95_s
FROM build_results FINAL
WHERE {_FINISHED} AND duration_ms IS NOT NULL
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "queue_time_over_time", "Queue time p50 / p95",
        "Time from queued to started (seconds) of the builds that started in each time bucket, running ones included.",
        "time queue_p50_s queue_p95_s",
        f"""SELECT $__timeInterval(started_at) AS time,
    round(quantilesExactInclusive(0.5, 0.95)(queue_ms)[1] / 1000, 1) AS queue_p50_s,
    round(quantilesExactInclusive(0.5, 0.95)(queue_ms)[2] / 1000, 1) AS queue_p95_s
FROM build_results FINAL
WHERE $__timeFilter_ms(started_at) AND queue_ms IS NOT NULL AND {_IN_PROJECT}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "top_failing_pipelines", "Top failing pipelines",
        "The 10 pipelines with the most failed builds in the range (canceled ones shown beside them).",
        "project pipeline finished failed canceled not_success_rate last_failure_at",
        f"""SELECT project, pipeline,
    count() AS finished,
    countIf(status = 'FAILED') AS failed,
    countIf(status = 'CANCELED') AS canceled,
    round(1 - {_SUCCESS_RATE}, 4) AS not_success_rate,
    maxIf(finished_at, status = 'FAILED') AS last_failure_at
FROM build_results FINAL
WHERE {_FINISHED}
GROUP BY project, pipeline
HAVING failed > 0
ORDER BY failed DESC, project, pipeline
LIMIT 10""",
        PROJECT,
    ),
    _query(
        "top_failure_reasons", "Top failure reasons",
        "The 15 most frequent error reasons (stage/task: message) and termination reasons of failed builds.",
        "error_reason termination_reason failures pipelines last_seen_at",
        f"""SELECT error_reason, termination_reason,
    count() AS failures,
    uniqExact(project, pipeline) AS pipelines,
    max(finished_at) AS last_seen_at
FROM build_results FINAL
WHERE {_FINISHED} AND status = 'FAILED'
GROUP BY error_reason, termination_reason
ORDER BY failures DESC, error_reason
LIMIT 15""",
        PROJECT,
    ),
)

_AGE_S = "dateDiff('millisecond', requested_at, now64(3)) / 1000"

AUDIT_QUERIES: tuple[AnalyticsQuery, ...] = (
    _query(
        "open_audits_by_age", "Open audits by age",
        "Open audits now, per project, by age since requested (<1h, 1-4h, 4-24h, 1-3d, >3d). Not limited by the time range.",
        "project open_audits age_lt_1h age_1h_4h age_4h_24h age_1d_3d age_gt_3d",
        f"""SELECT project, count() AS open_audits,
    countIf(age_s < 3600) AS age_lt_1h,
    countIf(age_s >= 3600 AND age_s < 14400) AS age_1h_4h,
    countIf(age_s >= 14400 AND age_s < 86400) AS age_4h_24h,
    countIf(age_s >= 86400 AND age_s < 259200) AS age_1d_3d,
    countIf(age_s >= 259200) AS age_gt_3d
FROM (
    SELECT project, greatest(0, {_AGE_S}) AS age_s
    FROM audit_state FINAL
    WHERE is_open = 1 AND {_IN_PROJECT}
)
GROUP BY project
ORDER BY project""",
        PROJECT,
    ),
    _query(
        "oldest_open_audits", "Oldest open audits",
        "The 50 oldest open audits now, with their reviewers and age in hours. Not limited by the time range.",
        "audit_id project pipeline status reviewers requested_at age_hours",
        f"""SELECT audit_id, project, pipeline, status, arrayStringConcat(reviewers, ', ') AS reviewers,
    requested_at, round(greatest(0, {_AGE_S}) / 3600, 2) AS age_hours
FROM audit_state FINAL
WHERE is_open = 1 AND {_IN_PROJECT}
ORDER BY requested_at, audit_id
LIMIT 50""",
        PROJECT,
    ),
    _query(
        "time_in_review", "Time in review",
        "Audits decided in the range, per project: count, mean and exact p50/p95 seconds from review start (or request) to decision.",
        "project decided mean_review_s review_p50_s review_p95_s",
        f"""SELECT project, count() AS decided,
    round(avg(review_ms) / 1000, 1) AS mean_review_s,
    round(quantilesExactInclusive(0.5, 0.95)(review_ms)[1] / 1000, 1) AS review_p50_s,
    round(quantilesExactInclusive(0.5, 0.95)(review_ms)[2] / 1000, 1) AS review_p95_s
FROM (
    SELECT project, greatest(toInt64(0), dateDiff('millisecond',
        coalesce(review_started_at, requested_at), assumeNotNull(decided_at))) AS review_ms
    FROM audit_state FINAL
    WHERE decided_at IS NOT NULL AND $__timeFilter_ms(decided_at) AND {_IN_PROJECT}
)
GROUP BY project
ORDER BY project""",
        PROJECT,
    ),
    _query(
        "audit_repairs_per_day", "Repairs per day",
        "Record-status repairs per UTC day: automatic (cipulse compensated a lost sync) and manual (an operator).",
        "time automatic manual",
        f"""SELECT toStartOfDay(repaired_at, 'UTC') AS time,
    countIf(mode = 'automatic') AS automatic,
    countIf(mode = 'manual') AS manual
FROM audit_repairs FINAL
WHERE $__timeFilter_ms(repaired_at) AND {_IN_PROJECT}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "audit_alerts", "Audit alerts",
        "Alerts raised in the range per project and kind (STUCK: open past the threshold; INCONSISTENT: decided without a sync).",
        "project kind alerts audits last_raised_at",
        f"""SELECT project, kind, count() AS alerts, uniqExact(audit_id) AS audits, max(raised_at) AS last_raised_at
FROM audit_alerts FINAL
WHERE $__timeFilter_ms(raised_at) AND {_IN_PROJECT}
GROUP BY project, kind
ORDER BY project, kind""",
        PROJECT,
    ),
)

NOTIFICATION_QUERIES: tuple[AnalyticsQuery, ...] = (
    _query(
        "notification_health", "Delivery health per subscription",
        "Per subscription: messages sent, deduplicated, retries the sent ones needed, given up (dead-lettered), "
        "notifications carried, exact delivery latency p50/p95 (ms). Counts distinct messages, never rows.",
        "channel subscription_id sent deduplicated retries gave_up grouped_notifications latency_p50_ms latency_p95_ms",
        f"""SELECT channel, subscription_id,
    countIf(delivered) AS sent,
    countIf(deduplicated) AS deduplicated,
    sumIf(toInt64(delivered_attempt) - 1, delivered) AS retries,
    countIf(gave_up) AS gave_up,
    sumIf(toUInt64(delivered_grouped_count), delivered) AS grouped_notifications,
    round(quantilesExactInclusiveIf(0.5, 0.95)(delivered_latency_ms, delivered)[1], 1) AS latency_p50_ms,
    round(quantilesExactInclusiveIf(0.5, 0.95)(delivered_latency_ms, delivered)[2], 1) AS latency_p95_ms
FROM ({_NOTIFY_PER_MESSAGE})
GROUP BY channel, subscription_id
ORDER BY channel, subscription_id""",
        PROJECT,
    ),
    _query(
        "notifications_over_time", "Notification messages by outcome",
        "Distinct messages per time bucket with an attempt of each outcome (a message retried twice in a bucket counts once).",
        "time delivered deduplicated retry gave_up",
        f"""SELECT $__timeInterval(attempted_at) AS time,
    uniqExactIf(notification_id, outcome = 'delivered') AS delivered,
    uniqExactIf(notification_id, outcome = 'deduplicated') AS deduplicated,
    uniqExactIf(notification_id, outcome = 'retry') AS retry,
    uniqExactIf(notification_id, outcome = 'gave_up') AS gave_up
FROM notification_deliveries FINAL
WHERE $__timeFilter_ms(attempted_at) AND {_IN_PROJECT}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "notification_failures", "Failed notification attempts",
        "The 50 newest failed attempts (retry or gave_up) with HTTP status and error.",
        "attempted_at subscription_id channel project transition attempt outcome http_status error",
        f"""SELECT attempted_at, subscription_id, channel, project, transition, attempt, outcome, http_status, error
FROM notification_deliveries FINAL
WHERE $__timeFilter_ms(attempted_at) AND outcome IN ('retry', 'gave_up') AND {_IN_PROJECT}
ORDER BY attempted_at DESC, notification_id, attempt
LIMIT 50""",
        PROJECT,
    ),
)

RETRY_AND_CALLBACK_QUERIES: tuple[AnalyticsQuery, ...] = (
    _query(
        "retry_rejections", "Retry rejections by reason",
        "Refused retry checks and requests in the range, per action and reason (decisions, distinct builds).",
        "action reason decisions builds",
        f"""SELECT action, reason, count() AS decisions, uniqExact(project, pipeline, build_id) AS builds
FROM retry_decisions
WHERE NOT eligible AND $__timeFilter_ms(decided_at) AND {_IN_PROJECT}
GROUP BY action, reason
ORDER BY decisions DESC, action, reason""",
        PROJECT,
    ),
    _query(
        "retry_decisions_over_time", "Retry decisions",
        "Retry decisions per time bucket: allowed and refused (retry_decisions is a plain MergeTree: every decision counts).",
        "time allowed refused",
        f"""SELECT $__timeInterval(decided_at) AS time, countIf(eligible) AS allowed, countIf(NOT eligible) AS refused
FROM retry_decisions
WHERE $__timeFilter_ms(decided_at) AND {_IN_PROJECT}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
    _query(
        "callback_health", "REST callback delivery health",
        "Per callback: deliveries (distinct Idempotency-Keys), delivered, retried and given-up attempts, skipped events "
        "(callback disabled), exact latency p95 (ms), last success and last error, and its current status.",
        "callback_id project status deliveries delivered retries gave_up skipped latency_p95_ms last_success_at last_error",
        f"""SELECT d.callback_id AS callback_id, d.project AS project, ifNull(s.status, 'unknown') AS status,
    d.deliveries AS deliveries, d.delivered AS delivered, d.retries AS retries, d.gave_up AS gave_up,
    d.skipped AS skipped, d.latency_p95_ms AS latency_p95_ms, d.last_success_at AS last_success_at,
    d.last_error AS last_error
FROM (
    SELECT callback_id, project,
        uniqExact(delivery_id) AS deliveries,
        countIf(outcome = 'delivered') AS delivered,
        countIf(outcome = 'retry') AS retries,
        countIf(outcome = 'gave_up') AS gave_up,
        countIf(outcome = 'skipped') AS skipped,
        round(quantileExactInclusiveIf(0.95)(latency_ms, outcome != 'skipped'), 1) AS latency_p95_ms,
        maxIf(toNullable(attempted_at), outcome = 'delivered') AS last_success_at,
        argMaxIf(error, attempted_at, outcome IN ('retry', 'gave_up')) AS last_error
    FROM callback_deliveries FINAL
    WHERE $__timeFilter_ms(attempted_at) AND {_IN_PROJECT}
    GROUP BY callback_id, project
) AS d
LEFT JOIN (SELECT callback_id, toNullable(toString(status)) AS status FROM callback_subscriptions FINAL) AS s
    ON d.callback_id = s.callback_id
ORDER BY d.gave_up DESC, d.retries DESC, d.callback_id""",
        PROJECT,
    ),
    _query(
        "callback_attempts_over_time", "REST callback attempts",
        "Callback attempts per time bucket and outcome (skipped: the callback was disabled).",
        "time delivered retry gave_up skipped",
        f"""SELECT $__timeInterval(attempted_at) AS time,
    countIf(outcome = 'delivered') AS delivered,
    countIf(outcome = 'retry') AS retry,
    countIf(outcome = 'gave_up') AS gave_up,
    countIf(outcome = 'skipped') AS skipped
FROM callback_deliveries FINAL
WHERE $__timeFilter_ms(attempted_at) AND {_IN_PROJECT}
GROUP BY time
ORDER BY time""",
        PROJECT,
    ),
)

DELIVERY_QUERIES: tuple[AnalyticsQuery, ...] = (
    _query(
        "dora_overview", "Delivery overview",
        "Production deploys in the range: succeeded, failed, deploys per day and change failure rate "
        "(failed / (succeeded + failed); canceled deploys left out).",
        "deployments failed_deployments deployments_per_day change_failure_rate",
        f"""SELECT countIf(status = 'SUCCEEDED') AS deployments,
    countIf(status = 'FAILED') AS failed_deployments,
    round(deployments / greatest(dateDiff('second', $__fromTime_ms, $__toTime_ms) / 86400, 1 / 24), 2) AS deployments_per_day,
    round(failed_deployments / nullIf(deployments + failed_deployments, 0), 4) AS change_failure_rate
FROM build_results FINAL
WHERE {_DEPLOYS} AND $__timeFilter_ms(finished_at)""",
        PROJECT, DEPLOY_PIPELINES,
    ),
    _query(
        "deployment_frequency", "Deployments per day",
        "Succeeded and failed production deploys per UTC day.",
        "time deployments failed_deployments",
        f"""SELECT toStartOfDay(assumeNotNull(finished_at), 'UTC') AS time,
    countIf(status = 'SUCCEEDED') AS deployments,
    countIf(status = 'FAILED') AS failed_deployments
FROM build_results FINAL
WHERE {_DEPLOYS} AND $__timeFilter_ms(finished_at)
GROUP BY time
ORDER BY time""",
        PROJECT, DEPLOY_PIPELINES,
    ),
    _query(
        "change_failure_rate", "Change failure rate per pipeline",
        "Per production deploy pipeline: succeeded, failed, change failure rate, deploys per day.",
        "project pipeline deployments failed_deployments change_failure_rate deployments_per_day",
        f"""SELECT project, pipeline,
    countIf(status = 'SUCCEEDED') AS deployments,
    countIf(status = 'FAILED') AS failed_deployments,
    round(failed_deployments / nullIf(deployments + failed_deployments, 0), 4) AS change_failure_rate,
    round(deployments / greatest(dateDiff('second', $__fromTime_ms, $__toTime_ms) / 86400, 1 / 24), 2) AS deployments_per_day
FROM build_results FINAL
WHERE {_DEPLOYS} AND $__timeFilter_ms(finished_at)
GROUP BY project, pipeline
ORDER BY project, pipeline""",
        PROJECT, DEPLOY_PIPELINES,
    ),
    _query(
        "time_to_restore", "Time to restore per pipeline",
        "Per production deploy pipeline: failure episodes restored in the range, exact p50 and max minutes from the "
        "first failed deploy to the next succeeded one, and whether it is still failing.",
        "project pipeline restores restore_p50_minutes restore_max_minutes still_failing",
        f"""SELECT project, pipeline,
    countIf(restored_at IS NOT NULL) AS restores,
    round(quantileExactInclusive(0.5)(restore_minutes), 1) AS restore_p50_minutes,
    max(restore_minutes) AS restore_max_minutes,
    countIf(restored_at IS NULL) > 0 AS still_failing
FROM ({_RESTORE_EPISODES})
GROUP BY project, pipeline
ORDER BY project, pipeline""",
        PROJECT, DEPLOY_PIPELINES,
    ),
    _query(
        "restore_episodes", "Failure episodes",
        "Each failure episode of a production deploy pipeline: first failure, restore (NULL: still failing), failed deploys in it, minutes.",
        "project pipeline failed_at restored_at failed_deploys restore_minutes",
        f"""SELECT project, pipeline, failed_at, restored_at, failed_deploys, restore_minutes
FROM ({_RESTORE_EPISODES})
ORDER BY failed_at DESC, project, pipeline
LIMIT 100""",
        PROJECT, DEPLOY_PIPELINES,
    ),
)

CATALOG: tuple[AnalyticsQuery, ...] = (
    PIPELINE_QUERIES + AUDIT_QUERIES + NOTIFICATION_QUERIES + RETRY_AND_CALLBACK_QUERIES + DELIVERY_QUERIES
)
"""Every named query, in the order `cipulse analytics list` and the docs show them."""
