"""Notification queries on known data: delivery health per subscription, one message's attempts,
notifications per hour; the window's edges and the project filter; and the delivery log's
exactly-once reading under redelivery.

Merges are stopped where duplicates matter, so each insert stays its own part and the duplicates
are physically present (checked with a raw count): what removes them is FINAL and the distinct
counting in the queries, not a lucky background merge.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from sinks.exceptions import SinkError
from sinks.notification_queries import (
    DeliveryHealth,
    NotificationsPerHour,
    deliveries_for,
    delivery_health,
    notifications_per_hour,
)
from sinks.notification_rows import NotificationDeliveryRow
from sinks.notification_writer import NotificationSinkWriter
from sinks_testkit import T0, raw_count

TABLE = "notification_deliveries"
NOW = T0 + timedelta(days=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)


def delivery(
    notification_id: str = "n-1", attempt: int = 1, **changes: Any
) -> NotificationDeliveryRow:
    """An acknowledged attempt of a webhook message, `attempt` seconds after NOW - 1 h."""
    values: dict[str, Any] = {
        "notification_id": notification_id,
        "subscription_id": "ops-webhook",
        "channel": "WEBHOOK",
        "project": "payments",
        "subject_kind": "BUILD",
        "subject_id": "b-1",
        "transition": "FAILED",
        "attempt": attempt,
        "outcome": "delivered",
        "http_status": 200,
        "error": "",
        "latency_ms": 50.0,
        "attempted_at": NOW - HOUR + timedelta(seconds=attempt),
        "grouped_count": 1,
    }
    values.update(changes)
    return NotificationDeliveryRow(**values)


def failed(
    notification_id: str = "n-1", attempt: int = 1, **changes: Any
) -> NotificationDeliveryRow:
    """A failed attempt that will be retried (HTTP 503)."""
    values: dict[str, Any] = {
        "outcome": "retry", "http_status": 503, "error": "HTTP 503", "latency_ms": 900.0,
    }
    values.update(changes)
    return delivery(notification_id, attempt, **values)


def suppressed(notification_id: str = "n-1", **changes: Any) -> NotificationDeliveryRow:
    """A redelivered request dropped because the notification log already held the send."""
    values: dict[str, Any] = {
        "outcome": "deduplicated", "http_status": 0, "latency_ms": 0.0,
        "attempted_at": NOW - timedelta(minutes=30),
    }
    values.update(changes)
    return delivery(notification_id, 0, **values)


def failed_twice_then_delivered(notification_id: str = "n-1") -> list[NotificationDeliveryRow]:
    return [
        failed(notification_id, 1),
        failed(notification_id, 2, http_status=0, error="connection refused", latency_ms=3.0),
        delivery(notification_id, 3, latency_ms=120.0),
    ]


def linear_percentile(values: list[float], level: float) -> float:
    """numpy's default ('linear') percentile, the definition the stats promise."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * level
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@pytest.fixture
def notification_writer(ch_client: Client, migrated: str) -> NotificationSinkWriter:
    return NotificationSinkWriter(ch_client, migrated)


@pytest.fixture
def merges_stopped(ch_client: Client, migrated: str) -> str:
    ch_client.command(f"SYSTEM STOP MERGES {migrated}.{TABLE}")
    return migrated


# --- the receiver that fails twice, then succeeds --------------------------------------------


def test_a_delivery_that_failed_twice_then_succeeded_is_one_sent_and_two_retries(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write(failed_twice_then_delivered())

    health = delivery_health(ch_client, migrated, window=DAY, now=NOW)
    attempts = deliveries_for(ch_client, migrated, "n-1")
    per_hour = notifications_per_hour(ch_client, migrated, window=DAY, now=NOW)

    assert health == [
        DeliveryHealth(
            channel="WEBHOOK", subscription_id="ops-webhook", sent=1, deduplicated=0,
            retries=2, gave_up=0, grouped_notifications=1, latency_p50_ms=120.0,
            latency_p95_ms=120.0,
        )
    ]
    assert [(a.attempt, a.outcome, a.http_status, a.error) for a in attempts] == [
        (1, "retry", 503, "HTTP 503"),
        (2, "retry", 0, "connection refused"),
        (3, "delivered", 200, ""),
    ]
    assert [(p.hour, p.channel, p.outcome, p.notifications) for p in per_hour] == [
        (NOW - HOUR, "WEBHOOK", "delivered", 1),
        (NOW - HOUR, "WEBHOOK", "retry", 1),
    ]


def test_a_message_that_gave_up_is_not_sent_and_has_no_latency(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write(
        [failed("n-dead", attempt) for attempt in (1, 2, 3, 4)]
        + [failed("n-dead", 5, outcome="gave_up", error="HTTP 503 on attempt 5 of 5")]
    )

    (health,) = delivery_health(ch_client, migrated, window=DAY, now=NOW)

    assert (health.sent, health.retries, health.gave_up, health.deduplicated) == (0, 0, 1, 0)
    assert (health.latency_p50_ms, health.latency_p95_ms) == (None, None)
    assert health.grouped_notifications == 0


def test_retries_count_where_the_message_was_delivered(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    # The failed attempts fall before the window; the delivery inside it still needed them.
    notification_writer.write(
        [
            failed("n-1", 1, attempted_at=NOW - 3 * HOUR),
            failed("n-1", 2, attempted_at=NOW - 2 * HOUR),
            delivery("n-1", 3, attempted_at=NOW - 30 * timedelta(minutes=1)),
        ]
    )

    (health,) = delivery_health(ch_client, migrated, window=HOUR, now=NOW)
    (per_hour,) = notifications_per_hour(ch_client, migrated, window=HOUR, now=NOW)

    assert (health.sent, health.retries) == (1, 2)
    assert (per_hour.outcome, per_hour.notifications) == ("delivered", 1)


# --- exactly once under redelivery -----------------------------------------------------------


def test_a_batch_logged_three_times_is_counted_once_by_every_query(
    ch_client: Client, merges_stopped: str, notification_writer: NotificationSinkWriter
) -> None:
    batch = failed_twice_then_delivered("n-1") + [delivery("n-2", latency_ms=80.0)]
    for _ in range(3):
        notification_writer.write(batch)

    assert raw_count(ch_client, merges_stopped, TABLE) == 12
    (health,) = delivery_health(ch_client, merges_stopped, window=DAY, now=NOW)
    assert (health.sent, health.retries, health.gave_up) == (2, 2, 0)
    assert health.latency_p50_ms == pytest.approx(100.0)
    assert [a.attempt for a in deliveries_for(ch_client, merges_stopped, "n-1")] == [1, 2, 3]
    per_hour = notifications_per_hour(ch_client, merges_stopped, window=DAY, now=NOW)
    assert [(p.outcome, p.notifications) for p in per_hour] == [("delivered", 2), ("retry", 1)]


def test_the_devtron_redelivery_is_one_send_and_one_deduplicated_message(
    ch_client: Client, merges_stopped: str, notification_writer: NotificationSinkWriter
) -> None:
    # A finished deploy's success event redelivered 50 times at irregular intervals: the first
    # is sent, every later one is suppressed and logged; some suppressions land on another day.
    notification_writer.write([delivery("n-1", transition="SUCCEEDED")])
    for redelivery in range(50):
        offset = timedelta(minutes=7 * redelivery + redelivery % 3)
        notification_writer.write(
            [suppressed("n-1", transition="SUCCEEDED", attempted_at=NOW - 2 * DAY + offset)]
        )

    assert raw_count(ch_client, merges_stopped, TABLE) == 51
    (health,) = delivery_health(ch_client, merges_stopped, window=3 * DAY, now=NOW)
    assert (health.sent, health.deduplicated, health.retries) == (1, 1, 0)
    per_hour = notifications_per_hour(ch_client, merges_stopped, window=3 * DAY, now=NOW)
    assert sum(p.notifications for p in per_hour if p.outcome == "delivered") == 1
    attempts = deliveries_for(ch_client, merges_stopped, "n-1")
    assert [a.outcome for a in attempts if a.attempt > 0] == ["delivered"]


def test_an_acknowledgement_logged_again_with_a_new_time_is_still_one_send(
    ch_client: Client, merges_stopped: str, notification_writer: NotificationSinkWriter
) -> None:
    # A producer that re-stamps attempted_at puts the copy in another partition, out of
    # ReplacingMergeTree's reach; counting distinct ids still sees one message.
    notification_writer.write(failed_twice_then_delivered("n-1"))
    notification_writer.write([delivery("n-1", 3, latency_ms=120.0, attempted_at=NOW - 2 * MS)])
    notification_writer.write(
        [delivery("n-1", 3, latency_ms=120.0, attempted_at=NOW - DAY + HOUR)]
    )

    (health,) = delivery_health(ch_client, merges_stopped, window=2 * DAY, now=NOW)

    assert (health.sent, health.retries, health.latency_p95_ms) == (1, 2, 120.0)


def test_a_suppression_never_replaces_the_delivered_attempt(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write([delivery("n-1")])
    notification_writer.write([suppressed("n-1")])
    ch_client.command(f"OPTIMIZE TABLE {migrated}.{TABLE} FINAL")

    attempts = deliveries_for(ch_client, migrated, "n-1")

    assert [(a.attempt, a.outcome) for a in attempts] == [(0, "deduplicated"), (1, "delivered")]


# --- grouping, subscriptions, percentiles ----------------------------------------------------


def test_health_is_per_channel_and_subscription_with_exact_latency_percentiles(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    latencies = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 1000.0]
    notification_writer.write(
        [delivery(f"w-{i}", latency_ms=ms) for i, ms in enumerate(latencies)]
        + [
            delivery("s-1", channel="SLACK", subscription_id="team-slack", grouped_count=20),
            delivery("s-2", channel="SLACK", subscription_id="team-slack", grouped_count=3),
            suppressed("s-1", channel="SLACK", subscription_id="team-slack"),
            delivery("l-1", channel="LOG", subscription_id="dev-log", latency_ms=0.0),
            delivery("o-1", subscription_id="audit-webhook", transition="AUDIT_STUCK"),
        ]
    )

    health = delivery_health(ch_client, migrated, window=DAY, now=NOW)

    assert [(h.channel, h.subscription_id, h.sent, h.grouped_notifications) for h in health] == [
        ("LOG", "dev-log", 1, 1),
        ("SLACK", "team-slack", 2, 23),
        ("WEBHOOK", "audit-webhook", 1, 1),
        ("WEBHOOK", "ops-webhook", 10, 10),
    ]
    ops = health[-1]
    assert ops.latency_p50_ms == pytest.approx(linear_percentile(latencies, 0.5))
    assert ops.latency_p95_ms == pytest.approx(linear_percentile(latencies, 0.95))
    assert ops.latency_p95_ms == pytest.approx(590.5)  # 90 + 0.55 * (1000 - 90)
    assert health[1].deduplicated == 1


def test_notifications_per_hour_buckets_by_utc_hour_and_counts_messages_not_attempts(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    hour_a, hour_b = NOW - 3 * HOUR, NOW - HOUR
    notification_writer.write(
        [
            failed("n-1", 1, attempted_at=hour_a + timedelta(minutes=1)),
            failed("n-1", 2, attempted_at=hour_a + timedelta(minutes=5)),
            failed("n-1", 3, attempted_at=hour_a + timedelta(minutes=59, seconds=59)),
            delivery("n-1", 4, attempted_at=hour_b),
            delivery("n-2", attempted_at=hour_b + timedelta(minutes=59, milliseconds=999)),
            delivery("n-3", channel="SLACK", attempted_at=hour_a),
        ]
    )

    per_hour = notifications_per_hour(ch_client, migrated, window=DAY, now=NOW)

    assert per_hour == [
        NotificationsPerHour(hour_a, "SLACK", "delivered", 1),
        NotificationsPerHour(hour_a, "WEBHOOK", "retry", 1),
        NotificationsPerHour(hour_b, "WEBHOOK", "delivered", 2),
    ]
    assert all(p.hour.utcoffset() == timedelta(0) for p in per_hour)


# --- window and filters ----------------------------------------------------------------------


def test_window_edges_are_inclusive_at_millisecond_precision(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write(
        [
            delivery("before-start", attempted_at=NOW - HOUR - MS),
            delivery("at-start", attempted_at=NOW - HOUR),
            delivery("at-end", attempted_at=NOW),
            delivery("after-end", attempted_at=NOW + MS),
        ]
    )

    (health,) = delivery_health(ch_client, migrated, window=HOUR, now=NOW)
    per_hour = notifications_per_hour(ch_client, migrated, window=HOUR, now=NOW)
    # Sub-millisecond parts of `now` are dropped, like the column's precision.
    later = delivery_health(
        ch_client, migrated, window=HOUR, now=NOW + timedelta(microseconds=999)
    )

    assert health.sent == 2
    assert [(p.hour, p.notifications) for p in per_hour] == [(NOW - HOUR, 1), (NOW, 1)]
    assert later[0].sent == 2


def test_the_window_moves_with_now(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write([delivery("n-1", attempted_at=NOW - 2 * HOUR)])

    assert delivery_health(ch_client, migrated, window=HOUR, now=NOW) == []
    assert notifications_per_hour(ch_client, migrated, window=HOUR, now=NOW) == []
    assert len(delivery_health(ch_client, migrated, window=HOUR, now=NOW - HOUR)) == 1


def test_project_filter(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write(
        [
            delivery("p-1"),
            delivery("p-2"),
            delivery("w-1", project="web", subscription_id="web-hook"),
            failed("w-2", project="web", subscription_id="web-hook"),
        ]
    )

    payments = delivery_health(ch_client, migrated, window=DAY, now=NOW, project="payments")
    web = delivery_health(ch_client, migrated, window=DAY, now=NOW, project="web")
    web_hours = notifications_per_hour(ch_client, migrated, window=DAY, now=NOW, project="web")
    everything = delivery_health(ch_client, migrated, window=DAY, now=NOW)

    assert [(h.subscription_id, h.sent) for h in payments] == [("ops-webhook", 2)]
    assert [(h.subscription_id, h.sent) for h in web] == [("web-hook", 1)]
    assert [(p.outcome, p.notifications) for p in web_hours] == [("delivered", 1), ("retry", 1)]
    assert [(h.subscription_id, h.sent) for h in everything] == [
        ("ops-webhook", 2), ("web-hook", 1),
    ]
    hostile = "payments' OR 1=1 --"
    assert delivery_health(ch_client, migrated, window=DAY, now=NOW, project=hostile) == []
    assert notifications_per_hour(ch_client, migrated, window=DAY, now=NOW, project=hostile) == []
    assert deliveries_for(ch_client, migrated, "p-1' OR 1=1 --") == []


def test_nothing_logged_gives_empty_results(ch_client: Client, migrated: str) -> None:
    assert delivery_health(ch_client, migrated, window=DAY, now=NOW) == []
    assert notifications_per_hour(ch_client, migrated, window=DAY, now=NOW) == []
    assert deliveries_for(ch_client, migrated, "unknown") == []


def test_invalid_arguments_are_rejected(ch_client: Client, migrated: str) -> None:
    with pytest.raises(SinkError, match="timezone-aware"):
        delivery_health(ch_client, migrated, window=DAY, now=NOW.replace(tzinfo=None))
    with pytest.raises(SinkError, match="positive"):
        delivery_health(ch_client, migrated, window=timedelta(0), now=NOW)
    with pytest.raises(SinkError, match="timezone-aware"):
        notifications_per_hour(ch_client, migrated, window=DAY, now=NOW.replace(tzinfo=None))
    with pytest.raises(SinkError, match="positive"):
        notifications_per_hour(ch_client, migrated, window=-DAY, now=NOW)
    with pytest.raises(SinkError, match="invalid database name"):
        deliveries_for(ch_client, "bad-name", "n-1")


def test_queries_on_an_unmigrated_database_raise_sink_error(
    ch_client: Client, database: str
) -> None:
    with pytest.raises(SinkError, match="migrations ran"):
        delivery_health(ch_client, database, window=DAY, now=NOW)
