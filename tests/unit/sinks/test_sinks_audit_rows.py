"""The audit row dataclasses, the writer's column lists and the shipped DDL agree, and rows
refuse values the tables would store wrongly."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest

from sinks.audit_rows import (
    AUDIT_ALERT_COLUMNS,
    AUDIT_EVENT_COLUMNS,
    AUDIT_EVENT_INSERT_COLUMNS,
    AUDIT_REPAIR_COLUMNS,
    AUDIT_STATE_COLUMNS,
    AuditAlertRow,
    AuditEventRow,
    AuditRepairRow,
    AuditStateRow,
)
from sinks.migrations import load_migrations

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


def _event(**changes: object) -> AuditEventRow:
    values: dict[str, object] = {
        "audit_id": "a", "seq": 1, "event_id": "e", "event_time": UTC_NOON, "project": "p",
        "pipeline": "", "subject_kind": "BUILD", "subject_id": "b", "kind": "REQUESTED",
        "status_after": "REQUESTED", "decision": "", "decision_id": "", "actor": "",
        "reason": "",
    }
    values.update(changes)
    return AuditEventRow(**values)  # type: ignore[arg-type]


def _state(**changes: object) -> AuditStateRow:
    values: dict[str, object] = {
        "audit_id": "a", "project": "p", "pipeline": "", "subject_kind": "BUILD",
        "subject_id": "b", "status": "IN_REVIEW", "decision": "", "decision_id": "",
        "reviewers": ("r",), "requested_at": UTC_NOON, "review_started_at": None,
        "decided_at": None, "synced_at": None, "repaired_at": None, "is_open": True,
        "revision": 1, "updated_at": UTC_NOON,
    }
    values.update(changes)
    return AuditStateRow(**values)  # type: ignore[arg-type]


def _repair(**changes: object) -> AuditRepairRow:
    values: dict[str, object] = {
        "repair_id": "a:d", "audit_id": "a", "project": "p", "mode": "automatic",
        "from_status": "DECIDED", "to_status": "SYNCED", "decision_id": "d",
        "actor": "cipulse", "reason": "lost sync", "repaired_at": UTC_NOON,
    }
    values.update(changes)
    return AuditRepairRow(**values)  # type: ignore[arg-type]


def _alert(**changes: object) -> AuditAlertRow:
    values: dict[str, object] = {
        "alert_id": "a:STUCK:1", "audit_id": "a", "project": "p", "kind": "STUCK",
        "episode": 1, "age_seconds": 3600.0, "reviewers": ("r",), "raised_at": UTC_NOON,
    }
    values.update(changes)
    return AuditAlertRow(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "columns", "row_type"),
    [
        ("audit_events", AUDIT_EVENT_COLUMNS, AuditEventRow),
        ("audit_state", AUDIT_STATE_COLUMNS, AuditStateRow),
        ("audit_repairs", AUDIT_REPAIR_COLUMNS, AuditRepairRow),
        ("audit_alerts", AUDIT_ALERT_COLUMNS, AuditAlertRow),
    ],
)
def test_row_fields_are_the_table_columns_in_table_order(
    table: str, columns: tuple[str, ...], row_type: type
) -> None:
    assert list(columns) == _ddl_columns(table)
    assert list(columns) == [f.name for f in fields(row_type)]


def test_writer_leaves_ingested_at_to_the_server_default() -> None:
    assert AUDIT_EVENT_INSERT_COLUMNS == tuple(c for c in AUDIT_EVENT_COLUMNS if c != "ingested_at")


def test_audit_migrations_come_after_the_build_ones() -> None:
    names = [m.file_name for m in load_migrations()]

    assert names[2:4] == ["0003_audit_history.sql", "0004_audit_repairs_and_alerts.sql"]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (_event, "event_time"),
        (_event, "ingested_at"),
        (_state, "requested_at"),
        (_state, "review_started_at"),
        (_state, "decided_at"),
        (_state, "synced_at"),
        (_state, "repaired_at"),
        (_state, "updated_at"),
        (_repair, "repaired_at"),
        (_alert, "raised_at"),
    ],
)
@pytest.mark.parametrize(
    "moment",
    [UTC_NOON.replace(tzinfo=None), UTC_NOON.astimezone(timezone(timedelta(hours=2)))],
    ids=["naive", "plus-two-hours"],
)
def test_datetimes_must_be_aware_utc(build: object, field: str, moment: datetime) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a timezone-aware UTC datetime"):
        build(**{field: moment})  # type: ignore[operator]


def test_utc_in_any_spelling_of_zero_offset_is_accepted() -> None:
    _state(decided_at=UTC_NOON.replace(tzinfo=timezone(timedelta(0))))


@pytest.mark.parametrize(
    ("build", "field"), [(_event, "seq"), (_state, "revision"), (_alert, "episode")]
)
def test_unsigned_columns_reject_negative_values(build: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        build(**{field: -1})  # type: ignore[operator]


def test_episode_must_fit_uint32() -> None:
    _alert(episode=2**32 - 1)
    with pytest.raises(ValueError, match="episode must fit UInt32"):
        _alert(episode=2**32)


@pytest.mark.parametrize("age", [-0.5, float("nan"), float("inf")])
def test_alert_age_must_be_a_finite_non_negative_number(age: float) -> None:
    with pytest.raises(ValueError, match="age_seconds"):
        _alert(age_seconds=age)


def test_repair_mode_and_alert_kind_are_closed_sets() -> None:
    _repair(mode="manual")
    _alert(kind="INCONSISTENT")
    with pytest.raises(ValueError, match="mode must be one of automatic, manual"):
        _repair(mode="AUTOMATIC")
    with pytest.raises(ValueError, match="kind must be one of STUCK, INCONSISTENT"):
        _alert(kind="LATE")


@pytest.mark.parametrize("build", [_state, _alert])
def test_reviewers_are_stored_as_a_tuple_and_one_string_is_refused(build: object) -> None:
    row = build(reviewers=["ann", "bob"])  # type: ignore[operator]

    assert row.reviewers == ("ann", "bob")
    assert hash(row) == hash(build(reviewers=("ann", "bob")))  # type: ignore[operator]
    with pytest.raises(ValueError, match="reviewers must be a sequence of names"):
        build(reviewers="ann")  # type: ignore[operator]


def test_rows_are_immutable() -> None:
    row = _state()
    with pytest.raises(AttributeError):
        row.status = "SYNCED"  # type: ignore[misc]
