"""Audit queries on known data: open audits and their ages at a fixed `now`, the age buckets'
edges, time-in-review math, repairs per day, one audit's timeline, and the filters."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, timedelta

import pytest
from clickhouse_connect.driver import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.audit_queries import (
    AGE_BUCKETS,
    AuditTimeline,
    OpenAuditAgeCount,
    ReviewTimeStats,
    age_bucket,
    audit_timeline,
    open_audits,
    open_audits_by_age_bucket,
    repairs_per_day,
    time_in_review,
)
from sinks.audit_writer import AuditSinkWriter
from sinks.exceptions import SinkError
from sinks_testkit import T0
from sinks_audit_testkit import (
    audit_alert,
    audit_event,
    audit_repair,
    audit_state,
    decided_state,
)

NOW = T0 + timedelta(days=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)
LABELS = [label for label, _ in AGE_BUCKETS]


@pytest.fixture
def audit_writer(ch_client: Client, migrated: str) -> AuditSinkWriter:
    return AuditSinkWriter(ch_client, migrated)


def linear_percentile(values: list[float], level: float) -> float:
    """numpy's default ('linear') percentile, the definition the stats promise."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * level
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- open audits ---------------------------------------------------------------------------


def test_open_audits_lists_only_open_ones_oldest_first_with_their_age(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[
            audit_state("young", requested_at=NOW - timedelta(minutes=5)),
            audit_state("old", requested_at=NOW - timedelta(hours=30), reviewers=("erin",)),
            audit_state("closed", requested_at=NOW - timedelta(days=2), is_open=False,
                        status="SYNCED"),
            audit_state("middle", requested_at=NOW - timedelta(hours=2, milliseconds=250)),
        ]
    )

    audits = open_audits(ch_client, migrated, now=NOW)

    assert [(a.audit_id, a.age_seconds) for a in audits] == [
        ("old", 30 * 3600.0),
        ("middle", 7200.25),
        ("young", 300.0),
    ]
    assert audits[0].reviewers == ("erin",)
    assert audits[0].requested_at == NOW - timedelta(hours=30)
    assert (audits[0].status, audits[0].project, audits[0].subject_id) == (
        "IN_REVIEW", "payments", "b-1",
    )


def test_min_age_is_inclusive_and_lists_the_stuck_ones(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[
            audit_state("exactly", requested_at=NOW - 4 * HOUR),
            audit_state("just-under", requested_at=NOW - 4 * HOUR + MS),
            audit_state("older", requested_at=NOW - 5 * HOUR),
        ]
    )

    stuck = open_audits(ch_client, migrated, now=NOW, min_age=4 * HOUR)

    assert [a.audit_id for a in stuck] == ["older", "exactly"]


def test_project_filter_and_limit(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[
            audit_state(f"p-{i}", requested_at=NOW - timedelta(minutes=10 + i)) for i in range(5)
        ]
        + [audit_state("w-1", project="web", requested_at=NOW - DAY)]
    )

    payments = open_audits(ch_client, migrated, now=NOW, project="payments")
    first_two = open_audits(ch_client, migrated, now=NOW, limit=2)
    web = open_audits(ch_client, migrated, now=NOW, project="web")

    assert [a.audit_id for a in payments] == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    assert [a.audit_id for a in first_two] == ["w-1", "p-4"]
    assert [a.audit_id for a in web] == ["w-1"]
    assert open_audits(ch_client, migrated, now=NOW, project="payments' OR 1=1 --") == []


def test_an_audit_requested_after_now_has_age_zero(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(states=[audit_state(requested_at=NOW + timedelta(seconds=3))])

    (audit,) = open_audits(ch_client, migrated, now=NOW)
    (bucket,) = [c for c in open_audits_by_age_bucket(ch_client, migrated, now=NOW)
                 if c.open_audits]

    assert audit.age_seconds == 0.0
    assert bucket.bucket == "<1h"


def test_invalid_arguments_are_rejected(ch_client: Client, migrated: str) -> None:
    with pytest.raises(SinkError, match="timezone-aware"):
        open_audits(ch_client, migrated, now=NOW.replace(tzinfo=None))
    with pytest.raises(SinkError, match="limit must be positive"):
        open_audits(ch_client, migrated, now=NOW, limit=0)
    with pytest.raises(SinkError, match="min_age"):
        open_audits(ch_client, migrated, now=NOW, min_age=-HOUR)
    with pytest.raises(SinkError, match="timezone-aware"):
        open_audits_by_age_bucket(ch_client, migrated, now=NOW.replace(tzinfo=None))
    with pytest.raises(SinkError, match="positive"):
        time_in_review(ch_client, migrated, window=timedelta(0), now=NOW)
    with pytest.raises(SinkError, match="timezone-aware"):
        repairs_per_day(ch_client, migrated, window=DAY, now=NOW.replace(tzinfo=None))


# --- age buckets ---------------------------------------------------------------------------

EDGE_AGES = {
    "zero": timedelta(0),
    "under-1h": HOUR - MS,
    "at-1h": HOUR,
    "under-4h": 4 * HOUR - MS,
    "at-4h": 4 * HOUR,
    "under-24h": DAY - MS,
    "at-24h": DAY,
    "under-3d": 3 * DAY - MS,
    "at-3d": 3 * DAY,
    "ten-days": 10 * DAY,
}


def test_age_buckets_split_at_their_lower_edges_inclusive(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[audit_state(name, requested_at=NOW - age) for name, age in EDGE_AGES.items()]
    )

    counts = open_audits_by_age_bucket(ch_client, migrated, now=NOW)

    assert counts == [
        OpenAuditAgeCount("payments", "<1h", 2),
        OpenAuditAgeCount("payments", "1-4h", 2),
        OpenAuditAgeCount("payments", "4-24h", 2),
        OpenAuditAgeCount("payments", "1-3d", 2),
        OpenAuditAgeCount("payments", ">3d", 2),
    ]
    # The engine and the documented Python rule agree on every edge.
    by_bucket: dict[str, int] = dict.fromkeys(LABELS, 0)
    for age in EDGE_AGES.values():
        by_bucket[age_bucket(age)] += 1
    assert [c.open_audits for c in counts] == [by_bucket[label] for label in LABELS]


def test_age_buckets_list_every_bucket_per_project_and_skip_closed_audits(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[
            audit_state("w-1", project="web", requested_at=NOW - 5 * DAY),
            audit_state("p-1", requested_at=NOW - 2 * HOUR),
            audit_state("p-2", requested_at=NOW - 3 * HOUR),
            audit_state("p-closed", requested_at=NOW - 10 * HOUR, is_open=False),
            audit_state("o-closed", project="ops", requested_at=NOW - HOUR, is_open=False),
        ]
    )

    counts = open_audits_by_age_bucket(ch_client, migrated, now=NOW)
    web_only = open_audits_by_age_bucket(ch_client, migrated, now=NOW, project="web")

    assert [(c.project, c.bucket, c.open_audits) for c in counts] == [
        ("payments", "<1h", 0), ("payments", "1-4h", 2), ("payments", "4-24h", 0),
        ("payments", "1-3d", 0), ("payments", ">3d", 0),
        ("web", "<1h", 0), ("web", "1-4h", 0), ("web", "4-24h", 0), ("web", "1-3d", 0),
        ("web", ">3d", 1),
    ]
    assert [(c.bucket, c.open_audits) for c in web_only if c.open_audits] == [(">3d", 1)]
    assert open_audits_by_age_bucket(ch_client, migrated, now=NOW, project="ops") == []


def test_ages_move_with_now(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(states=[audit_state(requested_at=NOW - 30 * timedelta(minutes=1))])

    def bucket_at(now: datetime) -> str:
        (count,) = [c for c in open_audits_by_age_bucket(ch_client, migrated, now=now)
                    if c.open_audits]
        return count.bucket

    assert bucket_at(NOW) == "<1h"
    assert bucket_at(NOW + 3 * HOUR) == "1-4h"
    assert bucket_at(NOW + 4 * DAY) == ">3d"


# --- time in review ------------------------------------------------------------------------


def test_time_in_review_mean_and_exact_percentiles_on_known_values(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    seconds = [60, 120, 180, 240, 300, 360, 420, 480, 540, 600]
    audit_writer.write(
        states=[
            decided_state(f"a-{i}", NOW - timedelta(minutes=i + 1), s)
            for i, s in enumerate(seconds)
        ]
    )

    (stats,) = time_in_review(ch_client, migrated, window=HOUR, now=NOW)

    assert isinstance(stats, ReviewTimeStats)
    assert (stats.project, stats.decided, stats.mean_seconds, stats.p50_seconds) == (
        "payments", 10, 330.0, 330.0,
    )
    assert stats.p95_seconds == pytest.approx(573.0)  # 540 + 0.55 * (600 - 540)


def test_time_in_review_counts_from_requested_at_when_review_never_started(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    decided_at = NOW - timedelta(minutes=1)
    audit_writer.write(
        states=[
            decided_state("direct", decided_at, 0, review_started_at=None,
                          requested_at=decided_at - timedelta(seconds=90.5)),
            decided_state("skewed", decided_at, -30),
        ]
    )

    (stats,) = time_in_review(ch_client, migrated, window=HOUR, now=NOW)

    # 90.5 s from the request; the skewed one (decided before it started) counts as 0.
    assert (stats.decided, stats.mean_seconds, stats.p50_seconds) == (2, 45.25, 45.25)


def test_time_in_review_window_edges_undecided_audits_and_project_filter(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[
            decided_state("at-start", NOW - HOUR, 10),
            decided_state("at-now", NOW, 20),
            decided_state("before-start", NOW - HOUR - MS, 1000),
            decided_state("after-now", NOW + MS, 1000),
            decided_state("repaired", NOW - HOUR / 2, 30, status="REPAIRED"),
            decided_state("web", NOW - HOUR / 2, 40, project="web"),
            audit_state("undecided"),
        ]
    )

    stats = time_in_review(ch_client, migrated, window=HOUR, now=NOW)
    web_only = time_in_review(ch_client, migrated, window=HOUR, now=NOW, project="web")

    assert [(s.project, s.decided, s.mean_seconds) for s in stats] == [
        ("payments", 3, 20.0),
        ("web", 1, 40.0),
    ]
    assert [s.project for s in web_only] == ["web"]
    assert time_in_review(ch_client, migrated, window=HOUR, now=NOW - 5 * DAY) == []


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    review_ms=st.lists(st.integers(min_value=0, max_value=30 * 86_400_000), min_size=1,
                       max_size=40)
)
def test_time_in_review_percentiles_match_linear_interpolation(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter, review_ms: list[int]
) -> None:
    project = f"prop-{uuid.uuid4().hex[:12]}"
    audit_writer.write(
        states=[
            decided_state(f"{project}-{i}", NOW - timedelta(minutes=1), ms / 1000,
                          project=project)
            for i, ms in enumerate(review_ms)
        ]
    )

    (stats,) = time_in_review(ch_client, migrated, window=HOUR, now=NOW, project=project)

    values = [ms / 1000 for ms in review_ms]
    assert stats.decided == len(values)
    assert stats.mean_seconds == pytest.approx(sum(values) / len(values))
    assert stats.p50_seconds == pytest.approx(linear_percentile(values, 0.5))
    assert stats.p95_seconds == pytest.approx(linear_percentile(values, 0.95))


# --- repairs per day -----------------------------------------------------------------------


def test_repairs_per_day_group_by_utc_day_project_and_mode(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    day_before = midnight - MS
    audit_writer.write(
        repairs=[
            audit_repair("a-1", repaired_at=midnight),
            audit_repair("a-2", repaired_at=midnight + HOUR),
            audit_repair("a-3", repaired_at=day_before),
            audit_repair("a-4", mode="manual", actor="ops-oncall", repaired_at=midnight),
            audit_repair("a-5", project="web", repaired_at=midnight + 2 * HOUR),
            audit_repair("a-6", repaired_at=NOW - 3 * DAY),
        ]
    )

    rows = repairs_per_day(ch_client, migrated, window=2 * DAY, now=NOW)
    web_only = repairs_per_day(ch_client, migrated, window=2 * DAY, now=NOW, project="web")

    today, yesterday = midnight.date(), day_before.date()
    assert [(r.day, r.project, r.mode, r.repairs) for r in rows] == [
        (yesterday, "payments", "automatic", 1),
        (today, "payments", "automatic", 2),
        (today, "payments", "manual", 1),
        (today, "web", "automatic", 1),
    ]
    assert all(isinstance(r.day, date) for r in rows)
    assert [(r.project, r.repairs) for r in web_only] == [("web", 1)]


def test_repairs_per_day_window_includes_both_edges(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        repairs=[
            audit_repair("at-start", repaired_at=NOW - DAY),
            audit_repair("at-now", repaired_at=NOW),
            audit_repair("before", repaired_at=NOW - DAY - MS),
            audit_repair("after", repaired_at=NOW + MS),
        ]
    )

    rows = repairs_per_day(ch_client, migrated, window=DAY, now=NOW)

    assert sum(r.repairs for r in rows) == 2


# --- timeline ------------------------------------------------------------------------------


def test_timeline_orders_events_by_time_and_keeps_other_audits_out(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    later, earlier = audit_event(seq=2, event_time=T0 + HOUR), audit_event(seq=1, event_time=T0)
    same_time = audit_event(seq=3, event_time=T0 + HOUR, kind="DECIDED")
    audit_writer.write(events=[same_time, later])
    audit_writer.write(
        events=[earlier, audit_event("a-2", seq=1)],
        repairs=[audit_repair(), audit_repair("a-2")],
        alerts=[
            audit_alert(episode=2, raised_at=T0 + 3 * HOUR),
            audit_alert(episode=1, raised_at=T0 + 2 * HOUR),
            audit_alert("a-2"),
        ],
    )

    timeline = audit_timeline(ch_client, migrated, "a-1")

    assert isinstance(timeline, AuditTimeline)
    assert timeline.state is None
    assert [e.seq for e in timeline.events] == [1, 2, 3]
    assert [r.audit_id for r in timeline.repairs] == ["a-1"]
    assert [a.episode for a in timeline.alerts] == [1, 2]


def test_timeline_of_an_unknown_audit_is_none(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(states=[audit_state()])

    assert audit_timeline(ch_client, migrated, "nope") is None
    assert audit_timeline(ch_client, migrated, "a-1' OR '1'='1") is None
