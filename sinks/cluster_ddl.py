"""Rewrite migration statements for a replicated ClickHouse cluster (`CIPULSE_CLICKHOUSE_CLUSTER`).

The files in `sinks/ddl/` are written for one node: plain `MergeTree`-family engines, no
`ON CLUSTER`. With a cluster name set, `sinks.migrations` runs every statement through
`replicate_statement` after the placeholders are filled (so the checksums, which cover the file
text, are the same in both modes, and the `{shard}`/`{replica}` server macros inserted here never
meet the placeholder filling):

    CREATE TABLE [IF NOT EXISTS] db.t (...) ENGINE = ReplacingMergeTree(v) ORDER BY ...
 -> CREATE TABLE [IF NOT EXISTS] db.t ON CLUSTER 'c' (...)
    ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', v)
    ORDER BY ...

    ALTER TABLE db.t ...                      ->  ALTER TABLE db.t ON CLUSTER 'c' ...
    DROP TABLE [IF EXISTS] db.t ...           ->  DROP TABLE [IF EXISTS] db.t ON CLUSTER 'c' ...
    CREATE DATABASE [IF NOT EXISTS] db ...    ->  CREATE DATABASE ... db ON CLUSTER 'c' ...
    INSERT INTO ...                           ->  unchanged (a replicated table replicates it)

Only the table name's end and the engine (name and argument list) are touched; columns, indexes,
`PARTITION BY`, `ORDER BY`, `TTL`, `SETTINGS` and comments stay byte for byte. Comments, string
literals and anything inside parentheses are masked before keywords are searched, so a comment
that mentions `ReplacingMergeTree` or `ALTER TABLE` is not mistaken for code.

Anything this module cannot rewrite with certainty raises `MigrationError` naming the migration
file: an unknown statement kind, a table name without its database, a table without an
`ENGINE` clause, an engine outside the MergeTree family (it would not be replicated), an engine
that is already `Replicated...` or a statement that already says `ON CLUSTER`. A statement is
never passed through half-converted, so a cluster never gets a silently non-replicated table.

Everything here is text in, text out: no engine is needed to test it.
"""

from __future__ import annotations

import re

from sinks.connection import parse_dsn
from sinks.exceptions import MigrationError, SinkError
from sinks.identifiers import checked_identifier

REPLICA_PATH_TEMPLATE = "/clickhouse/tables/{{shard}}/{database}/{table}"
"""ZooKeeper/Keeper path of a replicated table; `{shard}` is a server macro, filled by each node."""
REPLICA_NAME = "{replica}"
"""Replica name of a replicated table: the server macro, filled by each node."""

MERGE_TREE_VARIANTS = (
    "",
    "Replacing",
    "Summing",
    "Aggregating",
    "Collapsing",
    "VersionedCollapsing",
    "Graphite",
    "Coalescing",
)
"""`<variant>MergeTree` engines that have a `Replicated<variant>MergeTree` form."""

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_END = r"(?![A-Za-z0-9_.])"
_QUALIFIED = rf"(?P<database>{_NAME})\s*\.\s*(?P<table>{_NAME}){_NAME_END}"
_CREATE_TABLE = re.compile(
    rf"\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}", re.IGNORECASE
)
_ALTER_TABLE = re.compile(rf"\s*ALTER\s+TABLE\s+{_QUALIFIED}", re.IGNORECASE)
_DROP_TABLE = re.compile(rf"\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_QUALIFIED}", re.IGNORECASE)
_CREATE_DATABASE = re.compile(
    rf"\s*CREATE\s+DATABASE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<database>{_NAME}){_NAME_END}",
    re.IGNORECASE,
)
_INSERT = re.compile(r"\s*INSERT\s+INTO\s", re.IGNORECASE)
_ANY_TABLE_STATEMENT = re.compile(r"\s*(?:CREATE|ALTER|DROP)\s+TABLE\b", re.IGNORECASE)
_ON_CLUSTER = re.compile(r"\bON\s+CLUSTER\b", re.IGNORECASE)
_ENGINE = re.compile(rf"\bENGINE\s*=\s*(?P<engine>{_NAME})", re.IGNORECASE)
_MERGE_TREE = re.compile(rf"^(?P<variant>{'|'.join(MERGE_TREE_VARIANTS)})MergeTree$")

_MASK = "\0"
_SUPPORTED = (
    "CREATE TABLE with a MergeTree-family engine, ALTER TABLE, DROP TABLE, CREATE DATABASE "
    "and INSERT INTO"
)


def checked_cluster(cluster: str) -> str:
    """`cluster` unchanged if it is a plain ClickHouse identifier, else SinkError."""
    return checked_identifier(cluster, "ClickHouse cluster name")


def check_cluster_dsn(dsn: str, cluster: str | None) -> str | None:
    """Refuse a cluster name with the embedded engine, at start-up; return the checked name.

    chDB has no Keeper and no `remote_servers`, so it can run neither `ON CLUSTER` nor a
    `Replicated...MergeTree` table: the combination is a configuration mistake.
    """
    if cluster is None:
        return None
    cluster = checked_cluster(cluster)
    target = parse_dsn(dsn)
    if target.embedded:
        raise SinkError(
            f"CIPULSE_CLICKHOUSE_CLUSTER={cluster!r} needs a ClickHouse server, but the DSN "
            f"{target.redacted!r} is the embedded engine (chDB), which has no Keeper and no "
            "clusters. Unset CIPULSE_CLICKHOUSE_CLUSTER, or point CIPULSE_CLICKHOUSE_DSN at a "
            "node of the cluster (http(s)://user:pass@host:port)"
        )
    return cluster


def replica_path(database: str, table: str) -> str:
    """The Keeper path of `database.table`: one replica set per shard."""
    return REPLICA_PATH_TEMPLATE.format(database=database, table=table)


def replicate_statements(statements: list[str], cluster: str, source: str) -> list[str]:
    """`replicate_statement` over every statement of one migration file."""
    return [replicate_statement(statement, cluster, source) for statement in statements]


def replicate_statement(statement: str, cluster: str, source: str) -> str:
    """One filled-in migration statement, rewritten to run `ON CLUSTER` with replicated engines.

    `source` names the migration file in errors. Raises MigrationError for a statement that
    cannot be rewritten with certainty (see the module docstring).
    """
    cluster = checked_cluster(cluster)
    code = _code_only(statement)
    on_cluster = f" ON CLUSTER '{cluster}'"
    if _INSERT.match(code):
        return statement
    if _ON_CLUSTER.search(code):
        raise MigrationError(
            f"migration {source}: statement already says ON CLUSTER; migration files are written "
            f"for one node and CIPULSE_CLICKHOUSE_CLUSTER adds it: {_excerpt(statement)}"
        )
    create = _CREATE_TABLE.match(code)
    if create is not None:
        engine_start, engine_end, engine = _replicated_engine(
            statement, code, create.end(), create["database"], create["table"], source
        )
        return (
            statement[: create.end()]
            + on_cluster
            + statement[create.end() : engine_start]
            + engine
            + statement[engine_end:]
        )
    head = _ALTER_TABLE.match(code) or _DROP_TABLE.match(code) or _CREATE_DATABASE.match(code)
    if head is not None:
        return statement[: head.end()] + on_cluster + statement[head.end() :]
    if _ANY_TABLE_STATEMENT.match(code):
        raise MigrationError(
            f"migration {source}: cannot run this statement ON CLUSTER: name the table as "
            f"{{database}}.<table> with plain identifiers: {_excerpt(statement)}"
        )
    raise MigrationError(
        f"migration {source}: cannot run this statement on a cluster (supported: {_SUPPORTED}; "
        f"extend sinks/cluster_ddl.py for more): {_excerpt(statement)}"
    )


def _replicated_engine(
    statement: str, code: str, after_name: int, database: str, table: str, source: str
) -> tuple[int, int, str]:
    """(start, end, replacement) of the ENGINE name and its argument list in `statement`."""
    top = _top_level(code)
    engines = list(_ENGINE.finditer(top, after_name))
    if len(engines) != 1:
        found = "no ENGINE clause" if not engines else f"{len(engines)} ENGINE clauses"
        raise MigrationError(
            f"migration {source}: table {database}.{table} has {found}; on a cluster every table "
            "needs exactly one explicit MergeTree-family ENGINE so it can be replicated"
        )
    match = engines[0]
    name = match["engine"]
    if name.startswith("Replicated"):
        raise MigrationError(
            f"migration {source}: table {database}.{table} already uses {name}; write the plain "
            "engine in migration files, CIPULSE_CLICKHOUSE_CLUSTER makes it replicated"
        )
    variant = _MERGE_TREE.match(name)
    if variant is None:
        raise MigrationError(
            f"migration {source}: table {database}.{table} uses engine {name}, which has no "
            "replicated form; on a cluster it would hold different rows on every node. Use a "
            f"MergeTree-family engine ({', '.join(v + 'MergeTree' for v in MERGE_TREE_VARIANTS)})"
        )
    start, end = match.start("engine"), match.end("engine")
    arguments = ""
    opening = _skip_spaces(code, end)
    if opening < len(code) and code[opening] == "(":
        closing = _matching_parenthesis(code, opening)
        if closing is None:
            raise MigrationError(
                f"migration {source}: the arguments of {name} in table {database}.{table} do "
                "not close"
            )
        arguments = statement[opening + 1 : closing].strip()
        end = closing + 1
    replicated = [f"'{replica_path(database, table)}'", f"'{REPLICA_NAME}'"]
    if arguments:
        replicated.append(arguments)
    return start, end, f"Replicated{name}({', '.join(replicated)})"


def _code_only(text: str) -> str:
    """`text` with comments blanked and the inside of quotes masked, same length and offsets.

    Comments (`-- ...`, `/* ... */`) become spaces (newlines kept); string literals and quoted
    identifiers ('...', "...", `...`) become NUL characters from quote to quote, so no keyword
    or parenthesis inside them is seen (NUL is neither a word character nor a space).
    """
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if text.startswith("--", index):
            end = text.find("\n", index)
            end = length if end < 0 else end
            out.append(" " * (end - index))
            index = end
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            end = length if end < 0 else end + 2
            out.append("".join("\n" if c == "\n" else " " for c in text[index:end]))
            index = end
        elif char in "'\"`":
            end = index + 1
            while end < length and text[end] != char:
                end += 2 if text[end] == "\\" else 1
            end = min(end + 1, length)
            out.append(_MASK * (end - index))
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _top_level(code: str) -> str:
    """`code` with everything inside parentheses (and the parentheses) masked by NUL."""
    out: list[str] = []
    depth = 0
    for char in code:
        if char == "(":
            depth += 1
            out.append(_MASK)
        elif char == ")":
            depth = max(depth - 1, 0)
            out.append(_MASK)
        else:
            out.append(_MASK if depth else char)
    return "".join(out)


def _matching_parenthesis(code: str, opening: int) -> int | None:
    depth = 0
    for index in range(opening, len(code)):
        if code[index] == "(":
            depth += 1
        elif code[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _skip_spaces(code: str, index: int) -> int:
    while index < len(code) and code[index].isspace():
        index += 1
    return index


def _excerpt(statement: str) -> str:
    code_lines = [
        line.strip()
        for line in statement.splitlines()
        if line.strip() and not line.strip().startswith("--")
    ]
    text = " ".join(code_lines)
    return text if len(text) <= 120 else text[:117] + "..."
