"""Engine holder, row builders and engine probes shared by the sink integration tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from clickhouse_connect.driver import Client

from sinks.connection import open_client
from sinks.rows import BuildEventRow, BuildResultRow

ENGINE_DSN = "chdb://memory"

# Recent on purpose: rows older than the tables' TTL are dropped by a background merge within
# seconds of their insert, so fixed dates in the past would make tests flaky.
T0 = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
    days=2
)


class EngineHolder:
    """Owns the in-memory engine's client for the session; reopens it if closed."""

    def __init__(self) -> None:
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = open_client(ENGINE_DSN, "default")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def event_row(build_id: str = "b-1", seq: int = 1, **changes: Any) -> BuildEventRow:
    row = BuildEventRow(
        build_id=build_id,
        seq=seq,
        event_id=f"{build_id}-e{seq}",
        event_time=T0 + timedelta(seconds=seq),
        project="payments",
        pipeline="deploy",
        scope="TASK",
        stage_id="build",
        task_id="compile",
        node_status="RUNNING",
        build_status="RUNNING",
        previous_build_status="QUEUED",
        trigger_reason="PUSH",
        trigger_user="alice",
        branch="main",
        error_reason="",
        termination_reason="",
    )
    return replace(row, **changes)


def result_row(build_id: str = "b-1", version: int = 1, **changes: Any) -> BuildResultRow:
    """A finished, succeeded build unless `changes` say otherwise."""
    row = BuildResultRow(
        build_id=build_id,
        project="payments",
        pipeline="deploy",
        status="SUCCEEDED",
        version=version,
        is_final=True,
        first_seen_at=T0,
        queued_at=T0,
        started_at=T0 + timedelta(seconds=5),
        finished_at=T0 + timedelta(minutes=2),
        duration_ms=115_000,
        queue_ms=5_000,
        trigger_reason="PUSH",
        trigger_user="alice",
        branch="main",
        error_reason="",
        termination_reason="",
        updated_at=T0 + timedelta(minutes=2),
    )
    return replace(row, **changes)


def stop_merges(client: Client, database: str) -> None:
    """Keep every insert in its own part, so FINAL is what deduplicates, not a merge."""
    client.command(f"SYSTEM STOP MERGES {database}.build_events")
    client.command(f"SYSTEM STOP MERGES {database}.build_results")


def raw_count(client: Client, database: str, table: str) -> int:
    """Rows physically stored, duplicates included (no FINAL)."""
    return int(client.command(f"SELECT count() FROM {database}.{table}"))  # type: ignore[arg-type]


def active_parts(client: Client, database: str, table: str) -> int:
    return int(
        client.command(  # type: ignore[arg-type]
            "SELECT count() FROM system.parts WHERE database = {db:String} "
            "AND table = {table:String} AND active",
            parameters={"db": database, "table": table},
        )
    )
