"""The typed row of `adapter_deliveries`, its writer, and the read `cipulse adapters replay` uses.

Same contract as `sinks.rows`: a frozen dataclass field for field the table's columns, datetimes
aware UTC. The body is stored as bytes in a String column (ClickHouse strings are byte strings).
Reads follow `sinks.queries`: bound parameters, only the checked database name in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from schemas import AdapterDelivery
from sinks.identifiers import checked_identifier
from sinks.exceptions import SinkError
from sinks.rows import _require_aware
from sinks.table_insert import TableInserter, column_getters, to_columns

ADAPTER_DELIVERIES_TABLE = "adapter_deliveries"


@dataclass(frozen=True, slots=True)
class AdapterDeliveryRow:
    adapter: str
    source: str
    delivery_key: str
    event_type: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self, "received_at")

    @classmethod
    def from_delivery(cls, delivery: AdapterDelivery) -> AdapterDeliveryRow:
        return cls(
            adapter=delivery.adapter, source=delivery.source, delivery_key=delivery.delivery_key,
            event_type=delivery.event_type, headers=dict(delivery.headers), body=delivery.body,
            received_at=delivery.received_at,
        )


ADAPTER_DELIVERY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AdapterDeliveryRow))
_GETTERS = column_getters(ADAPTER_DELIVERY_COLUMNS)


def write_adapter_deliveries(client: Client, database: str, rows: Sequence[AdapterDeliveryRow]) -> None:
    """Gateway-callable: one insert; re-running it with the same rows is harmless (FINAL keeps one)."""
    if rows:
        TableInserter(client, database).insert(ADAPTER_DELIVERIES_TABLE, ADAPTER_DELIVERY_COLUMNS, to_columns(rows, _GETTERS))


@dataclass(frozen=True, slots=True)
class DeliverySelection:
    """Which stored deliveries to read: one adapter, optionally a time window, sources, keys."""

    adapter: str
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    event_type: str | None = None
    delivery_keys: tuple[str, ...] = ()
    limit: int = 10_000


def stored_deliveries(client: Client, database: str, selection: DeliverySelection) -> list[AdapterDeliveryRow]:
    """The selected deliveries, oldest first, one per delivery key (the first time it arrived: no FINAL,
    which would keep the last redelivery, but `LIMIT 1 BY` over arrival order).

    Order matters for a replay: seqs decide the outcome per node, but a reader of the output
    topics sees the events in the order they are produced.
    """
    database = checked_identifier(database)
    conditions = ["adapter = {adapter:String}"]
    parameters: dict[str, Any] = {"adapter": selection.adapter, "limit": selection.limit}
    if selection.since is not None:
        conditions.append("received_at >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = selection.since
    if selection.until is not None:
        conditions.append("received_at < {until:DateTime64(3, 'UTC')}")
        parameters["until"] = selection.until
    if selection.source is not None:
        conditions.append("source = {source:String}")
        parameters["source"] = selection.source
    if selection.event_type is not None:
        conditions.append("event_type = {event_type:String}")
        parameters["event_type"] = selection.event_type
    if selection.delivery_keys:
        conditions.append("delivery_key IN {keys:Array(String)}")
        parameters["keys"] = list(selection.delivery_keys)
    columns = ", ".join(ADAPTER_DELIVERY_COLUMNS)
    sql = (
        f"SELECT {columns} FROM {database}.{ADAPTER_DELIVERIES_TABLE} WHERE {' AND '.join(conditions)}"
        " ORDER BY received_at, delivery_key LIMIT 1 BY delivery_key LIMIT {limit:UInt32}"
    )
    try:
        # bodies are bytes as received (not necessarily UTF-8): read the column unconverted
        result = client.query(sql, parameters=parameters, tz_mode="aware", column_formats={"body": "bytes"})
    except ClickHouseError as exc:
        raise SinkError(f"reading stored adapter deliveries failed: {exc}. Check that migrations ran") from exc
    return [_row(values) for values in result.result_rows]


def _row(values: Sequence[Any]) -> AdapterDeliveryRow:
    adapter, source, key, event_type, headers, body, received_at = values
    return AdapterDeliveryRow(
        adapter=adapter, source=source, delivery_key=key, event_type=event_type, headers=dict(headers),
        body=body if isinstance(body, bytes) else str(body).encode(), received_at=received_at,
    )
