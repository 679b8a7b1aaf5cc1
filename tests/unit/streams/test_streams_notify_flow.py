"""The grouping agent's decisions: requests are grouped once, an acknowledged notification is never
grouped or flushed again, a flush stays in flight until its receipt, the rate limit holds a flush
back without dropping anything, and an idle group is forgotten. A property test drives random
interleavings of requests, redeliveries, ticks, receipts and crashes and checks that every
notification is acknowledged exactly once."""

from __future__ import annotations

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


steps = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 5)),
        st.tuples(st.just("tick"), st.floats(0, 120)),
        st.tuples(st.just("receipt"), st.booleans()),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_every_notification_is_acknowledged_at_most_once_and_none_is_lost(plan: list[tuple[str, object]]) -> None:
    """Requests may repeat (redelivery); a crash forgets everything not in the table (sender
    queue); receipts may fail. Sends acknowledged per notification: never more than one, and
    each requested notification ends acknowledged once everything is flushed and delivered."""
    log = InMemoryNotificationLog()
    entry: NotifierGroup | None = None
    clock = 0.0
    sender_queue: list[str] = []  # flush ids handed to the sender in this "process"
    acknowledged: dict[str, int] = {}
    requested: set[str] = set()
    given_up: set[str] = set()

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
            requested.add(f"n{value}")
            entry, _ = accept_request(entry, note(int(value)), POLICY, log, at(clock))  # type: ignore[arg-type]
        elif kind == "tick" and entry is not None:
            clock += float(value)  # type: ignore[arg-type]
            entry, flush, _ = flush_if_due(entry, POLICY, log, at(clock), always)
            if flush is not None:
                sender_queue.append(flush.flush_id)
        elif kind == "receipt" and sender_queue:
            deliver(sender_queue.pop(0), bool(value))
        elif kind == "crash":
            # the sender's queue is gone; the restarted worker re-sends what the table holds in flight
            sender_queue = [f.flush_id for f in entry.in_flight] if entry is not None else []
    # drain: deliver everything in flight, then keep ticking until nothing is pending
    for _ in range(10):
        while sender_queue:
            deliver(sender_queue.pop(0), True)
        if entry is None:
            break
        clock += 1000
        entry, flush, _ = flush_if_due(entry, POLICY, log, at(clock), always)
        if flush is not None:
            sender_queue.append(flush.flush_id)
    assert all(count == 1 for count in acknowledged.values()), acknowledged
    # nothing is lost: a notification is acknowledged unless a send of it was given up
    assert requested - given_up <= set(acknowledged), (requested, given_up, acknowledged)
    assert {key for key in requested if log.was_sent(key)} == set(acknowledged)
