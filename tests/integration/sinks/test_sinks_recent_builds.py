"""The dashboard's first snapshot: running builds with a recent change, builds finished in the
window, each in its newest version, running first, bounded by `limit`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from clickhouse_connect.driver import Client

from sinks.exceptions import SinkError
from sinks.recent_builds import RecentScope, recent_builds
from sinks.rows import BuildResultRow
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, result_row

NOW = T0 + timedelta(hours=3)
HOUR = timedelta(hours=1)


def running(build_id: str, minutes_ago: int, version: int = 2) -> BuildResultRow:
    return result_row(
        build_id, version=version, status="RUNNING", is_final=False, finished_at=None, duration_ms=None,
        started_at=NOW - timedelta(minutes=minutes_ago), updated_at=NOW - timedelta(minutes=minutes_ago),
    )


def finished(build_id: str, minutes_ago: int, status: str = "SUCCEEDED", version: int = 3) -> BuildResultRow:
    return result_row(
        build_id, version=version, status=status, finished_at=NOW - timedelta(minutes=minutes_ago),
        updated_at=NOW - timedelta(minutes=minutes_ago), error_reason="tests failed" if status == "FAILED" else "",
    )


def test_running_first_then_finished_newest_first_each_in_its_newest_version(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write([], [running("r-old", 40), running("r-new", 5), finished("f-1", 50), running("f-2", 20, version=2)])
    writer.write([], [finished("f-2", 10, status="FAILED", version=4)])  # f-2's final version, inserted later
    writer.write([], [finished("f-ancient", 90), running("r-silent", 120)])

    found = recent_builds(ch_client, migrated, window=HOUR, now=NOW)

    assert [(b.build_id, b.status) for b in found.builds] == [
        ("r-new", "RUNNING"), ("r-old", "RUNNING"), ("f-2", "FAILED"), ("f-1", "SUCCEEDED"),
    ]
    assert found.builds[2].error_reason == "tests failed" and found.builds[2].version == 4
    assert not found.truncated


def test_scope_project_and_limit_narrow_the_snapshot(ch_client: Client, migrated: str, writer: BuildSinkWriter) -> None:
    writer.write([], [running("r-1", 5), finished("f-1", 5), finished("f-2", 6), finished("f-3", 7)])
    writer.write([], [result_row("other", project="search", version=3, finished_at=NOW - timedelta(minutes=1))])

    assert [b.build_id for b in recent_builds(ch_client, migrated, window=HOUR, now=NOW, scope=RecentScope.RUNNING).builds] == ["r-1"]
    assert [b.build_id for b in recent_builds(ch_client, migrated, window=HOUR, now=NOW, project="search").builds] == ["other"]
    limited = recent_builds(ch_client, migrated, window=HOUR, now=NOW, scope=RecentScope.FINISHED, limit=2, project="payments")
    assert [b.build_id for b in limited.builds] == ["f-1", "f-2"] and limited.truncated


def test_a_limit_outside_the_bounds_is_refused(ch_client: Client, migrated: str) -> None:
    with pytest.raises(SinkError, match="limit must be 1-1000"):
        recent_builds(ch_client, migrated, window=HOUR, now=NOW, limit=0)
