"""May this build be retried? One pure decision, from the data store's own retention.

BK-CI let users retry builds whose variables had already been purged. Its fix was a hard-coded
day limit that disagreed with the purge in two places. Here the limit is the `build_context`
table's TTL as ClickHouse reports it (`sinks.retention`), so the limit and the retention cannot
disagree. A build is retryable only when all of these hold, checked in this order, each with its
own reason:
1. it is known (`NOT_FOUND`, 404);
2. it is in a final status (`NOT_FINAL`, 409);
3. its first-seen time, the column the TTL counts from, plus the TTL minus a safety margin
   is still ahead (`OUTSIDE_RETENTION`, 410). The margin keeps a retry from racing the
   partition drop;
4. its context rows are really there (`CONTEXT_EXPIRED`, 410). This catches a partition that
   was dropped early, or a TTL that was shortened, even when the clock alone would allow the
   retry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from schemas import BuildStatus
from streams.transitions import is_final


class RetryVerdict(StrEnum):
    ELIGIBLE = "ELIGIBLE"
    NOT_FOUND = "NOT_FOUND"
    NOT_FINAL = "NOT_FINAL"
    OUTSIDE_RETENTION = "OUTSIDE_RETENTION"
    CONTEXT_EXPIRED = "CONTEXT_EXPIRED"


HTTP_STATUS = {
    RetryVerdict.ELIGIBLE: 200,
    RetryVerdict.NOT_FOUND: 404,
    RetryVerdict.NOT_FINAL: 409,
    RetryVerdict.OUTSIDE_RETENTION: 410,
    RetryVerdict.CONTEXT_EXPIRED: 410,
}
"""The status a retry request gets for each verdict (202 instead of 200 when it is accepted)."""


@dataclass(frozen=True)
class RetentionWindow:
    """The context table's retention as ClickHouse reported it at `read_at`."""

    ttl: timedelta | None
    """None: the table has no TTL, so context never expires by time."""
    ttl_expression: str | None
    oldest_partition_start: datetime | None
    read_at: datetime


@dataclass(frozen=True)
class BuildFacts:
    build_id: str
    status: BuildStatus
    first_seen_at: datetime
    context_present: bool


@dataclass(frozen=True)
class Eligibility:
    build_id: str
    verdict: RetryVerdict
    message: str
    first_seen_at: datetime | None = None
    age: timedelta | None = None
    retention: timedelta | None = None
    margin: timedelta | None = None
    deadline: datetime | None = None
    """The last moment a retry is accepted (first seen + retention - margin); None without a TTL."""

    @property
    def eligible(self) -> bool:
        return self.verdict is RetryVerdict.ELIGIBLE

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.verdict]


def decide(
    build_id: str, facts: BuildFacts | None, window: RetentionWindow, now: datetime, margin: timedelta
) -> Eligibility:
    """The verdict for `build_id` at `now`; `facts` is None when the build is unknown."""
    if facts is None:
        return Eligibility(build_id, RetryVerdict.NOT_FOUND, f"build {build_id} is not known to cipulse")
    age = now - facts.first_seen_at
    deadline = facts.first_seen_at + window.ttl - margin if window.ttl is not None else None
    base = Eligibility(
        build_id, RetryVerdict.ELIGIBLE, "", first_seen_at=facts.first_seen_at, age=age, retention=window.ttl,
        margin=margin, deadline=deadline,
    )
    if not is_final(facts.status):
        return replace(
            base, verdict=RetryVerdict.NOT_FINAL,
            message=f"build {build_id} is {facts.status.value}; only a finished build (SUCCEEDED, FAILED, "
            "CANCELED) can be retried",
        )
    if deadline is not None and window.ttl is not None and now >= deadline:
        return replace(
            base, verdict=RetryVerdict.OUTSIDE_RETENTION,
            message=f"build {build_id} was first seen {describe(age)} ago ({facts.first_seen_at.isoformat()}); its "
            f"context is kept {describe(window.ttl)} ({window.ttl_expression}) and retries stop {describe(margin)} "
            f"before that, so the retry deadline {deadline.isoformat()} passed {describe(now - deadline)} ago",
        )
    if not facts.context_present:
        return replace(
            base, verdict=RetryVerdict.CONTEXT_EXPIRED,
            message=f"build {build_id}'s context (variables, trigger) is no longer in ClickHouse: its partition "
            f"was dropped (oldest partition kept starts {_iso(window.oldest_partition_start)}), so a retry "
            "could not reproduce the build",
        )
    until = f"until {deadline.isoformat()}" if deadline is not None else "(the context table has no TTL)"
    return replace(base, message=f"build {build_id} can be retried {until}")


def describe(span: timedelta) -> str:
    """`27d 23h`, `5h 10m`, `42s`: a span as people read it (whole seconds)."""
    seconds = int(abs(span.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "unknown (no partition left)"
