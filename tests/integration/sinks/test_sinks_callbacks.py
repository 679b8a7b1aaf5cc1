"""Callback tables on the real engine: versions replace each other, the newest wins, tombstones
hide deleted callbacks, and the delivery summary finds the current failure streak."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver import Client

from sinks.callback_queries import current_subscriptions, deliveries_for, delivery_summaries, subscription
from sinks.callback_rows import (
    OUTCOME_DELIVERED,
    OUTCOME_GAVE_UP,
    OUTCOME_RETRY,
    STATUS_ACTIVE,
    STATUS_DELETED,
    STATUS_DISABLED,
    CallbackDeliveryRow,
    CallbackSubscriptionRow,
)
from sinks.callback_writer import CallbackWriter
from sinks.migrations import applied_migrations, apply_migrations, load_migrations

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def version(callback_id: str, status: str, version: int, project: str = "payments") -> CallbackSubscriptionRow:
    return CallbackSubscriptionRow(
        callback_id=callback_id, project=project, pipeline="", url="http://example.invalid/hook",
        events=("build_started", "build_finished"), secret="0123456789abcdef", status=status,
        status_reason="" if status == STATUS_ACTIVE else f"{status} for the test", status_changed_at=T0 + timedelta(seconds=version),
        created_at=T0, version=version,
    )


def attempt(callback_id: str, delivery_id: str, number: int, outcome: str, at: datetime, error: str = "") -> CallbackDeliveryRow:
    return CallbackDeliveryRow(
        delivery_id=delivery_id, callback_id=callback_id, project="payments", pipeline="deploy", build_id="b-1",
        event="build_finished", stage_id="", task_id="", revision=3, attempt=number, outcome=outcome,
        http_status=204 if outcome == OUTCOME_DELIVERED else 503, error=error, latency_ms=1.5, attempted_at=at,
    )


def test_callbacks_migration_applies_on_top_of_0001_to_0006_once(ch_client: Client, database: str) -> None:
    apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 6])
    applied_now = apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 7])
    assert [m.file_name for m in applied_now] == ["0007_callbacks.sql"]
    assert apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 7]) == []
    assert [r.version for r in applied_migrations(ch_client, database)] == [1, 2, 3, 4, 5, 6, 7]


def test_newest_version_wins_and_deleted_callbacks_are_hidden(ch_client: Client, migrated: str) -> None:
    writer = CallbackWriter(ch_client, migrated)
    writer.write_subscriptions([version("a", STATUS_ACTIVE, 1), version("b", STATUS_ACTIVE, 1, project="web")])
    writer.write_subscriptions([version("a", STATUS_DISABLED, 2), version("b", STATUS_DELETED, 2, project="web")])
    writer.write_subscriptions([version("a", STATUS_DISABLED, 2)])  # a retried insert changes nothing

    current = current_subscriptions(ch_client, migrated)
    assert [(row.callback_id, row.status, row.version) for row in current] == [("a", STATUS_DISABLED, 2)]
    assert current[0].events == ("build_started", "build_finished")
    assert current_subscriptions(ch_client, migrated, project="web") == []
    tombstone = subscription(ch_client, migrated, "b")
    assert tombstone is not None and tombstone.status == STATUS_DELETED
    assert subscription(ch_client, migrated, "nope") is None


def test_summary_measures_the_failure_streak_after_the_last_success(ch_client: Client, migrated: str) -> None:
    writer = CallbackWriter(ch_client, migrated)
    writer.write_deliveries([
        attempt("a", "d1", 1, OUTCOME_RETRY, T0, "HTTP 503"),
        attempt("a", "d1", 2, OUTCOME_DELIVERED, T0 + timedelta(seconds=1)),
        attempt("a", "d2", 1, OUTCOME_RETRY, T0 + timedelta(seconds=5), "HTTP 503"),
        attempt("a", "d2", 2, OUTCOME_GAVE_UP, T0 + timedelta(seconds=6), "HTTP 500 on attempt 2 of 2"),
        attempt("b", "d3", 1, OUTCOME_DELIVERED, T0),
        attempt("c", "d4", 1, OUTCOME_GAVE_UP, T0 + timedelta(seconds=2), "HTTP 404"),
    ])
    writer.write_deliveries([attempt("a", "d2", 1, OUTCOME_RETRY, T0 + timedelta(seconds=5), "HTTP 503")])  # re-insert

    summaries = delivery_summaries(ch_client, migrated)
    a, b, c = summaries["a"], summaries["b"], summaries["c"]
    assert (a.delivered, a.failed_attempts) == (1, 3)
    assert a.last_success_at == T0 + timedelta(seconds=1)
    assert a.failing_since == T0 + timedelta(seconds=5)
    assert a.last_failure_at == T0 + timedelta(seconds=6)
    assert a.last_error == "HTTP 500 on attempt 2 of 2"
    assert b.failing_since is None and b.last_failure_at is None and b.last_error is None
    assert c.last_success_at is None and c.failing_since == T0 + timedelta(seconds=2)
    assert set(delivery_summaries(ch_client, migrated, ["b"])) == {"b"}
    assert delivery_summaries(ch_client, migrated, []) == {}

    history = deliveries_for(ch_client, migrated, "a", limit=3)
    assert [(row.delivery_id, row.attempt, row.outcome) for row in history] == [
        ("d2", 2, OUTCOME_GAVE_UP), ("d2", 1, OUTCOME_RETRY), ("d1", 2, OUTCOME_DELIVERED),
    ]
