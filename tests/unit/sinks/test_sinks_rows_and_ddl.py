"""The row dataclasses, the writer's column lists and the shipped DDL agree, and rows refuse
values the tables would store wrongly."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest

from sinks.migrations import load_migrations
from sinks.rows import (
    EVENT_COLUMNS,
    EVENT_INSERT_COLUMNS,
    RESULT_COLUMNS,
    BuildEventRow,
    BuildResultRow,
)

UTC_NOON = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
_COLUMN_LINE = re.compile(r"^\s{4}([a-z_]+)\s+[A-Z]")


def _ddl_columns(table: str) -> list[str]:
    for migration in load_migrations():
        sql = migration.sql
        if f".{table}\n" in sql:
            return [m.group(1) for line in sql.splitlines() if (m := _COLUMN_LINE.match(line))]
    raise AssertionError(f"no migration creates {table}")


def _event(**changes: object) -> BuildEventRow:
    values: dict[str, object] = {
        "build_id": "b", "seq": 1, "event_id": "e", "event_time": UTC_NOON, "project": "p",
        "pipeline": "q", "scope": "BUILD", "stage_id": "", "task_id": "", "node_status": "QUEUED",
        "build_status": "QUEUED", "previous_build_status": "", "trigger_reason": "PUSH",
        "trigger_user": "u", "branch": "main", "error_reason": "", "termination_reason": "",
    }
    values.update(changes)
    return BuildEventRow(**values)  # type: ignore[arg-type]


def _result(**changes: object) -> BuildResultRow:
    values: dict[str, object] = {
        "build_id": "b", "project": "p", "pipeline": "q", "status": "SUCCEEDED", "version": 3,
        "is_final": True, "first_seen_at": UTC_NOON, "queued_at": UTC_NOON, "started_at": None,
        "finished_at": None, "duration_ms": None, "queue_ms": None, "trigger_reason": "PUSH",
        "trigger_user": "u", "branch": "main", "error_reason": "", "termination_reason": "",
        "updated_at": UTC_NOON,
    }
    values.update(changes)
    return BuildResultRow(**values)  # type: ignore[arg-type]


def test_event_row_fields_are_the_build_events_columns_in_table_order() -> None:
    assert list(EVENT_COLUMNS) == _ddl_columns("build_events")
    assert list(EVENT_COLUMNS) == [f.name for f in fields(BuildEventRow)]


def test_writer_leaves_ingested_at_to_the_server_default() -> None:
    assert EVENT_INSERT_COLUMNS == tuple(c for c in EVENT_COLUMNS if c != "ingested_at")


def test_result_row_fields_are_the_build_results_columns_in_table_order() -> None:
    assert list(RESULT_COLUMNS) == _ddl_columns("build_results")


def test_rows_accept_utc_in_any_spelling_of_zero_offset() -> None:
    _event(event_time=UTC_NOON.replace(tzinfo=timezone(timedelta(0))))


@pytest.mark.parametrize(
    "moment",
    [UTC_NOON.replace(tzinfo=None), UTC_NOON.astimezone(timezone(timedelta(hours=2)))],
    ids=["naive", "plus-two-hours"],
)
def test_event_time_must_be_aware_utc(moment: datetime) -> None:
    with pytest.raises(ValueError, match="event_time must be a timezone-aware UTC datetime"):
        _event(event_time=moment)


def test_nullable_result_datetimes_are_checked_when_present() -> None:
    with pytest.raises(ValueError, match="finished_at"):
        _result(finished_at=UTC_NOON.replace(tzinfo=None))


@pytest.mark.parametrize("field", ["version", "duration_ms", "queue_ms"])
def test_unsigned_result_columns_reject_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        _result(**{field: -1})


def test_rows_are_immutable() -> None:
    row = _event()
    with pytest.raises(AttributeError):
        row.seq = 2  # type: ignore[misc]


def test_rows_pickle_as_their_field_values_and_come_back_equal() -> None:
    """The sink ships rows to the ClickHouse engine process as (class, field values)."""
    import pickle

    for row in (_event(), _event(ingested_at=datetime(2026, 1, 1, tzinfo=timezone.utc)), _result()):
        assert pickle.loads(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)) == row
        constructor, values = row.__reduce__()
        assert constructor is type(row) and values == tuple(getattr(row, f.name) for f in fields(row))
