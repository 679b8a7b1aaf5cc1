"""The grouping agent's decisions: requests are grouped once, an acknowledged notification is never
grouped or flushed again, a flush stays in flight until its receipt, the rate limit holds a flush
back without dropping anything, and an idle group is forgotten. A group has one message in flight
at a time and its receipt makes the rest due; a full group refuses more. A property test drives
random interleavings of requests, redeliveries, ticks, receipts and crashes and checks that every
accepted notification is in exactly one message and acknowledged exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.notify_dedup import InMemoryNotificationLog
from streams.notify_flow import (
    FlushOutcome,
    NotifierGroup,
    RequestOutcome,
    accept_request,
    flush_if_due,
    next_look,
    settle,
)
from streams.notify_grouping import GroupFlush
from streams.notify_subscriptions import GroupingPolicy

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = GroupingPolicy.model_validate({"group_wait": "10s", "group_interval": "60s"})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def note(i: int) -> NotificationRequest:
    return NotificationRequest(
        notification_id=f"n{i}", subscription_id="oncall", subject_kind="BUILD", subject_id=f"b{i}",
        project="payments", pipeline="deploy", transition=NotificationTransition.FAILED, status="FAILED", version=1,
        channel=NotificationChannel.WEBHOOK, title=f"b{i} failed", body="", created_at=T0,
    )


def always() -> bool:
    return True


def never_asked() -> bool:
    raise AssertionError("the rate limiter must not be asked")


def ids(flush: GroupFlush | None) -> list[str]:
    assert flush is not None
    return [n.notification_id for n in flush.notifications]


def test_a_request_is_grouped_once_and_waits_for_group_wait() -> None:
    log = InMemoryNotificationLog()
    entry, outcome = accept_request(None, note(1), POLICY, log, at(0))
    assert outcome is RequestOutcome.GROUPED and entry is not None
    again, outcome = accept_request(entry, note(1), POLICY, log, at(1))
    assert outcome is RequestOutcome.PENDING_DUPLICATE and again == entry
    assert next_look(entry, POLICY) == at(10)
    same, flush, why = flush_if_due(entry, POLICY, log, at(9), always)
    assert (same, flush, why) == (entry, None, FlushOutcome.NOT_DUE)


def test_a_flush_stays_in_flight_until_its_receipt_and_delivery_fills_the_log() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    entry, _ = accept_request(entry, note(2), POLICY, log, at(1))
    assert entry is not None
    flushed, flush, why = flush_if_due(entry, POLICY, log, at(10), always)
    assert why is FlushOutcome.FLUSHED and flush is not None and flushed is not None
    assert [n.notification_id for n in flush.notifications] == ["n1", "n2"]
    assert flushed.in_flight == (flush,) and flushed.group.pending == ()
    assert next_look(flushed, POLICY) is None  # only the receipt can change it now
    settled, which = settle(flushed, flush.flush_id, delivered=True, log=log, now=at(11), attempt=3)
    assert which == flush and settled is not None and settled.in_flight == ()
    assert {key for key in ("n1", "n2", flush.flush_id) if log.was_sent(key)} == {"n1", "n2", flush.flush_id}
    assert log.get("n1") is not None and log.get("n1").attempt == 3  # type: ignore[union-attr]
    # a redelivered request of an acknowledged notification is never grouped again
    assert accept_request(settled, note(1), POLICY, log, at(12)) == (settled, RequestOutcome.ALREADY_SENT)
    # a redelivered receipt changes nothing
    assert settle(settled, flush.flush_id, delivered=True, log=log, now=at(13), attempt=1) == (settled, None)


def test_a_given_up_flush_leaves_the_log_alone() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    assert entry is not None
    flushed, flush, _ = flush_if_due(entry, POLICY, log, at(10), always)
    assert flush is not None
    settled, which = settle(flushed, flush.flush_id, delivered=False, log=log, now=at(11), attempt=5)
    assert which == flush and settled is not None and settled.in_flight == ()
    assert len(log) == 0


def test_the_rate_limit_holds_the_flush_back_and_drops_nothing() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    assert entry is not None
    held, flush, why = flush_if_due(entry, POLICY, log, at(10), lambda: False)
    assert (flush, why) == (None, FlushOutcome.RATE_LIMITED) and held == entry
    held, _ = accept_request(held, note(2), POLICY, log, at(11))
    assert held is not None
    _, flush, why = flush_if_due(held, POLICY, log, at(12), always)
    assert why is FlushOutcome.FLUSHED and flush is not None and len(flush.notifications) == 2


def test_a_pending_notification_acknowledged_elsewhere_is_not_flushed() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    entry, _ = accept_request(entry, note(2), POLICY, log, at(0))
    assert entry is not None
    log.record_sent("n1", at(5), attempt=1)
    _, flush, _ = flush_if_due(entry, POLICY, log, at(10), always)
    assert flush is not None and [n.notification_id for n in flush.notifications] == ["n2"]


def test_an_idle_group_expires_after_group_interval_and_is_then_deleted() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    assert entry is not None
    flushed, flush, _ = flush_if_due(entry, POLICY, log, at(10), always)
    assert flush is not None
    settled, _ = settle(flushed, flush.flush_id, delivered=True, log=log, now=at(11), attempt=1)
    assert next_look(settled, POLICY) == at(70)
    assert flush_if_due(settled, POLICY, log, at(69), always)[2] is FlushOutcome.NOT_DUE  # type: ignore[arg-type]
    assert flush_if_due(settled, POLICY, log, at(70), always) == (None, None, FlushOutcome.EXPIRED)  # type: ignore[arg-type]


def test_the_table_value_round_trips_through_json() -> None:
    log = InMemoryNotificationLog()
    entry, _ = accept_request(None, note(1), POLICY, log, at(0))
    assert entry is not None
    flushed, _, _ = flush_if_due(entry, POLICY, log, at(10), always)
    assert flushed is not None
    assert NotifierGroup.model_validate_json(flushed.model_dump_json()) == flushed


def test_one_message_in_flight_per_group_and_its_receipt_makes_the_rest_due_at_once() -> None:
    log = InMemoryNotificationLog()
    policy = GroupingPolicy.model_validate({"group_wait": "10s", "group_interval": "60s", "max_per_message": 2})
    entry: NotifierGroup | None = None
    for i in range(5):
        entry, _ = accept_request(entry, note(i), policy, log, at(0))
    assert entry is not None and next_look(entry, policy) == at(0)  # full: due at once
    entry, first, why = flush_if_due(entry, policy, log, at(0), always)
    assert why is FlushOutcome.FLUSHED and ids(first) == ["n0", "n1"] and entry is not None
    # still full, but the first message is not settled: no second one, and no token taken
    assert next_look(entry, policy) is None
    same, second, why = flush_if_due(entry, policy, log, at(1), never_asked)
    assert (same, second, why) == (entry, None, FlushOutcome.IN_FLIGHT)
    assert first is not None
    entry, _ = settle(entry, first.flush_id, delivered=True, log=log, now=at(2), attempt=1)
    assert entry is not None and next_look(entry, policy) == at(0)  # the receipt's write brings a look at once
    entry, second, _ = flush_if_due(entry, policy, log, at(2), always)
    assert ids(second) == ["n2", "n3"] and entry is not None and len(entry.in_flight) == 1
    assert second is not None
    entry, _ = settle(entry, second.flush_id, delivered=False, log=log, now=at(3), attempt=5)
    assert entry is not None
    assert next_look(entry, policy) == at(62)  # the partial rest: group_interval after the last flush
    assert flush_if_due(entry, policy, log, at(61), always)[2] is FlushOutcome.NOT_DUE
    _, rest, _ = flush_if_due(entry, policy, log, at(62), always)
    assert ids(rest) == ["n4"]


def test_a_full_group_refuses_a_request_but_takes_a_redelivered_one_and_has_room_after_a_flush() -> None:
    log = InMemoryNotificationLog()
    policy = GroupingPolicy.model_validate({"group_wait": "10s", "max_per_message": 2, "max_pending": 3})
    entry: NotifierGroup | None = None
    for i in range(3):
        entry, outcome = accept_request(entry, note(i), policy, log, at(0))
        assert outcome is RequestOutcome.GROUPED
    assert accept_request(entry, note(3), policy, log, at(0)) == (entry, RequestOutcome.GROUP_FULL)
    assert accept_request(entry, note(2), policy, log, at(0)) == (entry, RequestOutcome.PENDING_DUPLICATE)
    assert entry is not None
    entry, flush, _ = flush_if_due(entry, policy, log, at(0), always)
    assert ids(flush) == ["n0", "n1"]
    entry, outcome = accept_request(entry, note(3), policy, log, at(1))
    assert outcome is RequestOutcome.GROUPED and entry is not None
    # in flight + pending may exceed max_pending; pending alone never does
    assert [n.notification_id for n in entry.group.pending] == ["n2", "n3"]


OLD_VALUE = {
    # a `notify-groups` value as the code before max_per_message wrote it: the last flush is
    # kept whole in `last_flushed` (and once more in flight), a third request is pending
    "group": {
        "subscription_id": "oncall", "group_key": 'oncall{pipeline="deploy",project="payments",transition="FAILED"}',
        "labels": {"project": "payments", "pipeline": "deploy", "transition": "FAILED"},
        "created_at": "2026-11-01T12:00:00Z", "pending": ["n3"], "pending_since": "2026-11-01T12:00:11Z",
        "last_flush_at": "2026-11-01T12:00:10Z", "last_flushed": ["n1", "n2"], "flush_seq": 1,
    },
    "in_flight": [{
        "flush_id": "d88b146875c021f7793b86a8142644a6af64dca92173fd23fdb2a28d3d506e99", "subscription_id": "oncall",
        "group_key": 'oncall{pipeline="deploy",project="payments",transition="FAILED"}',
        "labels": {"project": "payments", "pipeline": "deploy", "transition": "FAILED"},
        "notifications": ["n1", "n2"], "is_repeat": False, "seq": 1, "flushed_at": "2026-11-01T12:00:10Z",
    }],
}


def old_value_json() -> str:
    """`OLD_VALUE` with each "n<i>" replaced by that notification's JSON, as stored."""
    def expand(value: object) -> object:
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [note(int(v[1:])).model_dump(mode="json") if isinstance(v, str) else expand(v) for v in value]
        return value
    return json.dumps(expand(OLD_VALUE))


def test_a_table_value_written_by_the_earlier_code_loads_and_carries_on() -> None:
    log = InMemoryNotificationLog()
    entry = NotifierGroup.model_validate_json(old_value_json())
    assert entry.group.last_flushed_ids == ("n1", "n2") and len(entry.in_flight) == 1
    assert [n.notification_id for n in entry.group.pending] == ["n3"]
    flush_id = entry.in_flight[0].flush_id
    settled, flush = settle(entry, flush_id, delivered=False, log=log, now=at(12), attempt=5)
    assert settled is not None and flush is not None
    # the redelivery guard still knows the last flush after its receipt
    assert accept_request(settled, note(1), POLICY, log, at(13)) == (settled, RequestOutcome.PENDING_DUPLICATE)
    # no repeat policy: the next flush carries the pending one and drops the old content
    after, flush, _ = flush_if_due(settled, POLICY, log, at(70), always)
    assert ids(flush) == ["n3"] and after is not None and after.group.repeat_content == ()
    assert NotifierGroup.model_validate_json(after.model_dump_json()) == after


steps = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 8)),
        st.tuples(st.just("burst"), st.integers(0, 8)),  # requests value..8 at once
        st.tuples(st.just("tick"), st.floats(0, 120)),
        st.tuples(st.just("receipt"), st.booleans()),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(plan=steps, per_message=st.integers(1, 3), room=st.integers(0, 3))
def test_every_notification_is_acknowledged_at_most_once_and_none_is_lost(
    plan: list[tuple[str, object]], per_message: int, room: int
) -> None:
    """Requests may repeat (redelivery); a crash forgets everything not in the table (sender
    queue); receipts may fail. Sends acknowledged per notification: never more than one, and
    each accepted notification ends acknowledged once everything is flushed and delivered;
    it was in exactly one message unless a message of it was given up (a redelivery may then
    group it again). A group never has two messages in flight or more than max_pending pending,
    and a refused request is in no message unless it was accepted when requested again."""
    policy = GroupingPolicy.model_validate({
        "group_wait": "10s", "group_interval": "60s", "max_per_message": per_message, "max_pending": per_message + room,
    })
    log = InMemoryNotificationLog()
    entry: NotifierGroup | None = None
    clock = 0.0
    sender_queue: list[str] = []  # flush ids handed to the sender in this "process"
    acknowledged: dict[str, int] = {}
    in_messages: dict[str, int] = {}
    accepted: set[str] = set()
    given_up: set[str] = set()

    def request(i: int) -> None:
        nonlocal entry
        held = len(entry.group.pending) if entry is not None else 0
        entry, outcome = accept_request(entry, note(i), policy, log, at(clock))
        if outcome is RequestOutcome.GROUPED:
            accepted.add(f"n{i}")
        assert (outcome is RequestOutcome.GROUP_FULL) <= (held == policy.max_pending)

    def flushed(flush: GroupFlush | None) -> None:
        if flush is None:
            return
        assert 1 <= len(flush.notifications) <= per_message
        sender_queue.append(flush.flush_id)
        for n in flush.notifications:
            in_messages[n.notification_id] = in_messages.get(n.notification_id, 0) + 1

    def deliver(flush_id: str, ok: bool) -> None:
        nonlocal entry
        entry, flush = settle(entry, flush_id, delivered=ok, log=log, now=at(clock), attempt=1)
        for n in flush.notifications if flush is not None else ():
            if ok:
                acknowledged[n.notification_id] = acknowledged.get(n.notification_id, 0) + 1
            else:
                given_up.add(n.notification_id)

    for kind, value in plan:
        clock += 1
        if kind == "request":
            request(int(value))  # type: ignore[call-overload]
        elif kind == "burst":
            for i in range(int(value), 9):  # type: ignore[call-overload]
                request(i)
        elif kind == "tick" and entry is not None:
            clock += float(value)  # type: ignore[arg-type]
            entry, flush, _ = flush_if_due(entry, policy, log, at(clock), always)
            flushed(flush)
        elif kind == "receipt" and sender_queue:
            deliver(sender_queue.pop(0), bool(value))
        elif kind == "crash":
            # the sender's queue is gone; the restarted worker re-sends what the table holds in flight
            sender_queue = [f.flush_id for f in entry.in_flight] if entry is not None else []
        if entry is not None:
            assert len(entry.in_flight) <= 1 and len(entry.group.pending) <= policy.max_pending
    # drain: deliver everything in flight, then keep ticking until nothing is pending
    for _ in range(30):
        while sender_queue:
            deliver(sender_queue.pop(0), True)
        if entry is None:
            break
        clock += 1000
        entry, flush, _ = flush_if_due(entry, policy, log, at(clock), always)
        flushed(flush)
    assert entry is None or not entry.group.pending
    assert all(count == 1 for count in acknowledged.values()), acknowledged
    # nothing is lost: an accepted notification is acknowledged unless a send of it was given up
    assert accepted - given_up <= set(acknowledged), (accepted, given_up, acknowledged)
    assert set(acknowledged) <= accepted and set(in_messages) <= accepted
    assert all(in_messages[key] == 1 for key in accepted - given_up), in_messages
    assert {f"n{i}" for i in range(9) if log.was_sent(f"n{i}")} == set(acknowledged)
