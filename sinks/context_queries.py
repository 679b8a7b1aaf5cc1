"""The retry reads the API and the dashboard make: one build's retry context, the decisions
logged for a build, and decision counts per action, outcome and reason.

The rules of `sinks.queries` hold here: `build_context` is read with `FINAL`, so a context
delivered twice is one row and only a build's newest revision counts even when an older one
arrives last; filters sit in `WHERE`, applied after FINAL's deduplication; every value is a
bound parameter and only the checked database name is part of the SQL text.
`retry_decisions` is a plain MergeTree (every decision is an event and counts), read without
FINAL.

Windows are [now - window, now], both ends inclusive at the column's millisecond precision
(`sinks.queries.window_bounds`); `now` must be timezone-aware. A decision belongs to the window
its `decided_at` falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver import Client

from sinks.context_rows import (
    BUILD_CONTEXT_COLUMNS,
    BUILD_CONTEXT_TABLE,
    RETRY_DECISION_COLUMNS,
    RETRY_DECISIONS_TABLE,
    BuildContextRow,
    RetryDecisionRow,
)
from sinks.identifiers import checked_identifier
from sinks.queries import _query, window_bounds

DEFAULT_DECISIONS_LIMIT = 1000

_DATETIME = "DateTime64(3, 'UTC')"


@dataclass(frozen=True, slots=True)
class RetryDecisionCount:
    """Decisions of one `action` with one outcome (`eligible`) and `reason` inside a window:
    `decisions` rows, about `builds` distinct builds (a build checked three times and rejected
    each time is 3 decisions, 1 build)."""

    action: str
    eligible: bool
    reason: str
    decisions: int
    builds: int


def build_context_of(client: Client, database: str, build_id: str) -> BuildContextRow | None:
    """The newest revision of a build's retry context, or None when it is unknown or its
    partition has expired (dropped by TTL or by hand)."""
    database = checked_identifier(database)
    rows = _query(
        client,
        f"SELECT {', '.join(BUILD_CONTEXT_COLUMNS)} FROM {database}.{BUILD_CONTEXT_TABLE} FINAL"
        " WHERE build_id = {build_id:String} ORDER BY revision DESC LIMIT 1",
        {"build_id": build_id},
    )
    if not rows:
        return None
    return BuildContextRow(*rows[0])


def retry_decisions_of(
    client: Client, database: str, build_id: str, *, limit: int = DEFAULT_DECISIONS_LIMIT
) -> list[RetryDecisionRow]:
    """The decisions logged for one build, oldest first (at most `limit`)."""
    database = checked_identifier(database)
    rows = _query(
        client,
        f"SELECT {', '.join(RETRY_DECISION_COLUMNS)} FROM {database}.{RETRY_DECISIONS_TABLE}"
        " WHERE build_id = {build_id:String}"
        " ORDER BY decided_at, action, retry_id LIMIT {limit:UInt32}",
        {"build_id": build_id, "limit": limit},
    )
    return [RetryDecisionRow(*row) for row in rows]


def retry_decision_counts(
    client: Client,
    database: str,
    *,
    window: timedelta,
    now: datetime,
    project: str | None = None,
) -> list[RetryDecisionCount]:
    """`RetryDecisionCount` per (action, eligible, reason) of decisions in [now - window, now],
    of one project if given. Combinations without a decision are absent; ordered by action,
    eligible (rejections first), reason."""
    database = checked_identifier(database)
    start, end = window_bounds(window, now)
    parameters: dict[str, Any] = {"start": start, "end": end}
    conditions = [
        f"decided_at >= {{start:{_DATETIME}}}",
        f"decided_at <= {{end:{_DATETIME}}}",
    ]
    if project is not None:
        parameters["project"] = project
        conditions.append("project = {project:String}")
    rows = _query(
        client,
        "SELECT action, eligible, reason, count() AS decisions,"
        " uniqExact(project, pipeline, build_id) AS builds"
        f" FROM {database}.{RETRY_DECISIONS_TABLE}"
        f" WHERE {' AND '.join(conditions)}"
        " GROUP BY action, eligible, reason ORDER BY action, eligible, reason",
        parameters,
    )
    return [
        RetryDecisionCount(
            action=str(action),
            eligible=bool(eligible),
            reason=str(reason),
            decisions=int(decisions),
            builds=int(builds),
        )
        for action, eligible, reason, decisions, builds in rows
    ]
