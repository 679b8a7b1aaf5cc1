"""ClickHouse side of cipulse: DDL and migrations, the batching writer's inserts, and the
queries the API and dashboards run. Nothing here knows about Kafka or Avro; callers hand in
typed rows (`sinks.rows`) and get typed results back (`sinks.queries`)."""

from sinks.audit_rows import AuditAlertRow, AuditEventRow, AuditRepairRow, AuditStateRow
from sinks.audit_writer import AuditSinkWriter
from sinks.callback_rows import CallbackDeliveryRow, CallbackSubscriptionRow
from sinks.callback_writer import CallbackWriter
from sinks.connection import open_client
from sinks.context_rows import BuildContextRow, RetryDecisionRow
from sinks.context_writer import BuildContextWriter
from sinks.exceptions import ClickHouseUnavailableError, MigrationError, SinkError, SinkWriteError
from sinks.migrations import apply_migrations
from sinks.notification_rows import NotificationDeliveryRow
from sinks.notification_writer import NotificationSinkWriter
from sinks.retention import TableRetention, read_retention
from sinks.rows import BuildEventRow, BuildResultRow
from sinks.writer import BuildSinkWriter

__all__ = [
    "AuditAlertRow",
    "AuditEventRow",
    "AuditRepairRow",
    "AuditSinkWriter",
    "AuditStateRow",
    "CallbackDeliveryRow",
    "CallbackSubscriptionRow",
    "CallbackWriter",
    "BuildContextRow",
    "BuildContextWriter",
    "BuildEventRow",
    "BuildResultRow",
    "BuildSinkWriter",
    "ClickHouseUnavailableError",
    "MigrationError",
    "NotificationDeliveryRow",
    "NotificationSinkWriter",
    "RetryDecisionRow",
    "SinkError",
    "SinkWriteError",
    "TableRetention",
    "apply_migrations",
    "open_client",
    "read_retention",
]
