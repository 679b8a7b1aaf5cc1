"""ClickHouse side of cipulse: DDL and migrations, the batching writer's inserts, and the
queries the API and dashboards run. Nothing here knows about Kafka or Avro; callers hand in
typed rows (`sinks.rows`) and get typed results back (`sinks.queries`).

The names below load on first use (PEP 562), so importing one small module of the package
(the worker launching its engine process first thing, `sinks.engine_launch`) does not import
clickhouse-connect and every writer with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "AuditAlertRow": "sinks.audit_rows",
    "AuditEventRow": "sinks.audit_rows",
    "AuditRepairRow": "sinks.audit_rows",
    "AuditStateRow": "sinks.audit_rows",
    "AuditSinkWriter": "sinks.audit_writer",
    "CallbackDeliveryRow": "sinks.callback_rows",
    "CallbackSubscriptionRow": "sinks.callback_rows",
    "CallbackWriter": "sinks.callback_writer",
    "BuildContextRow": "sinks.context_rows",
    "RetryDecisionRow": "sinks.context_rows",
    "BuildContextWriter": "sinks.context_writer",
    "BuildEventRow": "sinks.rows",
    "BuildResultRow": "sinks.rows",
    "BuildSinkWriter": "sinks.writer",
    "ClickHouseUnavailableError": "sinks.exceptions",
    "MigrationError": "sinks.exceptions",
    "SinkError": "sinks.exceptions",
    "SinkWriteError": "sinks.exceptions",
    "NotificationDeliveryRow": "sinks.notification_rows",
    "NotificationSinkWriter": "sinks.notification_writer",
    "TableRetention": "sinks.retention",
    "read_retention": "sinks.retention",
    "apply_migrations": "sinks.migrations",
    "open_client": "sinks.connection",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:  # also how `from sinks import queries` finds a submodule: Python imports it then
        raise AttributeError(f"module 'sinks' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
