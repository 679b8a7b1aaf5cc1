"""What a quality gate remembers between inputs, and the pure functions that apply one input.

A gate's state is a Faust table value keyed by gate id (JSON). It holds the window of the last
final builds the gate's rules need (status, duration, finished_at), the project's open stuck
audits, the failure notifications of its scope whose delivery no receiver acknowledged yet, and
what the gate last published. Every apply function returns the new state, or None
when the input changes nothing (a redelivered build, an alert already known), so a replay
never moves `input_revision` and never produces a new decision.
"""

from __future__ import annotations

import bisect
import logging
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas import (
    AuditAlert,
    AuditAlertKind,
    AuditEvent,
    AuditEventKind,
    BuildStatus,
    BuildStatusChange,
    GateResult,
    NotificationRequest,
    NotificationTransition,
    NotifierSignal,
    NotifierSignalKind,
)
from streams.gate_config import Gate

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELED})
REVIEW_ENDED = frozenset(
    {AuditEventKind.DECIDED, AuditEventKind.RECORD_SYNCED, AuditEventKind.CANCELED, AuditEventKind.TIMED_OUT,
     AuditEventKind.REPAIRED}
)
"""An audit event of these kinds ends the review a STUCK alert was raised for."""
REVIEW_REOPENED = frozenset({AuditEventKind.REQUESTED})
MAX_RESOLVED_AUDITS = 1000
"""Resolved audits remembered so a STUCK alert arriving after its decision does not re-open it."""
FAILURE_TRANSITIONS = frozenset({NotificationTransition.FAILED})
"""Notifications the `no_unacknowledged_failure_notification` rule watches: a build FAILED.

AUDIT_STUCK is left out: its subject is a review, not a build failure, and `no_open_stuck_audit`
already blocks while the audit is stuck. GATE_FAILED would let a gate block on its own alarm.
RECOVERED, SUCCEEDED and CANCELED are not failures."""
SETTLING_RECEIPTS = frozenset({NotifierSignalKind.DELIVERED, NotifierSignalKind.GAVE_UP})
MAX_OPEN_NOTIFICATIONS = 500
"""Unacknowledged failure notifications a gate remembers; beyond it the oldest are forgotten
(a warning is logged and `forgotten_notifications` counts them). Bounds the state record."""
MAX_SETTLED_NOTIFICATIONS = 2000
"""Receipts remembered per notification id (oldest forgotten first), so a request that reaches the
gate after its receipt (they travel on different partitions) does not open a settled notification."""


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinalBuild(_State):
    build_id: str
    pipeline: str
    branch: str | None
    status: BuildStatus
    finished_at: datetime
    duration_ms: int | None

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.finished_at, self.build_id)


class StuckAudit(_State):
    audit_id: str
    pipeline: str | None
    episode: int
    raised_at: datetime
    age_seconds: float


class OpenNotification(_State):
    """A failure notification the notifier was asked to send and no receiver acknowledged yet."""

    notification_id: str
    subscription_id: str
    subject_id: str
    pipeline: str | None
    branch: str | None
    requested_at: datetime
    gave_up: bool = False
    """The sender gave up, or the notifier refused it (dead-lettered): still unacknowledged."""


class SettledNotification(_State):
    delivered: bool
    settled_at: datetime


class GateState(_State):
    gate: str
    input_revision: int = 0
    """Input changes applied so far: part of the decision id, so a replay repeats the same id."""
    builds: tuple[FinalBuild, ...] = ()
    """Oldest first by (finished_at, build_id); at most `Gate.kept_builds`."""
    stuck_audits: dict[str, StuckAudit] = Field(default_factory=dict)
    resolved_audits: dict[str, datetime] = Field(default_factory=dict)
    open_notifications: dict[str, OpenNotification] = Field(default_factory=dict)
    settled_notifications: dict[str, SettledNotification] = Field(default_factory=dict)
    forgotten_notifications: int = 0
    """Open notifications dropped because more than `MAX_OPEN_NOTIFICATIONS` were open."""
    last_result: GateResult | None = None
    last_failing: tuple[str, ...] = ()
    last_decision_id: str | None = None

    @property
    def latest_build(self) -> FinalBuild | None:
        return self.builds[-1] if self.builds else None


def empty_state(gate: Gate) -> GateState:
    return GateState(gate=gate.id)


def apply_final_build(state: GateState, gate: Gate, change: BuildStatusChange) -> GateState | None:
    """Add a build that entered a final status to the window; None if it changes nothing.

    A build already in the window (a redelivery), or older than a full window's oldest build,
    changes nothing. Builds the gate does not cover are never routed to it, but are ignored here too.
    """
    if change.status not in FINAL_STATUSES or not gate.covers_build(change.project, change.pipeline, change.branch):
        return None
    if any(b.build_id == change.build_id for b in state.builds):
        return None
    build = FinalBuild(
        build_id=change.build_id, pipeline=change.pipeline, branch=change.branch, status=change.status,
        finished_at=change.finished_at or change.event_time, duration_ms=change.duration_ms,
    )
    builds = list(state.builds)
    keep = gate.kept_builds
    if len(builds) >= keep and build.order < builds[0].order:
        return None
    bisect.insort(builds, build, key=lambda b: b.order)
    builds = builds[-keep:]
    kept_for = gate.kept_for
    if kept_for is not None:
        newest = builds[-1].finished_at
        builds = [b for b in builds if newest - b.finished_at <= kept_for]
    if build not in builds:
        return None
    return state.model_copy(update={"builds": tuple(builds), "input_revision": state.input_revision + 1})


def apply_audit_alert(state: GateState, gate: Gate, alert: AuditAlert) -> GateState | None:
    """Open a STUCK audit of the gate's project; None for other alerts, known ones and decided audits."""
    if alert.kind is not AuditAlertKind.STUCK or not gate.covers_audit(alert.project, alert.pipeline):
        return None
    if alert.audit_id in state.resolved_audits:
        return None
    known = state.stuck_audits.get(alert.audit_id)
    if known is not None and known.episode >= alert.episode:
        return None
    stuck = dict(state.stuck_audits)
    stuck[alert.audit_id] = StuckAudit(
        audit_id=alert.audit_id, pipeline=alert.pipeline, episode=alert.episode, raised_at=alert.raised_at,
        age_seconds=alert.age_seconds,
    )
    return state.model_copy(update={"stuck_audits": stuck, "input_revision": state.input_revision + 1})


def apply_audit_event(state: GateState, gate: Gate, event: AuditEvent) -> GateState | None:
    """A decision (or cancel, timeout, repair, sync) closes the audit; a new request re-arms it.

    The resolution is remembered (bounded), so a STUCK alert that reaches the gate after the
    decision, through another partition, does not re-open the audit.
    """
    if not gate.covers_audit(event.project, event.pipeline):
        return None
    if event.kind in REVIEW_REOPENED:
        resolved_at = state.resolved_audits.get(event.audit_id)
        if resolved_at is None or event.event_time <= resolved_at:
            return None
        resolved = {k: v for k, v in state.resolved_audits.items() if k != event.audit_id}
        return state.model_copy(update={"resolved_audits": resolved})
    if event.kind not in REVIEW_ENDED:
        return None
    closes = event.audit_id in state.stuck_audits
    previous = state.resolved_audits.get(event.audit_id)
    if not closes and previous is not None and previous >= event.event_time:
        return None
    resolved = dict(state.resolved_audits)
    resolved[event.audit_id] = max(event.event_time, previous) if previous is not None else event.event_time
    if len(resolved) > MAX_RESOLVED_AUDITS:
        for audit_id, _ in sorted(resolved.items(), key=lambda item: item[1])[: len(resolved) - MAX_RESOLVED_AUDITS]:
            del resolved[audit_id]
    stuck = {k: v for k, v in state.stuck_audits.items() if k != event.audit_id}
    revision = state.input_revision + 1 if closes else state.input_revision
    return state.model_copy(update={"stuck_audits": stuck, "resolved_audits": resolved, "input_revision": revision})


def apply_notification_request(state: GateState, gate: Gate, request: NotificationRequest) -> GateState | None:
    """Open a failure notification of the gate's scope; None if it is known or already delivered.

    A notification whose GAVE_UP receipt came first opens as given up: it is still unacknowledged.
    """
    if request.transition not in FAILURE_TRANSITIONS or not gate.covers_notification(
        request.project, request.pipeline, request.branch
    ):
        return None
    if request.notification_id in state.open_notifications:
        return None
    settled = state.settled_notifications.get(request.notification_id)
    if settled is not None and settled.delivered:
        return None
    opened = dict(state.open_notifications)
    opened[request.notification_id] = OpenNotification(
        notification_id=request.notification_id, subscription_id=request.subscription_id,
        subject_id=request.subject_id, pipeline=request.pipeline, branch=request.branch,
        requested_at=request.created_at, gave_up=settled is not None,
    )
    forgotten = state.forgotten_notifications
    if len(opened) > MAX_OPEN_NOTIFICATIONS:
        dropped = sorted(opened.values(), key=lambda n: (n.requested_at, n.notification_id))[
            : len(opened) - MAX_OPEN_NOTIFICATIONS
        ]
        for notification in dropped:
            del opened[notification.notification_id]
        forgotten += len(dropped)
        log.warning(
            "gate %s: more than %d unacknowledged failure notifications; forgetting the oldest %s (%d forgotten "
            "so far): its rule can no longer see whether they are delivered",
            gate.id, MAX_OPEN_NOTIFICATIONS, ", ".join(n.notification_id[:12] for n in dropped), forgotten,
        )
    return state.model_copy(update={
        "open_notifications": opened, "forgotten_notifications": forgotten,
        "input_revision": state.input_revision + 1,
    })


def apply_notification_receipt(state: GateState, gate: Gate, signal: NotifierSignal) -> GateState | None:
    """DELIVERED closes the receipt's open notifications; GAVE_UP marks them given up (still open).

    Delivered is final: a later GAVE_UP of the same id (another flush) changes nothing. Every id is
    remembered (bounded), since the gate cannot tell which ids it will be asked about later.
    Receipts without notification ids (v1, FLUSH_DUE) change nothing.
    """
    if (
        signal.kind not in SETTLING_RECEIPTS or not gate.rules.no_unacknowledged_failure_notification
        or gate.project not in signal.projects
    ):
        return None
    delivered = signal.kind is NotifierSignalKind.DELIVERED
    opened = dict(state.open_notifications)
    settled = dict(state.settled_notifications)
    remembered = changed = False
    for notification_id in signal.notification_ids:
        known = settled.get(notification_id)
        if known is not None and (known.delivered or not delivered):
            continue
        settled[notification_id] = SettledNotification(delivered=delivered, settled_at=signal.signalled_at)
        remembered = True
        notification = opened.get(notification_id)
        if notification is None:
            continue
        if delivered:
            del opened[notification_id]
            changed = True
        elif not notification.gave_up:
            opened[notification_id] = notification.model_copy(update={"gave_up": True})
            changed = True
    if not remembered:
        return None
    if len(settled) > MAX_SETTLED_NOTIFICATIONS:
        oldest = sorted(settled.items(), key=lambda item: (item[1].settled_at, item[0]))
        for notification_id, _ in oldest[: len(settled) - MAX_SETTLED_NOTIFICATIONS]:
            del settled[notification_id]
    return state.model_copy(update={
        "open_notifications": opened, "settled_notifications": settled,
        "input_revision": state.input_revision + 1 if changed else state.input_revision,
    })


def load_gate_state(raw: bytes | None) -> GateState | None:
    return None if raw is None else GateState.model_validate_json(raw)


def dump_gate_state(state: GateState) -> bytes:
    return state.model_dump_json().encode()
