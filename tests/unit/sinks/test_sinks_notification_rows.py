"""The notification delivery row, the writer's column list and the shipped DDL agree, and rows
refuse values the table would store wrongly or that would break deduplication."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest

from schemas.enums import NotificationChannel
from sinks.migrations import load_migrations
from sinks.notification_rows import (
    DELIVERY_OUTCOMES,
    NOTIFICATION_DELIVERY_COLUMNS,
    NotificationDeliveryRow,
)

UTC_NOON = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
_CREATE = re.compile(
    r"CREATE TABLE IF NOT EXISTS \{database\}\.(?P<table>[a-z_]+)\s*\((?P<body>.*?)\n\)\s*ENGINE",
    re.DOTALL,
)
_COLUMN_LINE = re.compile(r"^\s{4}([a-z_]+)\s+[A-Z]")


def _ddl_columns(table: str) -> list[str]:
    for migration in load_migrations():
        for match in _CREATE.finditer(migration.sql):
            if match["table"] == table:
                return [
                    m.group(1)
                    for line in match["body"].splitlines()
                    if (m := _COLUMN_LINE.match(line))
                ]
    raise AssertionError(f"no migration creates {table}")


def _delivery(**changes: object) -> NotificationDeliveryRow:
    values: dict[str, object] = {
        "notification_id": "n", "subscription_id": "s", "channel": "WEBHOOK",
        "project": "p", "subject_kind": "BUILD", "subject_id": "b", "transition": "FAILED",
        "attempt": 1, "outcome": "delivered", "http_status": 200, "error": "",
        "latency_ms": 12.5, "attempted_at": UTC_NOON, "grouped_count": 1,
    }
    values.update(changes)
    return NotificationDeliveryRow(**values)  # type: ignore[arg-type]


def test_row_fields_are_the_table_columns_in_table_order() -> None:
    assert list(NOTIFICATION_DELIVERY_COLUMNS) == _ddl_columns("notification_deliveries")
    assert list(NOTIFICATION_DELIVERY_COLUMNS) == [
        f.name for f in fields(NotificationDeliveryRow)
    ]


def test_the_notification_migration_comes_after_the_audit_ones() -> None:
    names = [m.file_name for m in load_migrations()]

    assert names[4] == "0005_notification_deliveries.sql"


def test_every_contract_channel_fits_the_row() -> None:
    for channel in NotificationChannel:
        assert _delivery(channel=channel.value).channel == channel.value


@pytest.mark.parametrize(
    "moment",
    [UTC_NOON.replace(tzinfo=None), UTC_NOON.astimezone(timezone(timedelta(hours=2)))],
    ids=["naive", "plus-two-hours"],
)
def test_attempted_at_must_be_aware_utc(moment: datetime) -> None:
    with pytest.raises(ValueError, match="attempted_at must be a timezone-aware UTC datetime"):
        _delivery(attempted_at=moment)


@pytest.mark.parametrize("field", ["attempt", "http_status", "grouped_count"])
def test_unsigned_columns_reject_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        _delivery(**{field: -1})


def test_attempt_must_fit_uint16() -> None:
    assert _delivery(attempt=2**16 - 1).attempt == 2**16 - 1
    with pytest.raises(ValueError, match="attempt must fit UInt16"):
        _delivery(attempt=2**16)


def test_outcome_is_a_closed_set() -> None:
    assert DELIVERY_OUTCOMES == ("delivered", "retry", "gave_up", "deduplicated")
    with pytest.raises(ValueError, match="outcome must be one of delivered, retry, gave_up"):
        _delivery(outcome="DELIVERED")


@pytest.mark.parametrize(
    ("outcome", "attempt"),
    [("deduplicated", 1), ("delivered", 0), ("retry", 0), ("gave_up", 0)],
)
def test_attempt_zero_means_exactly_a_suppressed_send(outcome: str, attempt: int) -> None:
    # A suppression with a real attempt number would share the delivered attempt's key and
    # replace it on merge.
    with pytest.raises(ValueError, match="attempt must be 0 exactly when outcome is"):
        _delivery(outcome=outcome, attempt=attempt, http_status=0)


def test_a_suppressed_send_has_attempt_zero_and_no_status() -> None:
    row = _delivery(outcome="deduplicated", attempt=0, http_status=0, latency_ms=0.0)

    assert (row.attempt, row.http_status) == (0, 0)


@pytest.mark.parametrize("status", [0, 100, 200, 429, 503, 599])
def test_http_status_is_zero_or_a_real_status(status: int) -> None:
    assert _delivery(http_status=status).http_status == status


@pytest.mark.parametrize("status", [1, 99, 600, 2**16])
def test_http_status_outside_the_http_range_is_refused(status: int) -> None:
    with pytest.raises(ValueError, match="http_status must be an HTTP status"):
        _delivery(http_status=status)


@pytest.mark.parametrize("latency", [-0.5, float("nan"), float("inf")])
def test_latency_must_be_a_finite_non_negative_number(latency: float) -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        _delivery(latency_ms=latency)


def test_grouped_count_is_at_least_one_and_fits_uint32() -> None:
    assert _delivery(grouped_count=2**32 - 1).grouped_count == 2**32 - 1
    with pytest.raises(ValueError, match="grouped_count must be between 1"):
        _delivery(grouped_count=0)
    with pytest.raises(ValueError, match="grouped_count must be between 1"):
        _delivery(grouped_count=2**32)


def test_rows_are_immutable_and_hashable() -> None:
    row = _delivery()

    assert hash(row) == hash(_delivery())
    with pytest.raises(AttributeError):
        row.outcome = "retry"  # type: ignore[misc]
