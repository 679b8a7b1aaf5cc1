"""The notification writer against the real engine: attempts round-trip field for field, an
empty batch inserts nothing, and failures name the table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from sinks import NotificationDeliveryRow, NotificationSinkWriter
from sinks.exceptions import SinkWriteError
from sinks.migrations import load_migrations
from sinks.notification_queries import deliveries_for
from sinks_testkit import T0, raw_count

TABLE = "notification_deliveries"


def delivery(
    notification_id: str = "n-1", attempt: int = 1, **changes: Any
) -> NotificationDeliveryRow:
    """A first attempt that the receiver acknowledged, `attempt` seconds after T0.

    Built from one dict, not with `replace`, so changing outcome and attempt together never
    passes through a row the dataclass refuses."""
    values: dict[str, Any] = {
        "notification_id": notification_id,
        "subscription_id": "ops-webhook",
        "channel": "WEBHOOK",
        "project": "payments",
        "subject_kind": "BUILD",
        "subject_id": "b-1",
        "transition": "FAILED",
        "attempt": attempt,
        "outcome": "delivered",
        "http_status": 200,
        "error": "",
        "latency_ms": 42.5,
        "attempted_at": T0 + timedelta(seconds=attempt),
        "grouped_count": 1,
    }
    values.update(changes)
    return NotificationDeliveryRow(**values)


@pytest.fixture
def notification_writer(ch_client: Client, migrated: str) -> NotificationSinkWriter:
    return NotificationSinkWriter(ch_client, migrated)


def test_a_retried_then_delivered_message_round_trips_attempt_for_attempt(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    attempts = [
        delivery(attempt=1, outcome="retry", http_status=503, latency_ms=1500.25,
                 error="HTTP 503 Service Unavailable, Retry-After: 2 — 'busy' ü"),
        delivery(attempt=2, outcome="retry", http_status=0, latency_ms=10_000.0,
                 error="timeout after 10s"),
        delivery(attempt=3, channel="SLACK", transition="RECOVERED", subject_kind="GATE",
                 grouped_count=20, latency_ms=87.125, attempted_at=T0 + timedelta(minutes=1)),
    ]

    notification_writer.write(attempts)

    assert deliveries_for(ch_client, migrated, "n-1") == attempts


def test_a_suppressed_send_round_trips(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    suppressed = delivery(attempt=0, outcome="deduplicated", http_status=0, latency_ms=0.0,
                          transition="SUCCEEDED", channel="LOG")

    notification_writer.write([suppressed])

    assert deliveries_for(ch_client, migrated, "n-1") == [suppressed]


def test_an_empty_batch_inserts_nothing(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write([])
    notification_writer.write(())
    assert raw_count(ch_client, migrated, TABLE) == 0

    notification_writer.write([delivery()])

    assert raw_count(ch_client, migrated, TABLE) == 1


def test_missing_table_raises_sink_write_error_naming_it(
    ch_client: Client, database: str
) -> None:
    writer = NotificationSinkWriter(ch_client, database)

    with pytest.raises(SinkWriteError, match=f"{database}.{TABLE}") as raised:
        writer.write([delivery()])

    assert raised.value.table == f"{database}.{TABLE}"


def test_a_table_dropped_under_a_cached_insert_context_fails_then_recovers(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    notification_writer.write([delivery("n-1")])
    ch_client.command(f"DROP TABLE {migrated}.{TABLE} SYNC")

    with pytest.raises(SinkWriteError) as raised:
        notification_writer.write([delivery("n-2")])

    assert raised.value.table == f"{migrated}.{TABLE}"
    (migration,) = [m for m in load_migrations() if m.file_name.endswith(f"_{TABLE}.sql")]
    for statement in migration.statements(
        {"database": migrated, "raw_retention_days": "30", "results_retention_days": "400"}
    ):
        ch_client.command(statement)
    notification_writer.write([delivery("n-2")])
    assert [d.notification_id for d in deliveries_for(ch_client, migrated, "n-2")] == ["n-2"]


def test_value_that_does_not_fit_its_column_raises_sink_write_error(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    # Built around the row's own checks, as a buggy producer could.
    too_many = delivery()
    object.__setattr__(too_many, "attempt", 2**16)

    with pytest.raises(SinkWriteError, match=TABLE):
        notification_writer.write([too_many])

    assert raw_count(ch_client, migrated, TABLE) == 0


def test_a_ten_thousand_row_batch_lands_whole(
    ch_client: Client, migrated: str, notification_writer: NotificationSinkWriter
) -> None:
    attempts = [delivery(f"n-{i}") for i in range(10_000)]

    notification_writer.write(attempts)

    assert ch_client.command(f"SELECT count() FROM {migrated}.{TABLE} FINAL") == 10_000
