"""Pipeline and project stats: the math, the window's edges and the filters, on known data."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.exceptions import SinkError
from sinks.queries import PipelineStats, ProjectStats, pipeline_stats, project_stats
from sinks.rows import BuildResultRow
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, result_row

NOW = T0 + timedelta(hours=1)
HOUR = timedelta(hours=1)


def linear_percentile(values: list[int], level: float) -> float:
    """numpy's default ('linear') percentile, the definition the stats promise."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * level
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _finished(i: int, **changes: Any) -> BuildResultRow:
    """A build finished inside the last hour before NOW, with a unique id."""
    finished_at = NOW - timedelta(minutes=i % 50 + 1)
    return result_row(f"b-{uuid.uuid4().hex[:8]}-{i}", finished_at=finished_at, **changes)


def test_success_rate_counts_canceled_as_not_success_and_ignores_skipped(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    statuses = ["SUCCEEDED"] * 6 + ["FAILED"] * 2 + ["CANCELED"] * 2 + ["SKIPPED"]
    writer.write([], [_finished(i, status=s) for i, s in enumerate(statuses)])

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)

    assert (stats.finished, stats.succeeded, stats.failed, stats.canceled) == (11, 6, 2, 2)
    assert stats.success_rate == pytest.approx(0.6)


def test_duration_percentiles_interpolate_between_exact_values(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    durations = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    writer.write(
        [], [_finished(i, duration_ms=d, queue_ms=d // 10) for i, d in enumerate(durations)]
    )

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)

    assert stats.duration_p50_ms == pytest.approx(550.0)
    assert stats.duration_p95_ms == pytest.approx(955.0)
    assert stats.duration_p99_ms == pytest.approx(991.0)
    assert stats.mean_queue_ms == pytest.approx(55.0)


def test_builds_without_duration_or_queue_time_are_left_out_of_those_metrics(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write(
        [],
        [
            _finished(1, duration_ms=1000, queue_ms=None),
            _finished(2, duration_ms=None, queue_ms=40),
        ],
    )

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)

    assert stats.finished == 2
    assert stats.duration_p50_ms == stats.duration_p99_ms == 1000.0
    assert stats.mean_queue_ms == 40.0


def test_metrics_are_none_when_there_is_nothing_to_compute_them_from(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write([], [_finished(1, status="SKIPPED", duration_ms=None, queue_ms=None)])

    assert pipeline_stats(ch_client, migrated, window=HOUR, now=NOW) == [
        PipelineStats(
            project="payments", pipeline="deploy", finished=1, succeeded=0, failed=0, canceled=0,
            success_rate=None, duration_p50_ms=None, duration_p95_ms=None,
            duration_p99_ms=None, mean_queue_ms=None,
        )
    ]


def test_window_includes_both_edges_and_nothing_beyond_them(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    ms = timedelta(milliseconds=1)
    start = NOW - HOUR
    writer.write(
        [],
        [
            result_row("at-start", finished_at=start),
            result_row("at-now", finished_at=NOW),
            result_row("before-start", finished_at=start - ms),
            result_row("after-now", finished_at=NOW + ms),
        ],
    )

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)
    assert stats.finished == 2
    # `now` is truncated to the millisecond, so sub-millisecond noise does not move the edges.
    noisy_now = NOW + timedelta(microseconds=999)
    (same,) = pipeline_stats(ch_client, migrated, window=HOUR, now=noisy_now)
    assert same.finished == 2


def test_unfinished_builds_are_not_counted(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    writer.write(
        [],
        [
            result_row(
                "running", status="RUNNING", is_final=False, finished_at=None, duration_ms=None
            ),
            result_row("done", finished_at=NOW - timedelta(minutes=1)),
        ],
    )

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)
    assert stats.finished == 1


def _three_pipelines(writer: BuildSinkWriter) -> None:
    finished_at = NOW - timedelta(minutes=1)
    writer.write(
        [],
        [
            result_row(
                "p1", project="web", pipeline="lint", finished_at=finished_at, duration_ms=10
            ),
            result_row("p2", project="payments", pipeline="test", status="FAILED",
                       finished_at=finished_at, duration_ms=30),
            result_row("p3", project="payments", pipeline="deploy", finished_at=finished_at,
                       duration_ms=20),
            result_row("p4", project="payments", pipeline="deploy", finished_at=finished_at,
                       duration_ms=40),
        ],
    )


def test_pipeline_stats_are_grouped_and_ordered_by_project_then_pipeline(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    _three_pipelines(writer)

    stats = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW)

    assert [(s.project, s.pipeline, s.finished) for s in stats] == [
        ("payments", "deploy", 2),
        ("payments", "test", 1),
        ("web", "lint", 1),
    ]


def test_project_and_pipeline_filters_narrow_the_result(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    _three_pipelines(writer)

    by_project = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW, project="payments")
    by_pipeline = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW, pipeline="deploy")
    both = pipeline_stats(
        ch_client, migrated, window=HOUR, now=NOW, project="web", pipeline="deploy"
    )

    assert [(s.project, s.pipeline) for s in by_project] == [
        ("payments", "deploy"),
        ("payments", "test"),
    ]
    assert [(s.project, s.pipeline) for s in by_pipeline] == [("payments", "deploy")]
    assert both == []


def test_project_stats_pool_all_pipelines_of_a_project(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    _three_pipelines(writer)

    stats = project_stats(ch_client, migrated, window=HOUR, now=NOW)
    only_web = project_stats(ch_client, migrated, window=HOUR, now=NOW, project="web")

    assert [s.project for s in stats] == ["payments", "web"]
    payments = stats[0]
    assert isinstance(payments, ProjectStats)
    assert (payments.finished, payments.succeeded, payments.failed) == (3, 2, 1)
    assert payments.success_rate == pytest.approx(2 / 3)
    assert payments.duration_p50_ms == pytest.approx(30.0)
    assert [s.project for s in only_web] == ["web"]


def test_filter_values_are_bound_not_spliced_into_sql(
    ch_client: Client, migrated: str, writer: BuildSinkWriter
) -> None:
    _three_pipelines(writer)

    hostile = "payments' OR 1=1 --"

    assert pipeline_stats(ch_client, migrated, window=HOUR, now=NOW, project=hostile) == []


def test_naive_now_and_empty_window_are_rejected(ch_client: Client, migrated: str) -> None:
    with pytest.raises(SinkError, match="timezone-aware"):
        pipeline_stats(ch_client, migrated, window=HOUR, now=NOW.replace(tzinfo=None))
    with pytest.raises(SinkError, match="positive"):
        pipeline_stats(ch_client, migrated, window=timedelta(0), now=NOW)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(durations=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60))
def test_percentiles_match_linear_interpolation_for_any_durations(
    ch_client: Client, migrated: str, writer: BuildSinkWriter, durations: list[int]
) -> None:
    pipeline = f"prop-{uuid.uuid4().hex[:12]}"
    writer.write(
        [], [_finished(i, pipeline=pipeline, duration_ms=d) for i, d in enumerate(durations)]
    )

    (stats,) = pipeline_stats(ch_client, migrated, window=HOUR, now=NOW, pipeline=pipeline)

    assert stats.finished == len(durations)
    assert stats.duration_p50_ms == pytest.approx(linear_percentile(durations, 0.5))
    assert stats.duration_p95_ms == pytest.approx(linear_percentile(durations, 0.95))
    assert stats.duration_p99_ms == pytest.approx(linear_percentile(durations, 0.99))
