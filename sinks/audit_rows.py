"""Typed rows of the four audit (review) tables, and the column order writer and queries share.

Same contract as `sinks.rows`: one frozen dataclass per table, field for field the table's
columns in table order, datetimes timezone-aware UTC, unsigned columns never negative. Status,
kind and decision values are the `schemas.enums` symbols as plain strings ('' when absent), so
a symbol added to the contract needs no change here; the two value sets that these tables
define themselves (repair mode, alert kind) are checked.

Identity under redelivery, which the producer must keep stable:
- `audit_events`: (project, audit_id, seq), partitioned by `event_time`;
- `audit_state`: (project, audit_id), newest `revision` wins, partitioned by `requested_at`;
- `audit_repairs`: (project, audit_id, repair_id), partitioned by `repaired_at`;
- `audit_alerts`: (project, audit_id, alert_id), partitioned by `raised_at`.
A redelivered row must carry the same key *and* the same partition time, because
ReplacingMergeTree only deduplicates inside one partition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sinks.rows import _require_aware, _require_unsigned

AUDIT_EVENTS_TABLE = "audit_events"
AUDIT_STATE_TABLE = "audit_state"
AUDIT_REPAIRS_TABLE = "audit_repairs"
AUDIT_ALERTS_TABLE = "audit_alerts"

REPAIR_MODES: tuple[str, ...] = ("automatic", "manual")
"""`audit_repairs.mode`: cipulse compensated a lost status sync, or an operator repaired it."""

ALERT_KINDS: tuple[str, ...] = ("STUCK", "INCONSISTENT")
"""`audit_alerts.kind`: open past its threshold, or decided without a matching status sync."""

_UINT32_MAX = 2**32 - 1


def _require_one_of(row: object, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(row, name)
    if value not in allowed:
        raise ValueError(
            f"{type(row).__name__}.{name} must be one of {', '.join(allowed)}, got {value!r}"
        )


def _frozen_reviewers(row: object, reviewers: Sequence[str]) -> tuple[str, ...]:
    """Reviewers as a tuple, so the row stays immutable and hashable: ClickHouse hands back a
    list on read, and callers may pass one."""
    if isinstance(reviewers, str):
        raise ValueError(
            f"{type(row).__name__}.reviewers must be a sequence of names, not one string"
        )
    return tuple(reviewers)


@dataclass(frozen=True, slots=True)
class AuditEventRow:
    """One accepted audit event as stored in `audit_events`.

    `status_after` is the audit's status once the event was applied. `pipeline`, `decision`,
    `decision_id`, `actor` and `reason` are '' when absent. `seq` is unique per audit among
    accepted events; it is the deduplication key, so cipulse's own events (compensating status
    syncs, manual repairs) need a seq of their own too. `ingested_at` is stamped by the server
    on insert (the replacing version, so one clock); it is ignored when writing.
    """

    audit_id: str
    seq: int
    event_id: str
    event_time: datetime
    project: str
    pipeline: str
    subject_kind: str
    subject_id: str
    kind: str
    status_after: str
    decision: str
    decision_id: str
    actor: str
    reason: str
    ingested_at: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware(self, "event_time", "ingested_at")
        _require_unsigned(self, "seq")


@dataclass(frozen=True, slots=True)
class AuditStateRow:
    """The state of one audit after the accepted change with number `revision`.

    Each accepted change writes a full row; the highest `revision` wins on read. `requested_at`
    is when the audit was first seen and the partition key: it must be the same in every
    revision of an audit. `is_open` is True while the audit still waits for a decision or its
    record-status sync; the open-audit queries read nothing else to decide it.
    """

    audit_id: str
    project: str
    pipeline: str
    subject_kind: str
    subject_id: str
    status: str
    decision: str
    decision_id: str
    reviewers: tuple[str, ...]
    requested_at: datetime
    review_started_at: datetime | None
    decided_at: datetime | None
    synced_at: datetime | None
    repaired_at: datetime | None
    is_open: bool
    revision: int
    updated_at: datetime

    def __post_init__(self) -> None:
        _require_aware(
            self,
            "requested_at",
            "review_started_at",
            "decided_at",
            "synced_at",
            "repaired_at",
            "updated_at",
        )
        _require_unsigned(self, "revision")
        object.__setattr__(self, "reviewers", _frozen_reviewers(self, self.reviewers))


@dataclass(frozen=True, slots=True)
class AuditRepairRow:
    """One repair of an audit's record status, as stored in `audit_repairs`.

    `repair_id` is deterministic (audit_id + decision_id for automatic repairs), so the same
    repair produced twice, e.g. by a worker restarted mid-grace-period, is one row on read.
    """

    repair_id: str
    audit_id: str
    project: str
    mode: str
    from_status: str
    to_status: str
    decision_id: str
    actor: str
    reason: str
    repaired_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self, "repaired_at")
        _require_one_of(self, "mode", REPAIR_MODES)


@dataclass(frozen=True, slots=True)
class AuditAlertRow:
    """One alert delivered to the audit-alerts topic, as stored in `audit_alerts`.

    `alert_id` is deterministic (audit_id + kind + episode): one stuck episode is one alert,
    however often it is delivered. `age_seconds` is the audit's age when the alert was raised.
    """

    alert_id: str
    audit_id: str
    project: str
    kind: str
    episode: int
    age_seconds: float
    reviewers: tuple[str, ...]
    raised_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self, "raised_at")
        _require_unsigned(self, "episode")
        _require_one_of(self, "kind", ALERT_KINDS)
        if self.episode > _UINT32_MAX:
            raise ValueError(f"AuditAlertRow.episode must fit UInt32, got {self.episode!r}")
        if not math.isfinite(self.age_seconds) or self.age_seconds < 0:
            raise ValueError(
                f"AuditAlertRow.age_seconds must be a finite number >= 0, got {self.age_seconds!r}"
            )
        object.__setattr__(self, "reviewers", _frozen_reviewers(self, self.reviewers))


AUDIT_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditEventRow))
"""Every column of `audit_events`, in table order (what queries select)."""

AUDIT_EVENT_INSERT_COLUMNS: tuple[str, ...] = tuple(
    c for c in AUDIT_EVENT_COLUMNS if c != "ingested_at"
)
"""The columns the writer sends; `ingested_at` is left to its server-side DEFAULT."""

AUDIT_STATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditStateRow))
AUDIT_REPAIR_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditRepairRow))
AUDIT_ALERT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditAlertRow))
