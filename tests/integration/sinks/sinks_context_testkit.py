"""Row builders and engine helpers shared by the retry-context sink tests (no tests here).

Times are relative to `sinks_testkit.T0` (noon UTC two days ago). A row older than its table's
TTL is written by the insert but dropped by a background TTL merge some 10-25 ms later, so
builds meant to survive are placed inside the retention, and tests that need an expired row
stop TTL merges first (`stop_ttl_merges`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from clickhouse_connect.driver import Client

from sinks.context_rows import BuildContextRow, RetryDecisionRow
from sinks_testkit import T0

CONTEXT_TABLE = "build_context"
DECISIONS_TABLE = "retry_decisions"


def context_row(build_id: str = "b-1", revision: int = 1, **changes: Any) -> BuildContextRow:
    """A running build first seen at T0 unless `changes` say otherwise."""
    row = BuildContextRow(
        project="payments",
        pipeline="deploy",
        build_id=build_id,
        first_seen_at=T0,
        started_at=T0 + timedelta(seconds=5),
        finished_at=None,
        status="RUNNING",
        trigger_reason="PUSH",
        trigger_user="alice",
        branch="main",
        commit_sha="0123456789abcdef0123456789abcdef01234567",
        executor="runner-7",
        variables={"DEPLOY_ENV": "staging", "REGION": "eu-west-1"},
        revision=revision,
    )
    return replace(row, **changes)


def decision_row(build_id: str = "b-1", **changes: Any) -> RetryDecisionRow:
    """An allowed check of a build started a day before the decision, unless `changes` say
    otherwise."""
    row = RetryDecisionRow(
        decided_at=T0 + timedelta(hours=1),
        project="payments",
        pipeline="deploy",
        build_id=build_id,
        action="check",
        eligible=True,
        reason="within_retention",
        build_started_at=T0 - timedelta(days=1),
        age_seconds=90_000.0,
        retention_seconds=28 * 86_400.0,
        deadline=T0 + timedelta(days=27),
        retry_id="",
    )
    return replace(row, **changes)


def stop_ttl_merges(client: Client, database: str, table: str = CONTEXT_TABLE) -> None:
    """Keep expired rows until the test applies the TTL itself (MATERIALIZE TTL still works)."""
    client.command(f"SYSTEM STOP TTL MERGES {database}.{table}")


def modify_ttl(client: Client, database: str, ttl: str, table: str = CONTEXT_TABLE) -> None:
    """What an operator runs to change a retention. `mutations_sync = 1` (this engine's
    default, spelled out) makes the ALTER return after the new TTL was applied to old parts."""
    client.command(
        f"ALTER TABLE {database}.{table} MODIFY TTL {ttl}", settings={"mutations_sync": 1}
    )


def day_partitions(client: Client, database: str, table: str = CONTEXT_TABLE) -> list[str]:
    """Partition ids of active parts that hold rows, oldest first."""
    rows = client.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active AND rows > 0 ORDER BY partition_id",
        parameters={"db": database, "t": table},
    ).result_rows
    return [str(row[0]) for row in rows]


def engine_full(client: Client, database: str, table: str) -> str:
    """Read with `query`, not `command`: the latter returns TSV with quotes escaped."""
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database, "t": table},
    ).result_rows
    return str(rows[0][0])
