"""REST endpoints of the notification delivery log; described in `streams.notify_openapi`."""

from __future__ import annotations

import faust

from sinks.gateway import ClickHouseGateway
from streams.settings import CipulseSettings


def register_notify_api(app: faust.App, *, gateway: ClickHouseGateway, settings: CipulseSettings) -> None:
    """Attach the notification endpoints to `app` (none yet)."""
