"""Versioned DDL, applied idempotently at start-up and recorded in `schema_migrations`.

Migrations are the files `sinks/ddl/NNNN_<name>.sql`, applied in version order. Each file may
hold several statements separated by `;` at the end of a line, and may use the placeholders
`{database}`, `{raw_retention_days}`, `{results_retention_days}` and `{context_retention_days}`.

Rules for migration authors, because they are what make a start-up safe to repeat:
- Never edit an applied file: its checksum (of the file text, before placeholders are filled)
  is recorded, and a change is a `MigrationError`. Add a new file instead.
- Write every statement so running it twice is harmless (`CREATE ... IF NOT EXISTS`,
  `ADD COLUMN IF NOT EXISTS`). A migration is recorded only after all its statements ran, so a
  crash in between re-runs the whole file on the next start; and two processes starting at once
  (server mode) may both run it, after which `schema_migrations` holds the version once, because
  it is a ReplacingMergeTree keyed by version and read with FINAL.

With `cluster` set (`CIPULSE_CLICKHOUSE_CLUSTER`, server DSNs only), every statement, the
`CREATE DATABASE` and the `schema_migrations` table included, is rewritten by
`sinks.cluster_ddl.replicate_statement` after its placeholders are filled: `ON CLUSTER '<c>'`
and `Replicated...MergeTree('/clickhouse/tables/{shard}/<db>/<table>', '{replica}', ...)`.
The files and their checksums are the same in both modes; what a mode changes is only the SQL
sent. Before any DDL runs, the cluster mode checks that the server knows the cluster and the
`{shard}`/`{replica}` macros and that the database holds no table created without the option.

Retention values are parameters, not part of the checksum: changing them for an existing
table is not done here (the table keeps the TTL it was created with). An operator changes a
live table's retention with `ALTER TABLE ... MODIFY TTL`; code that depends on a retention
(the retry limit) reads it back from the table (`sinks.retention`) instead of from here.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.cluster_ddl import checked_cluster, replicate_statement, replicate_statements
from sinks.exceptions import MigrationError
from sinks.identifiers import checked_identifier

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
DEFAULT_RAW_RETENTION_DAYS = 30
DEFAULT_RESULTS_RETENTION_DAYS = 400
DEFAULT_CONTEXT_RETENTION_DAYS = 28

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


@dataclass(frozen=True, slots=True)
class Migration:
    """One DDL file: its version, name, file name, raw text and that text's checksum."""

    version: int
    name: str
    file_name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def statements(self, parameters: dict[str, str]) -> list[str]:
        """The file's statements with placeholders filled; comment-only chunks are dropped."""
        rendered = _render(self.sql, parameters, self.file_name)
        chunks = (chunk.strip() for chunk in _STATEMENT_END.split(rendered))
        return [chunk for chunk in chunks if _has_code(chunk)]


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of `schema_migrations`."""

    version: int
    name: str
    checksum: str


def load_migrations() -> list[Migration]:
    """The migration files shipped in the `sinks/ddl/` package data, in version order."""
    found: list[Migration] = []
    for entry in resources.files("sinks").joinpath("ddl").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r} is misnamed: use NNNN_lower_snake_name.sql"
            )
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                file_name=entry.name,
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda migration: migration.version)
    for before, after in zip(found, found[1:]):
        if before.version == after.version:
            raise MigrationError(
                f"migration files {before.file_name!r} and {after.file_name!r} share version "
                f"{before.version}: renumber one of them"
            )
    return found


def apply_migrations(
    client: Client,
    database: str,
    *,
    raw_retention_days: int = DEFAULT_RAW_RETENTION_DAYS,
    results_retention_days: int = DEFAULT_RESULTS_RETENTION_DAYS,
    context_retention_days: int = DEFAULT_CONTEXT_RETENTION_DAYS,
    migrations: list[Migration] | None = None,
    cluster: str | None = None,
) -> list[Migration]:
    """Bring `database` up to the shipped DDL; return the migrations applied by this call.

    Runs at every start-up before the first write. Verifies every already-applied migration
    against its file first, so a tampered history stops the process before it touches data.
    `migrations` overrides the shipped files (tests use it to simulate an edited file).
    `context_retention_days` is the TTL `build_context` is created with: how long a build can
    be retried with its original variables. `cluster` names the ClickHouse cluster to create
    replicated tables on (see the module docstring); None keeps the single-node DDL.
    """
    database = checked_identifier(database)
    if cluster is not None:
        cluster = checked_cluster(cluster)
    parameters = {
        "database": database,
        "raw_retention_days": str(_positive_days(raw_retention_days, "raw_retention_days")),
        "results_retention_days": str(
            _positive_days(results_retention_days, "results_retention_days")
        ),
        "context_retention_days": str(
            _positive_days(context_retention_days, "context_retention_days")
        ),
    }
    wanted = sorted(
        load_migrations() if migrations is None else migrations, key=lambda m: m.version
    )
    if cluster is not None:
        _check_cluster(client, cluster)
        logger.info(
            "migrating database %s with replicated tables ON CLUSTER %s", database, cluster
        )
    _execute(
        client,
        _for_cluster(f"CREATE DATABASE IF NOT EXISTS {database}", cluster, "database creation"),
        "database creation",
    )
    if cluster is not None:
        _refuse_single_node_tables(client, database, cluster)
    _execute(
        client,
        _for_cluster(_migrations_table_ddl(database), cluster, f"{MIGRATIONS_TABLE} table"),
        f"{MIGRATIONS_TABLE} table",
    )
    applied = {row.version: row for row in applied_migrations(client, database)}

    known_versions = {migration.version for migration in wanted}
    for version in sorted(set(applied) - known_versions):
        logger.warning(
            "database %s has migration %04d_%s that this cipulse version does not ship: "
            "it is running against a newer schema",
            database,
            version,
            applied[version].name,
        )

    for migration in wanted:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded.checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.file_name} was changed after it was applied to database "
                f"{database!r} (recorded checksum {recorded.checksum[:12]}, file now "
                f"{migration.checksum[:12]}): restore the file and put the change in a new "
                "migration file"
            )

    # Every pending file is rendered (and, for a cluster, rewritten) before the first one runs,
    # so a statement that cannot be rewritten stops the start-up before any migration runs.
    pending = [
        (migration, _statements_for(migration, parameters, cluster))
        for migration in wanted
        if migration.version not in applied
    ]
    newly_applied: list[Migration] = []
    for migration, statements in pending:
        for statement in statements:
            _execute(client, statement, migration.file_name)
        _record(client, database, migration)
        logger.info("applied migration %s to database %s", migration.file_name, database)
        newly_applied.append(migration)
    return newly_applied


def applied_migrations(client: Client, database: str) -> list[AppliedMigration]:
    """The migrations recorded in `database`, in version order (one row per version)."""
    database = checked_identifier(database)
    try:
        result = client.query(
            f"SELECT version, name, checksum FROM {database}.{MIGRATIONS_TABLE} FINAL "
            "ORDER BY version"
        )
    except ClickHouseError as exc:
        raise MigrationError(
            f"cannot read {database}.{MIGRATIONS_TABLE}: {exc}. Check the ClickHouse user may "
            "read it"
        ) from exc
    return [
        AppliedMigration(version=int(version), name=str(name), checksum=str(checksum))
        for version, name, checksum in result.result_rows
    ]


def _migrations_table_ddl(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE} ("
        " version UInt32,"
        " name String,"
        " checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def _statements_for(
    migration: Migration, parameters: dict[str, str], cluster: str | None
) -> list[str]:
    statements = migration.statements(parameters)
    if cluster is None:
        return statements
    return replicate_statements(statements, cluster, migration.file_name)


def _for_cluster(statement: str, cluster: str | None, source: str) -> str:
    return statement if cluster is None else replicate_statement(statement, cluster, source)


def _check_cluster(client: Client, cluster: str) -> None:
    """Fail before any DDL when the server reached cannot run the cluster DDL."""
    try:
        nodes = client.query(
            "SELECT count() FROM system.clusters WHERE cluster = {cluster:String}",
            parameters={"cluster": cluster},
        ).result_rows[0][0]
        macros = {
            str(row[0])
            for row in client.query(
                "SELECT macro FROM system.macros WHERE macro IN ('shard', 'replica')"
            ).result_rows
        }
    except ClickHouseError as exc:
        raise MigrationError(
            f"cannot check ClickHouse cluster {cluster!r} before migrating: {exc}"
        ) from exc
    if not int(nodes):
        raise MigrationError(
            f"ClickHouse cluster {cluster!r} (CIPULSE_CLICKHOUSE_CLUSTER) is not defined on the "
            "server reached (system.clusters): check the name against the server's "
            "<remote_servers>, or unset CIPULSE_CLICKHOUSE_CLUSTER for a single node"
        )
    missing = sorted({"shard", "replica"} - macros)
    if missing:
        raise MigrationError(
            f"the ClickHouse server reached defines no {', '.join('{' + m + '}' for m in missing)} "
            f"macro (system.macros), which the replicated tables of cluster {cluster!r} use in "
            "their Keeper path and replica name: add them to the <macros> of every node"
        )


def _refuse_single_node_tables(client: Client, database: str, cluster: str) -> None:
    """Stop when `database` already holds MergeTree tables that are not replicated.

    They were created without the cluster option; `CREATE TABLE IF NOT EXISTS ... ON CLUSTER`
    would leave them as they are on this node and create replicated ones on the others.
    """
    try:
        rows = client.query(
            "SELECT name, engine FROM system.tables WHERE database = {database:String} "
            "AND engine LIKE '%MergeTree' AND engine NOT LIKE 'Replicated%' "
            "AND engine NOT LIKE 'Shared%' ORDER BY name",
            parameters={"database": database},
        ).result_rows
    except ClickHouseError as exc:
        raise MigrationError(f"cannot list the tables of database {database!r}: {exc}") from exc
    if rows:
        tables = ", ".join(f"{name} ({engine})" for name, engine in rows)
        raise MigrationError(
            f"database {database!r} already holds tables that are not replicated: {tables}. "
            f"They were created without CIPULSE_CLICKHOUSE_CLUSTER; migrating them to cluster "
            f"{cluster!r} is a manual step (README, 'ClickHouse cluster in production'), or use a "
            "new database"
        )


def _record(client: Client, database: str, migration: Migration) -> None:
    try:
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
            database=database,
        )
    except ClickHouseError as exc:
        raise MigrationError(
            f"migration {migration.file_name} ran but could not be recorded in "
            f"{database}.{MIGRATIONS_TABLE}: {exc}. It is idempotent and re-runs at next start"
        ) from exc


def _execute(client: Client, statement: str, source: str) -> None:
    try:
        client.command(statement)
    except ClickHouseError as exc:
        raise MigrationError(f"migration {source} failed: {exc}") from exc


def _render(sql: str, parameters: dict[str, str], file_name: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in parameters:
            raise MigrationError(
                f"migration {file_name} uses unknown placeholder {{{key}}}: known are "
                + ", ".join(f"{{{name}}}" for name in sorted(parameters))
            )
        return parameters[key]

    return _PLACEHOLDER.sub(substitute, sql)


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def _positive_days(days: int, name: str) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise MigrationError(f"{name} must be a positive whole number of days, got {days!r}")
    return days
