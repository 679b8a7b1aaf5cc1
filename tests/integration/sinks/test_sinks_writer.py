"""The writer against the real embedded engine: what goes in comes back out, failures name
the table, and a cached insert context recovers from a table being recreated."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from clickhouse_connect.driver import Client

from sinks.exceptions import SinkWriteError
from sinks.migrations import apply_migrations
from sinks.queries import build_history, build_result, count_build_events, count_build_results
from sinks.writer import BuildSinkWriter
from sinks_testkit import event_row, raw_count, result_row


def test_events_and_results_round_trip_field_for_field(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    events = [
        event_row(seq=1, scope="BUILD", stage_id="", task_id="", node_status="QUEUED",
                  build_status="QUEUED", previous_build_status=""),
        event_row(seq=2, scope="STAGE", task_id="", node_status="RUNNING"),
        event_row(seq=3, node_status="FAILED", build_status="FAILED",
                  previous_build_status="RUNNING", error_reason="exit 2",
                  termination_reason="OOMKilled", trigger_user="bob 'quoted' ü"),
    ]
    result = result_row(status="FAILED", version=3, error_reason="exit 2",
                        termination_reason="OOMKilled", queue_ms=0)

    writer.write(events, [result])

    history = build_history(ch_client, migrated, "b-1")
    assert [replace(row, ingested_at=None) for row in history] == events
    assert build_result(ch_client, migrated, "b-1") == result


def test_nullable_result_fields_round_trip_as_none(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    queued = result_row(status="QUEUED", is_final=False, started_at=None, finished_at=None,
                        duration_ms=None, queue_ms=None)

    writer.write([], [queued])

    assert build_result(ch_client, migrated, "b-1") == queued


def test_server_stamps_ingested_at_in_utc(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)

    writer.write([event_row()], [])

    (stored,) = build_history(ch_client, migrated, "b-1")
    assert stored.ingested_at is not None
    assert stored.ingested_at.tzinfo is not None
    assert before <= stored.ingested_at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_empty_batches_write_nothing(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write([], [])

    assert raw_count(ch_client, migrated, "build_events") == 0
    assert raw_count(ch_client, migrated, "build_results") == 0


def test_a_ten_thousand_row_batch_lands_whole(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    events = [event_row(build_id=f"b-{i // 10}", seq=i % 10) for i in range(10_000)]
    results = [result_row(build_id=f"b-{i}") for i in range(1_000)]

    writer.write(events, results)

    assert count_build_events(ch_client, migrated) == 10_000
    assert count_build_results(ch_client, migrated) == 1_000


def test_missing_table_raises_sink_write_error_naming_the_table(
    ch_client: Client, database: str
) -> None:
    writer = BuildSinkWriter(ch_client, database)

    with pytest.raises(SinkWriteError, match=f"{database}.build_events") as raised:
        writer.write([event_row()], [])

    assert raised.value.table == f"{database}.build_events"


def test_value_that_does_not_fit_its_column_raises_sink_write_error(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    too_big = result_row(duration_ms=2**64)

    with pytest.raises(SinkWriteError, match="build_results"):
        writer.write([], [too_big])

    assert raw_count(ch_client, migrated, "build_results") == 0


def test_writer_recovers_after_its_table_is_recreated(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write([event_row(seq=1)], [])
    ch_client.command(f"DROP TABLE {migrated}.build_events SYNC")
    with pytest.raises(SinkWriteError):
        writer.write([event_row(seq=2)], [])
    ch_client.command(f"DROP TABLE {migrated}.schema_migrations SYNC")
    apply_migrations(ch_client, migrated)

    writer.write([event_row(seq=3)], [])

    assert [row.seq for row in build_history(ch_client, migrated, "b-1")] == [3]

