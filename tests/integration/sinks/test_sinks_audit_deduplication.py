"""Redelivery and reordering never change what an audit reader sees.

Merges are stopped in every test here, so each insert stays its own part and the duplicates are
physically present (checked with a raw count): what removes them is FINAL in the queries, not a
lucky background merge. This is the worker restarted between the decision and the end of the
grace period: it writes the same repair and the same alert again.
"""

from __future__ import annotations

from datetime import timedelta

from clickhouse_connect.driver import Client

from sinks.audit_queries import (
    audit_timeline,
    open_audits,
    open_audits_by_age_bucket,
    repairs_per_day,
    time_in_review,
)
from sinks.audit_writer import AuditSinkWriter
from sinks_testkit import T0, raw_count
from sinks_audit_testkit import (
    AUDIT_TABLES,
    audit_alert,
    audit_event,
    audit_repair,
    audit_state,
    decided_state,
    stop_audit_merges,
)

NOW = T0 + timedelta(days=1)
WINDOW = timedelta(days=2)


def test_a_redelivered_batch_in_a_separate_insert_is_counted_once_by_every_query(
    ch_client: Client, migrated: str
) -> None:
    stop_audit_merges(ch_client, migrated)
    writer = AuditSinkWriter(ch_client, migrated)
    events = [audit_event(seq=seq) for seq in (1, 2, 3)]
    states = [
        audit_state("open-1", requested_at=NOW - timedelta(hours=2)),
        decided_state("decided-1", NOW - timedelta(hours=1), 120),
    ]
    repairs, alerts = [audit_repair("a-1")], [audit_alert("a-1")]

    for _ in range(2):
        writer.write(events=events, states=states, repairs=repairs, alerts=alerts)

    assert {t: raw_count(ch_client, migrated, t) for t in AUDIT_TABLES} == {
        "audit_events": 6, "audit_state": 4, "audit_repairs": 2, "audit_alerts": 2,
    }
    assert [a.audit_id for a in open_audits(ch_client, migrated, now=NOW)] == ["open-1"]
    buckets = open_audits_by_age_bucket(ch_client, migrated, now=NOW)
    assert sum(c.open_audits for c in buckets) == 1
    (review,) = time_in_review(ch_client, migrated, window=WINDOW, now=NOW)
    assert (review.decided, review.mean_seconds, review.p95_seconds) == (1, 120.0, 120.0)
    (per_day,) = repairs_per_day(ch_client, migrated, window=WINDOW, now=NOW)
    assert per_day.repairs == 1
    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    assert [e.seq for e in timeline.events] == [1, 2, 3]
    assert len(timeline.repairs) == 1
    assert len(timeline.alerts) == 1


def test_a_restarted_worker_repeating_the_repair_and_alert_leaves_one_of_each(
    ch_client: Client, migrated: str
) -> None:
    # The second delivery of an alert is built later, so it carries a larger age; same id.
    stop_audit_merges(ch_client, migrated)
    writer = AuditSinkWriter(ch_client, migrated)
    writer.write(repairs=[audit_repair()], alerts=[audit_alert(age_seconds=1800.0)])
    for _ in range(3):
        writer.write(repairs=[audit_repair()], alerts=[audit_alert(age_seconds=1801.5)])

    assert raw_count(ch_client, migrated, "audit_repairs") == 4
    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    assert len(timeline.repairs) == 1
    assert [a.age_seconds for a in timeline.alerts] == [1801.5]
    (repairs,) = repairs_per_day(ch_client, migrated, window=WINDOW, now=NOW)
    assert repairs.repairs == 1


def test_an_older_revision_written_after_a_newer_one_does_not_reopen_the_audit(
    ch_client: Client, migrated: str
) -> None:
    stop_audit_merges(ch_client, migrated)
    writer = AuditSinkWriter(ch_client, migrated)
    decided = decided_state("a-1", NOW - timedelta(minutes=10), 300, revision=4)
    stale_open = audit_state("a-1", revision=2, requested_at=decided.requested_at)

    writer.write(states=[decided])
    writer.write(states=[stale_open])

    assert raw_count(ch_client, migrated, "audit_state") == 2
    assert open_audits(ch_client, migrated, now=NOW) == []
    assert open_audits_by_age_bucket(ch_client, migrated, now=NOW) == []
    (review,) = time_in_review(ch_client, migrated, window=WINDOW, now=NOW)
    assert review.decided == 1
    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None and timeline.state == decided


def test_filters_see_the_newest_revision_not_a_superseded_one(
    ch_client: Client, migrated: str
) -> None:
    # Revision 1 was decided inside the window; revision 2 (the decision was redone) is after
    # `now`. Filtering before deduplication would count the stale decision.
    stop_audit_merges(ch_client, migrated)
    writer = AuditSinkWriter(ch_client, migrated)
    requested_at = NOW - timedelta(hours=3)
    writer.write(states=[decided_state("a-1", NOW - timedelta(minutes=5), 60, revision=1,
                                       requested_at=requested_at)])
    writer.write(states=[decided_state("a-1", NOW + timedelta(minutes=5), 60, revision=2,
                                       requested_at=requested_at)])

    assert time_in_review(ch_client, migrated, window=timedelta(hours=1), now=NOW) == []


def test_the_same_event_redelivered_many_times_keeps_one_timeline_entry(
    ch_client: Client, migrated: str
) -> None:
    stop_audit_merges(ch_client, migrated)
    writer = AuditSinkWriter(ch_client, migrated)
    for _ in range(5):
        writer.write(events=[audit_event(seq=7)])

    assert raw_count(ch_client, migrated, "audit_events") == 5
    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    assert [e.seq for e in timeline.events] == [7]
