"""Manual repair validation, repair events through the state machine, and the event contract
of repairs (v2 `origin`, serde round trip, v1 producers still read)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import AuditDecision, AuditEvent, AuditEventKind, AuditSubjectKind, decode, encode, encode_dict
from schemas.enums import AuditEventOrigin
from streams.audit_detection import compensation_event
from streams.audit_state import (
    AuditAccepted,
    AuditIgnored,
    AuditRejected,
    AuditState,
    RepairRefused,
    apply_audit_event,
    validate_manual_repair,
)
from streams.audit_transitions import AuditStatus, manual_repair_rule

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
K = AuditEventKind
S = AuditStatus


def audit_event(seq: int, kind: AuditEventKind, **extra: object) -> AuditEvent:
    return AuditEvent(
        event_id=f"e{seq}", audit_id="au1", subject_kind=AuditSubjectKind.QUALITY_GATE, subject_id="gate-3",
        project="p", kind=kind, seq=seq, event_time=T0 + timedelta(minutes=seq), **extra,  # type: ignore[arg-type]
    )


DECIDED = {"decision": AuditDecision.APPROVED, "decision_id": "d1", "actor": "bob"}
HISTORIES: dict[AuditStatus, list[AuditEvent]] = {
    S.REQUESTED: [audit_event(1, K.REQUESTED, reviewers=["bob"])],
    S.IN_REVIEW: [audit_event(1, K.REQUESTED), audit_event(2, K.REVIEW_STARTED)],
    S.DECIDED: [audit_event(1, K.REQUESTED), audit_event(2, K.DECIDED, **DECIDED)],
    S.SYNCED: [audit_event(1, K.REQUESTED), audit_event(2, K.DECIDED, **DECIDED),
               audit_event(3, K.RECORD_SYNCED, decision_id="d1")],
    S.TIMED_OUT: [audit_event(1, K.REQUESTED, reviewers=["bob"]), audit_event(2, K.TIMED_OUT)],
    S.CANCELED: [audit_event(1, K.REQUESTED), audit_event(2, K.CANCELED)],
}


def state_in(status: AuditStatus) -> AuditState:
    if status is S.REPAIRED:
        decided = state_in(S.DECIDED)
        outcome = apply_audit_event(decided, compensation_event(decided, NOW))
    else:
        state: AuditState | None = None
        for event in HISTORIES[status]:
            outcome = apply_audit_event(state, event)
            assert isinstance(outcome, AuditAccepted)
            state = outcome.state
    assert isinstance(outcome, AuditAccepted) and outcome.state.status is status
    return outcome.state


def repair(state: AuditState, target: AuditStatus, reason: str = "subject deleted", actor: str = "ops-ann",
           repair_id: str = "r1") -> AuditEvent | RepairRefused:
    return validate_manual_repair(state, target, reason, actor, now=NOW, repair_id=repair_id)


@pytest.mark.parametrize("current", list(AuditStatus))
@pytest.mark.parametrize("target", list(AuditStatus))
def test_manual_repair_is_refused_with_the_rule_exactly_when_the_state_machine_forbids(
    current: AuditStatus, target: AuditStatus
) -> None:
    state = state_in(current)
    result = repair(state, target)
    rule = manual_repair_rule(current, target)
    if rule is not None:
        assert result == RepairRefused(rule)
        return
    assert isinstance(result, AuditEvent) and result.origin is AuditEventOrigin.MANUAL_REPAIR
    applied = apply_audit_event(state, result)
    assert isinstance(applied, AuditAccepted)
    repaired = applied.state
    assert repaired.status is target
    assert (repaired.repaired_by, repaired.repaired_at, repaired.repair_reason) == ("ops-ann", NOW, "subject deleted")
    again = apply_audit_event(repaired, result)
    assert isinstance(again, AuditIgnored) and again.kind == "duplicate"


@pytest.mark.parametrize(("current", "target", "rule"), [
    (S.SYNCED, S.CANCELED, "SYNCED is final"),
    (S.DECIDED, S.CANCELED, "a decision is never taken back"),
    (S.IN_REVIEW, S.REPAIRED, "only a DECIDED audit"),
    (S.IN_REVIEW, S.REQUESTED, "IN_REVIEW -> REQUESTED is not allowed"),
    (S.REQUESTED, S.DECIDED, "a repair never decides an audit"),
])
def test_illegal_repair_names_the_rule_the_api_returns_with_400(current: AuditStatus, target: AuditStatus,
                                                                 rule: str) -> None:
    result = repair(state_in(current), target)
    assert isinstance(result, RepairRefused) and rule in result.rule


@pytest.mark.parametrize(("reason", "actor", "words"), [(" ", "ops-ann", "needs a reason"), ("why", "", "needs an actor")])
def test_repair_without_reason_or_actor_is_refused(reason: str, actor: str, words: str) -> None:
    result = repair(state_in(S.IN_REVIEW), S.CANCELED, reason=reason, actor=actor)
    assert isinstance(result, RepairRefused) and words in result.rule


def test_manual_reopen_starts_a_new_episode_with_the_same_reviewers() -> None:
    state = state_in(S.TIMED_OUT)
    event = repair(state, S.REQUESTED, reason="reviewer was on leave")
    assert isinstance(event, AuditEvent) and event.reviewers == ["bob"]
    outcome = apply_audit_event(state, event)
    assert isinstance(outcome, AuditAccepted)
    assert outcome.state.episode == 2 and outcome.state.opened_at == NOW


def test_source_event_after_a_manual_cancel_is_dead_lettered_not_lost() -> None:
    state = state_in(S.IN_REVIEW)
    event = repair(state, S.CANCELED)
    assert isinstance(event, AuditEvent)
    canceled = apply_audit_event(state, event)
    assert isinstance(canceled, AuditAccepted)
    late_decision = apply_audit_event(canceled.state, audit_event(3, K.DECIDED, **DECIDED))
    assert isinstance(late_decision, AuditRejected) and "CANCELED is final" in late_decision.reason


def test_repair_validated_against_an_older_state_is_rejected_when_consumed() -> None:
    """The API validated against the table; if the audit moved before the event is consumed,
    the agent dead-letters the repair with the rule instead of applying it."""
    state = state_in(S.IN_REVIEW)
    event = repair(state, S.TIMED_OUT)
    assert isinstance(event, AuditEvent)
    moved = apply_audit_event(state, audit_event(3, K.DECIDED, **DECIDED))
    assert isinstance(moved, AuditAccepted)
    outcome = apply_audit_event(moved.state, event)
    assert isinstance(outcome, AuditRejected) and "never taken back" in outcome.reason


def test_several_repairs_replayed_after_a_crash_change_nothing() -> None:
    state = state_in(S.REQUESTED)
    events = []
    for target, repair_id in ((S.TIMED_OUT, "r1"), (S.REQUESTED, "r2"), (S.CANCELED, "r3")):
        event = repair(state, target, repair_id=repair_id)
        assert isinstance(event, AuditEvent)
        outcome = apply_audit_event(state, event)
        assert isinstance(outcome, AuditAccepted)
        state = outcome.state
        events.append(event)
    for event in events:
        assert isinstance(apply_audit_event(state, event), AuditIgnored)
    assert state.status is S.CANCELED and state.episode == 2


def test_cipulse_never_emits_decisions_or_review_starts() -> None:
    state = state_in(S.REQUESTED)
    forged = audit_event(2, K.DECIDED, **DECIDED).model_copy(
        update={"origin": AuditEventOrigin.MANUAL_REPAIR, "reason": "x"})
    outcome = apply_audit_event(state, forged)
    assert isinstance(outcome, AuditRejected) and "only the review system" in outcome.reason


def test_compensating_event_round_trips_through_the_serde() -> None:
    event = compensation_event(state_in(S.DECIDED), NOW)
    decoded = decode(encode(event), AuditEvent)
    assert decoded == event
    assert (decoded.kind, decoded.origin, decoded.decision_id) == (K.REPAIRED, AuditEventOrigin.RECONCILER, "d1")


@settings(max_examples=50, deadline=None)
@given(target=st.sampled_from([S.REQUESTED, S.TIMED_OUT, S.CANCELED, S.REPAIRED]),
       current=st.sampled_from(list(AuditStatus)), reason=st.text(min_size=1, max_size=80), seed=st.integers(0, 999))
def test_manual_repair_event_round_trips_through_the_serde(target: AuditStatus, current: AuditStatus,
                                                            reason: str, seed: int) -> None:
    event = repair(state_in(current), target, reason=reason, repair_id=f"r-{random.Random(seed).getrandbits(64):x}")
    if isinstance(event, AuditEvent):
        assert decode(encode(event), AuditEvent) == event


def test_v1_audit_event_from_an_old_producer_reads_as_a_source_event() -> None:
    fields = audit_event(2, K.DECIDED, **DECIDED).model_dump(exclude={"origin"})
    decoded = decode(encode_dict("io.cipulse.AuditEvent", fields, version=1), AuditEvent)
    assert decoded.origin is AuditEventOrigin.SOURCE
    assert decoded == audit_event(2, K.DECIDED, **DECIDED)
