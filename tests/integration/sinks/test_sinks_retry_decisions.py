"""Retry decisions against the real engine: they round-trip field for field, every decision
counts (no deduplication), and the dashboard's counts per action, outcome and reason respect
the window and the project filter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from clickhouse_connect.driver import Client

from sinks import BuildContextWriter
from sinks.context_queries import RetryDecisionCount, retry_decision_counts, retry_decisions_of
from sinks.exceptions import SinkError, SinkWriteError
from sinks_context_testkit import DECISIONS_TABLE, decision_row
from sinks_testkit import T0, raw_count

NOW = T0 + timedelta(hours=2)


@pytest.fixture
def context_writer(ch_client: Client, migrated: str) -> BuildContextWriter:
    return BuildContextWriter(ch_client, migrated)


def test_decisions_round_trip_including_unknown_values(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    allowed = decision_row(decided_at=T0 + timedelta(milliseconds=5))
    retried = decision_row(
        decided_at=T0 + timedelta(seconds=1), action="retry", retry_id="b-1-retry-1"
    )
    rejected = decision_row(
        decided_at=T0 + timedelta(seconds=2),
        eligible=False,
        reason="retention_unknown",
        retention_seconds=None,
        deadline=None,
    )
    unknown = decision_row(
        "b-ghost", eligible=False, reason="unknown_build", build_started_at=None, age_seconds=0.0
    )

    context_writer.write_decisions([allowed, retried, rejected, unknown])

    assert retry_decisions_of(ch_client, migrated, "b-1") == [allowed, retried, rejected]
    assert retry_decisions_of(ch_client, migrated, "b-ghost") == [unknown]
    assert retry_decisions_of(ch_client, migrated, "nope") == []


def test_every_decision_counts_even_identical_ones(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    rejected = decision_row(eligible=False, reason="expired")

    context_writer.write_decisions([rejected])
    context_writer.write_decisions([rejected])

    assert raw_count(ch_client, migrated, DECISIONS_TABLE) == 2
    assert retry_decision_counts(ch_client, migrated, window=timedelta(days=1), now=NOW) == [
        RetryDecisionCount("check", False, "expired", decisions=2, builds=1)
    ]


def test_counts_group_by_action_outcome_and_reason_inside_the_window(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    window = timedelta(hours=6)
    context_writer.write_decisions(
        [
            decision_row("b-1"),
            decision_row("b-2"),
            decision_row("b-1", action="retry", retry_id="r-1"),
            decision_row("b-3", eligible=False, reason="expired"),
            decision_row("b-3", eligible=False, reason="expired", decided_at=NOW),  # end: in
            decision_row("b-4", eligible=False, reason="expired", decided_at=NOW - window),
            decision_row("b-5", eligible=False, reason="expired",
                         decided_at=NOW - window - timedelta(milliseconds=1)),  # before: out
            decision_row("b-6", eligible=False, reason="partition_dropped",
                         decided_at=NOW + timedelta(milliseconds=1)),  # after: out
            decision_row("b-7", project="billing", eligible=False, reason="expired"),
        ]
    )

    counts = retry_decision_counts(ch_client, migrated, window=window, now=NOW)
    payments = retry_decision_counts(
        ch_client, migrated, window=window, now=NOW, project="payments"
    )

    assert counts == [
        RetryDecisionCount("check", False, "expired", decisions=4, builds=3),
        RetryDecisionCount("check", True, "within_retention", decisions=2, builds=2),
        RetryDecisionCount("retry", True, "within_retention", decisions=1, builds=1),
    ]
    assert payments[0] == RetryDecisionCount("check", False, "expired", decisions=3, builds=2)
    assert payments[1:] == counts[1:]


def test_counts_of_an_empty_window_are_empty(ch_client: Client, migrated: str) -> None:
    assert retry_decision_counts(ch_client, migrated, window=timedelta(days=1), now=NOW) == []


def test_counts_need_an_aware_now_and_a_positive_window(
    ch_client: Client, migrated: str
) -> None:
    with pytest.raises(SinkError, match="timezone-aware"):
        retry_decision_counts(
            ch_client, migrated, window=timedelta(days=1), now=NOW.replace(tzinfo=None)
        )
    with pytest.raises(SinkError, match="positive"):
        retry_decision_counts(ch_client, migrated, window=timedelta(0), now=NOW)


def test_an_empty_batch_inserts_nothing(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    context_writer.write_decisions([])

    assert raw_count(ch_client, migrated, DECISIONS_TABLE) == 0


def test_missing_table_raises_sink_write_error_naming_it(
    ch_client: Client, database: str
) -> None:
    with pytest.raises(SinkWriteError, match=f"{database}.{DECISIONS_TABLE}") as raised:
        BuildContextWriter(ch_client, database).write_decisions([decision_row()])

    assert raised.value.table == f"{database}.{DECISIONS_TABLE}"
