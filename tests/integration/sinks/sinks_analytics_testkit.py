"""Demo data for the dashboard and analytics tests, loaded the way the worker would write it.

Builds come from the demo feed (`streams.demo_feed.simulate_builds`), go through the real state
machine (`apply_event`) and change sets, and land as the sink's rows (`streams.sink_rows`);
deployment reviews of successful `deploy-prod` builds go through `apply_audit_event` to audit
rows. Repairs, alerts, notification and callback deliveries and retry decisions are written as
rows through their writers. Everything happens in the last few hours before the real clock, so
"now"-relative panels (open audits by age) and the last-24h range see it, and no TTL drops it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from clickhouse_connect.driver import Client

from sinks import (
    AuditAlertRow,
    AuditRepairRow,
    AuditSinkWriter,
    BuildContextWriter,
    BuildSinkWriter,
    CallbackDeliveryRow,
    CallbackSubscriptionRow,
    CallbackWriter,
    NotificationDeliveryRow,
    NotificationSinkWriter,
    RetryDecisionRow,
)
from streams.audit_sink_rows import audit_event_row, audit_state_row
from streams.audit_state import AuditAccepted, AuditState, apply_audit_event
from streams.build_state import Accepted, BuildState, apply_event
from streams.change_set import change_set
from streams.demo_feed import SimulatedBuild, simulate_audit, simulate_builds
from streams.sink_rows import context_row, event_row, latest_per_build, result_row

DEMO_BUILDS = 600
DEMO_SPACING_SECONDS = 15.0


def load_demo_data(client: Client, database: str, now: datetime) -> list[SimulatedBuild]:
    """Write demo builds, audits, repairs, alerts, notifications, retry decisions and callback
    deliveries to the migrated `database`; returns the simulated builds."""
    start = now - timedelta(seconds=DEMO_BUILDS * DEMO_SPACING_SECONDS) - timedelta(hours=1)
    builds = simulate_builds(2026, DEMO_BUILDS, start, spacing_seconds=DEMO_SPACING_SECONDS)
    changes = []
    for build in builds:
        state: BuildState | None = None
        for event in build.events:
            outcome = apply_event(state, event)
            assert isinstance(outcome, Accepted), outcome
            state = outcome.state
            changes.append(change_set(outcome, event))
    latest = latest_per_build(changes)
    BuildSinkWriter(client, database).write(
        [event_row(c) for c in changes], [result_row(c, now) for c in latest]
    )
    BuildContextWriter(client, database).write([context_row(c) for c in latest])
    _write_audits(client, database, builds)
    _write_repairs_and_alerts(client, database, now)
    _write_notifications(client, database, now)
    _write_retry_decisions(client, database, builds, now)
    _write_callbacks(client, database, builds, now)
    return builds


def _write_audits(client: Client, database: str, builds: list[SimulatedBuild]) -> None:
    rng = random.Random(11)
    writer = AuditSinkWriter(client, database)
    events, states = [], []
    for build in builds:
        state: AuditState | None = None
        for audit_event in simulate_audit(rng, build):
            outcome = apply_audit_event(state, audit_event)
            assert isinstance(outcome, AuditAccepted), outcome
            state = outcome.state
            events.append(audit_event_row(audit_event, state))
            states.append(audit_state_row(state))
    writer.write(events=events, states=states)


def _write_repairs_and_alerts(client: Client, database: str, now: datetime) -> None:
    repairs = [
        AuditRepairRow(
            repair_id=f"repair-{i}", audit_id=f"review-demo-{i}", project="payments",
            mode="automatic" if i % 3 else "manual", from_status="DECIDED", to_status="REPAIRED",
            decision_id=f"review-demo-{i}-decision", actor="cipulse" if i % 3 else "alice",
            reason="record status never synced", repaired_at=now - timedelta(hours=i * 5),
        )
        for i in range(1, 5)
    ]
    alerts = [
        AuditAlertRow(
            alert_id=f"alert-{i}", audit_id=f"review-demo-{i}", project="payments",
            kind="STUCK" if i % 2 else "INCONSISTENT", episode=1, age_seconds=7200.0 + i,
            reviewers=("alice", "bob"), raised_at=now - timedelta(hours=i),
        )
        for i in range(1, 4)
    ]
    AuditSinkWriter(client, database).write(repairs=repairs, alerts=alerts)


def _write_notifications(client: Client, database: str, now: datetime) -> None:
    def attempt(n: int, number: int, outcome: str, status: int, error: str = "") -> NotificationDeliveryRow:
        return NotificationDeliveryRow(
            notification_id=f"n-{n}", subscription_id="payments-failures" if n % 2 else "web-slack",
            channel="webhook" if n % 2 else "slack", project="payments" if n % 2 else "web",
            subject_kind="build", subject_id=f"b-{n}", transition="FAILED", attempt=number, outcome=outcome,
            http_status=status, error=error, latency_ms=40.0 + n + number,
            attempted_at=now - timedelta(minutes=90 - n * 3 - number), grouped_count=1 + n % 3,
        )

    rows = []
    for n in range(1, 21):
        if n % 5 == 0:  # retried once, then delivered
            rows += [attempt(n, 1, "retry", 503, "503 Service Unavailable"), attempt(n, 2, "delivered", 200)]
        elif n % 7 == 0:  # refused for good
            rows.append(attempt(n, 1, "gave_up", 410, "410 Gone"))
        else:
            rows.append(attempt(n, 1, "delivered", 200))
    rows.append(attempt(1, 0, "deduplicated", 0))
    NotificationSinkWriter(client, database).write(rows)


def _write_retry_decisions(client: Client, database: str, builds: list[SimulatedBuild], now: datetime) -> None:
    verdicts = [(True, "ELIGIBLE"), (False, "OUTSIDE_RETENTION"), (False, "NOT_FINAL"), (False, "CONTEXT_EXPIRED")]
    rows = []
    for i, build in enumerate(builds[:24]):
        eligible, reason = verdicts[i % len(verdicts)]
        started = build.events[0].event_time
        rows.append(RetryDecisionRow(
            decided_at=now - timedelta(minutes=5 * i), project=build.project, pipeline=build.pipeline,
            build_id=build.build_id, action="retry" if i % 2 else "check", eligible=eligible, reason=reason,
            build_started_at=started, age_seconds=(now - started).total_seconds(),
            retention_seconds=28 * 86400.0, deadline=started + timedelta(days=28) - timedelta(hours=1),
            retry_id=f"retry-{i}" if eligible and i % 2 else "",
        ))
    BuildContextWriter(client, database).write_decisions(rows)


def _write_callbacks(client: Client, database: str, builds: list[SimulatedBuild], now: datetime) -> None:
    writer = CallbackWriter(client, database)
    created = now - timedelta(hours=3)
    writer.write_subscriptions([
        CallbackSubscriptionRow(
            callback_id=callback_id, project="payments", pipeline="", url=f"https://hooks.example/{callback_id}",
            events=("build_finished",), secret="", status=status, status_reason=reason,
            status_changed_at=created, created_at=created, version=1,
        )
        for callback_id, status, reason in (("cb-ok", "active", ""), ("cb-dead", "disabled", "failing for 1h"))
    ])
    attempts = []
    for i, build in enumerate(b for b in builds if b.project == "payments"):
        if i >= 30:
            break
        at = now - timedelta(minutes=120 - i * 3)
        common = dict(project="payments", pipeline=build.pipeline, build_id=build.build_id, event="build_finished",
                      stage_id="", task_id="", revision=len(build.events))
        attempts.append(CallbackDeliveryRow(delivery_id=f"d-ok-{i}", callback_id="cb-ok", attempt=1,
                                            outcome="delivered", http_status=200, error="", latency_ms=20.0 + i,
                                            attempted_at=at, **common))  # type: ignore[arg-type]
        if i < 10:
            attempts.append(CallbackDeliveryRow(delivery_id=f"d-dead-{i}", callback_id="cb-dead", attempt=1,
                                                outcome="retry" if i < 8 else "gave_up", http_status=500,
                                                error="500 Internal Server Error", latency_ms=100.0,
                                                attempted_at=at, **common))  # type: ignore[arg-type]
        else:
            attempts.append(CallbackDeliveryRow(delivery_id=f"d-dead-{i}", callback_id="cb-dead", attempt=0,
                                                outcome="skipped", http_status=0, error="", latency_ms=0.0,
                                                attempted_at=at, **common))  # type: ignore[arg-type]
    writer.write_deliveries(attempts)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
