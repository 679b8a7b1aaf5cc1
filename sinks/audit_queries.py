"""The audit reads the API and the dashboards make: open audits and their ages, time in review,
repairs per day, one audit's timeline.

The rules of `sinks.queries` hold here too: every table is read with `FINAL`, so a row
delivered twice counts once and only an audit's newest revision counts even when an older one
arrives last; filters sit in `WHERE`, applied after FINAL's deduplication; every value is a
bound parameter and only the checked database name is part of the SQL text.

Times passed in (`now`) must be timezone-aware and are truncated to the millisecond, the
columns' precision. Ages and durations are computed by the engine in whole milliseconds and
returned as seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any

from clickhouse_connect.driver import Client

from sinks.audit_rows import (
    AUDIT_ALERT_COLUMNS,
    AUDIT_ALERTS_TABLE,
    AUDIT_EVENT_COLUMNS,
    AUDIT_EVENTS_TABLE,
    AUDIT_REPAIR_COLUMNS,
    AUDIT_REPAIRS_TABLE,
    AUDIT_STATE_COLUMNS,
    AUDIT_STATE_TABLE,
    AuditAlertRow,
    AuditEventRow,
    AuditRepairRow,
    AuditStateRow,
)
from sinks.exceptions import SinkError
from sinks.identifiers import checked_identifier
from sinks.queries import _finite, _query, _truncate_to_ms, window_bounds

DEFAULT_OPEN_AUDITS_LIMIT = 1000

_DATETIME = "DateTime64(3, 'UTC')"
_MS_PER_SECOND = 1000.0

AGE_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<1h", timedelta(0)),
    ("1-4h", timedelta(hours=1)),
    ("4-24h", timedelta(hours=4)),
    ("1-3d", timedelta(days=1)),
    (">3d", timedelta(days=3)),
)
"""Age buckets of open audits as (label, lower edge). A bucket holds the ages from its lower
edge (inclusive) up to the next bucket's lower edge (exclusive): exactly 1 h old is `1-4h`,
exactly 3 days old is `>3d`. Age counts from `requested_at`; an audit whose `requested_at` is
after `now` (a producer clock ahead of ours) has age 0."""

_AGE_MS = (
    "greatest(toInt64(0), "
    f"toUnixTimestamp64Milli({{now:{_DATETIME}}}) - toUnixTimestamp64Milli(requested_at))"
)


@dataclass(frozen=True, slots=True)
class OpenAudit:
    """An audit that is still open (`is_open`), with its age at the query's `now`.

    `age_seconds` counts from `requested_at`, not from the start of the review: an audit that
    nobody has started reviewing is the most stuck of all. It is 0 for an audit requested
    after `now`.
    """

    audit_id: str
    project: str
    pipeline: str
    subject_kind: str
    subject_id: str
    status: str
    decision: str
    decision_id: str
    reviewers: tuple[str, ...]
    requested_at: datetime
    review_started_at: datetime | None
    decided_at: datetime | None
    age_seconds: float


_OPEN_AUDIT_STATE_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(OpenAudit) if f.name != "age_seconds"
)
"""The `audit_state` columns an `OpenAudit` carries, in field order."""


@dataclass(frozen=True, slots=True)
class OpenAuditAgeCount:
    """How many of a project's open audits fall in one `AGE_BUCKETS` bucket."""

    project: str
    bucket: str
    open_audits: int


@dataclass(frozen=True, slots=True)
class ReviewTimeStats:
    """Time in review of a project's audits decided inside a window, in seconds.

    Time in review runs from `review_started_at` (or `requested_at` when the review was never
    marked as started) to `decided_at`, clamped at 0 against clock skew between producers.
    Percentiles interpolate linearly between the two nearest exact values
    (`quantilesExactInclusive`, numpy's default), like the build stats: exact, so a project
    with a handful of reviews shows real numbers.
    """

    project: str
    decided: int
    mean_seconds: float
    p50_seconds: float
    p95_seconds: float


@dataclass(frozen=True, slots=True)
class RepairsPerDay:
    """Repairs of one project and mode (`automatic` | `manual`) on one UTC day."""

    day: date
    project: str
    mode: str
    repairs: int


@dataclass(frozen=True, slots=True)
class AuditTimeline:
    """Everything stored about one audit: its current state (None if no state row was written
    yet), accepted events oldest first (`event_time`, then `seq`), repairs and alerts in the
    order they happened."""

    audit_id: str
    state: AuditStateRow | None
    events: list[AuditEventRow]
    repairs: list[AuditRepairRow]
    alerts: list[AuditAlertRow]


def age_bucket(age: timedelta) -> str:
    """The `AGE_BUCKETS` label for an age (negative ages count as 0); the queries compute the
    same in the engine."""
    label = AGE_BUCKETS[0][0]
    for name, lower_edge in AGE_BUCKETS:
        if age >= lower_edge:
            label = name
    return label


def open_audits(
    client: Client,
    database: str,
    *,
    now: datetime,
    project: str | None = None,
    min_age: timedelta | None = None,
    limit: int = DEFAULT_OPEN_AUDITS_LIMIT,
) -> list[OpenAudit]:
    """Open audits, oldest `requested_at` first (then by audit_id), at most `limit`.

    `min_age` keeps audits at least that old at `now` (inclusive); that is how the API lists
    stuck ones.
    """
    database = checked_identifier(database)
    if limit <= 0:
        raise SinkError(f"open audits limit must be positive, got {limit}")
    if min_age is not None and min_age < timedelta(0):
        raise SinkError(f"min_age must not be negative, got {min_age}")
    parameters: dict[str, Any] = {"now": _reference_time(now), "limit": limit}
    conditions = ["is_open = 1", *_project_condition(project, parameters)]
    if min_age is not None:
        conditions.append("age_ms >= {min_age_ms:Int64}")
        parameters["min_age_ms"] = _milliseconds(min_age)
    rows = _query(
        client,
        f"SELECT {', '.join(_OPEN_AUDIT_STATE_COLUMNS)}, {_AGE_MS} AS age_ms"
        f" FROM {database}.{AUDIT_STATE_TABLE} FINAL"
        f" WHERE {' AND '.join(conditions)}"
        " ORDER BY requested_at, audit_id LIMIT {limit:UInt32}",
        parameters,
    )
    return [_open_audit(row) for row in rows]


def open_audits_by_age_bucket(
    client: Client, database: str, *, now: datetime, project: str | None = None
) -> list[OpenAuditAgeCount]:
    """Open audits per project per `AGE_BUCKETS` bucket at `now`.

    Every project with at least one open audit gets all five buckets, zeros included and in
    `AGE_BUCKETS` order, so a dashboard series never has holes; projects are in name order.
    """
    database = checked_identifier(database)
    parameters: dict[str, Any] = {"now": _reference_time(now)}
    bucket_index = ["multiIf("]
    for index, (_, lower_edge) in enumerate(AGE_BUCKETS[1:]):
        bucket_index.append(f"age_ms < {{edge_{index}:Int64}}, {index}, ")
        parameters[f"edge_{index}"] = _milliseconds(lower_edge)
    bucket_index.append(f"{len(AGE_BUCKETS) - 1})")
    conditions = ["is_open = 1", *_project_condition(project, parameters)]
    rows = _query(
        client,
        f"SELECT project, {''.join(bucket_index)} AS bucket, count() AS open_audits"
        f" FROM (SELECT project, {_AGE_MS} AS age_ms"
        f" FROM {database}.{AUDIT_STATE_TABLE} FINAL WHERE {' AND '.join(conditions)})"
        " GROUP BY project, bucket ORDER BY project, bucket",
        parameters,
    )
    counts: dict[str, list[int]] = {}
    for project_name, bucket, count in rows:
        counts.setdefault(str(project_name), [0] * len(AGE_BUCKETS))[int(bucket)] = int(count)
    return [
        OpenAuditAgeCount(project=project_name, bucket=label, open_audits=per_bucket[index])
        for project_name, per_bucket in counts.items()
        for index, (label, _) in enumerate(AGE_BUCKETS)
    ]


def time_in_review(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime,
    project: str | None = None,
) -> list[ReviewTimeStats]:
    """`ReviewTimeStats` per project for audits with `decided_at` in [now - window, now].

    Both ends are inclusive (see `sinks.queries.window_bounds`). An audit counts by its newest
    revision's `decided_at`, whatever its status now (SYNCED, REPAIRED, ...). Projects without
    a decision in the window are absent; ordered by project.
    """
    database = checked_identifier(database)
    start, end = window_bounds(window, _reference_time(now))
    parameters: dict[str, Any] = {"start": start, "end": end}
    conditions = [
        "decided_at IS NOT NULL",
        f"decided_at >= {{start:{_DATETIME}}}",
        f"decided_at <= {{end:{_DATETIME}}}",
        *_project_condition(project, parameters),
    ]
    review_ms = (
        "greatest(toInt64(0), toUnixTimestamp64Milli(assumeNotNull(decided_at))"
        " - toUnixTimestamp64Milli(coalesce(review_started_at, requested_at)))"
    )
    rows = _query(
        client,
        "SELECT project, count() AS decided, avg(review_ms) AS mean_ms,"
        " quantilesExactInclusive(0.5, 0.95)(review_ms) AS quantiles_ms"
        f" FROM (SELECT project, {review_ms} AS review_ms"
        f" FROM {database}.{AUDIT_STATE_TABLE} FINAL WHERE {' AND '.join(conditions)})"
        " GROUP BY project ORDER BY project",
        parameters,
    )
    return [
        ReviewTimeStats(
            project=str(project_name),
            decided=int(decided),
            mean_seconds=_seconds(mean_ms),
            p50_seconds=_seconds(quantiles_ms[0]),
            p95_seconds=_seconds(quantiles_ms[1]),
        )
        for project_name, decided, mean_ms, quantiles_ms in rows
    ]


def repairs_per_day(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime,
    project: str | None = None,
) -> list[RepairsPerDay]:
    """Repairs with `repaired_at` in [now - window, now] per UTC day, project and mode.

    Days without repairs are absent. Ordered by day, project, mode.
    """
    database = checked_identifier(database)
    start, end = window_bounds(window, _reference_time(now))
    parameters: dict[str, Any] = {"start": start, "end": end}
    conditions = [
        f"repaired_at >= {{start:{_DATETIME}}}",
        f"repaired_at <= {{end:{_DATETIME}}}",
        *_project_condition(project, parameters),
    ]
    rows = _query(
        client,
        "SELECT toDate(repaired_at, 'UTC') AS day, project, mode, count() AS repairs"
        f" FROM {database}.{AUDIT_REPAIRS_TABLE} FINAL WHERE {' AND '.join(conditions)}"
        " GROUP BY day, project, mode ORDER BY day, project, mode",
        parameters,
    )
    return [
        RepairsPerDay(day=day, project=str(project_name), mode=str(mode), repairs=int(count))
        for day, project_name, mode, count in rows
    ]


def audit_timeline(client: Client, database: str, audit_id: str) -> AuditTimeline | None:
    """One audit's state, events, repairs and alerts; None when nothing is stored about it."""
    database = checked_identifier(database)
    parameters: dict[str, Any] = {"audit_id": audit_id}
    by_audit = "WHERE audit_id = {audit_id:String}"
    states = _query(
        client,
        f"SELECT {', '.join(AUDIT_STATE_COLUMNS)} FROM {database}.{AUDIT_STATE_TABLE} FINAL "
        f"{by_audit} ORDER BY revision DESC LIMIT 1",
        parameters,
    )
    events = _query(
        client,
        f"SELECT {', '.join(AUDIT_EVENT_COLUMNS)} FROM {database}.{AUDIT_EVENTS_TABLE} FINAL "
        f"{by_audit} ORDER BY event_time, seq",
        parameters,
    )
    repairs = _query(
        client,
        f"SELECT {', '.join(AUDIT_REPAIR_COLUMNS)} FROM {database}.{AUDIT_REPAIRS_TABLE} FINAL "
        f"{by_audit} ORDER BY repaired_at, repair_id",
        parameters,
    )
    alerts = _query(
        client,
        f"SELECT {', '.join(AUDIT_ALERT_COLUMNS)} FROM {database}.{AUDIT_ALERTS_TABLE} FINAL "
        f"{by_audit} ORDER BY raised_at, alert_id",
        parameters,
    )
    if not (states or events or repairs or alerts):
        return None
    return AuditTimeline(
        audit_id=audit_id,
        state=_state_row(states[0]) if states else None,
        events=[AuditEventRow(*row) for row in events],
        repairs=[AuditRepairRow(*row) for row in repairs],
        alerts=[AuditAlertRow(*row) for row in alerts],
    )


def _open_audit(row: Sequence[Any]) -> OpenAudit:
    *state_values, age_ms = row
    values = dict(zip(_OPEN_AUDIT_STATE_COLUMNS, state_values))
    values["reviewers"] = tuple(values["reviewers"])
    return OpenAudit(**values, age_seconds=int(age_ms) / _MS_PER_SECOND)


def _state_row(row: Sequence[Any]) -> AuditStateRow:
    values = dict(zip(AUDIT_STATE_COLUMNS, row))
    values["is_open"] = bool(values["is_open"])
    return AuditStateRow(**values)


def _project_condition(project: str | None, parameters: dict[str, Any]) -> list[str]:
    if project is None:
        return []
    parameters["project"] = project
    return ["project = {project:String}"]


def _reference_time(now: datetime) -> datetime:
    """`now` in UTC at millisecond precision; a naive value is refused, not guessed."""
    if now.tzinfo is None:
        raise SinkError("`now` must be timezone-aware: a naive datetime is ambiguous")
    return _truncate_to_ms(now.astimezone(timezone.utc))


def _milliseconds(span: timedelta) -> int:
    return span // timedelta(milliseconds=1)


def _seconds(milliseconds: Any) -> float:
    value = _finite(milliseconds)
    if value is None:
        raise SinkError("time in review came back empty for a project with decided audits")
    return value / _MS_PER_SECOND
