"""Current state of one audit (review) and the pure function that applies an `AuditEvent`.

This is the only place that decides whether an event changes an audit; the audit agent calls
`apply_audit_event` and acts on the typed outcome, and the repair API calls
`validate_manual_repair`. Events come in three tracks, each idempotent on its own key:

- Review-system lifecycle events (REQUESTED, REVIEW_STARTED, DECIDED, TIMED_OUT, CANCELED with
  origin SOURCE) are kept as a short, `seq`-ordered history of marks, and every lifecycle field
  (status, episode, requested/review/decision times, reviewers) is derived from that history.
  A mark already held is a duplicate; a late one is slotted in where its `seq` belongs, is
  checked against its neighbours, and never moves the status backwards. So any delivery order
  of a valid history, duplicates included, converges to the state in-order delivery gives,
  re-opened audits too. An audit has a handful of events, so the history stays small.
- Record-status events (RECORD_SYNCED, REPAIRED) are keyed by the `decision_id` they carry:
  the same decision synced or repaired twice changes nothing, another decision is rejected.
  A RECORD_SYNCED that arrives before the decision is kept as the record's report; the audit
  becomes SYNCED the moment a matching decision arrives, and stays DECIDED (so the reconciler
  repairs it after the grace period) if the decision turns out to differ.
- Events cipulse makes itself (origin RECONCILER / MANUAL_REPAIR) are not ordered by `seq`,
  which belongs to the review system: a repair is applied to the state as it is when the event
  is consumed (one step of the table), its mark sorts right after the newest mark of that
  moment, and its `event_id` makes a redelivery a duplicate.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas import AuditDecision, AuditEvent, AuditEventKind, AuditSubjectKind
from schemas.enums import AuditEventOrigin
from streams.audit_transitions import (
    KIND_OF_STATUS,
    STATUS_OF_KIND,
    AuditStatus,
    is_final,
    manual_repair_rule,
    transition_rule,
)

NOT_REPORTED = -1
"""`seq` of an audit no review-system lifecycle event has reported yet (only its record sync)."""

LIFECYCLE_KINDS: frozenset[AuditEventKind] = frozenset(
    {
        AuditEventKind.REQUESTED,
        AuditEventKind.REVIEW_STARTED,
        AuditEventKind.DECIDED,
        AuditEventKind.TIMED_OUT,
        AuditEventKind.CANCELED,
    }
)
_RECORD_KINDS = frozenset({AuditEventKind.RECORD_SYNCED, AuditEventKind.REPAIRED})
_REPAIRABLE_LIFECYCLE_KINDS = frozenset(
    {AuditEventKind.REQUESTED, AuditEventKind.TIMED_OUT, AuditEventKind.CANCELED}
)


class LifecycleMark(BaseModel):
    """One applied lifecycle event, as much of it as the derived fields need.

    Marks sort by `(seq, repair_order)`: review-system marks have `repair_order` 0, and the
    n-th repair mark gets n with the `seq` of the newest mark when it was applied.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    repair_order: int = 0
    kind: AuditEventKind
    at: datetime
    event_id: str
    actor: str | None = None
    reviewers: tuple[str, ...] = ()
    decision: AuditDecision | None = None
    decision_id: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, self.repair_order)

    @property
    def status(self) -> AuditStatus:
        return STATUS_OF_KIND[self.kind]


class AuditState(BaseModel):
    """What the audit-state table holds per audit id.

    Lifecycle fields are derived from `lifecycle` on every change. `episode` counts the
    (re)openings (REQUESTED marks, at least 1); `stuck_alerted_episode`,
    `inconsistency_alerted_decision_id` and `compensation_sent_at` are the detection's memory,
    kept here so a restarted worker neither repeats nor loses an alert.
    """

    model_config = ConfigDict(extra="forbid")

    audit_id: str
    subject_kind: AuditSubjectKind
    subject_id: str
    project: str
    pipeline: str | None = None
    status: AuditStatus = AuditStatus.REQUESTED
    decision: AuditDecision | None = None
    decision_id: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    requested_at: datetime | None = None
    review_started_at: datetime | None = None
    opened_at: datetime
    """Start of the current episode: the last REQUESTED, else the first thing known."""
    reviewers: tuple[str, ...] = ()
    record_decision_id: str | None = None
    """The decision the record system reported as synced (possibly before the decision came)."""
    record_decision: AuditDecision | None = None
    synced_at: datetime | None = None
    repaired_decision_id: str | None = None
    repaired_at: datetime | None = None
    repaired_by: str | None = None
    repair_reason: str | None = None
    seq: int = NOT_REPORTED
    revision: int = 0
    episode: int = 1
    stuck_alerted_episode: int | None = None
    inconsistency_alerted_decision_id: str | None = None
    compensation_sent_at: datetime | None = None
    first_event_at: datetime
    """Earliest event time known; moves earlier when a late event arrives."""
    first_seen_at: datetime
    """Event time of the first event to *arrive*; never changes, so it can key a partition."""
    updated_at: datetime
    lifecycle: tuple[LifecycleMark, ...] = ()


@dataclass(frozen=True)
class AuditAccepted:
    """The event changed the audit; `changed_fields` names the fields that moved."""

    state: AuditState
    previous: AuditState | None
    changed_fields: tuple[str, ...]


@dataclass(frozen=True)
class AuditIgnored:
    """A duplicate: nothing changed, and nothing must be emitted."""

    kind: Literal["duplicate"]
    reason: str


@dataclass(frozen=True)
class AuditRejected:
    """The event contradicts the audit's lifecycle; it belongs in the dead-letter topic."""

    reason: str


AuditOutcome = AuditAccepted | AuditIgnored | AuditRejected


@dataclass(frozen=True)
class RepairRefused:
    """A manual repair the state machine forbids; the API answers 400 with `rule`."""

    rule: str


_BOOKKEEPING = {"revision", "updated_at", "first_event_at", "first_seen_at"}


def apply_audit_event(state: AuditState | None, event: AuditEvent) -> AuditOutcome:
    """Apply one event to an audit's state; pure, so replaying it is always safe."""
    if state is None:
        base = AuditState(
            audit_id=event.audit_id,
            subject_kind=event.subject_kind,
            subject_id=event.subject_id,
            project=event.project,
            pipeline=event.pipeline,
            opened_at=event.event_time,
            first_event_at=event.event_time,
            first_seen_at=event.event_time,
            updated_at=event.event_time,
        )
    else:
        mismatch = _ownership_mismatch(state, event)
        if mismatch:
            return AuditRejected(mismatch)
        base = state

    if event.kind in _RECORD_KINDS:
        outcome = _apply_record_status(base, event)
    elif event.origin is AuditEventOrigin.SOURCE:
        outcome = _apply_source_mark(base, event)
    else:
        outcome = _apply_repair_mark(base, event)
    if not isinstance(outcome, AuditState):
        return outcome

    updated = _derive(
        outcome.model_copy(
            update={
                "pipeline": base.pipeline or event.pipeline,
                "revision": base.revision + 1,
                "first_event_at": min(base.first_event_at, event.event_time),
                "updated_at": max(base.updated_at, event.event_time),
            }
        )
    )
    before = base.model_dump(exclude=_BOOKKEEPING)
    after = updated.model_dump(exclude=_BOOKKEEPING)
    changed = tuple(
        name for name in after if after[name] != before[name] or (state is None and name == "status")
    )
    return AuditAccepted(state=updated, previous=state, changed_fields=changed)


def _label(event: AuditEvent) -> str:
    if event.origin is AuditEventOrigin.SOURCE:
        return f"audit {event.audit_id} seq {event.seq} ({event.kind.value})"
    return f"audit {event.audit_id} {event.origin.value} event {event.event_id} ({event.kind.value})"


def _ownership_mismatch(state: AuditState, event: AuditEvent) -> str | None:
    ours = (state.subject_kind, state.subject_id, state.project)
    theirs = (event.subject_kind, event.subject_id, event.project)
    if ours != theirs:
        return (
            f"{_label(event)}: the audit belongs to {state.project} "
            f"{state.subject_kind.value} {state.subject_id}, but the event says {event.project} "
            f"{event.subject_kind.value} {event.subject_id}"
        )
    return None


def _mark_of(event: AuditEvent, seq: int, repair_order: int = 0) -> LifecycleMark:
    return LifecycleMark(
        seq=seq,
        repair_order=repair_order,
        kind=event.kind,
        at=event.event_time,
        event_id=event.event_id,
        actor=event.actor,
        reviewers=tuple(event.reviewers),
        decision=event.decision,
        decision_id=event.decision_id,
    )


def _apply_source_mark(state: AuditState, event: AuditEvent) -> AuditState | AuditIgnored | AuditRejected:
    label = _label(event)
    marks = state.lifecycle
    if event.kind is AuditEventKind.DECIDED:
        if event.decision is None or not event.decision_id:
            return AuditRejected(f"{label}: a decision needs both `decision` and `decision_id`")
        if state.decision_id == event.decision_id:
            return AuditIgnored("duplicate", f"{label}: decision {event.decision_id} is already recorded")
        if state.decision_id is not None:
            return AuditRejected(
                f"{label}: already decided {state.decision_id} ({state.decision}) by "
                f"{state.decided_by}; a second decision {event.decision_id} contradicts it, "
                "and a decision is never taken back"
            )
    for mark in marks:
        if mark.repair_order == 0 and mark.seq == event.seq:
            if mark.kind is event.kind:
                return AuditIgnored("duplicate", f"{label}: seq {event.seq} is already applied")
            return AuditRejected(
                f"{label}: seq {event.seq} already holds {mark.kind.value} (event {mark.event_id})"
            )
    new = _mark_of(event, event.seq)
    index = bisect_left([m.key for m in marks], new.key)
    before = marks[index - 1] if index > 0 else None
    after = marks[index] if index < len(marks) else None
    for neighbour in (before, after):
        if neighbour is not None and neighbour.status is new.status and is_final(new.status):
            return AuditIgnored("duplicate", f"{label}: the audit already is {new.status.value}")
    if before is not None:
        rule = transition_rule(before.status, new.status, allow_jumps=True)
        if rule:
            return AuditRejected(f"{label}: {rule}")
    if after is not None:
        rule = transition_rule(new.status, after.status, allow_jumps=True)
        if rule:
            return AuditRejected(
                f"{label} arrived late, but {after.kind.value} (seq {after.seq}) already "
                f"follows it: {rule}"
            )
    return state.model_copy(
        update={"lifecycle": (*marks[:index], new, *marks[index:]), "seq": max(state.seq, event.seq)}
    )


def _apply_repair_mark(state: AuditState, event: AuditEvent) -> AuditState | AuditIgnored | AuditRejected:
    label = _label(event)
    if any(mark.event_id == event.event_id for mark in state.lifecycle if mark.repair_order):
        return AuditIgnored("duplicate", f"{label}: this repair is already applied")
    if event.kind not in _REPAIRABLE_LIFECYCLE_KINDS:
        return AuditRejected(
            f"{label}: only the review system starts reviews and decides; "
            f"cipulse never emits {event.kind.value}"
        )
    if not (event.actor or "").strip() or not (event.reason or "").strip():
        return AuditRejected(f"{label}: a repair must say who made it (actor) and why (reason)")
    rule = transition_rule(state.status, STATUS_OF_KIND[event.kind])
    if rule:
        return AuditRejected(f"{label}: {rule}")
    order = max((m.repair_order for m in state.lifecycle), default=0) + 1
    new = _mark_of(event, state.seq, order)
    return state.model_copy(
        update={
            "lifecycle": (*state.lifecycle, new),
            "repaired_at": event.event_time,
            "repaired_by": event.actor,
            "repair_reason": event.reason,
        }
    )


def _apply_record_status(state: AuditState, event: AuditEvent) -> AuditState | AuditIgnored | AuditRejected:
    label = _label(event)
    decision_id = event.decision_id
    if not decision_id:
        return AuditRejected(f"{label}: must carry the decision_id of the decision it syncs")
    if state.decision_id is not None and decision_id != state.decision_id:
        return AuditRejected(
            f"{label}: the event is about decision {decision_id}, but the reviewer's decision "
            f"is {state.decision_id} ({state.decision})"
        )
    if event.decision is not None and state.decision is not None and event.decision != state.decision:
        return AuditRejected(
            f"{label}: says decision {decision_id} was {event.decision.value}, but the reviewer "
            f"decided {state.decision.value}"
        )
    if event.kind is AuditEventKind.RECORD_SYNCED:
        if state.record_decision_id == decision_id:
            return AuditIgnored("duplicate", f"{label}: decision {decision_id} is already synced")
        if state.record_decision_id is not None:
            return AuditRejected(
                f"{label}: the record already reported decision {state.record_decision_id}"
            )
        return state.model_copy(
            update={
                "record_decision_id": decision_id,
                "record_decision": event.decision,
                "synced_at": event.event_time,
            }
        )
    if state.decision_id is None:
        return AuditRejected(
            f"{label}: nothing to repair, the audit has no decision yet ({state.status.value})"
        )
    if state.status in (AuditStatus.SYNCED, AuditStatus.REPAIRED):
        return AuditIgnored(
            "duplicate", f"{label}: decision {decision_id} is already {state.status.value}"
        )
    rule = transition_rule(state.status, AuditStatus.REPAIRED)
    if rule:
        return AuditRejected(f"{label}: {rule}")
    return state.model_copy(
        update={
            "repaired_decision_id": decision_id,
            "repaired_at": event.event_time,
            "repaired_by": event.actor,
            "repair_reason": event.reason,
        }
    )


def _derive(state: AuditState) -> AuditState:
    """Recompute every lifecycle field from the marks and the record-status facts."""
    marks = state.lifecycle
    status = marks[-1].status if marks else AuditStatus.REQUESTED
    decided = next((m for m in marks if m.kind is AuditEventKind.DECIDED), None)
    if status is AuditStatus.DECIDED and decided is not None:
        if state.repaired_decision_id == decided.decision_id:
            status = AuditStatus.REPAIRED
        elif state.record_decision_id == decided.decision_id and state.record_decision in (
            None,
            decided.decision,
        ):
            status = AuditStatus.SYNCED
    openings = [i for i, m in enumerate(marks) if m.kind is AuditEventKind.REQUESTED]
    current = marks[openings[-1]] if openings else None
    episode_marks = marks[openings[-1]:] if openings else marks
    started = next((m for m in episode_marks if m.kind is AuditEventKind.REVIEW_STARTED), None)
    with_reviewers = [m for m in marks if m.reviewers]
    return state.model_copy(
        update={
            "status": status,
            "decision": decided.decision if decided else None,
            "decision_id": decided.decision_id if decided else None,
            "decided_by": decided.actor if decided else None,
            "decided_at": decided.at if decided else None,
            "requested_at": current.at if current else None,
            "review_started_at": started.at if started else None,
            "opened_at": current.at if current else (marks[0].at if marks else state.first_event_at),
            "reviewers": with_reviewers[-1].reviewers if with_reviewers else (),
            "episode": max(1, len(openings)),
        }
    )


def validate_manual_repair(
    state: AuditState,
    target: AuditStatus,
    reason: str,
    actor: str,
    *,
    now: datetime,
    repair_id: str,
) -> AuditEvent | RepairRefused:
    """The event an operator's repair publishes, or the rule that forbids it.

    `repair_id` becomes the event id (the API generates it once per request), so a redelivered
    repair is a recognisable duplicate. The event is dry-run through `apply_audit_event`, so a
    repair this returns is one the agent will accept against the same state.
    """
    if not reason.strip():
        return RepairRefused("a repair needs a reason: say why the audit's status is wrong")
    if not actor.strip():
        return RepairRefused("a repair needs an actor: who asks for it")
    rule = manual_repair_rule(state.status, target)
    if rule:
        return RepairRefused(rule)
    event = AuditEvent(
        event_id=repair_id,
        audit_id=state.audit_id,
        subject_kind=state.subject_kind,
        subject_id=state.subject_id,
        project=state.project,
        pipeline=state.pipeline,
        kind=KIND_OF_STATUS[target],
        decision=state.decision if target is AuditStatus.REPAIRED else None,
        decision_id=state.decision_id if target is AuditStatus.REPAIRED else None,
        actor=actor,
        reviewers=list(state.reviewers) if target is AuditStatus.REQUESTED else [],
        reason=reason,
        seq=max(state.seq, 0),
        event_time=now,
        origin=AuditEventOrigin.MANUAL_REPAIR,
    )
    outcome = apply_audit_event(state, event)
    if isinstance(outcome, AuditRejected):
        return RepairRefused(outcome.reason)
    if isinstance(outcome, AuditIgnored):
        return RepairRefused(f"the repair would change nothing: {outcome.reason}")
    return event
