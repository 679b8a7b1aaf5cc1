"""DSN parsing and redaction: a bad DSN fails at start-up with the fix, and passwords never
reach a log line."""

from __future__ import annotations

import pytest

from sinks.connection import parse_dsn, redact_dsn
from sinks.exceptions import SinkError
from sinks.identifiers import checked_identifier


def test_memory_dsn_is_embedded_without_a_path() -> None:
    target = parse_dsn("chdb://memory")

    assert (target.embedded, target.embedded_path) == (True, None)


def test_absolute_path_dsn_is_embedded_with_that_path() -> None:
    target = parse_dsn("chdb:///var/lib/cipulse/chdb")

    assert (target.embedded, target.embedded_path) == (True, "/var/lib/cipulse/chdb")


@pytest.mark.parametrize("dsn", ["chdb://data/chdb", "chdb://", "chdb:///", "chdb:relative"])
def test_embedded_dsn_without_absolute_path_is_rejected_with_the_two_valid_forms(dsn: str) -> None:
    with pytest.raises(SinkError, match=r"chdb://memory nor chdb:///absolute/path"):
        parse_dsn(dsn)


def test_embedded_dsn_options_are_rejected() -> None:
    with pytest.raises(SinkError, match="remove them"):
        parse_dsn("chdb:///data/chdb?mode=ro")


@pytest.mark.parametrize(
    "dsn", ["http://default:@localhost:8123", "https://u:p@ch.example.internal:8443", "http://ch"]
)
def test_server_dsns_are_accepted(dsn: str) -> None:
    assert parse_dsn(dsn).embedded is False


def test_server_dsn_with_a_database_path_is_rejected_without_leaking_the_password() -> None:
    with pytest.raises(SinkError, match="database is a separate setting") as raised:
        parse_dsn("http://u:hunter2@localhost:8123/analytics")

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("dsn", ["clickhouse://localhost:9000", "localhost:8123", ""])
def test_unsupported_scheme_lists_the_supported_forms(dsn: str) -> None:
    with pytest.raises(SinkError, match=r"chdb:///absolute/path, chdb://memory or http\(s\)://"):
        parse_dsn(dsn)


def test_redaction_hides_only_the_password() -> None:
    redacted = redact_dsn("https://cipulse:s3cret@ch.internal:8443")

    assert redacted == "https://cipulse:***@ch.internal:8443"
    assert redact_dsn("http://ch.internal:8123") == "http://ch.internal:8123"
    assert redact_dsn("chdb:///data") == "chdb:///data"


@pytest.mark.parametrize("name", ["cipulse", "_tmp", "ci_2026"])
def test_plain_identifiers_pass(name: str) -> None:
    assert checked_identifier(name) == name


@pytest.mark.parametrize(
    "name", ["", "1st", "ci-pulse", "db; DROP TABLE x", "a.b", "`x`", "x" * 129]
)
def test_identifiers_that_would_need_quoting_are_rejected(name: str) -> None:
    with pytest.raises(SinkError, match="letters, digits and underscores"):
        checked_identifier(name)
