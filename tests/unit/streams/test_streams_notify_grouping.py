"""Grouping follows Alertmanager: nothing before group_wait, flushes of a group group_interval
apart, every notification sent exactly once even when redelivered (grouping plus the notification
log), in exactly one flush when not redelivered, repeats only after
repeat_interval; the state survives a JSON round trip at any moment; the token bucket keeps its rate.
A message carries at most max_per_message notifications, a full one goes at once, and a group
refuses what would take it beyond max_pending."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.notify_dedup import InMemoryNotificationLog, unsent
from streams.notify_grouping import (
    AddOutcome,
    GroupFlush,
    GroupScheduler,
    GroupState,
    RateLimiter,
    SchedulerState,
    add_notification,
    flush_due,
    group_key,
    is_expired,
    next_flush_at,
)
from streams.notify_subscriptions import GroupingPolicy, Subscription

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
N = NotificationTransition


def note(i: int, *, project: str = "payments", pipeline: str | None = "deploy", transition: N = N.FAILED,
         sub: str = "oncall") -> NotificationRequest:
    return NotificationRequest(
        notification_id=f"n{i}", subscription_id=sub, subject_kind="BUILD", subject_id=f"b{i}", project=project,
        pipeline=pipeline, transition=transition, status="FAILED", version=1, channel=NotificationChannel.LOG,
        title=f"build b{i} failed", body="", created_at=T0,
    )


def policy(wait: float = 30, interval: float = 300, repeat: float | None = None,
           group_by: tuple[str, ...] = ("project", "pipeline", "transition"),
           per_message: int = 100, max_pending: int = 5000) -> GroupingPolicy:
    return GroupingPolicy.model_validate({
        "group_by": group_by, "group_wait": timedelta(seconds=wait), "group_interval": timedelta(seconds=interval),
        "repeat_interval": None if repeat is None else timedelta(seconds=repeat),
        "max_per_message": per_message, "max_pending": max_pending,
    })


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_twenty_failures_within_group_wait_become_one_message() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=30)})
    for i in range(20):
        assert scheduler.add(note(i), at(i)) is AddOutcome.ADDED
    assert scheduler.due(at(29.9)) == []
    assert scheduler.next_due() == at(30)
    [flush] = scheduler.due(at(30))
    assert [n.notification_id for n in flush.notifications] == [f"n{i}" for i in range(20)]
    assert not flush.is_repeat
    assert flush.group_key == 'oncall{pipeline="deploy",project="payments",transition="FAILED"}'


def test_later_notifications_wait_for_group_interval_and_then_go_together() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=30, interval=300)})
    scheduler.add(note(1), at(0))
    assert len(scheduler.due(at(30))) == 1
    scheduler.add(note(2), at(40))
    scheduler.add(note(3), at(200))
    assert scheduler.due(at(329)) == []
    [flush] = scheduler.due(at(330))
    assert [n.notification_id for n in flush.notifications] == ["n2", "n3"]


def test_a_new_wave_after_a_quiet_period_still_waits_group_wait_for_companions() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=30, interval=60, repeat=3600)})
    scheduler.add(note(1), at(0))
    scheduler.due(at(30))
    scheduler.add(note(2), at(1000))
    assert scheduler.due(at(1029)) == []
    assert [n.notification_id for n in scheduler.due(at(1030))[0].notifications] == ["n2"]


def test_groups_split_by_the_group_by_labels_only() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=0, group_by=("project",))})
    scheduler.add(note(1, pipeline="a", transition=N.FAILED), at(0))
    scheduler.add(note(2, pipeline="b", transition=N.CANCELED), at(0))
    scheduler.add(note(3, project="web"), at(0))
    flushes = scheduler.due(at(0))
    assert sorted(len(f.notifications) for f in flushes) == [1, 2]
    assert {f.group_key for f in flushes} == {'oncall{project="payments"}', 'oncall{project="web"}'}


def test_a_redelivered_notification_is_not_added_while_pending_or_just_flushed() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=10, interval=60)})
    assert scheduler.add(note(1), at(0)) is AddOutcome.ADDED
    assert scheduler.add(note(1), at(5)) is AddOutcome.DUPLICATE
    [flush] = scheduler.due(at(10))
    assert len(flush.notifications) == 1
    assert scheduler.add(note(1), at(20)) is AddOutcome.DUPLICATE  # redelivered while its flush is being sent
    assert scheduler.due(at(1000)) == []


def test_an_unchanged_group_is_repeated_only_after_repeat_interval() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=0, interval=60, repeat=3600)})
    scheduler.add(note(1), at(0))
    [first] = scheduler.due(at(0))
    assert scheduler.due(at(3599)) == []
    [repeat] = scheduler.due(at(3600))
    assert repeat.is_repeat and repeat.notifications == first.notifications
    assert repeat.flush_id != first.flush_id


def test_without_repeat_interval_a_quiet_group_is_forgotten_after_group_interval() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=0, interval=60)})
    scheduler.add(note(1), at(0))
    scheduler.due(at(0))
    assert scheduler.due(at(59)) == [] and len(scheduler.state.groups) == 1
    assert scheduler.due(at(60)) == [] and scheduler.state.groups == {}
    assert scheduler.next_due() is None


def test_flushing_the_same_state_twice_gives_the_same_flush_id() -> None:
    """A worker that crashes after publishing a flush but before storing the new state re-publishes
    it with the same id, which the notification log and the receiver recognise."""
    pol = policy(wait=0)
    group, _ = add_notification(None, note(1), pol, at(0))
    _, first = flush_due(group, pol, at(0))
    _, again = flush_due(GroupState.model_validate_json(group.model_dump_json()), pol, at(5))
    assert first is not None and again is not None and first.flush_id == again.flush_id


def test_group_level_functions_agree_with_next_flush_at() -> None:
    pol = policy(wait=30, interval=300)
    group, added = add_notification(None, note(1), pol, at(0))
    assert added is AddOutcome.ADDED and next_flush_at(group, pol) == at(30) and not is_expired(group, pol, at(0))
    assert flush_due(group, pol, at(29))[1] is None


def test_the_scheduler_is_built_from_subscriptions() -> None:
    sub = Subscription.model_validate({"id": "oncall", "transitions": ["failed"], "channel": {"type": "log"},
                                       "grouping": {"group_wait": "0s"}})
    scheduler = GroupScheduler.for_subscriptions([sub])
    scheduler.add(note(1), at(0))
    assert len(scheduler.due(at(0))) == 1
    assert group_key("s", {}) == "s{}"


def ids(notifications: tuple[NotificationRequest, ...]) -> list[str]:
    return [n.notification_id for n in notifications]


def test_a_message_carries_at_most_max_per_message_oldest_first_and_the_rest_waits_group_interval() -> None:
    pol = policy(wait=30, interval=300, per_message=3, max_pending=10)
    group: GroupState | None = None
    for i in range(5):
        group, _ = add_notification(group, note(i), pol, at(i))
    assert group is not None
    assert next_flush_at(group, pol) == at(0)  # full: due at once, group_wait or not
    group, flush = flush_due(group, pol, at(4))
    assert flush is not None and ids(flush.notifications) == ["n0", "n1", "n2"] and not flush.is_repeat
    assert ids(group.pending) == ["n3", "n4"] and group.pending_since == at(4)
    assert group.last_flushed_ids == ("n0", "n1", "n2") and group.repeat_content == ()
    # the partial rest keeps the usual timing: group_interval after the last flush
    assert next_flush_at(group, pol) == at(304)
    assert flush_due(group, pol, at(303))[1] is None
    group, rest = flush_due(group, pol, at(304))
    assert rest is not None and ids(rest.notifications) == ["n3", "n4"] and group.pending == ()


def test_a_full_group_does_not_wait_for_group_wait_or_group_interval() -> None:
    scheduler = GroupScheduler({"oncall": policy(wait=30, interval=300, per_message=2)})
    scheduler.add(note(0), at(0))
    assert scheduler.next_due() == at(30)
    scheduler.add(note(1), at(5))  # the group is full now: due since its first notification
    assert scheduler.next_due() == at(0)
    [first] = scheduler.due(at(5))
    assert ids(first.notifications) == ["n0", "n1"]
    for i in range(2, 7):
        scheduler.add(note(i), at(6))
    # two full messages at once (the agent sends them one after the other), the partial rest later
    flushes = scheduler.due(at(6))
    assert [ids(f.notifications) for f in flushes] == [["n2", "n3"], ["n4", "n5"]]
    assert scheduler.next_due() == at(306)
    [rest] = scheduler.due(at(306))
    assert ids(rest.notifications) == ["n6"]


def test_a_group_refuses_beyond_max_pending_but_never_refuses_a_duplicate() -> None:
    pol = policy(wait=30, per_message=2, max_pending=3)
    group: GroupState | None = None
    outcomes = []
    for i in range(4):
        group, outcome = add_notification(group, note(i), pol, at(0))
        outcomes.append(outcome)
    assert group is not None
    assert outcomes == [AddOutcome.ADDED] * 3 + [AddOutcome.GROUP_FULL]
    assert ids(group.pending) == ["n0", "n1", "n2"]
    assert add_notification(group, note(1), pol, at(1)) == (group, AddOutcome.DUPLICATE)
    group, flush = flush_due(group, pol, at(1))
    assert flush is not None and ids(flush.notifications) == ["n0", "n1"]
    group, outcome = add_notification(group, note(3), pol, at(2))  # room again
    assert outcome is AddOutcome.ADDED and ids(group.pending) == ["n2", "n3"]


def test_the_last_message_is_kept_as_ids_and_as_content_only_when_the_group_repeats() -> None:
    for repeat, content in ((None, []), (3600, ["n0", "n1"])):
        pol = policy(wait=0, interval=60, repeat=repeat)
        group, _ = add_notification(None, note(0), pol, at(0))
        group, _ = add_notification(group, note(1), pol, at(0))
        group, flush = flush_due(group, pol, at(0))
        assert flush is not None and group.last_flushed_ids == ("n0", "n1")
        assert ids(group.repeat_content) == content
        assert "last_flushed" not in group.model_dump()


def test_a_group_value_written_before_the_ids_content_split_still_loads() -> None:
    """Values stored by the earlier code hold `last_flushed` as whole notifications."""
    old = {
        "subscription_id": "oncall", "group_key": 'oncall{pipeline="deploy",project="payments",transition="FAILED"}',
        "labels": {"project": "payments", "pipeline": "deploy", "transition": "FAILED"},
        "created_at": "2026-11-01T12:00:00Z", "pending": [], "pending_since": None,
        "last_flush_at": "2026-11-01T12:00:00Z",
        "last_flushed": [note(0).model_dump(mode="json"), note(1).model_dump(mode="json")], "flush_seq": 1,
    }
    group = GroupState.model_validate_json(json.dumps(old))
    assert group.last_flushed_ids == ("n0", "n1") and group.repeat_content == (note(0), note(1))
    assert add_notification(group, note(1), policy(repeat=3600), at(1))[1] is AddOutcome.DUPLICATE
    _, repeat = flush_due(group, policy(wait=0, interval=60, repeat=3600), at(3600))
    assert repeat is not None and repeat.is_repeat and ids(repeat.notifications) == ["n0", "n1"]
    assert flush_due(group, policy(wait=0, interval=60), at(3600))[1] is None  # no repeat policy: no repeat
    assert GroupState.model_validate_json(group.model_dump_json()) == group


@dataclass
class Added:
    notification: NotificationRequest
    at: datetime
    group: str


add_step = st.tuples(
    st.just("add"), st.floats(0, 400), st.sampled_from(["p1", "p2"]), st.sampled_from([N.FAILED, N.CANCELED])
)
step = st.one_of(
    add_step,
    add_step,  # twice as likely: groups fill up beyond max_pending between ticks
    st.tuples(st.just("tick"), st.floats(0, 400), st.just(""), st.just(N.FAILED)),
    st.tuples(st.just("redeliver"), st.floats(0, 400), st.just(""), st.just(N.FAILED)),
)


@settings(max_examples=300, deadline=None)
@given(
    wait=st.integers(0, 120), interval=st.integers(1, 600), repeat=st.none() | st.integers(1, 3000),
    steps=st.lists(step, max_size=40), restart_every=st.integers(1, 5),
    per_message=st.integers(1, 4), room=st.integers(0, 3),
)
def test_grouping_properties_hold_for_any_arrival_pattern(
    wait: int, interval: int, repeat: int | None, steps: list[tuple[str, float, str, N]], restart_every: int,
    per_message: int, room: int,
) -> None:
    pol = policy(wait=wait, interval=interval, repeat=repeat, group_by=("project", "transition"),
                 per_message=per_message, max_pending=per_message + room)
    scheduler = GroupScheduler({"oncall": pol})
    now = T0
    added: dict[str, Added] = {}
    refused: set[str] = set()
    flushes: list[GroupFlush] = []
    for index, (kind, delay, project, transition) in enumerate(steps):
        now += timedelta(seconds=delay)
        if kind == "add":
            n = note(len(added) + len(refused), project=project, pipeline=None, transition=transition)
            key = group_key("oncall", {"project": project, "transition": transition.value})
            held = scheduler.state.groups[key].pending if key in scheduler.state.groups else ()
            outcome = scheduler.add(n, now)
            if outcome is AddOutcome.GROUP_FULL:
                assert len(held) == pol.max_pending
                refused.add(n.notification_id)
            else:
                assert outcome is AddOutcome.ADDED and len(held) < pol.max_pending
                added[n.notification_id] = Added(n, now, key)
        elif kind == "redeliver" and added:
            scheduler.add(list(added.values())[-1].notification, now)
        else:
            flushes.extend(scheduler.due(now))
        assert all(len(g.pending) <= pol.max_pending for g in scheduler.state.groups.values())
        if index % restart_every == 0:  # the table's state after a restart
            scheduler = GroupScheduler({"oncall": pol}, SchedulerState.model_validate_json(scheduler.state.model_dump_json()))
    for _ in range(3):  # the partial rest of a full message waits once more
        now += timedelta(seconds=wait + interval)
        flushes.extend(scheduler.due(now))
    assert not any(g.pending for g in scheduler.state.groups.values())

    first_flush_of_id: dict[str, int] = defaultdict(int)
    sent_of_id: dict[str, int] = defaultdict(int)
    log = InMemoryNotificationLog()  # every flush acknowledged at once
    last_by_group: dict[str, GroupFlush] = {}
    for flush in flushes:
        previous = last_by_group.get(flush.group_key)
        assert 1 <= len(flush.notifications) <= per_message
        full = not flush.is_repeat and len(flush.notifications) == per_message  # may go at once
        if previous is not None and not full:
            assert flush.flushed_at - previous.flushed_at >= timedelta(seconds=interval)
        if flush.is_repeat:
            assert repeat is not None and previous is not None
            assert flush.flushed_at - previous.flushed_at >= timedelta(seconds=repeat)
            assert flush.notifications == previous.notifications
        else:
            oldest = min(added[n.notification_id].at for n in flush.notifications)
            if not full:
                assert flush.flushed_at >= oldest + timedelta(seconds=wait)
            for n in flush.notifications:
                assert added[n.notification_id].group == flush.group_key
                first_flush_of_id[n.notification_id] += 1
            for n in unsent(flush.notifications, log):
                sent_of_id[n.notification_id] += 1
                log.record_sent(n.notification_id, flush.flushed_at, attempt=1)
        last_by_group[flush.group_key] = flush
    assert sent_of_id == {key: 1 for key in added}
    assert not refused & {n.notification_id for f in flushes for n in f.notifications}
    if not any(kind == "redeliver" for kind, *_ in steps):
        assert first_flush_of_id == {key: 1 for key in added}
    else:  # a redelivery after its group expired is caught by the notification log, not the group
        assert set(first_flush_of_id) == set(added)


def test_the_rate_limiter_allows_a_burst_then_one_token_per_refill_period() -> None:
    limiter = RateLimiter(per_minute=6)
    assert all(limiter.allow(at(0)) for _ in range(6))
    assert not limiter.allow(at(0))
    assert limiter.next_allowed(at(0)) == at(10)
    assert not limiter.allow(at(9.99))
    assert limiter.allow(at(10))
    restored = RateLimiter.model_validate_json(limiter.model_dump_json())
    assert not restored.allow(at(10)) and restored.next_allowed(at(10)) == at(20)


def test_a_clock_stepping_back_does_not_refill_the_bucket() -> None:
    limiter = RateLimiter(per_minute=1)
    assert limiter.allow(at(100))
    assert not limiter.allow(at(50))
    assert not limiter.allow(at(159))
    assert limiter.allow(at(160))


@settings(max_examples=200, deadline=None)
@given(per_minute=st.integers(1, 120), gaps=st.lists(st.floats(0, 30), min_size=1, max_size=200))
def test_the_rate_limiter_never_exceeds_burst_plus_rate_and_next_allowed_is_honoured(
    per_minute: int, gaps: list[float]
) -> None:
    limiter = RateLimiter(per_minute=per_minute)
    now = T0
    allowed_at: list[datetime] = []
    for gap in gaps:
        now += timedelta(seconds=gap)
        if limiter.allow(now):
            allowed_at.append(now)
        else:
            probe = RateLimiter.model_validate(limiter.model_dump())
            assert probe.allow(probe.next_allowed(now))
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            span = (allowed_at[j] - start).total_seconds()
            assert j - i + 1 <= per_minute + span * per_minute / 60 + 1e-6
