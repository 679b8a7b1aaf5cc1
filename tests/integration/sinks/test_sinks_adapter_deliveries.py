"""Stored adapter deliveries on the real engine: the body column is ZSTD-compressed and the table
has the raw TTL, a redelivered request (same key) is read back once, bytes that are not UTF-8
survive, and the replay selection filters by adapter, time window, source, type and keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver import Client

from schemas import AdapterDelivery
from sinks.adapter_delivery_rows import (
    ADAPTER_DELIVERIES_TABLE,
    AdapterDeliveryRow,
    DeliverySelection,
    stored_deliveries,
    write_adapter_deliveries,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def row(key: str, seconds: int, *, adapter: str = "github", source: str = "acme", event_type: str = "workflow_run",
        body: bytes = b'{"action": "completed"}') -> AdapterDeliveryRow:
    return AdapterDeliveryRow.from_delivery(AdapterDelivery(
        adapter=adapter, source=source, delivery_key=key, event_type=event_type,
        headers={"x-github-event": event_type, "x-github-delivery": key}, body=body,
        received_at=T0 + timedelta(seconds=seconds),
    ))


def test_table_compresses_the_body_and_expires_with_the_raw_ttl(ch_client: Client, migrated: str) -> None:
    codec = ch_client.query(
        "SELECT compression_codec FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " AND name = 'body'", parameters={"db": migrated, "t": ADAPTER_DELIVERIES_TABLE},
    ).result_rows[0][0]
    assert "ZSTD" in codec
    ddl = ch_client.command(f"SHOW CREATE TABLE {migrated}.{ADAPTER_DELIVERIES_TABLE}")
    assert "TTL toDateTime(received_at) + toIntervalDay(30)" in str(ddl)


def test_redelivered_key_is_read_once_and_bytes_survive(ch_client: Client, migrated: str) -> None:
    binary = b"\xff\xfe not utf-8 \x00"
    write_adapter_deliveries(ch_client, migrated, [row("d-1", 0), row("d-2", 5, body=binary)])
    write_adapter_deliveries(ch_client, migrated, [row("d-1", 0), row("d-1", 60)])  # a redelivery, a re-written batch
    stored = stored_deliveries(ch_client, migrated, DeliverySelection(adapter="github"))
    assert [(r.delivery_key, r.received_at) for r in stored] == [("d-1", T0), ("d-2", T0 + timedelta(seconds=5))]
    assert stored[1].body == binary
    assert stored[0].headers == {"x-github-event": "workflow_run", "x-github-delivery": "d-1"}


def test_selection_filters(ch_client: Client, migrated: str) -> None:
    write_adapter_deliveries(ch_client, migrated, [
        row("a", 0), row("b", 10, source="other"), row("c", 20, event_type="workflow_job"),
        row("d", 30, adapter="gitlab", event_type="Pipeline Hook"),
    ])

    def keys(**kwargs: object) -> list[str]:
        return [r.delivery_key for r in stored_deliveries(ch_client, migrated, DeliverySelection(**kwargs))]  # type: ignore[arg-type]

    assert keys(adapter="github") == ["a", "b", "c"]
    assert keys(adapter="gitlab") == ["d"]
    assert keys(adapter="github", since=T0 + timedelta(seconds=10)) == ["b", "c"]
    assert keys(adapter="github", until=T0 + timedelta(seconds=10)) == ["a"]
    assert keys(adapter="github", source="other") == ["b"]
    assert keys(adapter="github", event_type="workflow_job") == ["c"]
    assert keys(adapter="github", delivery_keys=("c", "a", "zzz")) == ["a", "c"]
    assert keys(adapter="github", limit=2) == ["a", "b"]
