"""Map accepted audit events, audit states and alerts to ClickHouse rows (pure)."""

from __future__ import annotations

from schemas import AuditAlert, AuditEvent, AuditEventOrigin
from sinks.audit_rows import AuditAlertRow, AuditEventRow, AuditRepairRow, AuditStateRow
from streams.audit_state import AuditState
from streams.audit_transitions import is_final


def audit_event_row(event: AuditEvent, state: AuditState) -> AuditEventRow:
    """One row per accepted event, with the status it led to."""
    return AuditEventRow(
        audit_id=event.audit_id,
        seq=event.seq,
        event_id=event.event_id,
        event_time=event.event_time,
        project=event.project,
        pipeline=event.pipeline or "",
        subject_kind=event.subject_kind.value,
        subject_id=event.subject_id,
        kind=event.kind.value,
        status_after=state.status.value,
        decision=event.decision.value if event.decision else "",
        decision_id=event.decision_id or "",
        actor=event.actor or "",
        reason=event.reason or "",
    )


def audit_state_row(state: AuditState) -> AuditStateRow:
    """The audit's latest summary, versioned by `revision`; partitioned by its first sighting."""
    return AuditStateRow(
        audit_id=state.audit_id,
        project=state.project,
        pipeline=state.pipeline or "",
        subject_kind=state.subject_kind.value,
        subject_id=state.subject_id,
        status=state.status.value,
        decision=state.decision.value if state.decision else "",
        decision_id=state.decision_id or "",
        reviewers=tuple(state.reviewers),
        requested_at=state.first_seen_at,
        review_started_at=state.review_started_at,
        decided_at=state.decided_at,
        synced_at=state.synced_at,
        repaired_at=state.repaired_at,
        is_open=not is_final(state.status),
        revision=state.revision,
        updated_at=state.updated_at,
    )


def audit_repair_row(event: AuditEvent, previous: AuditState | None, state: AuditState) -> AuditRepairRow | None:
    """A repair row for events cipulse made (reconciler or manual repair API), else None."""
    if event.origin is AuditEventOrigin.SOURCE:
        return None
    return AuditRepairRow(
        repair_id=event.event_id,
        audit_id=event.audit_id,
        project=event.project,
        mode="automatic" if event.origin is AuditEventOrigin.RECONCILER else "manual",
        from_status=previous.status.value if previous is not None else "",
        to_status=state.status.value,
        decision_id=event.decision_id or "",
        actor=event.actor or "",
        reason=event.reason or "",
        repaired_at=event.event_time,
    )


def audit_alert_row(alert: AuditAlert) -> AuditAlertRow:
    return AuditAlertRow(
        alert_id=alert.alert_id,
        audit_id=alert.audit_id,
        project=alert.project,
        kind=alert.kind.value,
        episode=alert.episode,
        age_seconds=max(0.0, alert.age_seconds),
        reviewers=tuple(alert.reviewers),
        raised_at=alert.raised_at,
    )
