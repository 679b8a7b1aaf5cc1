"""Audit detection: the seed's lost record sync is repaired once, stuck audits alert once per
episode, thresholds per project, and `next_deadline` agrees with `detect`."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import AuditDecision, AuditEvent, AuditEventKind, AuditSubjectKind
from streams.audit_detection import (
    AuditPolicy,
    Compensate,
    InconsistencyAlert,
    StuckAlert,
    compensation_event,
    detect,
    mark_alerted,
    mark_reported,
    next_deadline,
)
from streams.audit_state import AuditAccepted, AuditIgnored, AuditState, apply_audit_event
from streams.audit_transitions import AuditStatus
from streams.exceptions import StreamsError

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
K = AuditEventKind
S = AuditStatus
POLICY = AuditPolicy(stuck_after=timedelta(hours=1), sync_grace=timedelta(minutes=5),
                     compensation_retry=timedelta(minutes=1))


def audit_event(seq: int, kind: AuditEventKind, *, minutes: float, project: str = "p", **extra: object) -> AuditEvent:
    return AuditEvent(
        event_id=f"e{seq}", audit_id="au1", subject_kind=AuditSubjectKind.TEMPLATE_INSTANCE,
        subject_id="tpl-7", project=project, pipeline="ci", kind=kind, seq=seq,
        event_time=T0 + timedelta(minutes=minutes), **extra,  # type: ignore[arg-type]
    )


def apply_all(events: list[AuditEvent], state: AuditState | None = None) -> AuditState:
    for event in events:
        outcome = apply_audit_event(state, event)
        assert isinstance(outcome, AuditAccepted), outcome
        state = outcome.state
    assert state is not None
    return state


def seed_audit() -> AuditState:
    """The BK-CI seed: a template instance is requested, reviewed and approved; the record
    status message (RECORD_SYNCED) is never sent."""
    return apply_all([
        audit_event(1, K.REQUESTED, minutes=0, reviewers=["bob"]),
        audit_event(2, K.REVIEW_STARTED, minutes=1, actor="bob"),
        audit_event(3, K.DECIDED, minutes=2, decision=AuditDecision.APPROVED, decision_id="d1", actor="bob"),
    ])


def test_seed_replay_yields_one_compensation_and_one_alert_then_ends_repaired() -> None:
    state = seed_audit()
    decided_at = T0 + timedelta(minutes=2)
    assert next_deadline(state, POLICY) == decided_at + POLICY.sync_grace
    assert detect(state, decided_at + POLICY.sync_grace - timedelta(milliseconds=1), POLICY) == []

    now = decided_at + POLICY.sync_grace
    actions = detect(state, now, POLICY)
    assert [type(a) for a in actions] == [Compensate, InconsistencyAlert]
    compensate, alert = actions
    assert isinstance(compensate, Compensate) and isinstance(alert, InconsistencyAlert)
    assert (compensate.decision_id, alert.decision_id, alert.decided_by) == ("d1", "d1", "bob")
    assert alert.age == POLICY.sync_grace and alert.record_decision_id is None

    state = mark_reported(state, actions, now)
    assert detect(state, now, POLICY) == []

    first = apply_audit_event(state, compensate.event)
    assert isinstance(first, AuditAccepted)
    repaired = first.state
    assert repaired.status is S.REPAIRED and repaired.repair_reason == compensate.reason
    assert repaired.repaired_by == "cipulse-reconciler" and repaired.decision_id == "d1"
    second = apply_audit_event(repaired, compensate.event)
    assert isinstance(second, AuditIgnored) and second.kind == "duplicate"
    assert next_deadline(repaired, POLICY) is None
    assert detect(repaired, now + timedelta(days=30), POLICY) == []


def test_compensation_re_emitted_after_a_crash_is_the_same_event() -> None:
    state = seed_audit()
    now = T0 + timedelta(hours=1)
    a, b = compensation_event(state, now), compensation_event(state, now + timedelta(minutes=3))
    assert a.event_id == b.event_id == "au1/repair/d1" and a.reason == b.reason
    repaired = apply_all([a], state)
    assert isinstance(apply_audit_event(repaired, b), AuditIgnored)


def test_unapplied_compensation_is_resent_without_a_second_alert() -> None:
    state = seed_audit()
    now = T0 + timedelta(minutes=7)
    state = mark_reported(state, detect(state, now, POLICY), now)
    assert next_deadline(state, POLICY) == now + POLICY.compensation_retry
    resent = detect(state, now + POLICY.compensation_retry, POLICY)
    assert [type(a) for a in resent] == [Compensate]


def test_record_sync_arriving_within_grace_prevents_any_repair() -> None:
    state = apply_all([audit_event(4, K.RECORD_SYNCED, minutes=4, decision_id="d1")], seed_audit())
    assert state.status is S.SYNCED
    assert next_deadline(state, POLICY) is None and detect(state, T0 + timedelta(days=1), POLICY) == []


def test_real_sync_arriving_after_the_repair_is_recorded_but_keeps_it_repaired() -> None:
    state = seed_audit()
    state = apply_all([compensation_event(state, T0 + timedelta(minutes=8))], state)
    late = audit_event(4, K.RECORD_SYNCED, minutes=9, decision_id="d1")
    state = apply_all([late], state)
    assert state.status is S.REPAIRED and state.synced_at == T0 + timedelta(minutes=9)
    assert isinstance(apply_audit_event(state, late), AuditIgnored)


def test_record_reporting_another_decision_before_it_came_is_repaired_and_named_in_the_alert() -> None:
    """After the decision such a sync is rejected; before it, it is the record's report, and
    the reviewer's decision arriving later leaves the audit DECIDED for the reconciler."""
    state = apply_all([
        audit_event(1, K.REQUESTED, minutes=0),
        audit_event(4, K.RECORD_SYNCED, minutes=1, decision_id="d-stale"),
        audit_event(3, K.DECIDED, minutes=2, decision=AuditDecision.APPROVED, decision_id="d1", actor="bob"),
    ])
    actions = detect(state, T0 + timedelta(minutes=8), POLICY)
    alert = actions[1]
    assert isinstance(alert, InconsistencyAlert) and alert.record_decision_id == "d-stale"
    assert "d-stale" in alert.reason


def test_marks_survive_a_worker_restart_through_the_table_codec() -> None:
    state = seed_audit()
    now = T0 + timedelta(minutes=7)
    state = mark_reported(state, detect(state, now, POLICY), now)
    restored = AuditState.model_validate_json(state.model_dump_json())
    assert detect(restored, now + timedelta(seconds=30), POLICY) == []


def test_compensating_an_undecided_audit_is_refused() -> None:
    state = apply_all([audit_event(1, K.REQUESTED, minutes=0)])
    with pytest.raises(StreamsError, match="only a DECIDED audit"):
        compensation_event(state, T0)


def test_stuck_audit_alerts_once_per_episode_and_again_only_after_reopen() -> None:
    state = apply_all([audit_event(1, K.REQUESTED, minutes=0, reviewers=["bob", "carol"])])
    assert detect(state, T0 + timedelta(minutes=59, seconds=59), POLICY) == []
    actions = detect(state, T0 + timedelta(hours=1), POLICY)
    assert len(actions) == 1
    alert = actions[0]
    assert isinstance(alert, StuckAlert)
    assert (alert.episode, alert.age, alert.reviewers, alert.alert_id) == (1, timedelta(hours=1), ("bob", "carol"),
                                                                          "au1/stuck/1")
    state = mark_reported(state, actions, T0 + timedelta(hours=1))
    assert next_deadline(state, POLICY) is None
    state = apply_all([audit_event(2, K.REVIEW_STARTED, minutes=70)], state)
    assert detect(state, T0 + timedelta(days=3), POLICY) == []  # same episode: not repeated

    state = apply_all([audit_event(3, K.TIMED_OUT, minutes=120), audit_event(4, K.REQUESTED, minutes=130)], state)
    reopened_at = T0 + timedelta(minutes=130)
    assert state.episode == 2 and next_deadline(state, POLICY) == reopened_at + timedelta(hours=1)
    assert detect(state, reopened_at + timedelta(minutes=59), POLICY) == []
    again = detect(state, reopened_at + timedelta(hours=1), POLICY)
    assert [a.episode for a in again if isinstance(a, StuckAlert)] == [2]


def test_mark_for_an_old_episode_leaves_a_reopened_audit_armed() -> None:
    """The timer marks the state it reads *after* publishing; a re-open in between stays armed."""
    state = apply_all([audit_event(1, K.REQUESTED, minutes=0), audit_event(2, K.TIMED_OUT, minutes=61),
                       audit_event(3, K.REQUESTED, minutes=62)])
    state = mark_alerted(state, 1)
    assert next_deadline(state, POLICY) == T0 + timedelta(minutes=62) + POLICY.stuck_after


@settings(max_examples=100, deadline=None)
@given(later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_alerted_episode_stays_quiet_at_any_later_time(later: timedelta) -> None:
    state = apply_all([audit_event(1, K.REQUESTED, minutes=0)])
    now = T0 + timedelta(hours=1)
    state = mark_reported(state, detect(state, now, POLICY), now)
    assert detect(state, now + later, POLICY) == []


def test_per_project_threshold_overrides_the_default() -> None:
    policy = AuditPolicy(stuck_after=timedelta(hours=1), stuck_after_by_project={"slow": timedelta(hours=48)})
    fast = apply_all([audit_event(1, K.REQUESTED, minutes=0)])
    slow = apply_all([audit_event(1, K.REQUESTED, minutes=0, project="slow")])
    two_hours = T0 + timedelta(hours=2)
    assert len(detect(fast, two_hours, policy)) == 1
    assert detect(slow, two_hours, policy) == []
    alerts = detect(slow, T0 + timedelta(hours=48), policy)
    assert [a.threshold for a in alerts if isinstance(a, StuckAlert)] == [timedelta(hours=48)]


def test_timed_out_and_canceled_audits_need_no_look() -> None:
    for final in (K.TIMED_OUT, K.CANCELED):
        state = apply_all([audit_event(1, K.REQUESTED, minutes=0), audit_event(2, final, minutes=1)])
        assert next_deadline(state, POLICY) is None and detect(state, T0 + timedelta(days=9), POLICY) == []


@pytest.mark.parametrize("fields", [
    {"stuck_after": timedelta(0)}, {"sync_grace": timedelta(seconds=-1)},
    {"stuck_after_by_project": {" ": timedelta(hours=1)}}, {"stuck_after_by_project": {"p": timedelta(0)}},
    {"stuck_afterr": timedelta(hours=1)},
])
def test_policy_refuses_nonpositive_thresholds_blank_projects_and_typos(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AuditPolicy(**fields)  # type: ignore[arg-type]


def test_policy_reads_durations_in_seconds_from_settings() -> None:
    policy = AuditPolicy.model_validate({"stuck_after": 90, "stuck_after_by_project": {"slow": "PT2H"}})
    assert policy.stuck_threshold("p") == timedelta(seconds=90)
    assert policy.stuck_threshold("slow") == timedelta(hours=2)


def _random_history(rng: random.Random) -> list[AuditEvent]:
    events = [audit_event(1, K.REQUESTED, minutes=0)]
    path = rng.choice([[], [K.REVIEW_STARTED], [K.REVIEW_STARTED, K.DECIDED], [K.DECIDED, K.RECORD_SYNCED],
                       [K.TIMED_OUT, K.REQUESTED], [K.CANCELED]])
    for seq, kind in enumerate(path, start=2):
        extra = {"decision": AuditDecision.REJECTED, "decision_id": "d1"} if kind in (K.DECIDED, K.RECORD_SYNCED) else {}
        events.append(audit_event(seq, kind, minutes=rng.randint(1, 100) + 100 * seq, **extra))
    return events


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000), offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
       marked=st.booleans())
def test_detect_acts_exactly_from_the_next_deadline_on(seed: int, offset: timedelta, marked: bool) -> None:
    """The timer's due-time index is only correct if `detect` is empty before the deadline and
    not empty from it on: then every audit is reported at its deadline plus the timer's tick."""
    state = apply_all(_random_history(random.Random(seed)))
    if marked:
        state = mark_reported(state, detect(state, T0 + timedelta(days=1), POLICY), T0 + timedelta(days=1))
    now = T0 + offset
    deadline = next_deadline(state, POLICY)
    assert bool(detect(state, now, POLICY)) is (deadline is not None and now >= deadline)
