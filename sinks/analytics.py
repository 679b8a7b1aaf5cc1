"""Named analytics queries: one SQL text each, shared by the Grafana panels, the
`cipulse analytics` command and the copy-paste section of `dashboards/ANALYTICS.md`.

Every query in `sinks.analytics_catalog` is written once, in the dialect the Grafana ClickHouse
plugin (`grafana-clickhouse-datasource`) runs: tables unqualified (the data source's default
database), the dashboard time range through the plugin's macros, and dashboard variables as
`${name:sqlstring}` (Grafana quotes and escapes the value; "All" is the custom all-value `''`).
That text is the panel's `rawSql` verbatim. For any other client it is rendered here:

- `render_bound` (the CLI): macros and variables become ClickHouse bound parameters
  (`{from:DateTime64(3, 'UTC')}`, `{project:String}`, ...), so no value is ever spliced in;
- `render_literal` (the docs): macros become `now64(3) - INTERVAL ...` and variables their
  defaults, so the text pastes into clickhouse-client, the play UI or DBeaver unchanged.

The macros used, and nothing else (an unknown `$__macro` is an error, not passed through):

    $__timeFilter_ms(col)   col >= <from> AND col <= <to>       (millisecond precision)
    $__fromTime_ms          <from>
    $__toTime_ms            <to>
    $__timeInterval(col)    toStartOfInterval(toDateTime(col), INTERVAL <n> second)

Reads follow `sinks.queries`: ReplacingMergeTree tables with FINAL (filters in WHERE, applied
after deduplication), a canceled build counts as not-success, percentiles are exact
(`quantilesExactInclusive`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.exceptions import SinkError
from sinks.queries import window_bounds

_DATETIME = "DateTime64(3, 'UTC')"
_COLUMN_MACRO = re.compile(r"\$__(timeFilter_ms|timeInterval)\(([^()]+)\)")
_BARE_MACRO = re.compile(r"\$__(fromTime_ms|toTime_ms)\b")
_ANY_MACRO = re.compile(r"\$__\w+")
_VARIABLE = re.compile(r"\$\{(\w+):sqlstring\}")
_ANY_VARIABLE = re.compile(r"\$\{?\w+")

INTERVAL_STEPS_SECONDS: tuple[int, ...] = (60, 300, 900, 3600, 6 * 3600, 86400)
"""Bucket widths `$__timeInterval` may get outside Grafana: the smallest giving at most
`MAX_BUCKETS` buckets over the window (Grafana computes its own from the panel width)."""
MAX_BUCKETS = 120


@dataclass(frozen=True, slots=True)
class QueryParameter:
    """A dashboard variable a query reads as `${name:sqlstring}`; '' means "all"."""

    name: str
    description: str
    default: str = ""


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """One named query: what it answers, the columns it returns, in order, and its SQL in the
    Grafana plugin's dialect (see the module docstring)."""

    name: str
    title: str
    description: str
    columns: tuple[str, ...]
    sql: str
    parameters: tuple[QueryParameter, ...] = field(default=())

    def __post_init__(self) -> None:
        declared = {p.name for p in self.parameters}
        used = set(_VARIABLE.findall(self.sql))
        if used != declared:
            raise ValueError(
                f"analytics query {self.name!r}: variables used {sorted(used)} != declared {sorted(declared)}"
            )
        without_macros = _BARE_MACRO.sub("", _COLUMN_MACRO.sub("", self.sql))
        if _ANY_MACRO.search(without_macros):
            raise ValueError(f"analytics query {self.name!r} uses a macro outside the supported four")
        if _ANY_VARIABLE.search(_VARIABLE.sub("", without_macros)):
            raise ValueError(f"analytics query {self.name!r}: variables must be written ${{name:sqlstring}}")


@dataclass(frozen=True, slots=True)
class AnalyticsResult:
    """Column names as the engine returned them, and the rows."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def interval_seconds(window: timedelta) -> int:
    """The `$__timeInterval` bucket width outside Grafana for a window (see INTERVAL_STEPS_SECONDS)."""
    total = window.total_seconds()
    for step in INTERVAL_STEPS_SECONDS:
        if total / step <= MAX_BUCKETS:
            return step
    return INTERVAL_STEPS_SECONDS[-1]


def render_bound(sql: str) -> str:
    """The query with macros as bound parameters `from`, `to`, `interval_s` and each variable
    as `{name:String}`: what `run_query` sends."""

    def column_macro(match: re.Match[str]) -> str:
        macro, column = match.group(1), match.group(2).strip()
        if macro == "timeFilter_ms":
            return f"{column} >= {{from:{_DATETIME}}} AND {column} <= {{to:{_DATETIME}}}"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {{interval_s:UInt32}} second)"

    sql = _COLUMN_MACRO.sub(column_macro, sql)
    sql = _BARE_MACRO.sub(lambda m: f"{{{'from' if m.group(1) == 'fromTime_ms' else 'to'}:{_DATETIME}}}", sql)
    return _VARIABLE.sub(lambda m: f"{{{m.group(1)}:String}}", sql)


def render_literal(query: AnalyticsQuery, window: timedelta = timedelta(days=1)) -> str:
    """The query as plain SQL for any ClickHouse client: the window ends now, variables take
    their defaults (`''` = all projects). Edit the literals to change them."""
    seconds = int(window.total_seconds())
    start, end = f"(now64(3) - INTERVAL {seconds} SECOND)", "now64(3)"

    def column_macro(match: re.Match[str]) -> str:
        macro, column = match.group(1), match.group(2).strip()
        if macro == "timeFilter_ms":
            return f"{column} >= {start} AND {column} <= {end}"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {interval_seconds(window)} second)"

    defaults = {p.name: p.default for p in query.parameters}
    sql = _COLUMN_MACRO.sub(column_macro, query.sql)
    sql = _BARE_MACRO.sub(lambda m: start if m.group(1) == "fromTime_ms" else end, sql)
    return _VARIABLE.sub(lambda m: _sql_string(defaults[m.group(1)]), sql)


def run_query(
    client: Client,
    query: AnalyticsQuery,
    *,
    window: timedelta,
    now: datetime | None = None,
    values: Mapping[str, str] | None = None,
) -> AnalyticsResult:
    """Run `query` over [now - window, now] on the client's default database.

    `values` sets variables by name (unset ones take their default; '' means all); an unknown
    name is refused so a typo never silently widens a query.
    """
    values = dict(values or {})
    known = {p.name: p.default for p in query.parameters}
    unknown = sorted(set(values) - set(known))
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise SinkError(f"query {query.name!r} has no parameter {', '.join(unknown)} (it takes: {accepted})")
    start, end = window_bounds(window, now or datetime.now(timezone.utc))
    parameters: dict[str, Any] = {"from": start, "to": end, "interval_s": interval_seconds(window)}
    parameters.update({name: values.get(name, default) for name, default in known.items()})
    try:
        result = client.query(render_bound(query.sql), parameters=parameters, tz_mode="aware")
    except ClickHouseError as exc:
        raise SinkError(
            f"analytics query {query.name!r} failed: {exc}. If a table is unknown, the database has no "
            "cipulse tables yet: point CIPULSE_CLICKHOUSE_DSN/CIPULSE_CLICKHOUSE_DATABASE at the worker's, "
            "or start a worker once (it applies the migrations)"
        ) from exc
    return AnalyticsResult(columns=tuple(result.column_names), rows=[tuple(r) for r in result.result_rows])


def find_query(catalog: Sequence[AnalyticsQuery], name: str) -> AnalyticsQuery:
    """The query called `name`, or a SinkError listing the names there are."""
    for query in catalog:
        if query.name == name:
            return query
    raise SinkError(
        f"no analytics query named {name!r}; `cipulse analytics list` shows them: "
        + ", ".join(q.name for q in catalog)
    )


def _sql_string(value: str) -> str:
    """A ClickHouse string literal (quotes doubled as Grafana's `sqlstring` does; backslashes
    escaped too, since ClickHouse reads them as escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


__all__ = [
    "AnalyticsQuery",
    "AnalyticsResult",
    "QueryParameter",
    "find_query",
    "interval_seconds",
    "render_bound",
    "render_literal",
    "run_query",
]
