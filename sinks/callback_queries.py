"""The callback reads the dispatcher and the API make: current subscriptions, one callback's
newest version, its delivery summary (last success, last failure, failing since) and its
delivery history.

Rules of `sinks.queries` hold: tables are read with FINAL inside a subquery and filtered outside
it (so a filter never sees a superseded version), values are bound parameters, and only the
checked database name is part of the SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver import Client

from sinks.callback_rows import (
    CALLBACK_DELIVERIES_TABLE,
    CALLBACK_DELIVERY_COLUMNS,
    CALLBACK_SUBSCRIPTION_COLUMNS,
    CALLBACK_SUBSCRIPTIONS_TABLE,
    OUTCOME_DELIVERED,
    OUTCOME_GAVE_UP,
    OUTCOME_RETRY,
    STATUS_DELETED,
    CallbackDeliveryRow,
    CallbackSubscriptionRow,
)
from sinks.identifiers import checked_identifier
from sinks.queries import _query


@dataclass(frozen=True, slots=True)
class CallbackDeliverySummary:
    """What a callback's delivery log says about its receiver.

    `failing_since` is the first failed attempt after the last acknowledged one (None when the
    last attempt succeeded or nothing failed): the start of the current failure streak, which
    the disable rule measures.
    """

    callback_id: str
    delivered: int
    failed_attempts: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    failing_since: datetime | None


def current_subscriptions(
    client: Client, database: str, *, project: str | None = None
) -> list[CallbackSubscriptionRow]:
    """Every callback's newest version except deleted ones, ordered by project, then id."""
    database = checked_identifier(database)
    conditions = ["status != {deleted:String}"]
    parameters: dict[str, Any] = {"deleted": STATUS_DELETED}
    if project is not None:
        conditions.append("project = {project:String}")
        parameters["project"] = project
    columns = ", ".join(CALLBACK_SUBSCRIPTION_COLUMNS)
    rows = _query(
        client,
        f"SELECT {columns} FROM (SELECT {columns} FROM {database}.{CALLBACK_SUBSCRIPTIONS_TABLE} FINAL)"
        f" WHERE {' AND '.join(conditions)} ORDER BY project, callback_id",
        parameters,
    )
    return [CallbackSubscriptionRow.from_db(row) for row in rows]


def subscription(client: Client, database: str, callback_id: str) -> CallbackSubscriptionRow | None:
    """The newest version of one callback (a deleted one too: its tombstone), or None."""
    database = checked_identifier(database)
    columns = ", ".join(CALLBACK_SUBSCRIPTION_COLUMNS)
    rows = _query(
        client,
        f"SELECT {columns} FROM {database}.{CALLBACK_SUBSCRIPTIONS_TABLE} FINAL"
        " WHERE callback_id = {callback_id:String} ORDER BY version DESC LIMIT 1",
        {"callback_id": callback_id},
    )
    return CallbackSubscriptionRow.from_db(rows[0]) if rows else None


def delivery_summaries(
    client: Client, database: str, callback_ids: Sequence[str] | None = None
) -> dict[str, CallbackDeliverySummary]:
    """`CallbackDeliverySummary` per callback with at least one logged attempt (all callbacks,
    or only `callback_ids`)."""
    database = checked_identifier(database)
    parameters: dict[str, Any] = {
        "delivered": OUTCOME_DELIVERED, "failed": [OUTCOME_RETRY, OUTCOME_GAVE_UP],
    }
    only = ""
    if callback_ids is not None:
        if not callback_ids:
            return {}
        only = " WHERE callback_id IN {ids:Array(String)}"
        parameters["ids"] = list(callback_ids)
    attempts = f"(SELECT * FROM {database}.{CALLBACK_DELIVERIES_TABLE} FINAL{only})"
    failed = "outcome IN {failed:Array(String)}"
    per_callback = (
        "SELECT callback_id,"
        " countIf(outcome = {delivered:String}) AS delivered,"
        f" countIf({failed}) AS failed_attempts,"
        " maxIf(attempted_at, outcome = {delivered:String}) AS last_success_at,"
        f" maxIf(attempted_at, {failed}) AS last_failure_at,"
        f" argMaxIf(error, attempted_at, {failed}) AS last_error"
        f" FROM {attempts} GROUP BY callback_id"
    )
    rows = _query(
        client,
        "SELECT s.callback_id, s.delivered, s.failed_attempts, s.last_success_at, s.last_failure_at, s.last_error,"
        " f.failing_since, f.streak"
        f" FROM ({per_callback}) AS s"
        " LEFT JOIN (SELECT a.callback_id AS callback_id, min(a.attempted_at) AS failing_since, count() AS streak"
        f"   FROM {attempts} AS a"
        f"   INNER JOIN ({per_callback}) AS l ON a.callback_id = l.callback_id"
        f"   WHERE a.{failed} AND (l.delivered = 0 OR a.attempted_at > l.last_success_at)"
        "   GROUP BY a.callback_id) AS f ON s.callback_id = f.callback_id",
        parameters,
    )
    summaries: dict[str, CallbackDeliverySummary] = {}
    for callback_id, delivered, failed_attempts, last_success, last_failure, last_error, since, streak in rows:
        summaries[str(callback_id)] = CallbackDeliverySummary(
            callback_id=str(callback_id),
            delivered=int(delivered),
            failed_attempts=int(failed_attempts),
            last_success_at=last_success if delivered else None,
            last_failure_at=last_failure if failed_attempts else None,
            last_error=str(last_error) if failed_attempts else None,
            failing_since=since if streak else None,
        )
    return summaries


def deliveries_for(
    client: Client, database: str, callback_id: str, *, limit: int = 100
) -> list[CallbackDeliveryRow]:
    """The newest `limit` logged attempts of one callback, newest first."""
    database = checked_identifier(database)
    columns = ", ".join(CALLBACK_DELIVERY_COLUMNS)
    rows = _query(
        client,
        f"SELECT {columns} FROM {database}.{CALLBACK_DELIVERIES_TABLE} FINAL"
        " WHERE callback_id = {callback_id:String}"
        " ORDER BY attempted_at DESC, delivery_id, attempt DESC LIMIT {limit:UInt32}",
        {"callback_id": callback_id, "limit": limit},
    )
    return [CallbackDeliveryRow(*row) for row in rows]
