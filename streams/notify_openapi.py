"""Response models and OpenAPI descriptions of the notification delivery log endpoints.

The bodies wrap the `sinks.notification_queries` results unchanged, so what the dashboard
reads from ClickHouse and what the API serves are one definition.
"""

from __future__ import annotations

from pydantic import BaseModel

from sinks.notification_queries import DeliveryHealth, NotificationsPerHour
from sinks.notification_rows import NotificationDeliveryRow
from streams import api_models as m
from streams.openapi import PROJECT, WINDOW, Endpoint, Param


class NotificationHealthBody(m.StatsWindow):
    """Delivery health per (channel, subscription) with an attempt in [since, until]."""

    subscriptions: list[DeliveryHealth]


class NotificationsPerHourBody(m.StatsWindow):
    """Distinct messages per UTC hour, channel and outcome in [since, until]."""

    hours: list[NotificationsPerHour]


class NotificationDeliveriesBody(BaseModel):
    """Every logged attempt of one message, suppressions (attempt 0) first."""

    notification_id: str
    attempts: list[NotificationDeliveryRow]


NOTIFICATION_ID = Param(
    "notification_id", "path", "Notification message id (its Idempotency-Key)", required=True
)
SERVICE_DOWN = (503, ("ClickHouse unavailable", m.ErrorBody))

NOTIFY_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "notification_health",
        "/notifications/health",
        "Sent, deduplicated, retried and given-up messages and latency per channel and subscription",
        {
            200: ("Delivery health per subscription", NotificationHealthBody),
            400: m.BAD_REQUEST_RESPONSE,
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (WINDOW, PROJECT),
        tags=("notifications",),
    ),
    Endpoint(
        "notifications_per_hour",
        "/notifications/per-hour",
        "Distinct notification messages per UTC hour, channel and outcome",
        {
            200: ("Messages per hour", NotificationsPerHourBody),
            400: m.BAD_REQUEST_RESPONSE,
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (WINDOW, PROJECT),
        tags=("notifications",),
    ),
    Endpoint(
        "notification_deliveries",
        "/notifications/{notification_id}/deliveries",
        "Every logged delivery attempt of one notification message (from ClickHouse)",
        {
            200: ("Logged attempts", NotificationDeliveriesBody),
            400: ("This endpoint takes no query parameters", m.ErrorBody),
            404: ("No attempt is logged for this notification id", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (NOTIFICATION_ID,),
        tags=("notifications",),
    ),
)
