"""Retry eligibility: each refusal has its own reason and status, the deadline is first seen +
retention - margin with an exact boundary, and missing context refuses even when the clock allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import BuildStatus
from streams.retry_eligibility import BuildFacts, RetentionWindow, RetryVerdict, decide, describe

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MARGIN = timedelta(hours=1)
WINDOW = RetentionWindow(
    ttl=28 * DAY, ttl_expression="toDateTime(first_seen_at) + toIntervalDay(28)",
    oldest_partition_start=T0 - 27 * DAY, read_at=T0,
)


def facts(status: BuildStatus = BuildStatus.FAILED, *, present: bool = True) -> BuildFacts:
    return BuildFacts(build_id="b1", status=status, first_seen_at=T0, context_present=present)


def test_an_unknown_build_is_not_found() -> None:
    verdict = decide("b1", None, WINDOW, T0, MARGIN)
    assert (verdict.verdict, verdict.http_status, verdict.eligible) == (RetryVerdict.NOT_FOUND, 404, False)
    assert "not known" in verdict.message


@pytest.mark.parametrize("status", [BuildStatus.QUEUED, BuildStatus.PREPARING, BuildStatus.RUNNING])
def test_a_build_still_running_cannot_be_retried(status: BuildStatus) -> None:
    verdict = decide("b1", facts(status), WINDOW, T0 + DAY, MARGIN)
    assert (verdict.verdict, verdict.http_status) == (RetryVerdict.NOT_FINAL, 409)
    assert status.value in verdict.message


def test_the_boundary_is_exact_one_millisecond_either_side_of_the_deadline() -> None:
    deadline = T0 + 28 * DAY - MARGIN
    inside = decide("b1", facts(), WINDOW, deadline - timedelta(milliseconds=1), MARGIN)
    outside = decide("b1", facts(), WINDOW, deadline, MARGIN)
    assert inside.eligible and inside.deadline == deadline and inside.http_status == 200
    assert (outside.verdict, outside.http_status, outside.deadline) == (RetryVerdict.OUTSIDE_RETENTION, 410, deadline)


def test_the_refusal_names_the_age_the_window_and_the_deadline_that_passed() -> None:
    verdict = decide("b1", facts(), WINDOW, T0 + 30 * DAY, MARGIN)
    assert verdict.verdict is RetryVerdict.OUTSIDE_RETENTION
    assert "first seen 30d ago" in verdict.message
    assert "kept 28d (toDateTime(first_seen_at) + toIntervalDay(28))" in verdict.message
    assert "stop 1h before" in verdict.message
    assert f"deadline {(T0 + 28 * DAY - MARGIN).isoformat()} passed 2d 1h ago" in verdict.message
    assert verdict.age == 30 * DAY and verdict.retention == 28 * DAY


def test_missing_context_refuses_although_the_clock_allows() -> None:
    verdict = decide("b1", facts(present=False), WINDOW, T0 + DAY, MARGIN)
    assert (verdict.verdict, verdict.http_status) == (RetryVerdict.CONTEXT_EXPIRED, 410)
    assert "no longer in ClickHouse" in verdict.message and "partition" in verdict.message


def test_a_shorter_retention_flips_the_same_build() -> None:
    shorter = RetentionWindow(ttl=3 * DAY, ttl_expression="toDateTime(first_seen_at) + toIntervalDay(3)",
                              oldest_partition_start=None, read_at=T0)
    now = T0 + 5 * DAY
    assert decide("b1", facts(), WINDOW, now, MARGIN).eligible
    assert decide("b1", facts(), shorter, now, MARGIN).verdict is RetryVerdict.OUTSIDE_RETENTION


def test_without_a_ttl_only_presence_counts() -> None:
    forever = RetentionWindow(ttl=None, ttl_expression=None, oldest_partition_start=None, read_at=T0)
    verdict = decide("b1", facts(), forever, T0 + 3650 * DAY, MARGIN)
    assert verdict.eligible and verdict.deadline is None and "no TTL" in verdict.message
    assert decide("b1", facts(present=False), forever, T0, MARGIN).verdict is RetryVerdict.CONTEXT_EXPIRED


@given(st.integers(min_value=0, max_value=60 * 86_400 * 1000))
def test_eligible_exactly_when_before_the_deadline_with_context(offset_ms: int) -> None:
    now = T0 + timedelta(milliseconds=offset_ms)
    verdict = decide("b1", facts(), WINDOW, now, MARGIN)
    assert verdict.eligible == (now < T0 + 28 * DAY - MARGIN)


def test_spans_read_like_people_write_them() -> None:
    assert [describe(timedelta(seconds=s)) for s in (42, 600, 3_660, 86_400, 90_000, 2_419_200)] == [
        "42s", "10m", "1h 1m", "1d", "1d 1h", "28d"
    ]
