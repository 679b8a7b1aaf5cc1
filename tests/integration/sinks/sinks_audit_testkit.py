"""Row builders and engine helpers shared by the audit sink tests (this module has no tests).

Times are relative to `sinks_testkit.T0`, which is recent on purpose: rows older than a table's
TTL are dropped by a background merge, so fixed past dates would make tests flaky.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from clickhouse_connect.driver import Client

from sinks.audit_rows import AuditAlertRow, AuditEventRow, AuditRepairRow, AuditStateRow
from sinks_testkit import T0

AUDIT_TABLES = ("audit_events", "audit_state", "audit_repairs", "audit_alerts")


def audit_event(audit_id: str = "a-1", seq: int = 1, **changes: Any) -> AuditEventRow:
    """A REQUESTED event unless `changes` say otherwise, `seq` seconds after T0."""
    row = AuditEventRow(
        audit_id=audit_id,
        seq=seq,
        event_id=f"{audit_id}-e{seq}",
        event_time=T0 + timedelta(seconds=seq),
        project="payments",
        pipeline="deploy",
        subject_kind="BUILD",
        subject_id="b-1",
        kind="REQUESTED",
        status_after="REQUESTED",
        decision="",
        decision_id="",
        actor="alice",
        reason="",
    )
    return replace(row, **changes)


def audit_state(audit_id: str = "a-1", revision: int = 1, **changes: Any) -> AuditStateRow:
    """An audit requested at T0 and in review since T0 + 1 min, unless `changes` say otherwise."""
    row = AuditStateRow(
        audit_id=audit_id,
        project="payments",
        pipeline="deploy",
        subject_kind="BUILD",
        subject_id="b-1",
        status="IN_REVIEW",
        decision="",
        decision_id="",
        reviewers=("carol", "dave"),
        requested_at=T0,
        review_started_at=T0 + timedelta(minutes=1),
        decided_at=None,
        synced_at=None,
        repaired_at=None,
        is_open=True,
        revision=revision,
        updated_at=T0 + timedelta(minutes=1),
    )
    return replace(row, **changes)


def decided_state(
    audit_id: str, decided_at: Any, review_seconds: float, **changes: Any
) -> AuditStateRow:
    """A closed, approved and synced audit whose review took `review_seconds`."""
    started = decided_at - timedelta(seconds=review_seconds)
    values: dict[str, Any] = {
        "status": "SYNCED",
        "decision": "APPROVED",
        "decision_id": f"{audit_id}-d",
        "requested_at": started - timedelta(minutes=5),
        "review_started_at": started,
        "decided_at": decided_at,
        "synced_at": decided_at,
        "is_open": False,
        "revision": 4,
        "updated_at": decided_at,
    }
    values.update(changes)
    return audit_state(audit_id, **values)


def audit_repair(audit_id: str = "a-1", **changes: Any) -> AuditRepairRow:
    """The automatic repair of the seed: decided, status sync lost, cipulse synced it."""
    row = AuditRepairRow(
        repair_id=f"{audit_id}:{audit_id}-d",
        audit_id=audit_id,
        project="payments",
        mode="automatic",
        from_status="DECIDED",
        to_status="SYNCED",
        decision_id=f"{audit_id}-d",
        actor="cipulse",
        reason="no record-status sync within the grace period",
        repaired_at=T0 + timedelta(minutes=30),
    )
    return replace(row, **changes)


def audit_alert(audit_id: str = "a-1", episode: int = 1, **changes: Any) -> AuditAlertRow:
    kind = changes.pop("kind", "STUCK")
    row = AuditAlertRow(
        alert_id=f"{audit_id}:{kind}:{episode}",
        audit_id=audit_id,
        project="payments",
        kind=kind,
        episode=episode,
        age_seconds=3600.5,
        reviewers=("carol", "dave"),
        raised_at=T0 + timedelta(hours=1),
    )
    return replace(row, **changes)


def stop_audit_merges(client: Client, database: str) -> None:
    """Keep every insert in its own part, so FINAL is what deduplicates, not a merge."""
    for table in AUDIT_TABLES:
        client.command(f"SYSTEM STOP MERGES {database}.{table}")
