"""Redelivery and reordering never change what a reader sees.

Merges are stopped in every test here, so each insert stays its own part and the duplicates are
physically present (checked with a raw count): what removes them is FINAL in the queries, not a
lucky background merge.
"""

from __future__ import annotations

from datetime import timedelta

from clickhouse_connect.driver import Client

from sinks.queries import (
    build_history,
    build_result,
    count_build_events,
    count_build_results,
    pipeline_stats,
    project_stats,
)
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, active_parts, event_row, raw_count, result_row, stop_merges

NOW = T0 + timedelta(hours=1)


def test_redelivered_batch_in_a_separate_insert_is_counted_once_everywhere(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    stop_merges(ch_client, migrated)
    events = [event_row(seq=seq) for seq in (1, 2, 3)]
    results = [result_row("b-1", version=3), result_row("b-2", version=5, status="FAILED")]

    writer.write(events, results)
    writer.write(events, results)

    assert active_parts(ch_client, migrated, "build_events") == 2
    assert raw_count(ch_client, migrated, "build_events") == 6
    assert raw_count(ch_client, migrated, "build_results") == 4
    assert [row.seq for row in build_history(ch_client, migrated, "b-1")] == [1, 2, 3]
    assert count_build_events(ch_client, migrated) == 3
    assert count_build_events(ch_client, migrated, "b-1") == 3
    assert count_build_results(ch_client, migrated) == 2
    assert build_result(ch_client, migrated, "b-1") == results[0]
    (stats,) = pipeline_stats(ch_client, migrated, window=timedelta(days=1), now=NOW)
    assert (stats.finished, stats.succeeded, stats.failed) == (2, 1, 1)
    (per_project,) = project_stats(ch_client, migrated, window=timedelta(days=1), now=NOW)
    assert per_project.finished == 2


def test_same_event_redelivered_in_many_inserts_keeps_one_history_entry(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    stop_merges(ch_client, migrated)
    for _ in range(5):
        writer.write([event_row(seq=7)], [])

    assert raw_count(ch_client, migrated, "build_events") == 5
    assert [row.seq for row in build_history(ch_client, migrated, "b-1")] == [7]


def test_older_version_written_after_newer_one_does_not_win(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    stop_merges(ch_client, migrated)
    newer = result_row(version=9, status="FAILED", error_reason="tests failed")
    older = result_row(version=4, status="RUNNING", is_final=False, finished_at=None,
                       duration_ms=None)

    writer.write([], [newer])
    writer.write([], [older])

    assert raw_count(ch_client, migrated, "build_results") == 2
    assert build_result(ch_client, migrated, "b-1") == newer
    (stats,) = pipeline_stats(ch_client, migrated, window=timedelta(days=1), now=NOW)
    assert (stats.finished, stats.failed, stats.succeeded) == (1, 1, 0)


def test_stats_filter_the_latest_version_not_a_superseded_one(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    # Version 1 failed inside the window; version 2 (a retry of the same build) finished after
    # `now`. The build's current state is outside the window, so nothing is counted; filtering
    # before deduplication would count the stale failure.
    stop_merges(ch_client, migrated)
    minutes = timedelta(minutes=5)
    writer.write([], [result_row(version=1, status="FAILED", finished_at=NOW - minutes)])
    writer.write([], [result_row(version=2, status="SUCCEEDED", finished_at=NOW + minutes)])

    assert pipeline_stats(ch_client, migrated, window=timedelta(hours=1), now=NOW) == []


def test_history_deduplicates_before_applying_the_limit(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    stop_merges(ch_client, migrated)
    events = [event_row(seq=seq) for seq in range(1, 6)]
    writer.write(events, [])
    writer.write(events, [])

    assert [row.seq for row in build_history(ch_client, migrated, "b-1", limit=3)] == [1, 2, 3]
