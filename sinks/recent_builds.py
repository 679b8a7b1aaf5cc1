"""The builds a wallboard shows when it opens: running now, and finished in a recent window.

The live dashboard loads this snapshot once, then applies the push channel's change sets on top
(keeping the higher `version`, which is the change set's `revision`), so what it shows is exact
from the first paint on. Read with `FINAL` like every build query (`sinks.queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from clickhouse_connect.driver import Client

from sinks.exceptions import SinkError
from sinks.identifiers import checked_identifier
from sinks.queries import _DATETIME, _query, window_bounds
from sinks.rows import RESULT_COLUMNS, RESULTS_TABLE, BuildResultRow

MAX_RECENT_BUILDS = 1000


class RecentScope(str, Enum):
    """Which builds a snapshot lists.

    - `running`: not final yet, with a change stored in the window (`updated_at`): a build whose
      runner vanished without a final event would otherwise stay "running" on the wall forever;
    - `finished`: final, with `finished_at` in the window;
    - `all`: both.
    """

    RUNNING = "running"
    FINISHED = "finished"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class RecentBuilds:
    builds: list[BuildResultRow]
    truncated: bool
    """More builds matched than `limit`: the oldest were left out."""


def recent_builds(
    client: Client,
    database: str,
    *,
    window: timedelta,
    scope: RecentScope = RecentScope.ALL,
    now: datetime | None = None,
    project: str | None = None,
    pipeline: str | None = None,
    limit: int = 200,
) -> RecentBuilds:
    """Running builds first (newest start first), then finished ones (newest finish first)."""
    database = checked_identifier(database)
    if not 1 <= limit <= MAX_RECENT_BUILDS:
        raise SinkError(f"recent builds limit must be 1-{MAX_RECENT_BUILDS}, got {limit}")
    start, end = window_bounds(window, now)
    parameters: dict[str, Any] = {"start": start, "end": end, "limit": limit + 1}
    running = f"(is_final = 0 AND updated_at >= {{start:{_DATETIME}}})"
    finished = (
        f"(is_final = 1 AND finished_at IS NOT NULL AND finished_at >= {{start:{_DATETIME}}}"
        f" AND finished_at <= {{end:{_DATETIME}}})"
    )
    scoped = {RecentScope.RUNNING: running, RecentScope.FINISHED: finished}.get(scope, f"({running} OR {finished})")
    conditions = [scoped]
    if project is not None:
        conditions.append("project = {project:String}")
        parameters["project"] = project
    if pipeline is not None:
        conditions.append("pipeline = {pipeline:String}")
        parameters["pipeline"] = pipeline
    rows = _query(
        client,
        f"SELECT {', '.join(RESULT_COLUMNS)} FROM {database}.{RESULTS_TABLE} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        " ORDER BY is_final ASC, coalesce(finished_at, started_at, first_seen_at) DESC, build_id ASC"
        " LIMIT {limit:UInt32}",
        parameters,
    )
    builds = []
    for row in rows[:limit]:
        values = dict(zip(RESULT_COLUMNS, row))
        values["is_final"] = bool(values["is_final"])
        builds.append(BuildResultRow(**values))
    return RecentBuilds(builds=builds, truncated=len(rows) > limit)
