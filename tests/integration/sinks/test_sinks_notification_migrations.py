"""The notification migration against the real engine: it applies once on top of the build and
audit tables, and the table carries exactly the columns, key, day partitioning, raw-retention
TTL and index the delivery log needs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from clickhouse_connect.driver import Client

from sinks.audit_writer import AuditSinkWriter
from sinks.migrations import applied_migrations, apply_migrations, load_migrations
from sinks.notification_rows import NotificationDeliveryRow
from sinks.notification_writer import NotificationSinkWriter
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, event_row, raw_count, result_row
from sinks_audit_testkit import audit_event, audit_state

TABLE = "notification_deliveries"
_LC = "LowCardinality(String)"

EXPECTED_COLUMNS = [
    ("notification_id", "String"), ("subscription_id", "String"), ("channel", _LC),
    ("project", _LC), ("subject_kind", _LC), ("subject_id", "String"), ("transition", _LC),
    ("attempt", "UInt16"), ("outcome", _LC), ("http_status", "UInt16"), ("error", "String"),
    ("latency_ms", "Float64"), ("attempted_at", "DateTime64(3, 'UTC')"),
    ("grouped_count", "UInt32"),
]

DELIVERED = NotificationDeliveryRow(
    notification_id="n-1",
    subscription_id="ops-webhook",
    channel="WEBHOOK",
    project="payments",
    subject_kind="BUILD",
    subject_id="b-1",
    transition="FAILED",
    attempt=1,
    outcome="delivered",
    http_status=200,
    error="",
    latency_ms=42.0,
    attempted_at=T0,
    grouped_count=1,
)


def _engine_full(client: Client, database: str, table: str) -> str:
    return str(
        client.command(
            "SELECT engine_full FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table},
        )
    )


def _partitions(client: Client, database: str, table: str) -> list[str]:
    rows = client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active ORDER BY partition",
        parameters={"db": database, "t": table},
    ).result_rows
    return [str(row[0]) for row in rows]


def test_notification_migration_applies_on_top_of_0001_to_0004_once(
    ch_client: Client, database: str
) -> None:
    before_notifications = [m for m in load_migrations() if m.version <= 4]
    up_to_notifications = [m for m in load_migrations() if m.version <= 5]
    apply_migrations(ch_client, database, migrations=before_notifications)
    BuildSinkWriter(ch_client, database).write([event_row()], [result_row()])
    AuditSinkWriter(ch_client, database).write(events=[audit_event()], states=[audit_state()])

    applied_now = apply_migrations(ch_client, database, migrations=up_to_notifications)
    ddl_after_first = _engine_full(ch_client, database, TABLE)
    NotificationSinkWriter(ch_client, database).write([DELIVERED])
    applied_again = apply_migrations(ch_client, database, migrations=up_to_notifications)

    assert [m.file_name for m in applied_now] == ["0005_notification_deliveries.sql"]
    assert applied_again == []
    assert [r.version for r in applied_migrations(ch_client, database)] == [1, 2, 3, 4, 5]
    assert _engine_full(ch_client, database, TABLE) == ddl_after_first
    assert {
        t: raw_count(ch_client, database, t)
        for t in ("build_events", "build_results", "audit_events", "audit_state", TABLE)
    } == dict.fromkeys(("build_events", "build_results", "audit_events", "audit_state", TABLE), 1)


def test_notification_deliveries_have_exactly_the_designed_columns(
    ch_client: Client, migrated: str
) -> None:
    columns = ch_client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String} ORDER BY position",
        parameters={"db": migrated, "t": TABLE},
    ).result_rows

    assert [(str(n), str(t)) for n, t in columns] == EXPECTED_COLUMNS


def test_deliveries_are_day_partitioned_with_raw_retention_dropping_whole_parts(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database, raw_retention_days=7, results_retention_days=90)

    engine_full = _engine_full(ch_client, database, TABLE)

    assert engine_full.startswith("ReplacingMergeTree ")
    assert "PARTITION BY toYYYYMMDD(attempted_at)" in engine_full
    assert "ORDER BY (project, subscription_id, notification_id, attempt)" in engine_full
    assert "TTL toDateTime(attempted_at) + toIntervalDay(7)" in engine_full
    assert "ttl_only_drop_parts = 1" in engine_full
    NotificationSinkWriter(ch_client, database).write(
        [
            DELIVERED,
            replace(DELIVERED, notification_id="n-2", attempted_at=T0 + timedelta(days=1)),
        ]
    )
    assert _partitions(ch_client, database, TABLE) == [
        T0.strftime("%Y%m%d"),
        (T0 + timedelta(days=1)).strftime("%Y%m%d"),
    ]


def test_the_default_raw_retention_reaches_the_ttl(ch_client: Client, migrated: str) -> None:
    assert "TTL toDateTime(attempted_at) + toIntervalDay(30)" in _engine_full(
        ch_client, migrated, TABLE
    )


def test_deliveries_have_a_bloom_filter_on_notification_id(
    ch_client: Client, migrated: str
) -> None:
    indexes = ch_client.query(
        "SELECT table, name, expr, type_full FROM system.data_skipping_indices "
        "WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": migrated, "t": TABLE},
    ).result_rows

    assert indexes == [(TABLE, "idx_notification_id", "notification_id", "bloom_filter(0.01)")]
