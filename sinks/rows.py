"""Typed rows of the two sink tables, and the column order the writer and queries share.

One dataclass per table, field for field the table's columns, so a column added in a migration
is added here too and the round-trip tests catch any mismatch. Datetimes are timezone-aware
UTC; a naive datetime is rejected, because ClickHouse would read it as UTC and a caller holding
local time would silently shift every row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sinks.row_pickle import pickled_as_fields

EVENTS_TABLE = "build_events"
RESULTS_TABLE = "build_results"


def _require_aware(row: object, *names: str) -> None:
    for name in names:
        value = getattr(row, name)
        if value is not None and (value.tzinfo is None or value.utcoffset() != timedelta(0)):
            raise ValueError(
                f"{type(row).__name__}.{name} must be a timezone-aware UTC datetime, got {value!r}"
            )


def _require_unsigned(row: object, *names: str) -> None:
    for name in names:
        value = getattr(row, name)
        if value is not None and value < 0:
            raise ValueError(f"{type(row).__name__}.{name} must be >= 0, got {value!r}")


@pickled_as_fields
@dataclass(frozen=True, slots=True)
class BuildEventRow:
    """One accepted build event (one change set) as stored in `build_events`.

    `task_id`, `previous_build_status`, `error_reason`, `termination_reason` are '' when absent.
    `ingested_at` is stamped by the server on insert (it is the replacing version, so it must
    come from one clock); it is ignored when writing and filled in when reading back.
    """

    build_id: str
    seq: int
    event_id: str
    event_time: datetime
    project: str
    pipeline: str
    scope: str
    stage_id: str
    task_id: str
    node_status: str
    build_status: str
    previous_build_status: str
    trigger_reason: str
    trigger_user: str
    branch: str
    error_reason: str
    termination_reason: str
    ingested_at: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware(self, "event_time", "ingested_at")
        _require_unsigned(self, "seq")


@pickled_as_fields
@dataclass(frozen=True, slots=True)
class BuildResultRow:
    """The state of one build after the change with seq `version`, as stored in `build_results`.

    Each accepted change writes a full row; the highest `version` wins on read. `first_seen_at`
    is the partition key and must be the same in every version of a build, otherwise two
    versions land in different partitions.
    """

    build_id: str
    project: str
    pipeline: str
    status: str
    version: int
    is_final: bool
    first_seen_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    queue_ms: int | None
    trigger_reason: str
    trigger_user: str
    branch: str
    error_reason: str
    termination_reason: str
    updated_at: datetime

    def __post_init__(self) -> None:
        _require_aware(
            self, "first_seen_at", "queued_at", "started_at", "finished_at", "updated_at"
        )
        _require_unsigned(self, "version", "duration_ms", "queue_ms")


EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BuildEventRow))
"""Every column of `build_events`, in table order (what queries select)."""

EVENT_INSERT_COLUMNS: tuple[str, ...] = tuple(c for c in EVENT_COLUMNS if c != "ingested_at")
"""The columns the writer sends; `ingested_at` is left to its server-side DEFAULT."""

RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BuildResultRow))
"""Every column of `build_results`, in table order (the writer sends them all)."""
