"""The retry rows, the writer's column lists and the shipped DDL agree, and rows refuse values
the tables would store wrongly."""

from __future__ import annotations

import math
import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest

from sinks.context_rows import (
    BUILD_CONTEXT_COLUMNS,
    RETRY_ACTIONS,
    RETRY_DECISION_COLUMNS,
    BuildContextRow,
    RetryDecisionRow,
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


def _context(**changes: object) -> BuildContextRow:
    values: dict[str, object] = {
        "project": "p", "pipeline": "q", "build_id": "b", "first_seen_at": UTC_NOON,
        "started_at": None, "finished_at": None, "status": "QUEUED", "trigger_reason": "PUSH",
        "trigger_user": "u", "branch": "main", "commit_sha": "abc", "executor": "runner-1",
        "variables": {"ENV": "prod"}, "revision": 1,
    }
    values.update(changes)
    return BuildContextRow(**values)  # type: ignore[arg-type]


def _decision(**changes: object) -> RetryDecisionRow:
    values: dict[str, object] = {
        "decided_at": UTC_NOON, "project": "p", "pipeline": "q", "build_id": "b",
        "action": "check", "eligible": True, "reason": "within_retention",
        "build_started_at": UTC_NOON - timedelta(days=1), "age_seconds": 86_400.0,
        "retention_seconds": 28 * 86_400.0, "deadline": UTC_NOON + timedelta(days=27),
        "retry_id": "",
    }
    values.update(changes)
    return RetryDecisionRow(**values)  # type: ignore[arg-type]


def test_context_row_fields_are_the_build_context_columns_without_ingested_at() -> None:
    ddl = _ddl_columns("build_context")

    assert ddl[-1] == "ingested_at"
    assert list(BUILD_CONTEXT_COLUMNS) == ddl[:-1]
    assert list(BUILD_CONTEXT_COLUMNS) == [f.name for f in fields(BuildContextRow)]


def test_decision_row_fields_are_the_retry_decisions_columns_in_table_order() -> None:
    assert list(RETRY_DECISION_COLUMNS) == _ddl_columns("retry_decisions")
    assert list(RETRY_DECISION_COLUMNS) == [f.name for f in fields(RetryDecisionRow)]


@pytest.mark.parametrize("field", ["first_seen_at", "started_at", "finished_at"])
def test_context_datetimes_must_be_aware_utc(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a timezone-aware UTC datetime"):
        _context(**{field: UTC_NOON.replace(tzinfo=None)})
    with pytest.raises(ValueError, match=field):
        _context(**{field: UTC_NOON.astimezone(timezone(timedelta(hours=2)))})


@pytest.mark.parametrize("revision", [-1, 2**64])
def test_revision_must_fit_uint64(revision: int) -> None:
    with pytest.raises(ValueError, match="revision"):
        _context(revision=revision)


def test_context_needs_a_build_id() -> None:
    with pytest.raises(ValueError, match="build_id must not be empty"):
        _context(build_id="")


@pytest.mark.parametrize(
    "variables",
    [{"ENV": None}, {"N": 1}, {1: "x"}, [("ENV", "prod")]],
    ids=["none-value", "int-value", "int-key", "not-a-mapping"],
)
def test_variables_must_map_str_to_str(variables: object) -> None:
    with pytest.raises(ValueError, match="variables must"):
        _context(variables=variables)


def test_variables_are_copied_so_later_changes_do_not_reach_the_row() -> None:
    variables = {"ENV": "prod"}
    row = _context(variables=variables)

    variables["ENV"] = "dev"

    assert row.variables == {"ENV": "prod"}


@pytest.mark.parametrize("field", ["decided_at", "build_started_at", "deadline"])
def test_decision_datetimes_must_be_aware_utc(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a timezone-aware UTC datetime"):
        _decision(**{field: UTC_NOON.replace(tzinfo=None)})


def test_decision_accepts_unknown_build_and_unknown_retention() -> None:
    row = _decision(
        eligible=False, reason="unknown_build", build_started_at=None, age_seconds=0.0,
        retention_seconds=None, deadline=None,
    )

    assert row.retention_seconds is None


def test_action_is_check_or_retry() -> None:
    assert RETRY_ACTIONS == ("check", "retry")
    with pytest.raises(ValueError, match="action must be one of check, retry"):
        _decision(action="rebuild")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_age_must_be_finite(value: float) -> None:
    with pytest.raises(ValueError, match="age_seconds"):
        _decision(age_seconds=value)


def test_a_negative_age_from_clock_skew_is_kept() -> None:
    assert _decision(age_seconds=-2.5).age_seconds == -2.5


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_retention_must_be_finite_and_not_negative(value: float) -> None:
    with pytest.raises(ValueError, match="retention_seconds"):
        _decision(retention_seconds=value)


def test_eligible_is_a_bool_and_reason_is_given() -> None:
    with pytest.raises(ValueError, match="eligible must be a bool"):
        _decision(eligible=1)
    with pytest.raises(ValueError, match="reason must not be empty"):
        _decision(reason="")


def test_rows_are_immutable() -> None:
    with pytest.raises(AttributeError):
        _decision().eligible = False  # type: ignore[misc]


def test_context_rows_pickle_as_their_field_values_and_come_back_equal() -> None:
    import pickle

    row = _context()
    assert pickle.loads(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)) == row
    assert row.__reduce__()[1] == tuple(getattr(row, f.name) for f in fields(row))
