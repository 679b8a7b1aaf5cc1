"""REST endpoints of the notification delivery log; described in `streams.notify_openapi`.

Read-only: every answer comes from `notification_deliveries` in ClickHouse through the
gateway, so any worker can serve any request (no table routing as for audit state).
"""

from __future__ import annotations

import logging

import faust
from faust.web import Request, Response, View

from sinks import notification_queries
from sinks.gateway import ClickHouseGateway
from streams.api_responses import answer, error, window_view
from streams.exceptions import ApiRequestError
from streams.notify_openapi import (
    NotificationDeliveriesBody,
    NotificationHealthBody,
    NotificationsPerHourBody,
)
from streams.query_params import reject_unknown
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

def register_notify_api(app: faust.App, *, gateway: ClickHouseGateway, settings: CipulseSettings) -> None:
    """Attach the notification endpoints to `app`; called once while the app is assembled.

    `settings` is part of the signature `streams.app` calls with; these reads need none yet.
    """

    app.page("/notifications/health", name="notification_health")(
        window_view(gateway, "notification_health", notification_queries.delivery_health, NotificationHealthBody,
                    "subscriptions")
    )
    app.page("/notifications/per-hour", name="notifications_per_hour")(
        window_view(gateway, "notifications_per_hour", notification_queries.notifications_per_hour,
                    NotificationsPerHourBody, "hours")
    )

    @app.page("/notifications/{notification_id}/deliveries", name="notification_deliveries")
    class NotificationDeliveriesView(View):
        async def get(self, request: Request, notification_id: str) -> Response:
            endpoint = "notification_deliveries"
            try:
                reject_unknown(request.query, set())
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            try:
                attempts = await gateway.call(notification_queries.deliveries_for, notification_id)
            except Exception as exc:
                log.error("deliveries query for %s failed: %s", notification_id, exc)
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            if not attempts:
                return error(
                    self, endpoint, 404,
                    f"no delivery attempt is logged for notification {notification_id!r}: check the id "
                    "(the message's Idempotency-Key) or wait for the delivery log to be flushed",
                )
            body = NotificationDeliveriesBody(notification_id=notification_id, attempts=attempts)
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

