"""Retry eligibility against the real engine: the retention comes from ClickHouse's own metadata.

Builds are placed in old and recent day partitions of `build_context`; the assessor (the object
behind the REST endpoints) reads the TTL from `system.tables` through its cache. The decision
clock is injected so the boundary is exact to the millisecond (the precision of event times
and of the stored first-seen time); rows are placed relative to the
real clock, because the engine's TTL merges use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver import Client

from schemas import BuildEvent, BuildScope, BuildStatus
from sinks.connection import open_client
from sinks.context_queries import retry_decisions_of
from sinks.context_writer import BuildContextWriter
from sinks.gateway import ClickHouseGateway
from sinks.migrations import apply_migrations
from sinks_context_testkit import context_row, modify_ttl, stop_ttl_merges
from sinks_testkit import ENGINE_DSN
from streams.build_state import Accepted, BuildState, apply_event
from streams.retention_cache import RetentionCache
from streams.retry_assessment import Assessment, RetryAssessor
from streams.retry_eligibility import RetryVerdict

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=28)
MARGIN = timedelta(hours=1)
CACHE_SECONDS = 30.0
NOW = datetime.now(UTC).replace(microsecond=0)


class FakeMonotonic:
    """The cache's clock, moved by the test: "within the cache lifetime" without sleeping."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def store(ch_client: Client, database: str) -> str:
    apply_migrations(ch_client, database, context_retention_days=28)
    return database


@pytest.fixture
def gateway(store: str) -> Iterator[ClickHouseGateway]:
    """A second client of the same in-memory engine, run on the gateway's own thread as in the worker."""
    gateway = ClickHouseGateway(lambda: open_client(ENGINE_DSN, store), store)
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture
def cache_clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def assessor(gateway: ClickHouseGateway, cache_clock: FakeMonotonic) -> Callable[[datetime], RetryAssessor]:
    """An assessor deciding at a given instant; all of them share one retention cache."""
    cache = RetentionCache(gateway, CACHE_SECONDS, clock=cache_clock)
    return lambda at: RetryAssessor(gateway, cache, MARGIN, clock=lambda: at)


def place(client: Client, database: str, build_id: str, first_seen_at: datetime, status: str = "FAILED") -> None:
    BuildContextWriter(client, database).write(
        [context_row(build_id, first_seen_at=first_seen_at, started_at=first_seen_at, status=status,
                     finished_at=first_seen_at + timedelta(minutes=3) if status != "RUNNING" else None)]
    )


def live_state(build_id: str, first_seen_at: datetime, status: BuildStatus = BuildStatus.FAILED) -> BuildState:
    """What the worker's build table holds for a build that ran at `first_seen_at`."""
    event = BuildEvent(
        event_id=f"{build_id}-1", build_id=build_id, project="payments", pipeline="deploy", seq=1,
        event_time=first_seen_at, scope=BuildScope.BUILD, status=status,
    )
    outcome = apply_event(None, event)
    assert isinstance(outcome, Accepted)
    return outcome.state


def assess(make: Callable[[datetime], RetryAssessor], build_id: str, at: datetime = NOW,
           state: BuildState | None = None) -> Assessment:
    return asyncio.run(make(at).assess(build_id, state))


def test_boundary_is_exact_just_inside_is_eligible_just_outside_is_refused(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor]
) -> None:
    inside_first_seen = NOW - RETENTION + MARGIN + timedelta(milliseconds=1)
    outside_first_seen = NOW - RETENTION + MARGIN
    place(ch_client, store, "inside", inside_first_seen)
    place(ch_client, store, "outside", outside_first_seen)

    inside = assess(assessor, "inside")
    outside = assess(assessor, "outside")

    assert inside.eligibility.verdict is RetryVerdict.ELIGIBLE, inside.eligibility.message
    assert inside.eligibility.deadline == NOW + timedelta(milliseconds=1)
    assert inside.context is not None and inside.context.variables == {"DEPLOY_ENV": "staging", "REGION": "eu-west-1"}
    assert outside.eligibility.verdict is RetryVerdict.OUTSIDE_RETENTION
    assert outside.eligibility.http_status == 410
    message = outside.eligibility.message
    assert "first seen 27d 23h ago" in message, message
    assert "kept 28d (toDateTime(first_seen_at) + toIntervalDay(28))" in message, message
    assert f"retry deadline {NOW.isoformat()} passed 0s ago" in message, message
    assert outside.context is not None, "the row is still there: the refusal comes from the margin, not from loss"


def test_builds_in_old_and_recent_partitions_are_judged_by_their_own_age(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor]
) -> None:
    place(ch_client, store, "recent", NOW - timedelta(hours=5))
    place(ch_client, store, "three-weeks", NOW - timedelta(days=21))
    place(ch_client, store, "in-the-margin", NOW - RETENTION + timedelta(minutes=30))
    place(ch_client, store, "running", NOW - timedelta(days=2), status="RUNNING")

    verdicts = {b: assess(assessor, b).eligibility for b in ("recent", "three-weeks", "in-the-margin", "running")}

    assert verdicts["recent"].verdict is RetryVerdict.ELIGIBLE
    assert verdicts["three-weeks"].verdict is RetryVerdict.ELIGIBLE
    assert verdicts["three-weeks"].deadline == NOW - timedelta(days=21) + RETENTION - MARGIN
    assert verdicts["in-the-margin"].verdict is RetryVerdict.OUTSIDE_RETENTION
    assert verdicts["running"].verdict is RetryVerdict.NOT_FINAL
    assert verdicts["running"].http_status == 409
    unknown = assess(assessor, "never-seen").eligibility
    assert (unknown.verdict, unknown.http_status) == (RetryVerdict.NOT_FOUND, 404)
    partitions = ch_client.query(
        f"SELECT DISTINCT partition_id FROM system.parts WHERE database = '{store}' AND table = 'build_context'"
        " AND active AND rows > 0"
    ).result_rows
    assert len(partitions) == 4, f"one day partition per build, got {partitions}"


def test_modify_ttl_to_a_shorter_retention_flips_an_old_build_within_the_cache_lifetime(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor], cache_clock: FakeMonotonic
) -> None:
    place(ch_client, store, "ten-days", NOW - timedelta(days=10))
    assert assess(assessor, "ten-days").eligibility.verdict is RetryVerdict.ELIGIBLE

    # keep the row, so only the retention metadata changes (the row's loss is the next test)
    stop_ttl_merges(ch_client, store)
    ch_client.command(
        f"ALTER TABLE {store}.build_context MODIFY TTL toDateTime(first_seen_at) + INTERVAL 7 DAY",
        settings={"materialize_ttl_after_modify": 0},
    )
    cached = assess(assessor, "ten-days")
    cache_clock.value += CACHE_SECONDS
    after = assess(assessor, "ten-days")

    assert cached.eligibility.verdict is RetryVerdict.ELIGIBLE, "within the cache lifetime the old TTL may still apply"
    assert after.retention.ttl == timedelta(days=7)
    assert after.eligibility.verdict is RetryVerdict.OUTSIDE_RETENTION
    assert "kept 7d (toDateTime(first_seen_at) + toIntervalDay(7))" in after.eligibility.message
    assert after.context is not None


def test_a_build_whose_rows_ttl_removed_is_refused_as_context_expired_though_the_clock_allows_it(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor], cache_clock: FakeMonotonic
) -> None:
    first_seen = NOW - timedelta(days=10)
    place(ch_client, store, "purged", first_seen)
    modify_ttl(ch_client, store, "toDateTime(first_seen_at) + INTERVAL 5 DAY")  # TTL removes the 10-day-old row
    modify_ttl(ch_client, store, "toDateTime(first_seen_at) + INTERVAL 28 DAY")  # the operator restores 28 days
    cache_clock.value += CACHE_SECONDS

    result = assess(assessor, "purged", state=live_state("purged", first_seen))

    assert result.retention.ttl == RETENTION, "by the clock alone the build is well inside the retention"
    assert result.eligibility.verdict is RetryVerdict.CONTEXT_EXPIRED
    assert result.eligibility.http_status == 410
    assert "no longer in ClickHouse" in result.eligibility.message
    assert result.context is None


def test_a_build_whose_day_partition_was_dropped_is_refused_as_context_expired(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor]
) -> None:
    first_seen = NOW - timedelta(days=3)
    place(ch_client, store, "dropped", first_seen)
    place(ch_client, store, "kept", NOW - timedelta(days=1))
    ch_client.command(f"ALTER TABLE {store}.build_context DROP PARTITION ID '{first_seen:%Y%m%d}'")

    dropped = assess(assessor, "dropped", state=live_state("dropped", first_seen))
    kept = assess(assessor, "kept", state=live_state("kept", NOW - timedelta(days=1)))

    assert dropped.eligibility.verdict is RetryVerdict.CONTEXT_EXPIRED
    assert kept.eligibility.verdict is RetryVerdict.ELIGIBLE
    assert kept.retention.oldest_partition == f"{NOW - timedelta(days=1):%Y%m%d}"


def test_every_decision_is_logged_with_its_reason_age_and_deadline(
    ch_client: Client, store: str, assessor: Callable[[datetime], RetryAssessor]
) -> None:
    place(ch_client, store, "logged", NOW - timedelta(days=2))
    make = assessor
    accepted = assess(make, "logged")
    refused = assess(make, "logged", at=NOW + RETENTION)
    asyncio.run(make(NOW).record(accepted, "retry", retry_id="r-1"))
    asyncio.run(make(NOW + RETENTION).record(refused, "check"))

    rows = retry_decisions_of(ch_client, store, "logged")

    assert [(r.action, r.eligible, r.reason, r.retry_id) for r in rows] == [
        ("retry", True, "ELIGIBLE", "r-1"),
        ("check", False, "OUTSIDE_RETENTION", ""),
    ]
    assert rows[0].age_seconds == pytest.approx(2 * 86_400)
    assert rows[1].deadline == NOW - timedelta(days=2) + RETENTION - MARGIN
    assert rows[1].retention_seconds == RETENTION.total_seconds()
