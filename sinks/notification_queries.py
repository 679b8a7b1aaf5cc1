"""The notification reads the dashboard and the API make: delivery health per subscription,
one notification's attempts, notifications per hour.

The rules of `sinks.queries` hold here too: the table is read with `FINAL`, so an attempt
logged twice counts once; filters sit in `WHERE`, applied after FINAL's deduplication; every
value is a bound parameter and only the checked database name is part of the SQL text. On top
of that, the aggregates count *distinct notification ids*, never rows, so even a row whose
copies landed in two partitions (a producer that re-stamped `attempted_at`) is counted once.

Windows are [now - window, now], both ends inclusive at the column's millisecond precision
(`sinks.queries.window_bounds`); `now` must be timezone-aware. An attempt belongs to the window
its `attempted_at` falls in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver import Client

from sinks.identifiers import checked_identifier
from sinks.notification_rows import (
    NOTIFICATION_DELIVERIES_TABLE,
    NOTIFICATION_DELIVERY_COLUMNS,
    OUTCOME_DEDUPLICATED,
    OUTCOME_DELIVERED,
    OUTCOME_GAVE_UP,
    NotificationDeliveryRow,
)
from sinks.queries import _finite, _query, window_bounds

_DATETIME = "DateTime64(3, 'UTC')"


@dataclass(frozen=True, slots=True)
class DeliveryHealth:
    """How one subscription's channel delivered inside a window.

    - `sent`: notification messages with a `delivered` attempt in the window (each once, however
      often its acknowledgement was logged);
    - `deduplicated`: messages whose send was suppressed in the window because the notification
      log already held an acknowledged send (each once, however many redeliveries were dropped);
    - `retries`: attempts beyond the first that the `sent` messages needed (a message delivered
      on attempt 3 adds 2), counted where the message was delivered;
    - `gave_up`: messages whose last attempt failed in the window (dead-lettered);
    - `grouped_notifications`: notifications the `sent` messages carried (`grouped_count`);
    - latency percentiles over the `sent` messages' delivered attempts, in milliseconds,
      interpolated linearly between the two nearest exact values (`quantilesExactInclusive`,
      numpy's default, like the build stats); None when nothing was sent.
    """

    channel: str
    subscription_id: str
    sent: int
    deduplicated: int
    retries: int
    gave_up: int
    grouped_notifications: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True, slots=True)
class NotificationsPerHour:
    """Distinct notification messages of one channel with an attempt of one `outcome` whose
    `attempted_at` falls in the UTC hour starting at `hour` (timezone-aware)."""

    hour: datetime
    channel: str
    outcome: str
    notifications: int


def delivery_health(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime,
    project: str | None = None,
) -> list[DeliveryHealth]:
    """`DeliveryHealth` per (channel, subscription_id) of attempts in [now - window, now].

    Subscriptions without an attempt in the window are absent; ordered by channel, then
    subscription_id.
    """
    database = checked_identifier(database)
    parameters, conditions = _window_filter(window, now, project)
    parameters.update(
        delivered=OUTCOME_DELIVERED, gave_up=OUTCOME_GAVE_UP, deduplicated=OUTCOME_DEDUPLICATED
    )
    # Inner query: one row per message, so nothing below can count a duplicate twice.
    is_delivered = "outcome = {delivered:String}"
    per_message = (
        "SELECT channel, subscription_id, notification_id,"
        f" countIf({is_delivered}) > 0 AS delivered,"
        f" minIf(attempt, {is_delivered}) AS delivered_attempt,"
        f" argMinIf(latency_ms, attempt, {is_delivered}) AS delivered_latency_ms,"
        f" argMinIf(grouped_count, attempt, {is_delivered}) AS delivered_grouped_count,"
        " countIf(outcome = {gave_up:String}) > 0 AS gave_up,"
        " countIf(outcome = {deduplicated:String}) > 0 AS deduplicated"
        f" FROM {database}.{NOTIFICATION_DELIVERIES_TABLE} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        " GROUP BY channel, subscription_id, notification_id"
    )
    rows = _query(
        client,
        "SELECT channel, subscription_id,"
        " countIf(delivered) AS sent,"
        " countIf(deduplicated) AS deduplicated,"
        " sumIf(toInt64(delivered_attempt) - 1, delivered) AS retries,"
        " countIf(gave_up) AS gave_up,"
        " sumIf(toUInt64(delivered_grouped_count), delivered) AS grouped_notifications,"
        " quantilesExactInclusiveIf(0.5, 0.95)(delivered_latency_ms, delivered)"
        " AS latency_quantiles"
        f" FROM ({per_message})"
        " GROUP BY channel, subscription_id ORDER BY channel, subscription_id",
        parameters,
    )
    return [_health(row) for row in rows]


def deliveries_for(
    client: Client, database: str, notification_id: str
) -> list[NotificationDeliveryRow]:
    """Every logged attempt of one notification message, each once, ordered by `attempt`
    (a `deduplicated` suppression has attempt 0, so suppressions come first), then by
    `attempted_at`. Empty when nothing is logged for the id."""
    database = checked_identifier(database)
    rows = _query(
        client,
        f"SELECT {', '.join(NOTIFICATION_DELIVERY_COLUMNS)}"
        f" FROM {database}.{NOTIFICATION_DELIVERIES_TABLE} FINAL"
        " WHERE notification_id = {notification_id:String}"
        " ORDER BY attempt, attempted_at, subscription_id",
        {"notification_id": notification_id},
    )
    return [NotificationDeliveryRow(*row) for row in rows]


def notifications_per_hour(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime,
    project: str | None = None,
) -> list[NotificationsPerHour]:
    """`NotificationsPerHour` for attempts in [now - window, now] per UTC hour, channel and
    outcome. A message retried twice in one hour counts once for `retry` in that hour. Hours
    without attempts are absent; ordered by hour, channel, outcome."""
    database = checked_identifier(database)
    parameters, conditions = _window_filter(window, now, project)
    rows = _query(
        client,
        "SELECT toStartOfHour(attempted_at, 'UTC') AS hour, channel, outcome,"
        " uniqExact(notification_id) AS notifications"
        f" FROM {database}.{NOTIFICATION_DELIVERIES_TABLE} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        " GROUP BY hour, channel, outcome ORDER BY hour, channel, outcome",
        parameters,
    )
    return [
        NotificationsPerHour(
            hour=hour, channel=str(channel), outcome=str(outcome), notifications=int(count)
        )
        for hour, channel, outcome, count in rows
    ]


def _window_filter(
    window: timedelta, now: datetime, project: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Parameters and `WHERE` conditions for attempts in the window, of one project if given."""
    start, end = window_bounds(window, now)
    parameters: dict[str, Any] = {"start": start, "end": end}
    conditions = [
        f"attempted_at >= {{start:{_DATETIME}}}",
        f"attempted_at <= {{end:{_DATETIME}}}",
    ]
    if project is not None:
        parameters["project"] = project
        conditions.append("project = {project:String}")
    return parameters, conditions


def _health(row: Sequence[Any]) -> DeliveryHealth:
    channel, subscription_id, sent, deduplicated, retries, gave_up, grouped, quantiles = row
    p50, p95 = (_finite(q) for q in quantiles) if sent else (None, None)
    return DeliveryHealth(
        channel=str(channel),
        subscription_id=str(subscription_id),
        sent=int(sent),
        deduplicated=int(deduplicated),
        retries=int(retries),
        gave_up=int(gave_up),
        grouped_notifications=int(grouped),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
    )
