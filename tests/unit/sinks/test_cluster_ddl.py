"""The cluster option of the migrations (CIPULSE_CLICKHOUSE_CLUSTER), without an engine.

What is checked here is the SQL text cipulse would send to a replicated cluster, for every
shipped DDL file, and the order of calls `apply_migrations` makes (on a recording fake client).
No real cluster runs in this environment: the statements are additionally parsed by the embedded
engine's SQL parser in tests/integration/sinks/test_sinks_cluster_ddl.py, and nothing here has
been run against ClickHouse servers with Keeper.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sinks.cluster_ddl import (
    MERGE_TREE_VARIANTS,
    check_cluster_dsn,
    replica_path,
    replicate_statement,
    replicate_statements,
)
from sinks.exceptions import MigrationError, SinkError
from sinks.migrations import (
    MIGRATIONS_TABLE,
    Migration,
    _migrations_table_ddl,
    apply_migrations,
    load_migrations,
)
from sinks.ttl_parsing import parse_ttl, ttl_clause

CLUSTER = "prod"
ON_CLUSTER = f" ON CLUSTER '{CLUSTER}'"
PARAMETERS = {
    "database": "cipulse",
    "raw_retention_days": "30",
    "results_retention_days": "400",
    "context_retention_days": "28",
}
_HEAD = re.compile(r"^CREATE TABLE IF NOT EXISTS cipulse\.(?P<table>[a-z_]+)$", re.MULTILINE)
_ENGINE_LINE = re.compile(r"^ENGINE = (?P<engine>\w+)(?:\((?P<args>[^()]*)\))?$", re.MULTILINE)
_CLAUSE_LINES = ("PARTITION BY ", "ORDER BY ", "TTL ", "SETTINGS ", "    INDEX ")


def _shipped_statements() -> list[tuple[str, str]]:
    return [
        (migration.file_name, statement)
        for migration in load_migrations()
        for statement in migration.statements(PARAMETERS)
    ]


SHIPPED = _shipped_statements()


def _expected(statement: str) -> tuple[str, str, str]:
    """(table, engine, the rewrite expected) from a shipped statement, read line by line: the
    shipped files put `CREATE TABLE IF NOT EXISTS {database}.<t>` and `ENGINE = ...` on lines of
    their own, so this reading is independent of the parser under test."""
    heads = _HEAD.findall(statement)
    engines = list(_ENGINE_LINE.finditer(statement))
    assert len(heads) == 1 and len(engines) == 1, statement
    table, engine_line = heads[0], engines[0]
    arguments = engine_line["args"]
    replicated = (
        f"ENGINE = Replicated{engine_line['engine']}('/clickhouse/tables/{{shard}}/cipulse/{table}', "
        f"'{{replica}}'{', ' + arguments if arguments else ''})"
    )
    expected = statement.replace(
        f"CREATE TABLE IF NOT EXISTS cipulse.{table}\n",
        f"CREATE TABLE IF NOT EXISTS cipulse.{table}{ON_CLUSTER}\n",
        1,
    ).replace(engine_line.group(0), replicated, 1)
    return table, engine_line["engine"], expected


# --- the shipped DDL, file by file -----------------------------------------------------------


def test_every_shipped_statement_is_a_create_table_and_all_thirteen_tables_are_covered() -> None:
    tables = [_expected(statement)[0] for _, statement in SHIPPED]

    assert len(tables) == len(set(tables)) == 13
    assert {file_name for file_name, _ in SHIPPED} == {m.file_name for m in load_migrations()}
    assert {"build_events", "build_context", "retry_decisions", "adapter_deliveries"} <= set(tables)


@pytest.mark.parametrize(
    ("file_name", "statement"), SHIPPED, ids=[f"{f}:{_expected(s)[0]}" for f, s in SHIPPED]
)
def test_shipped_table_gets_on_cluster_and_its_replicated_engine_and_nothing_else_changes(
    file_name: str, statement: str
) -> None:
    table, engine, expected = _expected(statement)

    rewritten = replicate_statement(statement, CLUSTER, file_name)

    # Exact text: only the two insertions differ, so columns, indexes, comments, PARTITION BY,
    # ORDER BY, TTL and SETTINGS are byte for byte the single-node ones.
    assert rewritten == expected
    assert f"CREATE TABLE IF NOT EXISTS cipulse.{table} ON CLUSTER 'prod'\n" in rewritten
    assert f"ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/cipulse/{table}', " in rewritten
    for prefix in _CLAUSE_LINES:
        before = [line for line in statement.splitlines() if line.startswith(prefix)]
        after = [line for line in rewritten.splitlines() if line.startswith(prefix)]
        assert after == before, prefix
    assert rewritten.count("ON CLUSTER") == 1
    assert rewritten.count("Replicated") == 1


def test_engine_arguments_are_kept_after_path_and_replica() -> None:
    by_table = {
        _expected(statement)[0]: replicate_statement(statement, CLUSTER, file_name)
        for file_name, statement in SHIPPED
    }

    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/build_events', "
        "'{replica}', ingested_at)\n" in by_table["build_events"]
    )
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/build_context', "
        "'{replica}', revision)\n" in by_table["build_context"]
    )
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/audit_repairs', "
        "'{replica}')\n" in by_table["audit_repairs"]
    )
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/cipulse/retry_decisions', "
        "'{replica}')\n" in by_table["retry_decisions"]
    )


def test_comments_that_name_engines_or_alter_table_are_left_alone() -> None:
    (build_events,) = load_migrations()[0].statements(PARAMETERS)
    context_file = next(m for m in load_migrations() if m.name == "build_context")
    build_context = context_file.statements(PARAMETERS)[0]

    rewritten_events = replicate_statement(build_events, CLUSTER, "0001_build_events.sql")
    rewritten_context = replicate_statement(build_context, CLUSTER, context_file.file_name)

    assert "-- (project, pipeline, build_id, seq) again; ReplacingMergeTree keeps" in rewritten_events
    assert "-- ALTER TABLE ... MODIFY TTL moves the limit" in rewritten_context


def test_the_macros_survive_because_the_rewrite_runs_after_the_placeholders_are_filled() -> None:
    for migration in load_migrations():
        rewritten = replicate_statements(
            migration.statements(PARAMETERS), CLUSTER, migration.file_name
        )
        for statement in rewritten:
            assert "{shard}" in statement and "'{replica}'" in statement
            assert "{database}" not in statement and "_retention_days}" not in statement


def test_schema_migrations_and_the_database_are_created_on_the_cluster_too() -> None:
    table = replicate_statement(_migrations_table_ddl("cipulse"), CLUSTER, "x")
    database = replicate_statement("CREATE DATABASE IF NOT EXISTS cipulse", CLUSTER, "x")

    assert table.startswith(f"CREATE TABLE IF NOT EXISTS cipulse.{MIGRATIONS_TABLE}{ON_CLUSTER} (")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/"
        "schema_migrations', '{replica}', applied_at) ORDER BY version"
    ) in table
    assert database == f"CREATE DATABASE IF NOT EXISTS cipulse{ON_CLUSTER}"


# --- the rewrite on hand-written statements ----------------------------------------------------


@pytest.mark.parametrize("variant", MERGE_TREE_VARIANTS)
def test_every_merge_tree_variant_gets_its_replicated_form(variant: str) -> None:
    rewritten = replicate_statement(
        f"CREATE TABLE db.t (a UInt8) ENGINE = {variant}MergeTree ORDER BY a", CLUSTER, "x.sql"
    )

    assert rewritten == (
        f"CREATE TABLE db.t{ON_CLUSTER} (a UInt8) ENGINE = Replicated{variant}MergeTree("
        "'/clickhouse/tables/{shard}/db/t', '{replica}') ORDER BY a"
    )


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "CREATE TABLE db.t (a UInt8) ENGINE = MergeTree() ORDER BY a",
            "CREATE TABLE db.t ON CLUSTER 'prod' (a UInt8) ENGINE = ReplicatedMergeTree("
            "'/clickhouse/tables/{shard}/db/t', '{replica}') ORDER BY a",
        ),
        (
            "create table if not exists db.t(a UInt8)engine=ReplacingMergeTree(toUInt64(a), d)"
            " order by a",
            "create table if not exists db.t ON CLUSTER 'prod'(a UInt8)engine="
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', "
            "toUInt64(a), d) order by a",
        ),
        (
            "CREATE TABLE db.t\n(\n    a String DEFAULT 'ENGINE = Memory',  -- ENGINE = Log\n"
            "    /* ENGINE = TinyLog */ b UInt8\n)\nENGINE = SummingMergeTree((b))\nORDER BY a",
            "CREATE TABLE db.t ON CLUSTER 'prod'\n(\n    a String DEFAULT 'ENGINE = Memory',  -- "
            "ENGINE = Log\n    /* ENGINE = TinyLog */ b UInt8\n)\nENGINE = ReplicatedSumming"
            "MergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', (b))\nORDER BY a",
        ),
        (
            "CREATE TABLE db.t (a UInt8) ENGINE = GraphiteMergeTree('graphite_rollup') ORDER BY a",
            "CREATE TABLE db.t ON CLUSTER 'prod' (a UInt8) ENGINE = ReplicatedGraphiteMergeTree("
            "'/clickhouse/tables/{shard}/db/t', '{replica}', 'graphite_rollup') ORDER BY a",
        ),
        (
            "ALTER TABLE db.build_context MODIFY TTL toDateTime(first_seen_at) + INTERVAL 7 DAY",
            "ALTER TABLE db.build_context ON CLUSTER 'prod' MODIFY TTL toDateTime(first_seen_at) "
            "+ INTERVAL 7 DAY",
        ),
        (
            "-- two columns\nALTER TABLE db.t ADD COLUMN IF NOT EXISTS note String",
            "-- two columns\nALTER TABLE db.t ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS note String",
        ),
        ("DROP TABLE IF EXISTS db.t SYNC", "DROP TABLE IF EXISTS db.t ON CLUSTER 'prod' SYNC"),
        ("CREATE DATABASE db", "CREATE DATABASE db ON CLUSTER 'prod'"),
        (
            "INSERT INTO db.t SELECT * FROM db.u",
            "INSERT INTO db.t SELECT * FROM db.u",
        ),
    ],
)
def test_statement_rewrites(statement: str, expected: str) -> None:
    assert replicate_statement(statement, CLUSTER, "9000_x.sql") == expected


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("CREATE TABLE db.t (a UInt8) ENGINE = Memory", "engine Memory, which has no replicated"),
        ("CREATE TABLE db.t (a UInt8) ENGINE = Log", "engine Log"),
        ("CREATE TABLE db.t AS db.u", "no ENGINE clause"),
        ("CREATE TABLE db.t (a UInt8) -- ENGINE = MergeTree\n", "no ENGINE clause"),
        (
            "CREATE TABLE db.t (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
            "already uses ReplicatedMergeTree",
        ),
        (
            "CREATE TABLE db.t ON CLUSTER c (a UInt8) ENGINE = MergeTree ORDER BY a",
            "already says ON CLUSTER",
        ),
        ("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a", r"\{database\}\.<table>"),
        ("ALTER TABLE `db`.t ADD COLUMN b UInt8", r"\{database\}\.<table>"),
        ("CREATE MATERIALIZED VIEW db.v TO db.t AS SELECT 1", "cannot run this statement on a cluster"),
        ("RENAME TABLE db.a TO db.b", "cannot run this statement on a cluster"),
        ("CREATE TEMPORARY TABLE t (a UInt8)", "cannot run this statement on a cluster"),
        (
            "CREATE TABLE db.t (a UInt8) ENGINE = MergeTree(a ORDER BY a",
            "do not close",
        ),
    ],
)
def test_statements_that_cannot_be_rewritten_raise_naming_the_file(
    statement: str, reason: str
) -> None:
    with pytest.raises(MigrationError, match=r"migration 9000_x\.sql") as raised:
        replicate_statement(statement, CLUSTER, "9000_x.sql")

    assert re.search(reason, str(raised.value)), str(raised.value)


@pytest.mark.parametrize("cluster", ["", "a-b", "prod'; DROP", "1st", "a.b"])
def test_cluster_names_that_are_not_plain_identifiers_are_refused(cluster: str) -> None:
    with pytest.raises(SinkError, match="invalid ClickHouse cluster name"):
        replicate_statement("CREATE DATABASE db", cluster, "x")


def test_replica_path_is_per_shard_database_and_table() -> None:
    assert replica_path("cipulse", "build_events") == "/clickhouse/tables/{shard}/cipulse/build_events"


# --- start-up: the DSN and the setting ---------------------------------------------------------


@pytest.mark.parametrize("dsn", ["chdb:///var/lib/cipulse/chdb", "chdb://memory"])
def test_a_cluster_with_the_embedded_engine_is_refused_at_start_up(dsn: str) -> None:
    with pytest.raises(SinkError, match="needs a ClickHouse server.*embedded engine"):
        check_cluster_dsn(dsn, CLUSTER)


def test_a_cluster_with_a_server_dsn_is_accepted_and_none_means_single_node() -> None:
    assert check_cluster_dsn("https://u:secret@ch.example:8443", CLUSTER) == CLUSTER
    assert check_cluster_dsn("chdb://memory", None) is None


def test_the_refusal_does_not_print_the_password() -> None:
    with pytest.raises(SinkError, match="invalid ClickHouse cluster name") as raised:
        check_cluster_dsn("https://u:secret@ch.example:8443", "bad-name")

    assert "secret" not in str(raised.value)


def test_the_setting_is_read_from_the_environment_and_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from streams.settings import CipulseSettings

    monkeypatch.delenv("CIPULSE_CLICKHOUSE_CLUSTER", raising=False)
    assert CipulseSettings().clickhouse_cluster is None
    monkeypatch.setenv("CIPULSE_CLICKHOUSE_CLUSTER", "prod_cluster")
    assert CipulseSettings().clickhouse_cluster == "prod_cluster"
    monkeypatch.setenv("CIPULSE_CLICKHOUSE_CLUSTER", "prod-cluster")
    with pytest.raises(ValidationError):
        CipulseSettings()


# --- apply_migrations in cluster mode, on a recording fake client ------------------------------


@dataclass
class _Result:
    result_rows: list[tuple[Any, ...]]


@dataclass
class _FakeServer:
    """Answers the few queries apply_migrations makes; records DDL and inserts."""

    clusters: int = 2
    macros: tuple[str, ...] = ("replica", "shard")
    tables: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    recorded: list[tuple[int, str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> _Result:
        self.queries.append(sql)
        if "system.clusters" in sql:
            assert parameters == {"cluster": CLUSTER}
            return _Result([(self.clusters,)])
        if "system.macros" in sql:
            return _Result([(macro,) for macro in self.macros])
        if "system.tables" in sql:
            return _Result(list(self.tables))
        if MIGRATIONS_TABLE in sql:
            return _Result(list(self.recorded))
        raise AssertionError(f"unexpected query {sql}")

    def insert(
        self, table: str, data: Sequence[Sequence[Any]], column_names: list[str], database: str
    ) -> None:
        assert (table, column_names) == (MIGRATIONS_TABLE, ["version", "name", "checksum"])
        self.recorded.extend((int(r[0]), str(r[1]), str(r[2])) for r in data)


def test_cluster_mode_sends_only_on_cluster_ddl_and_records_the_unchanged_checksums() -> None:
    server = _FakeServer()

    applied = apply_migrations(server, "cipulse", cluster=CLUSTER)  # type: ignore[arg-type]

    shipped = load_migrations()
    assert applied == shipped
    assert server.recorded == [(m.version, m.name, m.checksum) for m in shipped]
    assert server.commands[0] == f"CREATE DATABASE IF NOT EXISTS cipulse{ON_CLUSTER}"
    assert MIGRATIONS_TABLE in server.commands[1]
    assert len(server.commands) == 2 + len(SHIPPED)
    for sql in server.commands:
        assert ON_CLUSTER in sql
    for sql in server.commands[1:]:
        assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/", sql)


def test_single_node_mode_sends_the_rendered_files_unchanged_and_asks_no_cluster_questions() -> None:
    server = _FakeServer()

    apply_migrations(server, "cipulse")  # type: ignore[arg-type]

    assert server.commands == [
        "CREATE DATABASE IF NOT EXISTS cipulse",
        _migrations_table_ddl("cipulse"),
        *(statement for _, statement in SHIPPED),
    ]
    assert not any("system." in sql for sql in server.queries)


def test_a_second_start_in_cluster_mode_only_checks() -> None:
    server = _FakeServer()
    apply_migrations(server, "cipulse", cluster=CLUSTER)  # type: ignore[arg-type]
    server.commands.clear()

    assert apply_migrations(server, "cipulse", cluster=CLUSTER) == []  # type: ignore[arg-type]
    assert len(server.commands) == 2


def test_an_unknown_cluster_stops_before_any_ddl() -> None:
    server = _FakeServer(clusters=0)

    with pytest.raises(MigrationError, match=r"cluster 'prod' .*is not defined.*remote_servers"):
        apply_migrations(server, "cipulse", cluster=CLUSTER)  # type: ignore[arg-type]

    assert server.commands == []


def test_missing_macros_stop_before_any_ddl() -> None:
    server = _FakeServer(macros=("replica",))

    with pytest.raises(MigrationError, match=r"no \{shard\} macro"):
        apply_migrations(server, "cipulse", cluster=CLUSTER)  # type: ignore[arg-type]

    assert server.commands == []


def test_tables_created_without_the_option_stop_the_cluster_mode_before_any_table_ddl() -> None:
    server = _FakeServer(
        tables=[("build_events", "ReplacingMergeTree"), ("schema_migrations", "ReplacingMergeTree")]
    )

    with pytest.raises(MigrationError, match=r"not replicated: build_events \(ReplacingMergeTree\)"):
        apply_migrations(server, "cipulse", cluster=CLUSTER)  # type: ignore[arg-type]

    assert server.commands == [f"CREATE DATABASE IF NOT EXISTS cipulse{ON_CLUSTER}"]


def test_a_statement_that_cannot_be_rewritten_stops_before_any_migration_runs() -> None:
    server = _FakeServer()
    bad = Migration(
        version=9001,
        name="memory_table",
        file_name="9001_memory_table.sql",
        sql="CREATE TABLE IF NOT EXISTS {database}.scratch (a UInt8) ENGINE = Memory;",
    )

    with pytest.raises(MigrationError, match="9001_memory_table.sql.*engine Memory"):
        apply_migrations(  # type: ignore[arg-type]
            server, "cipulse", cluster=CLUSTER, migrations=[*load_migrations(), bad]
        )

    assert len(server.commands) == 2  # the database and schema_migrations, no migration file
    assert server.recorded == []


# --- the retention reader on replicated tables -------------------------------------------------

# engine_full of build_context as a replicated table prints it: the engine with its arguments
# (string literals as written), then the clauses as for the single-node table. Written by hand
# after the single-node output (no cluster here); the TTL and SETTINGS parts are the printed
# form measured on the embedded engine.
_REPLICATED_ENGINE_FULL = (
    "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/build_context', "
    "'{replica}', revision) PARTITION BY toYYYYMMDD(first_seen_at) "
    "ORDER BY (project, pipeline, build_id) "
    "TTL toDateTime(first_seen_at) + toIntervalDay(28) "
    "SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192"
)


def test_the_retention_reader_finds_the_ttl_of_a_replicated_table() -> None:
    clause = ttl_clause(_REPLICATED_ENGINE_FULL)
    parsed = parse_ttl(clause)

    assert clause == "toDateTime(first_seen_at) + toIntervalDay(28)"
    assert (parsed.column, parsed.ttl, parsed.problem) == ("first_seen_at", timedelta(days=28), None)


def test_ttl_and_settings_words_inside_the_replica_path_are_not_mistaken_for_clauses() -> None:
    engine_full = (
        "ReplicatedMergeTree('/clickhouse/tables/{shard}/x TTL y SETTINGS z/t', '{replica}') "
        "PARTITION BY toYYYYMMDD(decided_at) ORDER BY (project, decided_at) "
        "TTL toDateTime(decided_at) + toIntervalDay(400) SETTINGS index_granularity = 8192"
    )

    assert ttl_clause(engine_full) == "toDateTime(decided_at) + toIntervalDay(400)"


def test_a_replicated_table_without_ttl_has_no_clause() -> None:
    engine_full = (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cipulse/callback_subscriptions', "
        "'{replica}', version) ORDER BY callback_id SETTINGS index_granularity = 8192"
    )

    assert ttl_clause(engine_full) is None
