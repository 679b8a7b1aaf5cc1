"""The audit writer against the real engine: every table round-trips field for field, empty
batches insert nothing, and failures name the table."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from clickhouse_connect.driver import Client

from sinks.audit_queries import audit_timeline
from sinks.audit_writer import AuditSinkWriter
from sinks.exceptions import SinkWriteError
from sinks_testkit import T0, raw_count
from sinks_audit_testkit import AUDIT_TABLES, audit_alert, audit_event, audit_repair, audit_state


@pytest.fixture
def audit_writer(ch_client: Client, migrated: str) -> AuditSinkWriter:
    return AuditSinkWriter(ch_client, migrated)


def test_the_seed_round_trips_through_all_four_tables(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    # Request, decision, the status sync is lost, cipulse repairs and alerts.
    decided_at = T0 + timedelta(minutes=10)
    repaired_at = T0 + timedelta(minutes=30)
    events = [
        audit_event(seq=1, event_time=T0, actor="ci-bot"),
        audit_event(seq=2, event_time=T0 + timedelta(minutes=1), kind="REVIEW_STARTED",
                    status_after="IN_REVIEW", actor="carol"),
        audit_event(seq=3, event_time=decided_at, kind="DECIDED", status_after="DECIDED",
                    decision="APPROVED", decision_id="a-1-d", actor="carol",
                    reason="looks good, 'ship' it ü"),
        audit_event(seq=4, event_time=repaired_at, kind="REPAIRED", status_after="REPAIRED",
                    decision="APPROVED", decision_id="a-1-d", actor="cipulse",
                    reason="no record-status sync within the grace period"),
    ]
    state = audit_state(
        revision=4, status="REPAIRED", decision="APPROVED", decision_id="a-1-d",
        decided_at=decided_at, synced_at=repaired_at, repaired_at=repaired_at, is_open=False,
        updated_at=repaired_at,
    )
    repair = audit_repair(repaired_at=repaired_at)
    alert = audit_alert(kind="INCONSISTENT", age_seconds=1800.25, raised_at=repaired_at)

    audit_writer.write(events=events, states=[state], repairs=[repair], alerts=[alert])

    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    assert [replace(event, ingested_at=None) for event in timeline.events] == events
    assert timeline.state == state
    assert timeline.repairs == [repair]
    assert timeline.alerts == [alert]


def test_nullable_state_fields_and_empty_reviewers_round_trip(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    requested = audit_state(status="REQUESTED", reviewers=(), review_started_at=None)

    audit_writer.write(states=[requested])

    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    assert timeline.state == requested
    assert timeline.state.reviewers == ()


def test_reviewers_given_as_a_list_are_stored_and_read_back_as_a_tuple(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write(
        states=[audit_state(reviewers=["zoe", "ann"])],
        alerts=[audit_alert(reviewers=["zoe"])],
    )

    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None and timeline.state is not None
    assert timeline.state.reviewers == ("zoe", "ann")
    assert timeline.alerts[0].reviewers == ("zoe",)


def test_server_stamps_ingested_at_in_utc(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)

    audit_writer.write(events=[audit_event()])

    timeline = audit_timeline(ch_client, migrated, "a-1")
    assert timeline is not None
    (stored,) = timeline.events
    assert stored.ingested_at is not None
    assert before <= stored.ingested_at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_only_the_non_empty_batches_are_inserted(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    audit_writer.write()
    audit_writer.write(events=[], states=[], repairs=[], alerts=[])
    assert {t: raw_count(ch_client, migrated, t) for t in AUDIT_TABLES} == dict.fromkeys(
        AUDIT_TABLES, 0
    )

    audit_writer.write(alerts=[audit_alert()])

    assert {t: raw_count(ch_client, migrated, t) for t in AUDIT_TABLES} == {
        "audit_events": 0, "audit_state": 0, "audit_repairs": 0, "audit_alerts": 1,
    }


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_missing_table_raises_sink_write_error_naming_it(
    ch_client: Client, database: str, table: str
) -> None:
    writer = AuditSinkWriter(ch_client, database)
    batch = {
        "audit_events": {"events": [audit_event()]},
        "audit_state": {"states": [audit_state()]},
        "audit_repairs": {"repairs": [audit_repair()]},
        "audit_alerts": {"alerts": [audit_alert()]},
    }[table]

    with pytest.raises(SinkWriteError, match=f"{database}.{table}") as raised:
        writer.write(**batch)  # type: ignore[arg-type]

    assert raised.value.table == f"{database}.{table}"


def test_a_failing_later_table_is_named_and_the_earlier_ones_are_already_stored(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    ch_client.command(f"DROP TABLE {migrated}.audit_alerts SYNC")

    with pytest.raises(SinkWriteError) as raised:
        audit_writer.write(events=[audit_event()], alerts=[audit_alert()])

    assert raised.value.table == f"{migrated}.audit_alerts"
    assert raw_count(ch_client, migrated, "audit_events") == 1


def test_value_that_does_not_fit_its_column_raises_sink_write_error(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    with pytest.raises(SinkWriteError, match="audit_events"):
        audit_writer.write(events=[replace(audit_event(), seq=2**64)])

    assert raw_count(ch_client, migrated, "audit_events") == 0


def test_a_ten_thousand_row_batch_lands_whole(
    ch_client: Client, migrated: str, audit_writer: AuditSinkWriter
) -> None:
    states = [audit_state(f"a-{i}") for i in range(10_000)]

    audit_writer.write(states=states)

    assert ch_client.command(f"SELECT count() FROM {migrated}.audit_state FINAL") == 10_000
