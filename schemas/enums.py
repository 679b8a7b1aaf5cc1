"""Enumerations shared by every record of the contract.

One Python enum per domain concept, reused by every model that carries it, so `BuildStatus` in a
`BuildEvent` and in a `BuildStatusChange` are the same type and compare equal. Each enum's symbols
must equal the Avro enum of the same name symbol for symbol, in order; the agreement tests
enforce it. Adding a symbol means publishing a new schema version.
"""

from __future__ import annotations

from enum import StrEnum


class BuildStatus(StrEnum):
    """Lifecycle status of a build, stage or task."""

    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"


class BuildScope(StrEnum):
    """Which level of a build an event or change is about."""

    BUILD = "BUILD"
    STAGE = "STAGE"
    TASK = "TASK"


class TriggerReason(StrEnum):
    """Why a build started. OTHER is also the Avro enum default for unknown symbols."""

    MANUAL = "MANUAL"
    PUSH = "PUSH"
    PULL_REQUEST = "PULL_REQUEST"
    SCHEDULE = "SCHEDULE"
    RETRY = "RETRY"
    API = "API"
    UPSTREAM = "UPSTREAM"
    OTHER = "OTHER"


class AuditSubjectKind(StrEnum):
    """What an audit (review / approval) is about."""

    BUILD = "BUILD"
    QUALITY_GATE = "QUALITY_GATE"
    TEMPLATE_INSTANCE = "TEMPLATE_INSTANCE"


class AuditEventKind(StrEnum):
    """Step in the life of one audit."""

    REQUESTED = "REQUESTED"
    REVIEW_STARTED = "REVIEW_STARTED"
    DECIDED = "DECIDED"
    RECORD_SYNCED = "RECORD_SYNCED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"
    REPAIRED = "REPAIRED"


class AuditEventOrigin(StrEnum):
    """Who produced an audit event (audit_event v2).

    Events cipulse makes itself are ordered by the state they were validated against, not by
    the review system's `seq`, so the audit state machine must know which is which.
    """

    SOURCE = "SOURCE"
    RECONCILER = "RECONCILER"
    MANUAL_REPAIR = "MANUAL_REPAIR"


class AuditDecision(StrEnum):
    """Outcome of a decided audit."""

    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class NotificationTransition(StrEnum):
    """State change a subscriber is notified about."""

    FAILED = "FAILED"
    RECOVERED = "RECOVERED"
    CANCELED = "CANCELED"
    SUCCEEDED = "SUCCEEDED"
    AUDIT_STUCK = "AUDIT_STUCK"
    GATE_FAILED = "GATE_FAILED"


class NotificationChannel(StrEnum):
    """Where a notification is delivered."""

    WEBHOOK = "WEBHOOK"
    SLACK = "SLACK"
    LOG = "LOG"


class DeadLetterKind(StrEnum):
    """Why a record was dead-lettered."""

    UNDECODABLE = "UNDECODABLE"
    SCHEMA_VIOLATION = "SCHEMA_VIOLATION"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
    UNMAPPABLE = "UNMAPPABLE"
    DELIVERY_FAILED = "DELIVERY_FAILED"


class AuditAlertKind(StrEnum):
    """Why an audit alert was raised."""

    STUCK = "STUCK"
    INCONSISTENT = "INCONSISTENT"


class NotifierSignalKind(StrEnum):
    """What a `NotifierSignal` tells the grouping agent."""

    FLUSH_DUE = "FLUSH_DUE"
    DELIVERED = "DELIVERED"
    GAVE_UP = "GAVE_UP"


class GateResult(StrEnum):
    """A quality gate's decision; BK-CI's PASS / FAIL, and PENDING for BK-CI's WAIT (not enough data yet)."""

    PASS = "PASS"
    FAIL = "FAIL"
    PENDING = "PENDING"
