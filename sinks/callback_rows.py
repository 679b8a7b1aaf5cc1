"""Typed rows of the REST callback tables, and the column order writer and queries share.

Same contract as `sinks.rows`: one frozen dataclass per table, field for field the table's
columns in table order, datetimes timezone-aware UTC, unsigned columns never negative.

`callback_subscriptions` is versioned: the row with the highest `version` is the callback's
current state. `callback_deliveries` holds one row per HTTP attempt, keyed so that a row inserted
twice is kept once (`attempted_at` is the attempt's own time, never the clock at write time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sinks.audit_rows import _require_one_of
from sinks.rows import _require_aware, _require_unsigned

CALLBACK_SUBSCRIPTIONS_TABLE = "callback_subscriptions"
CALLBACK_DELIVERIES_TABLE = "callback_deliveries"

STATUS_ACTIVE = "active"
STATUS_DISABLED = "disabled"
STATUS_DELETED = "deleted"
CALLBACK_STATUSES: tuple[str, ...] = (STATUS_ACTIVE, STATUS_DISABLED, STATUS_DELETED)
"""`callback_subscriptions.status`: deliveries are attempted only while `active`; `disabled`
after failing continuously (or by an operator), until re-enabled; `deleted` is a tombstone."""

OUTCOME_DELIVERED = "delivered"
OUTCOME_RETRY = "retry"
OUTCOME_GAVE_UP = "gave_up"
OUTCOME_SKIPPED = "skipped"
CALLBACK_OUTCOMES: tuple[str, ...] = (OUTCOME_DELIVERED, OUTCOME_RETRY, OUTCOME_GAVE_UP, OUTCOME_SKIPPED)
"""`callback_deliveries.outcome`: acknowledged (2xx); failed and tried again later; failed for
the last time (dead-lettered); or not attempted because the callback is disabled (attempt 0)."""

NO_ATTEMPT = 0
NO_HTTP_STATUS = 0
_UINT16_MAX = 2**16 - 1


@dataclass(frozen=True, slots=True)
class CallbackSubscriptionRow:
    """One version of one callback subscription.

    `pipeline` is '' for every pipeline of `project`; `secret` is '' when deliveries are not
    signed; `status_reason` says why the status is what it is (empty for a fresh callback).
    """

    callback_id: str
    project: str
    pipeline: str
    url: str
    events: tuple[str, ...]
    secret: str
    status: str
    status_reason: str
    status_changed_at: datetime
    created_at: datetime
    version: int

    def __post_init__(self) -> None:
        _require_aware(self, "status_changed_at", "created_at")
        _require_unsigned(self, "version")
        _require_one_of(self, "status", CALLBACK_STATUSES)
        if isinstance(self.events, str):
            raise ValueError("CallbackSubscriptionRow.events must be a sequence of event kinds, not one string")
        object.__setattr__(self, "events", tuple(self.events))
        if not self.events:
            raise ValueError("CallbackSubscriptionRow.events must name at least one event kind")

    @classmethod
    def from_db(cls, values: Sequence[object]) -> CallbackSubscriptionRow:
        return cls(*values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class CallbackDeliveryRow:
    """One attempt of one callback delivery (or its `skipped` row, attempt 0).

    `stage_id`/`task_id` are '' for build-level events; `http_status` is 0 when there was no
    HTTP response; `error` is '' when there was no error.
    """

    delivery_id: str
    callback_id: str
    project: str
    pipeline: str
    build_id: str
    event: str
    stage_id: str
    task_id: str
    revision: int
    attempt: int
    outcome: str
    http_status: int
    error: str
    latency_ms: float
    attempted_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self, "attempted_at")
        _require_unsigned(self, "revision", "attempt", "http_status")
        _require_one_of(self, "outcome", CALLBACK_OUTCOMES)
        if self.attempt > _UINT16_MAX or self.http_status > _UINT16_MAX:
            raise ValueError(f"CallbackDeliveryRow attempt/http_status must fit UInt16, got {self.attempt}/{self.http_status}")
        if (self.outcome == OUTCOME_SKIPPED) != (self.attempt == NO_ATTEMPT):
            raise ValueError(
                "CallbackDeliveryRow.attempt must be 0 exactly when outcome is 'skipped' (real attempts "
                f"count from 1), got attempt {self.attempt} with outcome {self.outcome!r}"
            )
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"CallbackDeliveryRow.latency_ms must be a finite number >= 0, got {self.latency_ms!r}")


CALLBACK_SUBSCRIPTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallbackSubscriptionRow))
CALLBACK_DELIVERY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallbackDeliveryRow))
