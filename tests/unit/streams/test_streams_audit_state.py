"""The audit state machine: apply, per-track idempotence, sync before decision, convergence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import AuditDecision, AuditEvent, AuditEventKind, AuditSubjectKind
from streams.audit_state import (
    NOT_REPORTED,
    AuditAccepted,
    AuditIgnored,
    AuditOutcome,
    AuditRejected,
    AuditState,
    apply_audit_event,
)
from streams.audit_transitions import AuditStatus

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
K = AuditEventKind
S = AuditStatus
APPROVED = AuditDecision.APPROVED


def audit_event(seq: int, kind: AuditEventKind, *, minutes: float | None = None, **extra: object) -> AuditEvent:
    return AuditEvent(
        event_id=f"e{seq}", audit_id="au1", subject_kind=AuditSubjectKind.TEMPLATE_INSTANCE,
        subject_id="tpl-7", project="p", pipeline="ci", kind=kind, seq=seq,
        event_time=T0 + timedelta(minutes=seq if minutes is None else minutes), **extra,  # type: ignore[arg-type]
    )


def decided(seq: int, decision_id: str = "d1", **extra: Any) -> AuditEvent:
    return audit_event(seq, K.DECIDED, decision=APPROVED, decision_id=decision_id, actor="alice", **extra)


def synced(seq: int, decision_id: str = "d1", **extra: Any) -> AuditEvent:
    return audit_event(seq, K.RECORD_SYNCED, decision_id=decision_id, **extra)


def replay(events: list[AuditEvent], state: AuditState | None = None) -> tuple[AuditState | None, list[AuditOutcome]]:
    outcomes: list[AuditOutcome] = []
    for event in events:
        outcome = apply_audit_event(state, event)
        if isinstance(outcome, AuditAccepted):
            state = outcome.state
        outcomes.append(outcome)
    return state, outcomes


def simulate_audit(rng: random.Random) -> tuple[list[AuditEvent], AuditStatus]:
    """A valid history of one audit: a random walk through the table, re-opens included,
    and the record system's sync of the decision when there is one."""
    events: list[AuditEvent] = []
    minutes = 0.0

    def add(kind: AuditEventKind, **extra: object) -> None:
        nonlocal minutes
        minutes += rng.randint(1, 600)
        events.append(audit_event(len(events) + 1, kind, minutes=minutes, **extra))

    moves = {
        S.REQUESTED: [K.REVIEW_STARTED, K.DECIDED, K.TIMED_OUT, K.CANCELED, None],
        S.IN_REVIEW: [K.DECIDED, K.TIMED_OUT, K.CANCELED, None],
        S.TIMED_OUT: [K.REQUESTED, K.DECIDED, K.CANCELED, None],
    }
    status = S.REQUESTED
    add(K.REQUESTED, reviewers=rng.sample(["bob", "carol", "dan"], rng.randint(0, 2)))
    for _ in range(12):
        kind = rng.choice(moves[status])
        if kind is None:
            break
        if kind is K.DECIDED:
            add(kind, decision=rng.choice(list(AuditDecision)), decision_id="d1", actor="bob")
            status = S.DECIDED
            if rng.random() < 0.7:
                decision = events[-1].decision if rng.random() < 0.5 else None
                add(K.RECORD_SYNCED, decision_id="d1", decision=decision)
                status = S.SYNCED
            break
        extra: dict[str, object] = {"reviewers": [rng.choice(["erin", "bob"])]} if kind is K.REQUESTED else {}
        add(kind, **extra)
        status = {K.REQUESTED: S.REQUESTED, K.REVIEW_STARTED: S.IN_REVIEW, K.TIMED_OUT: S.TIMED_OUT,
                  K.CANCELED: S.CANCELED}[kind]
        if status is S.CANCELED:
            break
    return events, status


def test_in_order_lifecycle_reaches_synced_with_its_times() -> None:
    state, outcomes = replay([
        audit_event(1, K.REQUESTED, reviewers=["bob"]), audit_event(2, K.REVIEW_STARTED, actor="bob"),
        decided(3), synced(4),
    ])
    assert all(isinstance(o, AuditAccepted) for o in outcomes)
    assert state is not None and state.status is S.SYNCED
    assert (state.decision, state.decision_id, state.decided_by) == (APPROVED, "d1", "alice")
    assert state.requested_at == state.opened_at == T0 + timedelta(minutes=1)
    assert state.review_started_at == T0 + timedelta(minutes=2)
    assert state.synced_at == T0 + timedelta(minutes=4)
    assert state.reviewers == ("bob",) and state.episode == 1 and state.revision == 4


def test_redelivered_event_is_ignored_as_duplicate() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED)])
    outcome = apply_audit_event(state, audit_event(1, K.REQUESTED))
    assert isinstance(outcome, AuditIgnored) and outcome.kind == "duplicate"


def test_late_event_fills_history_but_never_moves_the_status_backwards() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), decided(3)])
    outcome = apply_audit_event(state, audit_event(2, K.REVIEW_STARTED))
    assert isinstance(outcome, AuditAccepted)
    assert outcome.state.status is S.DECIDED
    assert outcome.state.review_started_at == T0 + timedelta(minutes=2)


def test_record_sync_before_the_decision_is_kept_and_completes_it() -> None:
    state, outcomes = replay([audit_event(1, K.REQUESTED), synced(4)])
    assert isinstance(outcomes[1], AuditAccepted)
    assert state is not None and state.status is S.REQUESTED and state.record_decision_id == "d1"
    outcome = apply_audit_event(state, decided(3))
    assert isinstance(outcome, AuditAccepted) and outcome.state.status is S.SYNCED


def test_record_sync_as_the_very_first_event_creates_the_audit() -> None:
    state, _ = replay([synced(4)])
    assert state is not None and state.seq == NOT_REPORTED and state.status is S.REQUESTED
    state, _ = replay([audit_event(1, K.REQUESTED), decided(2)], state)
    assert state is not None and state.status is S.SYNCED


def test_record_reporting_another_decision_before_it_arrives_leaves_the_audit_decided() -> None:
    """The reviewer's decision wins; the reconciler repairs the record after the grace period."""
    state, outcomes = replay([audit_event(1, K.REQUESTED), synced(4, "d-other"), decided(3)])
    assert all(isinstance(o, AuditAccepted) for o in outcomes)
    assert state is not None and state.status is S.DECIDED and state.record_decision_id == "d-other"


def test_record_reporting_the_opposite_decision_does_not_sync() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), synced(4, decision=AuditDecision.REJECTED), decided(3)])
    assert state is not None and state.status is S.DECIDED


def test_record_sync_for_another_decision_is_rejected_with_both_ids() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), decided(2)])
    outcome = apply_audit_event(state, synced(3, "d2"))
    assert isinstance(outcome, AuditRejected)
    assert "decision d2" in outcome.reason and "is d1" in outcome.reason


def test_record_sync_applied_twice_changes_nothing() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), decided(2), synced(3)])
    again = apply_audit_event(state, synced(3).model_copy(update={"event_id": "resent", "seq": 9}))
    assert isinstance(again, AuditIgnored) and again.kind == "duplicate"


def test_record_sync_without_decision_id_is_rejected() -> None:
    outcome = apply_audit_event(None, audit_event(1, K.RECORD_SYNCED))
    assert isinstance(outcome, AuditRejected) and "decision_id" in outcome.reason


def test_decision_without_decision_id_is_rejected() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED)])
    outcome = apply_audit_event(state, audit_event(2, K.DECIDED, decision=APPROVED))
    assert isinstance(outcome, AuditRejected) and "decision_id" in outcome.reason


def test_second_decision_with_another_id_is_rejected() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), decided(2)])
    outcome = apply_audit_event(state, decided(3, "d2"))
    assert isinstance(outcome, AuditRejected) and "never taken back" in outcome.reason


def test_decision_resent_with_a_new_seq_is_a_duplicate() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), decided(2)])
    assert isinstance(apply_audit_event(state, decided(5)), AuditIgnored)


def test_late_decision_behind_a_timeout_it_contradicts_is_rejected() -> None:
    """A decision ordered before a timeout would have been DECIDED -> TIMED_OUT: dead-letter it."""
    state, _ = replay([audit_event(1, K.REQUESTED), audit_event(3, K.TIMED_OUT)])
    outcome = apply_audit_event(state, decided(2))
    assert isinstance(outcome, AuditRejected)
    assert "arrived late" in outcome.reason and "never taken back" in outcome.reason


def test_decision_after_timeout_lands() -> None:
    state, outcomes = replay([audit_event(1, K.REQUESTED), audit_event(2, K.TIMED_OUT), decided(3)])
    assert all(isinstance(o, AuditAccepted) for o in outcomes)
    assert state is not None and state.status is S.DECIDED


def test_event_after_cancel_is_rejected_as_final() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), audit_event(2, K.CANCELED)])
    outcome = apply_audit_event(state, audit_event(3, K.REVIEW_STARTED))
    assert isinstance(outcome, AuditRejected) and "CANCELED is final" in outcome.reason
    assert isinstance(apply_audit_event(state, audit_event(4, K.CANCELED)), AuditIgnored)


def test_conflicting_event_at_an_applied_seq_is_rejected() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), audit_event(2, K.REVIEW_STARTED)])
    outcome = apply_audit_event(state, audit_event(2, K.CANCELED))
    assert isinstance(outcome, AuditRejected) and "already holds REVIEW_STARTED" in outcome.reason


def test_event_for_another_subject_is_rejected() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED)])
    outcome = apply_audit_event(state, audit_event(2, K.REVIEW_STARTED).model_copy(update={"subject_id": "x"}))
    assert isinstance(outcome, AuditRejected) and "belongs to p TEMPLATE_INSTANCE tpl-7" in outcome.reason


def test_reopening_starts_a_new_episode_with_its_own_times() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), audit_event(2, K.REVIEW_STARTED), audit_event(3, K.TIMED_OUT),
                       audit_event(4, K.REQUESTED, reviewers=["erin"])])
    assert state is not None and state.status is S.REQUESTED and state.episode == 2
    assert state.opened_at == T0 + timedelta(minutes=4) and state.review_started_at is None
    assert state.reviewers == ("erin",)


def test_first_seen_at_never_moves_when_earlier_events_arrive_late() -> None:
    state, _ = replay([decided(3), audit_event(1, K.REQUESTED)])
    assert state is not None
    assert state.first_seen_at == T0 + timedelta(minutes=3)
    assert state.first_event_at == T0 + timedelta(minutes=1)


def test_review_start_does_not_start_a_new_episode() -> None:
    state, _ = replay([audit_event(1, K.REQUESTED), audit_event(2, K.REVIEW_STARTED)])
    assert state is not None and state.episode == 1


def _comparable(state: AuditState | None) -> dict[str, object]:
    """Everything but bookkeeping: `revision` counts accepted events, and `first_seen_at` is the
    time of the first event to *arrive* (fixed so an audit's ClickHouse partition never moves)."""
    assert state is not None
    return state.model_dump(exclude={"revision", "first_seen_at"})


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 100_000), shuffle_seed=st.integers(0, 100_000), dup_count=st.integers(0, 12))
def test_any_delivery_order_with_duplicates_converges_to_in_order_state(seed: int, shuffle_seed: int,
                                                                        dup_count: int) -> None:
    events, final_status = simulate_audit(random.Random(seed))
    in_order, outcomes = replay(events)
    assert all(isinstance(o, AuditAccepted) for o in outcomes)
    assert in_order is not None and in_order.status is final_status
    shuffler = random.Random(shuffle_seed)
    delivered = events + [shuffler.choice(events) for _ in range(dup_count)]
    shuffler.shuffle(delivered)
    scrambled, outcomes = replay(delivered)
    assert not any(isinstance(o, AuditRejected) for o in outcomes)
    assert _comparable(scrambled) == _comparable(in_order)
    _, replayed = replay(events, scrambled)
    assert all(isinstance(o, AuditIgnored) for o in replayed)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_apply_never_mutates_the_state_it_is_given(seed: int) -> None:
    events, _ = simulate_audit(random.Random(seed))
    state: AuditState | None = None
    for event in events:
        snapshot = state.model_dump() if state is not None else None
        outcome = apply_audit_event(state, event)
        if state is not None:
            assert state.model_dump() == snapshot
        if isinstance(outcome, AuditAccepted):
            state = outcome.state


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_state_survives_the_table_codec_unchanged(seed: int) -> None:
    """The table stores the state's JSON; a restarted worker must read back the same state."""
    state, _ = replay(simulate_audit(random.Random(seed))[0])
    assert state is not None
    assert AuditState.model_validate_json(state.model_dump_json()) == state
