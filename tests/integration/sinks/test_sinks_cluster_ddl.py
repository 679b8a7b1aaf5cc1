"""The cluster DDL (CIPULSE_CLICKHOUSE_CLUSTER) against the embedded engine.

chDB has no Keeper and no clusters, so it cannot *run* `ON CLUSTER` or a `Replicated...` engine.
What it can do is parse them: `formatQuerySingleLine` runs ClickHouse's own SQL parser and prints
the statement back normalised. Each generated statement must parse, and its normalised form must
equal the single-node statement's normalised form with exactly the `ON CLUSTER` and engine
changes, so the engine's parser agrees that columns, indexes, PARTITION BY, ORDER BY, TTL and
SETTINGS are unchanged. This is not a run against a real replicated cluster.
"""

from __future__ import annotations

import re

import pytest
from clickhouse_connect.driver import Client

from sinks.cluster_ddl import replicate_statement
from sinks.exceptions import MigrationError
from sinks.migrations import _migrations_table_ddl, apply_migrations, load_migrations

CLUSTER = "prod"
_ENGINE = re.compile(r"ENGINE = (?P<engine>\w+)(?:\((?P<args>[^()]*)\))?")
_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<database>\w+)\.(?P<table>\w+) ")


def _formatted(client: Client, statement: str) -> str:
    return str(
        client.query(
            "SELECT formatQuerySingleLine({statement:String})",
            parameters={"statement": statement},
        ).result_rows[0][0]
    )


def _expected_from_single_node(formatted: str) -> str:
    table = _TABLE.match(formatted)
    engine = _ENGINE.search(formatted)
    assert table is not None and engine is not None, formatted
    database, name = table["database"], table["table"]
    arguments = f", {engine['args']}" if engine["args"] else ""
    replicated = (
        f"ENGINE = Replicated{engine['engine']}('/clickhouse/tables/{{shard}}/{database}/{name}', "
        f"'{{replica}}'{arguments})"
    )
    with_cluster = formatted.replace(
        f"{database}.{name} ", f"{database}.{name} ON CLUSTER {CLUSTER} ", 1
    )
    return with_cluster.replace(engine.group(0), replicated, 1)


def _statements(database: str) -> list[tuple[str, str]]:
    parameters = {
        "database": database,
        "raw_retention_days": "30",
        "results_retention_days": "400",
        "context_retention_days": "28",
    }
    found = [("schema_migrations", _migrations_table_ddl(database))]
    for migration in load_migrations():
        found.extend((migration.file_name, s) for s in migration.statements(parameters))
    return found


def test_every_generated_table_statement_parses_and_differs_only_by_cluster_and_engine(
    ch_client: Client,
) -> None:
    statements = _statements("cipulse")
    assert len(statements) == 14

    for source, statement in statements:
        single_node = _formatted(ch_client, statement)
        generated = _formatted(ch_client, replicate_statement(statement, CLUSTER, source))

        assert generated == _expected_from_single_node(single_node), source
        assert " ON CLUSTER prod " in generated
        assert "ENGINE = Replicated" in generated


def test_generated_database_statement_parses(ch_client: Client) -> None:
    generated = replicate_statement("CREATE DATABASE IF NOT EXISTS cipulse", CLUSTER, "x")

    assert _formatted(ch_client, generated) == "CREATE DATABASE IF NOT EXISTS cipulse ON CLUSTER prod"


def test_generated_alter_statement_parses(ch_client: Client) -> None:
    generated = replicate_statement(
        "ALTER TABLE cipulse.build_context MODIFY TTL toDateTime(first_seen_at) + INTERVAL 7 DAY",
        CLUSTER,
        "x",
    )

    assert _formatted(ch_client, generated) == (
        "ALTER TABLE cipulse.build_context ON CLUSTER prod "
        "(MODIFY TTL toDateTime(first_seen_at) + toIntervalDay(7))"
    )


def test_the_embedded_engine_knows_no_cluster_so_cluster_mode_stops_before_any_ddl(
    ch_client: Client, database: str
) -> None:
    with pytest.raises(MigrationError, match=r"cluster 'prod' .*is not defined"):
        apply_migrations(ch_client, database, cluster=CLUSTER)

    tables = ch_client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    assert tables == []
