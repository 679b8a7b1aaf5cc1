"""The shipped migration files and how they are split and filled in, without an engine."""

from __future__ import annotations

import pytest

from sinks.exceptions import MigrationError
from sinks.migrations import Migration, load_migrations

PARAMETERS = {
    "database": "cipulse",
    "raw_retention_days": "30",
    "results_retention_days": "400",
    "context_retention_days": "28",
}


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]

    assert versions == list(range(1, len(versions) + 1))


def test_every_shipped_statement_is_idempotent_and_fully_templated() -> None:
    for migration in load_migrations():
        for statement in migration.statements(PARAMETERS):
            assert "IF NOT EXISTS" in statement, migration.file_name
            assert "{" not in statement, migration.file_name


def test_checksum_covers_the_file_text_not_the_parameters() -> None:
    (first, *_) = load_migrations()

    edited = Migration(first.version, first.name, first.file_name, first.sql + " ")

    assert edited.checksum != first.checksum
    assert len(first.checksum) == 64


def test_statements_split_on_semicolons_at_line_ends_and_drop_comment_only_chunks() -> None:
    migration = Migration(
        1, "two", "0001_two.sql",
        "-- header\nCREATE TABLE {database}.a (x String DEFAULT 'a;b') ENGINE = Memory;\n"
        "CREATE TABLE {database}.b (x UInt8) ENGINE = Memory;  \n-- trailing comment\n",
    )

    assert migration.statements(PARAMETERS) == [
        "-- header\nCREATE TABLE cipulse.a (x String DEFAULT 'a;b') ENGINE = Memory",
        "CREATE TABLE cipulse.b (x UInt8) ENGINE = Memory",
    ]


def test_unknown_placeholder_names_the_file_and_the_known_ones() -> None:
    migration = Migration(3, "typo", "0003_typo.sql", "SELECT {databse};")

    with pytest.raises(MigrationError, match=r"0003_typo.sql uses unknown placeholder \{databse\}"):
        migration.statements(PARAMETERS)
