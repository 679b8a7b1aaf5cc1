"""The audit (review) lifecycle as one table of allowed status transitions.

An audit has two independent sources of truth: the review system (request, review start,
the reviewer's decision, timeout, cancel) and the record system that applies the decision to
the audit record (RECORD_SYNCED, the message BK-CI lost in issue #11527). The table covers
both: DECIDED is where the two meet, and only a decided audit can be SYNCED (the record
confirmed the decision) or REPAIRED (cipulse or an operator synced the record because the
confirmation never came). `streams.audit_state.apply_audit_event` and the manual repair
validation consult this table; nothing else encodes audit lifecycle rules.

TIMED_OUT is not final, for two reasons:
- A late decision still lands (TIMED_OUT -> DECIDED). The review system's deadline passing
  does not undo a reviewer's decision it orders after the timeout; dropping that decision would
  leave exactly the inconsistency this module exists to catch (a decision that no record
  shows). The decision then goes through the usual sync / repair path.
- A timed-out audit can be re-opened (TIMED_OUT -> REQUESTED): review requested again, by the
  review system or an operator. Re-opening starts a new alert episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import cache

from schemas import AuditEventKind


class AuditStatus(StrEnum):
    """Where an audit stands; the decision itself (APPROVED / REJECTED) is kept beside it."""

    REQUESTED = "REQUESTED"
    IN_REVIEW = "IN_REVIEW"
    DECIDED = "DECIDED"
    SYNCED = "SYNCED"
    REPAIRED = "REPAIRED"
    TIMED_OUT = "TIMED_OUT"
    CANCELED = "CANCELED"


S = AuditStatus

ALLOWED_TRANSITIONS: Mapping[AuditStatus, frozenset[AuditStatus]] = {
    S.REQUESTED: frozenset({S.IN_REVIEW, S.DECIDED, S.TIMED_OUT, S.CANCELED}),
    S.IN_REVIEW: frozenset({S.DECIDED, S.TIMED_OUT, S.CANCELED}),
    # A decision is never taken back: the record catches up with it, or is repaired to it.
    S.DECIDED: frozenset({S.SYNCED, S.REPAIRED}),
    S.TIMED_OUT: frozenset({S.REQUESTED, S.DECIDED, S.CANCELED}),
    S.SYNCED: frozenset(),
    S.REPAIRED: frozenset(),
    S.CANCELED: frozenset(),
}

FINAL_STATUSES: frozenset[AuditStatus] = frozenset(
    status for status, targets in ALLOWED_TRANSITIONS.items() if not targets
)

OPEN_STATUSES: frozenset[AuditStatus] = frozenset({S.REQUESTED, S.IN_REVIEW})
"""Someone is expected to review: the statuses the stuck detection watches."""

RECORD_STATUSES: frozenset[AuditStatus] = frozenset({S.SYNCED, S.REPAIRED})
"""Reached from DECIDED by the record-status track (RECORD_SYNCED / REPAIRED), never by a
review-system lifecycle event."""

STATUS_OF_KIND: Mapping[AuditEventKind, AuditStatus] = {
    AuditEventKind.REQUESTED: S.REQUESTED,
    AuditEventKind.REVIEW_STARTED: S.IN_REVIEW,
    AuditEventKind.DECIDED: S.DECIDED,
    AuditEventKind.RECORD_SYNCED: S.SYNCED,
    AuditEventKind.REPAIRED: S.REPAIRED,
    AuditEventKind.TIMED_OUT: S.TIMED_OUT,
    AuditEventKind.CANCELED: S.CANCELED,
}
"""The status an event of each kind moves an audit to."""

KIND_OF_STATUS: Mapping[AuditStatus, AuditEventKind] = {
    status: kind for kind, status in STATUS_OF_KIND.items()
}

MANUAL_REPAIR_TARGETS: frozenset[AuditStatus] = frozenset(
    {S.REQUESTED, S.TIMED_OUT, S.CANCELED, S.REPAIRED}
)
"""Statuses an operator may set through the repair API; the others need their own source."""

_NOT_A_MANUAL_TARGET: Mapping[AuditStatus, str] = {
    S.IN_REVIEW: "IN_REVIEW is set only by the review system when a reviewer opens the review",
    S.DECIDED: "DECIDED needs a reviewer's decision; a repair never decides an audit",
    S.SYNCED: (
        "SYNCED is reported only by the record system; to fix a record by hand, "
        "repair the audit to REPAIRED"
    ),
}

_WHY_FINAL: Mapping[AuditStatus, str] = {
    S.SYNCED: "the record status matches the decision",
    S.REPAIRED: "the record status was repaired to the decision",
    S.CANCELED: "a canceled audit is never reviewed again",
}


def is_final(status: AuditStatus) -> bool:
    """A final status never changes again: later events for that audit are late or illegal."""
    return status in FINAL_STATUSES


@cache
def reachable_from(status: AuditStatus) -> frozenset[AuditStatus]:
    """Every status reachable from `status` through one or more allowed transitions.

    Review-system events can arrive out of order, so an event may jump over statuses whose
    events are still in flight. Because re-opening closes a cycle (TIMED_OUT -> REQUESTED),
    an open or timed-out audit can reach every status, itself included; the closure still
    forbids what matters: leaving DECIDED for anything but the record statuses, and leaving
    a final status at all.
    """
    seen: set[AuditStatus] = set()
    frontier = list(ALLOWED_TRANSITIONS[status])
    while frontier:
        nxt = frontier.pop()
        if nxt not in seen:
            seen.add(nxt)
            frontier.extend(ALLOWED_TRANSITIONS[nxt])
    return frozenset(seen)


def transition_rule(
    current: AuditStatus, target: AuditStatus, *, allow_jumps: bool = False
) -> str | None:
    """Return None when `current -> target` is allowed, else the rule that forbids it.

    By default one step of the table: what an operator's repair or an event cipulse makes
    itself may do to the state as it is now (the API's 400 quotes the rule). With
    `allow_jumps`, a path through the table suffices: what a review-system event delivered out
    of order may do (a dead letter quotes the rule).
    """
    allowed = reachable_from(current) if allow_jumps else ALLOWED_TRANSITIONS[current]
    if target in allowed:
        return None
    if is_final(current):
        return f"{current.value} is final: {_WHY_FINAL[current]}"
    if target in RECORD_STATUSES:
        return (
            f"{current.value} -> {target.value} is not allowed: only a DECIDED audit has a "
            "decision for the record to sync or be repaired to"
        )
    if current is S.DECIDED:
        return (
            f"DECIDED -> {target.value} is not allowed: a decision is never taken back; "
            "a decided audit only becomes SYNCED or REPAIRED"
        )
    names = ", ".join(sorted(s.value for s in allowed)) or "nothing"
    return f"{current.value} -> {target.value} is not allowed (from {current.value}: {names})"


def manual_repair_rule(current: AuditStatus, target: AuditStatus) -> str | None:
    """Return None when an operator may repair an audit from `current` to `target`."""
    if target not in MANUAL_REPAIR_TARGETS:
        return _NOT_A_MANUAL_TARGET[target]
    if target is current:
        return f"the audit already is {current.value}"
    return transition_rule(current, target)
