"""The reads the API and the dashboards make, with typed results.

Every query reads with `FINAL`, so a change set delivered twice (two inserts, two parts, before
any merge) is counted once, and of several versions of a build only the highest counts even when
an older one arrives last. Filters sit in `WHERE`, which ClickHouse applies after FINAL's
deduplication (`PREWHERE` would filter first and could pick up a superseded version).

All values reach ClickHouse as bound parameters (`{name:Type}`); only the checked database name
is part of the SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from schemas.enums import BuildStatus
from sinks.exceptions import SinkError
from sinks.identifiers import checked_identifier
from sinks.rows import (
    EVENT_COLUMNS,
    EVENTS_TABLE,
    RESULT_COLUMNS,
    RESULTS_TABLE,
    BuildEventRow,
    BuildResultRow,
)

DEFAULT_HISTORY_LIMIT = 1000

_DATETIME = "DateTime64(3, 'UTC')"


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Outcome and timing of the builds of one pipeline that finished inside a window.

    `finished` counts every final build; `success_rate` is succeeded / (succeeded + failed +
    canceled). A canceled build counts as not-success: from a wallboard's point of view the
    pipeline did not deliver, and a pipeline whose builds keep being canceled (superseded,
    timed out, killed) needs attention as much as a failing one. Final builds in any other
    status (SKIPPED) are in `finished` but not in the rate. Percentiles interpolate linearly
    between the two nearest exact values (`quantilesExactInclusive`, numpy's default method):
    exact, so dashboards of a quiet pipeline with ten builds show real numbers, not estimates
    from a sample, and deterministic across runs. Values are None when there is nothing to
    compute them from.
    """

    project: str
    pipeline: str
    finished: int
    succeeded: int
    failed: int
    canceled: int
    success_rate: float | None
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    duration_p99_ms: float | None
    mean_queue_ms: float | None


@dataclass(frozen=True, slots=True)
class ProjectStats:
    """`PipelineStats` summed over all pipelines of a project (percentiles over all builds)."""

    project: str
    finished: int
    succeeded: int
    failed: int
    canceled: int
    success_rate: float | None
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    duration_p99_ms: float | None
    mean_queue_ms: float | None


def build_history(
    client: Client, database: str, build_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> list[BuildEventRow]:
    """The accepted events of a build in `seq` order, each once, at most `limit` of them."""
    database = checked_identifier(database)
    if limit <= 0:
        raise SinkError(f"history limit must be positive, got {limit}")
    rows = _query(
        client,
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM {database}.{EVENTS_TABLE} FINAL "
        "WHERE build_id = {build_id:String} ORDER BY seq LIMIT {limit:UInt32}",
        {"build_id": build_id, "limit": limit},
    )
    return [BuildEventRow(*row) for row in rows]


def build_result(client: Client, database: str, build_id: str) -> BuildResultRow | None:
    """The latest version of a build's result, or None if the build is unknown."""
    database = checked_identifier(database)
    rows = _query(
        client,
        f"SELECT {', '.join(RESULT_COLUMNS)} FROM {database}.{RESULTS_TABLE} FINAL "
        "WHERE build_id = {build_id:String} ORDER BY version DESC LIMIT 1",
        {"build_id": build_id},
    )
    if not rows:
        return None
    values = dict(zip(RESULT_COLUMNS, rows[0]))
    values["is_final"] = bool(values["is_final"])
    return BuildResultRow(**values)


def count_build_events(client: Client, database: str, build_id: str | None = None) -> int:
    """Stored build events after deduplication, for one build or all."""
    return _count(client, checked_identifier(database), EVENTS_TABLE, build_id)


def count_build_results(client: Client, database: str, build_id: str | None = None) -> int:
    """Stored builds after deduplication (one per build), for one build or all."""
    return _count(client, checked_identifier(database), RESULTS_TABLE, build_id)


def pipeline_stats(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime | None = None,
    project: str | None = None,
    pipeline: str | None = None,
) -> list[PipelineStats]:
    """Stats per (project, pipeline) of final builds with `finished_at` in [now - window, now].

    Both ends are inclusive, at the columns' millisecond precision (`now` is truncated to the
    millisecond). Pipelines without a finished build in the window are absent. Ordered by
    project, pipeline.
    """
    rows = _stats_rows(
        client, database, ("project", "pipeline"), window, now, project=project, pipeline=pipeline
    )
    return [PipelineStats(str(row[0]), str(row[1]), *_metrics(row[2:])) for row in rows]


def project_stats(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime | None = None,
    project: str | None = None,
) -> list[ProjectStats]:
    """Like `pipeline_stats`, grouped per project. Ordered by project."""
    rows = _stats_rows(client, database, ("project",), window, now, project=project, pipeline=None)
    return [ProjectStats(str(row[0]), *_metrics(row[1:])) for row in rows]


def window_bounds(window: timedelta, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The inclusive [start, end] a stats query covers, in UTC, truncated to milliseconds."""
    if window <= timedelta(0):
        raise SinkError(f"stats window must be positive, got {window}")
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        raise SinkError("`now` must be timezone-aware: a naive datetime is ambiguous")
    end = _truncate_to_ms(now.astimezone(timezone.utc))
    return _truncate_to_ms(end - window), end


def _stats_rows(
    client: Client,
    database: str,
    group_by: tuple[str, ...],
    window: timedelta,
    now: datetime | None,
    *,
    project: str | None,
    pipeline: str | None,
) -> Sequence[Sequence[Any]]:
    database = checked_identifier(database)
    start, end = window_bounds(window, now)
    parameters: dict[str, Any] = {
        "start": start,
        "end": end,
        "succeeded": BuildStatus.SUCCEEDED.value,
        "failed": BuildStatus.FAILED.value,
        "canceled": BuildStatus.CANCELED.value,
    }
    conditions = [
        "is_final = 1",
        "finished_at IS NOT NULL",
        f"finished_at >= {{start:{_DATETIME}}}",
        f"finished_at <= {{end:{_DATETIME}}}",
    ]
    if project is not None:
        conditions.append("project = {project:String}")
        parameters["project"] = project
    if pipeline is not None:
        conditions.append("pipeline = {pipeline:String}")
        parameters["pipeline"] = pipeline
    keys = ", ".join(group_by)
    sql = (
        f"SELECT {keys},"
        " count() AS finished,"
        " countIf(status = {succeeded:String}) AS succeeded,"
        " countIf(status = {failed:String}) AS failed,"
        " countIf(status = {canceled:String}) AS canceled,"
        " countIf(duration_ms IS NOT NULL) AS timed,"
        " quantilesExactInclusive(0.5, 0.95, 0.99)(duration_ms) AS duration_quantiles,"
        " avg(queue_ms) AS mean_queue_ms"
        f" FROM {database}.{RESULTS_TABLE} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        f" GROUP BY {keys} ORDER BY {keys}"
    )
    return _query(client, sql, parameters)


_Metrics = tuple[
    int, int, int, int, float | None, float | None, float | None, float | None, float | None
]


def _metrics(values: Sequence[Any]) -> _Metrics:
    """The metric fields of a stats dataclass, in field order, from one result row's tail."""
    finished, succeeded, failed, canceled, timed, quantiles, mean_queue = values
    decided = succeeded + failed + canceled
    p50, p95, p99 = (_finite(q) for q in quantiles) if timed else (None, None, None)
    return (
        int(finished),
        int(succeeded),
        int(failed),
        int(canceled),
        succeeded / decided if decided else None,
        p50,
        p95,
        p99,
        _finite(mean_queue),
    )


def _count(client: Client, database: str, table: str, build_id: str | None) -> int:
    sql = f"SELECT count() FROM {database}.{table} FINAL"
    parameters: dict[str, Any] = {}
    if build_id is not None:
        sql += " WHERE build_id = {build_id:String}"
        parameters["build_id"] = build_id
    return int(_query(client, sql, parameters)[0][0])


def _query(client: Client, sql: str, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
    try:
        return client.query(sql, parameters=parameters, tz_mode="aware").result_rows
    except ClickHouseError as exc:
        raise SinkError(
            f"ClickHouse query failed: {exc}. Check that migrations ran on this database and "
            "the server is reachable"
        ) from exc


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _truncate_to_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def ping(client: Client, database: str) -> None:
    """Readiness probe: raises when the engine or server does not answer."""
    client.command("SELECT 1")
