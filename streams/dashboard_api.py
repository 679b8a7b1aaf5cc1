"""The live dashboard, served by the worker: `GET /dashboard`, its assets, and `GET /builds`.

The page (`dashboards/web/`) is plain HTML, CSS and ES modules with hand-drawn SVG charts: no
chart library, no CDN, nothing fetched from outside the worker, and no token (it only calls GET
endpoints). It opens the push channel (`/stream/builds`) first, loads the recent-builds snapshot
from ClickHouse (`GET /builds`), then applies every change set live; the figures (stats, audits,
notifications, retries, gates) are reloaded every `?refresh=` seconds. Described in
`streams.dashboard_openapi`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faust
from faust.web import Request, Response, View

from sinks.gateway import ClickHouseGateway
from sinks.recent_builds import MAX_RECENT_BUILDS, RecentScope, recent_builds
from streams import metrics
from streams.api_responses import answer, error
from streams.dashboard_openapi import RecentBuildsBody
from streams.exceptions import ApiRequestError
from streams.query_params import parse_limit, parse_name, parse_window, reject_unknown

log = logging.getLogger(__name__)

PAGE = "dashboard.html"
STATIC_DIR = "static"
CONTENT_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".css": "text/css"}
_ASSET_NAME = re.compile(r"[a-z0-9_\-]{1,64}\.(mjs|js|css)")
DEFAULT_RECENT_LIMIT = 200

SECURITY_HEADERS = {
    # Everything comes from the worker itself; no inline script or style, no third party.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str


@dataclass(frozen=True)
class DashboardFiles:
    """The page and its assets, read once when the worker starts: only these names are served."""

    page: str
    assets: dict[str, Asset]

    @classmethod
    def load(cls, directory: Path) -> DashboardFiles:
        page_path = directory / PAGE
        if not page_path.is_file():
            raise FileNotFoundError(
                f"dashboard page {page_path} is missing: set CIPULSE_DASHBOARD_DIR to the folder holding {PAGE}"
            )
        assets: dict[str, Asset] = {}
        static = directory / STATIC_DIR
        for path in sorted(static.iterdir()) if static.is_dir() else []:
            if path.is_file() and _ASSET_NAME.fullmatch(path.name):
                assets[path.name] = Asset(path.read_text(encoding="utf-8"), CONTENT_TYPES[path.suffix])
        return cls(page=page_path.read_text(encoding="utf-8"), assets=assets)


def parse_scope(raw: str | None) -> RecentScope:
    if raw is None or raw == "":
        return RecentScope.ALL
    try:
        return RecentScope(raw)
    except ValueError:
        allowed = ", ".join(scope.value for scope in RecentScope)
        raise ApiRequestError(f"status={raw!r} is not one of {allowed}") from None


def register_dashboard_api(app: faust.App, *, gateway: ClickHouseGateway, directory: Path) -> None:
    """Attach the dashboard page, its assets and the recent-builds snapshot to `app`'s web server."""
    files = DashboardFiles.load(directory)
    log.info("dashboard: serving %s with %d asset(s) at /dashboard", directory, len(files.assets))

    @app.page("/builds", name="recent_builds")
    class RecentBuildsView(View):
        async def get(self, request: Request) -> Response:
            endpoint = "recent_builds"
            try:
                reject_unknown(request.query, {"since", "status", "project", "pipeline", "limit"})
                window = parse_window(request.query.get("since"), default="1h", name="since")
                scope = parse_scope(request.query.get("status"))
                project = parse_name(request.query, "project")
                pipeline = parse_name(request.query, "pipeline")
                limit = parse_limit(request.query.get("limit"), default=DEFAULT_RECENT_LIMIT, maximum=MAX_RECENT_BUILDS)
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            until = datetime.now(UTC)
            try:
                found = await gateway.call(
                    recent_builds, window=window, scope=scope, now=until, project=project, pipeline=pipeline,
                    limit=limit,
                )
            except Exception as exc:
                log.error("%s query failed: %s", endpoint, exc)
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            body = RecentBuildsBody(
                window_seconds=int(window.total_seconds()), since=until - window, until=until, scope=scope.value,
                limit=limit, truncated=found.truncated, builds=found.builds,
            )
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

    @app.page("/dashboard", name="dashboard")
    class DashboardView(View):
        async def get(self, request: Request) -> Response:
            metrics.API_REQUESTS.labels("dashboard", "200").inc()
            return self.html(files.page, headers=dict(SECURITY_HEADERS))

    @app.page("/dashboard/static/{asset}", name="dashboard_asset")
    class AssetView(View):
        async def get(self, request: Request, asset: str) -> Response:
            found = files.assets.get(asset)
            if found is None:
                return error(self, "dashboard_asset", 404, f"no dashboard asset {asset!r}")
            metrics.API_REQUESTS.labels("dashboard_asset", "200").inc()
            return self.text(found.body, content_type=found.content_type, headers=dict(SECURITY_HEADERS))
