"""Pydantic models mirroring the latest Avro version of each contract record."""

from __future__ import annotations

from schemas.models._base import RecordModel, TopLevelRecord
from schemas.models.adapter_delivery import AdapterDelivery
from schemas.models.audit_alert import AuditAlert
from schemas.models.audit_event import AuditEvent
from schemas.models.build_event import BuildEvent
from schemas.models.build_status_change import BuildStatusChange, NodeChange
from schemas.models.dead_letter import DeadLetter
from schemas.models.gate_decision import GateDecision, GateRuleFailure
from schemas.models.notification_request import NotificationRequest
from schemas.models.notifier_signal import DeliveryAttempt, NotifierSignal
from schemas.models.retry_request import RetryRequest

TOP_LEVEL_RECORDS: tuple[type[TopLevelRecord], ...] = (
    BuildEvent,
    BuildStatusChange,
    AuditEvent,
    AuditAlert,
    NotificationRequest,
    NotifierSignal,
    RetryRequest,
    GateDecision,
    AdapterDelivery,
    DeadLetter,
)
"""Every model published on its own; the catalog pairs each with its `.avsc` versions."""

__all__ = [
    "TOP_LEVEL_RECORDS",
    "AdapterDelivery",
    "AuditAlert",
    "AuditEvent",
    "BuildEvent",
    "BuildStatusChange",
    "DeadLetter",
    "DeliveryAttempt",
    "GateDecision",
    "GateRuleFailure",
    "NodeChange",
    "NotificationRequest",
    "NotifierSignal",
    "RecordModel",
    "RetryRequest",
    "TopLevelRecord",
]
