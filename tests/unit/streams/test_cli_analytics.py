"""`cipulse analytics`: help, list, argument parsing, output formats, and the message when the
embedded data path is owned by a running worker."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from sinks.analytics import AnalyticsResult
from sinks.analytics_catalog import CATALOG
from sinks.exceptions import ClickHouseUnavailableError
from streams.analytics_cli import format_result, parse_params
from streams.cli import main

RESULT = AnalyticsResult(
    columns=("project", "finished", "success_rate", "last_at"),
    rows=[("payments", 12, 0.75, datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)), ("web", 3, None, None)],
)


@pytest.mark.parametrize("command", [["analytics"], ["analytics", "run"]])
def test_analytics_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cipulse analytics")
    for flag in ("--window", "--project", "--param", "--format"):
        assert flag in out


def test_top_level_help_lists_analytics(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "analytics" in capsys.readouterr().out


def test_list_names_every_query(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analytics", "list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [q.name for q in CATALOG]


def test_run_without_a_name_or_with_an_unknown_one_fails_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analytics", "run"]) == 1
    assert "needs a query name" in capsys.readouterr().err
    assert main(["analytics", "run", "nope"]) == 1
    assert "no analytics query named 'nope'" in capsys.readouterr().err


def test_bad_window_and_format_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analytics", "run", "success_rate", "--window", "1y"]) == 1
    assert "window='1y' is not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analytics", "run", "success_rate", "--format", "xml"])


def test_params_are_name_value_pairs() -> None:
    assert parse_params(["deploy_pipelines=-prod$", "x=a=b"]) == {"deploy_pipelines": "-prod$", "x": "a=b"}
    with pytest.raises(Exception, match="not NAME=VALUE"):
        parse_params(["novalue"])


def test_an_owned_embedded_path_says_how_to_get_around_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def locked(dsn: str, database: str) -> None:
        raise ClickHouseUnavailableError("cannot open chdb:///x: the data path is locked by process 4242")

    monkeypatch.setattr("sinks.connection.open_client", locked)
    assert main(["analytics", "run", "success_rate"]) == 1
    err = capsys.readouterr().err
    assert "locked by process 4242" in err and "stop the worker" in err and "ClickHouse server" in err


def test_table_format_aligns_columns_and_counts_rows() -> None:
    lines = format_result(RESULT, "table").splitlines()
    assert lines[0].split() == ["project", "finished", "success_rate", "last_at"]
    assert lines[2].split() == ["payments", "12", "0.75", "2026-11-25", "12:00:00+00:00"]
    assert lines[3].split() == ["web", "3"]
    assert lines[-1] == "(2 rows)"


def test_csv_and_json_formats() -> None:
    rows = list(csv.reader(io.StringIO(format_result(RESULT, "csv"))))
    assert rows[0] == list(RESULT.columns) and rows[2] == ["web", "3", "", ""]
    records = json.loads(format_result(RESULT, "json"))
    assert records[0] == {"project": "payments", "finished": 12, "success_rate": 0.75,
                          "last_at": "2026-11-25T12:00:00+00:00"}
    assert records[1]["success_rate"] is None
