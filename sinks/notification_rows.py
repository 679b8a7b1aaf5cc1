"""Typed rows of the notification delivery log, and the column order writer and queries share.

Same contract as `sinks.rows` and `sinks.audit_rows`: one frozen dataclass, field for field the
table's columns in table order, datetimes timezone-aware UTC, unsigned columns never negative
and within their width. `channel`, `transition` and `subject_kind` are the `schemas.enums`
symbols as plain strings, so a symbol added to the contract needs no change here; `outcome` is
this table's own value set and is checked.

Identity under redelivery, which the notifier must keep stable: (project, subscription_id,
notification_id, attempt), partitioned by `attempted_at`. A redelivered row must carry the same
key *and* the same `attempted_at` (the attempt's own time), because ReplacingMergeTree only
deduplicates inside one partition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime

from sinks.audit_rows import _require_one_of
from sinks.rows import _require_aware, _require_unsigned

NOTIFICATION_DELIVERIES_TABLE = "notification_deliveries"

OUTCOME_DELIVERED = "delivered"
OUTCOME_RETRY = "retry"
OUTCOME_GAVE_UP = "gave_up"
OUTCOME_DEDUPLICATED = "deduplicated"

DELIVERY_OUTCOMES: tuple[str, ...] = (
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    OUTCOME_GAVE_UP,
    OUTCOME_DEDUPLICATED,
)
"""`notification_deliveries.outcome`: the receiver acknowledged (2xx); the attempt failed and
another follows; the attempt failed and was the last (dead-lettered); or no send was made
because the notification log already held an acknowledged send of this notification."""

NO_ATTEMPT = 0
"""The `attempt` of a `deduplicated` row: nothing was sent. Real attempts count from 1, so a
suppression never shares its key with (and never replaces) the attempt that was delivered."""

NO_HTTP_STATUS = 0
"""`http_status` when the attempt got no HTTP response (refused, reset, timeout, not sent)."""

_UINT16_MAX = 2**16 - 1
_UINT32_MAX = 2**32 - 1
_HTTP_STATUSES = range(100, 600)


@dataclass(frozen=True, slots=True)
class NotificationDeliveryRow:
    """One delivery attempt of one notification message, as stored in `notification_deliveries`.

    `notification_id` is the message's dedup key, sent as its `Idempotency-Key`; a grouped
    message has one id of its own and `grouped_count` says how many notifications it carries
    (1 for a message about a single notification). `attempt` counts from 1 for real sends and is
    `NO_ATTEMPT` (0) exactly when `outcome` is `deduplicated`. `http_status` is
    `NO_HTTP_STATUS` (0) when there was no HTTP response, `error` is '' when there was no error,
    `latency_ms` is the attempt's wall time (0 for a suppressed send).
    """

    notification_id: str
    subscription_id: str
    channel: str
    project: str
    subject_kind: str
    subject_id: str
    transition: str
    attempt: int
    outcome: str
    http_status: int
    error: str
    latency_ms: float
    attempted_at: datetime
    grouped_count: int

    def __post_init__(self) -> None:
        _require_aware(self, "attempted_at")
        _require_unsigned(self, "attempt", "http_status", "grouped_count")
        _require_one_of(self, "outcome", DELIVERY_OUTCOMES)
        if self.attempt > _UINT16_MAX:
            raise ValueError(
                f"NotificationDeliveryRow.attempt must fit UInt16, got {self.attempt!r}"
            )
        if (self.outcome == OUTCOME_DEDUPLICATED) != (self.attempt == NO_ATTEMPT):
            raise ValueError(
                "NotificationDeliveryRow.attempt must be 0 exactly when outcome is "
                f"'deduplicated' (real attempts count from 1), got attempt {self.attempt!r} "
                f"with outcome {self.outcome!r}"
            )
        if self.http_status != NO_HTTP_STATUS and self.http_status not in _HTTP_STATUSES:
            raise ValueError(
                "NotificationDeliveryRow.http_status must be an HTTP status (100-599) or 0 "
                f"when there was no response, got {self.http_status!r}"
            )
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(
                "NotificationDeliveryRow.latency_ms must be a finite number >= 0, "
                f"got {self.latency_ms!r}"
            )
        if not 1 <= self.grouped_count <= _UINT32_MAX:
            raise ValueError(
                "NotificationDeliveryRow.grouped_count must be between 1 and 2**32 - 1 (a "
                f"message carries at least one notification), got {self.grouped_count!r}"
            )


NOTIFICATION_DELIVERY_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(NotificationDeliveryRow)
)
"""Every column of `notification_deliveries`, in table order (the writer sends them all)."""
