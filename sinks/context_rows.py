"""Typed rows of the retry tables: each build's retry context, and each retry decision.

Same contract as `sinks.rows`: one frozen dataclass per table, field for field the table's
columns in table order, datetimes timezone-aware UTC, unsigned columns never negative. Status
and trigger values are the `schemas.enums` symbols as plain strings, so a symbol added to the
contract needs no change here; `action` is this table's own value set and is checked, while
`reason` is the deciding code's vocabulary and only has to be non-empty.

Identity under redelivery, which the producer must keep stable:
- `build_context`: (project, pipeline, build_id), newest `revision` wins, partitioned by the day
  of `first_seen_at`, which must therefore be the same in every revision of a build;
- `retry_decisions`: none. Each decision is an event of its own and every row counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from sinks.audit_rows import _require_one_of
from sinks.rows import _require_aware, _require_unsigned
from sinks.row_pickle import pickled_as_fields

BUILD_CONTEXT_TABLE = "build_context"
RETRY_DECISIONS_TABLE = "retry_decisions"

ACTION_CHECK = "check"
ACTION_RETRY = "retry"

RETRY_ACTIONS: tuple[str, ...] = (ACTION_CHECK, ACTION_RETRY)
"""`retry_decisions.action`: someone asked whether a build may be retried, or asked for the
retry itself."""

_UINT64_MAX = 2**64 - 1


def _frozen_variables(row: object, variables: Mapping[str, str]) -> dict[str, str]:
    """A private copy of the variables, checked to be str -> str.

    A copy, so a caller mutating its dict after building the row cannot change what is
    written; checked here, because a None or number in a Map(String, String) fails the whole
    batch's insert with an encoding error that does not name the variable.
    """
    if not isinstance(variables, Mapping):
        raise ValueError(
            f"{type(row).__name__}.variables must be a mapping of str to str, "
            f"got {type(variables).__name__}"
        )
    copied = dict(variables)
    for key, value in copied.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"{type(row).__name__}.variables must map str to str, got {key!r}: {value!r}"
            )
    return copied


@pickled_as_fields
@dataclass(frozen=True, slots=True)
class BuildContextRow:
    """A build's variables and trigger context after the accepted change numbered `revision`.

    Each accepted change writes a full row; the highest `revision` wins on read. `first_seen_at`
    is the build's first accepted event and the partition key (and with it the TTL's start):
    it must be the same in every revision of a build. `started_at`/`finished_at` are None until
    known; `commit_sha`, `executor`, `trigger_user` and `branch` are '' when unknown. `variables`
    are the build's variables as the retry must replay them. The server's `ingested_at` column
    is not part of the row: nothing reads it back.
    """

    project: str
    pipeline: str
    build_id: str
    first_seen_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    trigger_reason: str
    trigger_user: str
    branch: str
    commit_sha: str
    executor: str
    variables: dict[str, str]
    revision: int

    def __post_init__(self) -> None:
        _require_aware(self, "first_seen_at", "started_at", "finished_at")
        _require_unsigned(self, "revision")
        if self.revision > _UINT64_MAX:
            raise ValueError(f"BuildContextRow.revision must fit UInt64, got {self.revision!r}")
        if not self.build_id:
            raise ValueError("BuildContextRow.build_id must not be empty")
        object.__setattr__(self, "variables", _frozen_variables(self, self.variables))


@dataclass(frozen=True, slots=True)
class RetryDecisionRow:
    """One decision about retrying a build, as stored in `retry_decisions`.

    `eligible` is whether the action was allowed; `reason` says why (a short stable code the
    dashboard groups by). `build_started_at` is None when the build was unknown or never
    started; `age_seconds` is the build's age at `decided_at` (0 when unknown; negative only
    when the build's clock ran ahead of ours, which is stored as it was, not refused, since a
    decision that cannot be logged is worse than an odd age).
    `retention_seconds` and `deadline` are the retention window and the last moment a retry was
    allowed, as read from ClickHouse at decision time; None when they could not be determined.
    `retry_id` is the started retry's id, '' when none was started.
    """

    decided_at: datetime
    project: str
    pipeline: str
    build_id: str
    action: str
    eligible: bool
    reason: str
    build_started_at: datetime | None
    age_seconds: float
    retention_seconds: float | None
    deadline: datetime | None
    retry_id: str

    def __post_init__(self) -> None:
        _require_aware(self, "decided_at", "build_started_at", "deadline")
        _require_one_of(self, "action", RETRY_ACTIONS)
        if not isinstance(self.eligible, bool):
            raise ValueError(f"RetryDecisionRow.eligible must be a bool, got {self.eligible!r}")
        if not self.reason:
            raise ValueError(
                "RetryDecisionRow.reason must not be empty: the dashboard groups by it"
            )
        if not math.isfinite(self.age_seconds):
            raise ValueError(
                f"RetryDecisionRow.age_seconds must be a finite number, got {self.age_seconds!r}"
            )
        if self.retention_seconds is not None and (
            not math.isfinite(self.retention_seconds) or self.retention_seconds < 0
        ):
            raise ValueError(
                "RetryDecisionRow.retention_seconds must be a finite number >= 0 or None, "
                f"got {self.retention_seconds!r}"
            )


BUILD_CONTEXT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BuildContextRow))
"""The columns of `build_context` the writer sends and queries select, in table order;
`ingested_at` is left to its server-side DEFAULT."""

RETRY_DECISION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RetryDecisionRow))
"""Every column of `retry_decisions`, in table order (the writer sends them all)."""
