"""REST endpoints of the notification delivery log; described in `streams.notify_openapi`.

Read-only: every answer comes from `notification_deliveries` in ClickHouse through the
gateway, so any worker can serve any request (no table routing as for audit state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel

from sinks import notification_queries
from sinks.gateway import ClickHouseGateway
from streams.api_responses import answer, error
from streams.exceptions import ApiRequestError
from streams.notify_openapi import (
    NotificationDeliveriesBody,
    NotificationHealthBody,
    NotificationsPerHourBody,
)
from streams.query_params import parse_name, parse_window, reject_unknown
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

WindowQuery = Callable[..., Sequence[Any]]
"""`fn(client, database, *, window, now, project)` of `sinks.notification_queries`."""

_WINDOW_PARAMETERS = {"window", "project"}


def register_notify_api(app: faust.App, *, gateway: ClickHouseGateway, settings: CipulseSettings) -> None:
    """Attach the notification endpoints to `app`; called once while the app is assembled.

    `settings` is part of the signature `streams.app` calls with; these reads need none yet.
    """

    def window_view(endpoint: str, query: WindowQuery, body_type: type[BaseModel], field: str) -> type[View]:
        """A GET view over `query` for `?window=&project=`, answering `body_type` with rows in `field`."""

        class WindowView(View):
            async def get(self, request: Request) -> Response:
                try:
                    reject_unknown(request.query, _WINDOW_PARAMETERS)
                    window = parse_window(request.query.get("window"))
                    project = parse_name(request.query, "project")
                except ApiRequestError as exc:
                    return error(self, endpoint, 400, str(exc))
                until = datetime.now(UTC)
                try:
                    rows = await gateway.call(query, window=window, now=until, project=project)
                except Exception as exc:
                    log.error("%s query failed: %s", endpoint, exc)
                    return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
                body = body_type.model_validate(
                    {"window_seconds": int(window.total_seconds()), "since": until - window, "until": until, field: rows}
                )
                return answer(self, endpoint, 200, body.model_dump(mode="json"))

        return WindowView

    app.page("/notifications/health", name="notification_health")(
        window_view("notification_health", notification_queries.delivery_health, NotificationHealthBody, "subscriptions")
    )
    app.page("/notifications/per-hour", name="notifications_per_hour")(
        window_view("notifications_per_hour", notification_queries.notifications_per_hour, NotificationsPerHourBody, "hours")
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

