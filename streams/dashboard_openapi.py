"""OpenAPI descriptions of the live dashboard: its page, its static assets, and the recent-builds
snapshot it opens with (the push channel, `GET /stream/builds`, keeps it current afterwards)."""

from __future__ import annotations

from sinks.rows import BuildResultRow
from streams import api_models as m
from streams.openapi import PIPELINE, PROJECT, Endpoint, Param


class RecentBuildsBody(m.StatsWindow):
    """Builds running now (a change stored in [since, until]) and builds finished in [since, until].

    Each row is the build's newest stored version; `version` is the change set's `revision`, so
    a client applying pushed change sets keeps the higher one.
    """

    scope: str
    limit: int
    truncated: bool
    """More builds matched than `limit`; the oldest were left out."""
    builds: list[BuildResultRow]


DASHBOARD_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "recent_builds",
        "/builds",
        "Builds running now and builds finished within `since` (from ClickHouse): the live dashboard's "
        "first snapshot, running ones first",
        {
            200: ("Recent builds", RecentBuildsBody),
            400: m.BAD_REQUEST_RESPONSE,
            503: ("ClickHouse unavailable", m.ErrorBody),
        },
        (
            Param("since", "query", "Look-back window: number + unit s|m|h|d, at most 400d (default 1h)", example="1h"),
            Param("status", "query", "running | finished | all (default all)"),
            PROJECT,
            PIPELINE,
            Param("limit", "query", "Most builds to return, 1-1000 (default 200)"),
        ),
    ),
    Endpoint(
        "dashboard",
        "/dashboard",
        "The live wallboard (HTML): builds running and finished, failures with reasons, success rate and "
        "duration charts, audits, notification health, retry rejections, gate decisions. Needs no token; "
        "`?window=1h|24h|7d` picks the charts' window, `?refresh=SECONDS` how often figures reload",
        {200: ("The page", None)},
        content_type="text/html",
        tags=("dashboard",),
    ),
    Endpoint(
        "dashboard_asset",
        "/dashboard/static/{asset}",
        "A script or stylesheet of the dashboard (shipped files only, no chart library from a CDN)",
        {200: ("The asset", None), 404: ("No such asset", m.ErrorBody)},
        (Param("asset", "path", "File name, e.g. dashboard.mjs", required=True),),
        content_type="text/javascript",
        other_content_types=("text/css",),
        tags=("dashboard",),
    ),
)
