"""Notifications fire on state changes only: a build entering its final status, a success after a
failure (RECOVERED), a stuck review; the Devtron seed's re-sent "succeeded" pod events never do,
and a redelivered change set maps to the same notification id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AuditAlert,
    AuditAlertKind,
    BuildEvent,
    BuildScope,
    BuildStatus,
    BuildStatusChange,
    NotificationTransition,
)
from streams.build_state import Accepted, BuildState, apply_event
from streams.change_set import change_set
from streams.notify_requests import audit_alert_requests, build_requests
from streams.notify_subscriptions import Subscription
from streams.notify_transitions import (
    PipelineOutcome,
    audit_alert_transitions,
    build_transitions,
    outcome_before,
    pick_transition,
    pipeline_key,
    record_outcome,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
S = BuildStatus
N = NotificationTransition


def event(build: str, seq: int, status: BuildStatus, *, minutes: float = 0, scope: BuildScope = BuildScope.BUILD,
          **extra: Any) -> BuildEvent:
    return BuildEvent(
        event_id=f"{build}-e{seq}", build_id=build, project="payments", pipeline="deploy", seq=seq,
        event_time=T0 + timedelta(minutes=minutes), scope=scope, status=status, branch="main", **extra,
    )


def run(events: list[BuildEvent]) -> list[BuildStatusChange]:
    """The change sets the build-status agent publishes for `events` (ignored events publish none)."""
    state: BuildState | None = None
    changes = []
    for ev in events:
        outcome = apply_event(state, ev)
        if isinstance(outcome, Accepted):
            state = outcome.state
            changes.append(change_set(outcome, ev))
    return changes


def transitions_of(changes: list[BuildStatusChange], before: BuildStatus | None = None) -> list[list[N]]:
    return [build_transitions(c, before) for c in changes]


def sub(sub_id: str, *transitions: str, **extra: Any) -> Subscription:
    return Subscription.model_validate({"id": sub_id, "transitions": list(transitions),
                                        "channel": {"type": "log"}, **extra})


def test_only_the_change_into_a_final_status_is_a_transition() -> None:
    changes = run([event("b1", 1, S.QUEUED), event("b1", 2, S.RUNNING, minutes=1),
                   event("b1", 3, S.RUNNING, minutes=2, scope=BuildScope.STAGE, stage_id="test"),
                   event("b1", 4, S.FAILED, minutes=3, error_reason="tests failed")])
    assert transitions_of(changes) == [[], [], [], [N.FAILED]]


def test_the_devtron_seed_resent_success_pod_events_never_notify_again() -> None:
    """Devtron re-sent the success e-mail for every later pod event of a finished run."""
    finished = [event("b1", 1, S.RUNNING), event("b1", 2, S.SUCCEEDED, minutes=5)]
    later_pod_events = [
        event("b1", 3 + i, S.SUCCEEDED, minutes=6 + i * 1.7) for i in range(50)
    ] + [event("b1", 2, S.SUCCEEDED, minutes=5)] * 10  # plus redeliveries of the original
    later_pod_events.insert(7, event("b1", 100, S.SUCCEEDED, minutes=9, termination_reason="Completed"))
    changes = run(finished + later_pod_events)
    fired = [t for t in transitions_of(changes) if t]
    assert fired == [[N.SUCCEEDED]]
    assert len(changes) >= 3  # the gap-filling change sets exist, they just are not transitions


@pytest.mark.parametrize(("final", "before", "expected"), [
    (S.FAILED, None, [N.FAILED]),
    (S.FAILED, S.FAILED, [N.FAILED]),
    (S.CANCELED, S.FAILED, [N.CANCELED]),
    (S.SUCCEEDED, None, [N.SUCCEEDED]),
    (S.SUCCEEDED, S.SUCCEEDED, [N.SUCCEEDED]),
    (S.SUCCEEDED, S.FAILED, [N.RECOVERED, N.SUCCEEDED]),
])
def test_final_status_and_previous_outcome_decide_the_transition(
    final: BuildStatus, before: BuildStatus | None, expected: list[N]
) -> None:
    [_, last] = run([event("b1", 1, S.RUNNING), event("b1", 2, final, minutes=1)])
    assert build_transitions(last, before) == expected


def test_a_build_first_reported_already_finished_is_a_transition() -> None:
    [only] = run([event("b1", 1, S.FAILED)])
    assert only.previous_status is None
    assert build_transitions(only, None) == [N.FAILED]


def test_a_subscriber_to_both_recovered_and_succeeded_gets_only_recovered() -> None:
    candidates = [N.RECOVERED, N.SUCCEEDED]
    assert pick_transition(candidates, [N.SUCCEEDED, N.RECOVERED]) is N.RECOVERED
    assert pick_transition(candidates, [N.SUCCEEDED]) is N.SUCCEEDED
    assert pick_transition(candidates, [N.FAILED]) is None


def test_recovery_survives_redelivery_of_the_recovering_change_set() -> None:
    [_, failed] = run([event("b1", 1, S.RUNNING), event("b1", 2, S.FAILED, minutes=1)])
    [_, ok] = run([event("b2", 1, S.RUNNING, minutes=2), event("b2", 2, S.SUCCEEDED, minutes=3)])
    stored: PipelineOutcome | None = None
    seen = []
    for change in [failed, ok, ok, failed, ok]:  # redeliveries, even out of order
        seen.append(build_transitions(change, outcome_before(stored, change)))
        stored = record_outcome(stored, change)
    assert seen == [[N.FAILED], [N.RECOVERED, N.SUCCEEDED], [N.RECOVERED, N.SUCCEEDED], [N.FAILED],
                    [N.RECOVERED, N.SUCCEEDED]]
    assert stored == PipelineOutcome(build_id="b2", status=S.SUCCEEDED, before=S.FAILED)
    assert pipeline_key(ok) == "payments/deploy@main"


def test_a_cancel_between_failure_and_success_does_not_hide_the_recovery() -> None:
    changes = [run([event(b, 1, S.RUNNING), event(b, 2, st_, minutes=1)])[-1]
               for b, st_ in (("b1", S.FAILED), ("b2", S.CANCELED), ("b3", S.SUCCEEDED))]
    stored: PipelineOutcome | None = None
    fired = []
    for change in changes:
        fired.append(build_transitions(change, outcome_before(stored, change)))
        stored = record_outcome(stored, change)
    assert fired == [[N.FAILED], [N.CANCELED], [N.RECOVERED, N.SUCCEEDED]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([S.QUEUED, S.PREPARING, S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELED]),
                min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_a_build_notifies_at_most_once_whatever_events_arrive_in_whatever_order(
    statuses: list[BuildStatus], rng: Any
) -> None:
    events = [event("b1", i + 1, s, minutes=i) for i, s in enumerate(statuses)]
    delivered = events + [rng.choice(events) for _ in range(len(events))]
    rng.shuffle(delivered)
    fired = [t for t in transitions_of(run(delivered)) if t]
    assert len(fired) <= 1


def alert(kind: AuditAlertKind = AuditAlertKind.STUCK, episode: int = 1, pipeline: str | None = "deploy") -> AuditAlert:
    return AuditAlert(
        alert_id=f"au1/stuck/{episode}", audit_id="au1", kind=kind, project="payments", pipeline=pipeline,
        subject_kind="TEMPLATE_INSTANCE", subject_id="tpl-7", status="IN_REVIEW", episode=episode,
        age_seconds=7300, threshold_seconds=3600, reviewers=["bob"], reason="no decision", raised_at=T0,
    )


def test_a_stuck_review_is_audit_stuck_and_an_inconsistency_notifies_nobody() -> None:
    assert audit_alert_transitions(alert()) == [N.AUDIT_STUCK]
    assert audit_alert_transitions(alert(AuditAlertKind.INCONSISTENT)) == []


def test_requests_go_to_matching_subscriptions_with_a_key_independent_of_arrival_time() -> None:
    [_, failed] = run([event("b1", 1, S.RUNNING), event("b1", 2, S.FAILED, minutes=1, error_reason="OOMKilled")])
    subs = [sub("all", "failed"), sub("other-project", "failed", match={"projects": ["web"]}),
            sub("successes", "succeeded")]
    first = build_requests(failed, None, subs, T0)
    again = build_requests(failed, None, subs, T0 + timedelta(hours=3))
    assert [r.subscription_id for r in first] == ["all"]
    assert [r.notification_id for r in first] == [r.notification_id for r in again]
    [request] = first
    assert request.transition is N.FAILED and request.version == failed.revision and request.status == "FAILED"
    assert "payments/deploy build b1 failed" == request.title
    assert "error: OOMKilled" in request.body


def test_recovered_and_succeeded_subscribers_get_one_request_each() -> None:
    [_, ok] = run([event("b1", 1, S.RUNNING), event("b1", 2, S.SUCCEEDED, minutes=1)])
    requests = build_requests(ok, S.FAILED, [sub("r", "recovered"), sub("s", "succeeded"), sub("both", "succeeded",
                                                                                              "recovered")], T0)
    assert [(r.subscription_id, r.transition) for r in requests] == [
        ("r", N.RECOVERED), ("s", N.SUCCEEDED), ("both", N.RECOVERED)]
    assert len({r.notification_id for r in requests}) == 3


def test_a_stuck_review_notifies_once_per_episode() -> None:
    subs = [sub("reviews", "audit_stuck"), sub("deploy-only", "audit_stuck", match={"pipelines": ["deploy"]})]
    first = audit_alert_requests(alert(episode=1), subs, T0)
    redelivered = audit_alert_requests(alert(episode=1), subs, T0 + timedelta(minutes=1))
    reopened = audit_alert_requests(alert(episode=2), subs, T0 + timedelta(days=1))
    assert [r.notification_id for r in first] == [r.notification_id for r in redelivered]
    assert not {r.notification_id for r in first} & {r.notification_id for r in reopened}
    assert [r.subscription_id for r in audit_alert_requests(alert(pipeline=None), subs, T0)] == ["reviews"]
    assert "reviewers: bob" in first[0].body and "2h01m" in first[0].body
