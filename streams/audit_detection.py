"""What the audit timer decides for each open audit: stuck alerts and record-status repairs.

Pure functions over `AuditState`; the timer supplies `now` and publishes what they return.
- `next_deadline` says when an audit next needs a look, so the timer keeps a due-time index
  and reports within threshold + its own tick instead of scanning every audit.
- `detect` returns the actions due at `now`. Each is reported once: the caller publishes the
  actions, then stores `mark_reported(fresh_state, actions, now)` in the table, so the memory
  of what was reported lives in the audit's state and survives a worker restart.
- A stuck audit gets one `StuckAlert` per episode; re-opening the audit starts a new episode
  and re-arms it. A decided audit whose record status never synced gets one `Compensate`
  (with the compensating event) and one `InconsistencyAlert`; the compensation is re-sent,
  with the same event id, every `compensation_retry` until the audit consumes it, because a
  lost compensation would recreate the very bug it repairs, while a duplicate is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, field_validator

from schemas import AuditDecision, AuditEvent, AuditEventKind, AuditSubjectKind
from schemas.enums import AuditEventOrigin
from streams.audit_state import AuditState
from streams.audit_transitions import OPEN_STATUSES, AuditStatus
from streams.exceptions import StreamsError

RECONCILER_ACTOR = "cipulse-reconciler"
"""`actor` of the compensating events cipulse publishes."""


class AuditPolicy(BaseModel):
    """Thresholds of the audit detection; built from settings at the entry point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stuck_after: timedelta = timedelta(hours=24)
    """How long an audit may stay REQUESTED / IN_REVIEW before it is reported stuck."""
    stuck_after_by_project: Mapping[str, timedelta] = {}
    """Per-project override of `stuck_after`."""
    sync_grace: timedelta = timedelta(minutes=5)
    """How long after a decision the record-status sync may take before cipulse repairs it."""
    compensation_retry: timedelta = timedelta(minutes=1)
    """How often a compensation not yet seen applied is re-sent."""

    @field_validator("stuck_after", "sync_grace", "compensation_retry")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value}")
        return value

    @field_validator("stuck_after_by_project")
    @classmethod
    def _valid_overrides(cls, value: Mapping[str, timedelta]) -> Mapping[str, timedelta]:
        for project, threshold in value.items():
            if not project.strip():
                raise ValueError("project names of threshold overrides must be non-empty")
            if threshold <= timedelta(0):
                raise ValueError(f"threshold of project {project!r} must be positive, got {threshold}")
        return dict(value)

    def stuck_threshold(self, project: str) -> timedelta:
        return self.stuck_after_by_project.get(project, self.stuck_after)


@dataclass(frozen=True)
class StuckAlert:
    """An audit nobody decided within its project's threshold; one per episode."""

    alert_id: str
    audit_id: str
    project: str
    pipeline: str | None
    subject_kind: AuditSubjectKind
    subject_id: str
    status: AuditStatus
    episode: int
    opened_at: datetime
    age: timedelta
    threshold: timedelta
    reviewers: tuple[str, ...]


@dataclass(frozen=True)
class Compensate:
    """Publish `event` on the audit topic: it syncs the record to the decision, as REPAIRED."""

    audit_id: str
    decision_id: str
    reason: str
    event: AuditEvent


@dataclass(frozen=True)
class InconsistencyAlert:
    """A decision whose record-status sync did not arrive within the grace period."""

    alert_id: str
    audit_id: str
    project: str
    pipeline: str | None
    subject_kind: AuditSubjectKind
    subject_id: str
    decision_id: str
    decision: AuditDecision | None
    decided_by: str | None
    decided_at: datetime
    age: timedelta
    grace: timedelta
    record_decision_id: str | None
    """What the record system reported instead, if anything (None: it reported nothing)."""
    reason: str


AuditAction = StuckAlert | Compensate | InconsistencyAlert


def stuck_alert_id(audit_id: str, episode: int) -> str:
    """Deterministic, so a re-emission after a crash is a recognisable duplicate downstream."""
    return f"{audit_id}/stuck/{episode}"


def compensation_event_id(audit_id: str, decision_id: str) -> str:
    """Deterministic, so a re-sent compensation is the same event, not a second repair."""
    return f"{audit_id}/repair/{decision_id}"


def inconsistency_alert_id(audit_id: str, decision_id: str) -> str:
    return f"{audit_id}/inconsistent/{decision_id}"


def next_deadline(state: AuditState, policy: AuditPolicy) -> datetime | None:
    """When `detect` next returns something for this audit; None while it needs no look.

    Re-compute after every change of the state (applied event or `mark_reported`).
    """
    if state.status in OPEN_STATUSES:
        if state.stuck_alerted_episode == state.episode:
            return None
        return state.opened_at + policy.stuck_threshold(state.project)
    if state.status is AuditStatus.DECIDED and state.decided_at is not None:
        if state.inconsistency_alerted_decision_id != state.decision_id:
            return state.decided_at + policy.sync_grace
        return (state.compensation_sent_at or state.decided_at) + policy.compensation_retry
    return None


def detect(state: AuditState, now: datetime, policy: AuditPolicy) -> list[AuditAction]:
    """The actions due for this audit at `now`; empty exactly when `now` < `next_deadline`."""
    deadline = next_deadline(state, policy)
    if deadline is None or now < deadline:
        return []
    if state.status in OPEN_STATUSES:
        return [
            StuckAlert(
                alert_id=stuck_alert_id(state.audit_id, state.episode),
                audit_id=state.audit_id,
                project=state.project,
                pipeline=state.pipeline,
                subject_kind=state.subject_kind,
                subject_id=state.subject_id,
                status=state.status,
                episode=state.episode,
                opened_at=state.opened_at,
                age=now - state.opened_at,
                threshold=policy.stuck_threshold(state.project),
                reviewers=state.reviewers,
            )
        ]
    if state.decision_id is None or state.decided_at is None:  # a DECIDED audit has both
        return []
    event = compensation_event(state, now)
    reason = event.reason or ""
    compensate = Compensate(state.audit_id, state.decision_id, reason, event)
    if state.inconsistency_alerted_decision_id == state.decision_id:
        return [compensate]
    alert = InconsistencyAlert(
        alert_id=inconsistency_alert_id(state.audit_id, state.decision_id),
        audit_id=state.audit_id,
        project=state.project,
        pipeline=state.pipeline,
        subject_kind=state.subject_kind,
        subject_id=state.subject_id,
        decision_id=state.decision_id,
        decision=state.decision,
        decided_by=state.decided_by,
        decided_at=state.decided_at,
        age=now - state.decided_at,
        grace=policy.sync_grace,
        record_decision_id=state.record_decision_id,
        reason=reason,
    )
    return [compensate, alert]


def compensation_event(state: AuditState, now: datetime) -> AuditEvent:
    """The REPAIRED event that syncs a decided audit's record to its decision.

    Its id and reason depend on the audit and the decision only, so every re-emission is the
    same repair; applying it a second time is a duplicate.
    """
    if state.status is not AuditStatus.DECIDED or state.decision_id is None:
        raise StreamsError(
            f"audit {state.audit_id} is {state.status.value}: only a DECIDED audit's record "
            "status can be compensated"
        )
    if state.record_decision_id is None:
        found = "the record system reported no sync"
    else:
        found = f"the record system reported decision {state.record_decision_id} " + (
            f"as {state.record_decision.value}" if state.record_decision else "instead"
        )
    decision = state.decision.value if state.decision else "?"
    reason = (
        f"decision {state.decision_id} ({decision} by {state.decided_by or 'unknown'}) got no "
        f"matching record-status sync within the grace period ({found}); cipulse repaired "
        "the record status to the decision"
    )
    return AuditEvent(
        event_id=compensation_event_id(state.audit_id, state.decision_id),
        audit_id=state.audit_id,
        subject_kind=state.subject_kind,
        subject_id=state.subject_id,
        project=state.project,
        pipeline=state.pipeline,
        kind=AuditEventKind.REPAIRED,
        decision=state.decision,
        decision_id=state.decision_id,
        actor=RECONCILER_ACTOR,
        reason=reason,
        seq=max(state.seq, 0),
        event_time=now,
        origin=AuditEventOrigin.RECONCILER,
    )


def mark_alerted(state: AuditState, episode: int) -> AuditState:
    """Remember that episode `episode` got its stuck alert.

    Takes the episode the alert was about, not the current one: marked on a fresher state
    whose audit was re-opened meanwhile, the new episode stays armed.
    """
    return state.model_copy(update={"stuck_alerted_episode": episode})


def mark_reported(state: AuditState, actions: Iterable[AuditAction], now: datetime) -> AuditState:
    """The state to store after publishing `actions` (apply it to the table's freshest state)."""
    for action in actions:
        if isinstance(action, StuckAlert):
            state = mark_alerted(state, action.episode)
        elif isinstance(action, InconsistencyAlert):
            state = state.model_copy(update={"inconsistency_alerted_decision_id": action.decision_id})
        elif state.decision_id == action.decision_id:
            state = state.model_copy(
                update={
                    "inconsistency_alerted_decision_id": action.decision_id,
                    "compensation_sent_at": now,
                }
            )
    return state
