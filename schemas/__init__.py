"""The cipulse event contract: Avro schemas, the models that mirror them, and the serde.

Import models and enums from here; turn bytes into models (and back) only through
`schemas.serde` (`decode`, `encode`), which is re-exported here.
"""

from __future__ import annotations

from schemas.catalog import SchemaCatalog, SchemaVersion, get_catalog
from schemas.enums import (
    AuditAlertKind,
    AuditDecision,
    AuditEventOrigin,
    AuditEventKind,
    AuditSubjectKind,
    BuildScope,
    BuildStatus,
    DeadLetterKind,
    GateResult,
    NotificationChannel,
    NotificationTransition,
    NotifierSignalKind,
    TriggerReason,
)
from schemas.exceptions import (
    CipulseError,
    SchemaCatalogError,
    SchemaViolationError,
    SerdeError,
    UndecodableError,
    UnknownSchemaError,
)
from schemas.models import (
    AdapterDelivery,
    AuditAlert,
    AuditEvent,
    BuildEvent,
    BuildStatusChange,
    DeadLetter,
    DeliveryAttempt,
    GateDecision,
    GateRuleFailure,
    NodeChange,
    NotificationRequest,
    NotifierSignal,
    RecordModel,
    RetryRequest,
    TopLevelRecord,
)
from schemas.serde import DecodedRecord, decode, decode_dict, encode, encode_dict, fingerprint_of

__all__ = [
    "AdapterDelivery",
    "AuditAlert",
    "AuditAlertKind",
    "AuditEventOrigin",
    "AuditDecision",
    "AuditEvent",
    "AuditEventKind",
    "AuditSubjectKind",
    "BuildEvent",
    "BuildScope",
    "BuildStatus",
    "BuildStatusChange",
    "CipulseError",
    "DeadLetter",
    "DeadLetterKind",
    "DecodedRecord",
    "DeliveryAttempt",
    "GateDecision",
    "GateResult",
    "GateRuleFailure",
    "NodeChange",
    "NotificationChannel",
    "NotificationRequest",
    "NotificationTransition",
    "NotifierSignal",
    "NotifierSignalKind",
    "RecordModel",
    "RetryRequest",
    "SchemaCatalog",
    "SchemaCatalogError",
    "SchemaVersion",
    "SchemaViolationError",
    "SerdeError",
    "TopLevelRecord",
    "TriggerReason",
    "UndecodableError",
    "UnknownSchemaError",
    "decode",
    "decode_dict",
    "encode",
    "encode_dict",
    "fingerprint_of",
    "get_catalog",
]
