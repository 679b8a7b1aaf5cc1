"""Build retry contexts against the real engine: they round-trip field for field, redelivery
and late revisions are resolved by FINAL, failures name the table, and a build whose day
partition has expired has no context any more."""

from __future__ import annotations

from datetime import timedelta

import pytest
from clickhouse_connect.driver import Client

from sinks import BuildContextRow, BuildContextWriter
from sinks.context_queries import build_context_of
from sinks.exceptions import SinkWriteError
from sinks_context_testkit import (
    CONTEXT_TABLE,
    context_row,
    day_partitions,
    modify_ttl,
    stop_ttl_merges,
)
from sinks_testkit import T0, raw_count

RECENT = T0
OLD = T0 - timedelta(days=20)  # inside the default 28-day context retention
EXPIRED = T0 - timedelta(days=40)  # past it


@pytest.fixture
def context_writer(ch_client: Client, migrated: str) -> BuildContextWriter:
    return BuildContextWriter(ch_client, migrated)


def test_a_context_round_trips_with_its_variables_and_nullable_times(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    finished = context_row(
        "b-1",
        revision=7,
        first_seen_at=T0 + timedelta(milliseconds=123),
        started_at=T0 + timedelta(seconds=5, milliseconds=7),
        finished_at=T0 + timedelta(minutes=3),
        status="FAILED",
        variables={"DEPLOY_ENV": "prod", "MESSAGE": "tab\there, quote ' \" ü", "EMPTY": ""},
    )
    queued = context_row("b-2", started_at=None, finished_at=None, status="QUEUED", variables={})

    context_writer.write([finished, queued])

    assert build_context_of(ch_client, migrated, "b-1") == finished
    assert build_context_of(ch_client, migrated, "b-2") == queued


def test_an_unknown_build_has_no_context(ch_client: Client, migrated: str) -> None:
    assert build_context_of(ch_client, migrated, "nope") is None


def test_redelivered_context_is_read_once_and_the_newest_revision_wins(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    ch_client.command(f"SYSTEM STOP MERGES {migrated}.{CONTEXT_TABLE}")
    newest = context_row(revision=3, status="SUCCEEDED", variables={"DEPLOY_ENV": "prod"})

    context_writer.write([newest])
    context_writer.write([newest])  # redelivery after a crash before the offset commit
    context_writer.write([context_row(revision=2, status="RUNNING")])  # late, older revision

    assert raw_count(ch_client, migrated, CONTEXT_TABLE) == 3
    assert ch_client.command(f"SELECT count() FROM {migrated}.{CONTEXT_TABLE} FINAL") == 1
    assert build_context_of(ch_client, migrated, "b-1") == newest


def test_an_empty_batch_inserts_nothing(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    context_writer.write([])
    context_writer.write(())

    assert raw_count(ch_client, migrated, CONTEXT_TABLE) == 0


def test_missing_table_raises_sink_write_error_naming_it(
    ch_client: Client, database: str
) -> None:
    writer = BuildContextWriter(ch_client, database)

    with pytest.raises(SinkWriteError, match=f"{database}.{CONTEXT_TABLE}") as raised:
        writer.write([context_row()])

    assert raised.value.table == f"{database}.{CONTEXT_TABLE}"


def test_a_value_that_does_not_fit_its_column_raises_sink_write_error(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    broken = context_row()
    object.__setattr__(broken, "revision", 2**64)  # around the row's own check

    with pytest.raises(SinkWriteError, match=CONTEXT_TABLE):
        context_writer.write([broken])

    assert raw_count(ch_client, migrated, CONTEXT_TABLE) == 0


def test_a_build_whose_partition_expired_after_a_shorter_ttl_has_no_context(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    """Shortening the retention removes old builds' contexts at once.

    Measured on chDB 4.4.0 (engine 26.9): `ALTER TABLE ... MODIFY TTL` materialises the new TTL
    on existing parts before it returns (`materialize_ttl_after_modify = 1`, and
    `mutations_sync = 1` is this engine's default). The 20-day-old partition, inside the 28-day
    retention it was written under, is past the new 3-day one and is dropped whole
    (`ttl_only_drop_parts`); the recent build stays.
    """
    old = context_row("b-old", first_seen_at=OLD)
    recent = context_row("b-recent", first_seen_at=RECENT)
    context_writer.write([old, recent])
    assert build_context_of(ch_client, migrated, "b-old") == old

    modify_ttl(ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 3 DAY")

    assert build_context_of(ch_client, migrated, "b-old") is None
    assert build_context_of(ch_client, migrated, "b-recent") == recent
    assert day_partitions(ch_client, migrated) == [RECENT.strftime("%Y%m%d")]


def test_a_row_already_past_its_ttl_is_written_and_dropped_when_the_ttl_is_applied(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    """When does an expired row go? Not at insert time, at the next TTL merge.

    Measured on chDB 4.4.0 (engine 26.9): the insert writes a row that is already 40 days past
    its first event (28-day TTL) like any other; a background TTL merge then drops its part
    10-25 ms later, often before the next query could see it. So the test stops TTL merges
    (`SYSTEM STOP TTL MERGES`), sees the row stored, and applies the TTL itself with
    `ALTER TABLE ... MATERIALIZE TTL` (a mutation, synchronous here, and it runs even while TTL
    merges are stopped). `OPTIMIZE TABLE ... FINAL` would not do here: with TTL merges stopped
    it merges the parts but keeps the expired rows (it applies the TTL once they are started
    again). `ALTER TABLE ... DROP PARTITION` removes a day regardless of TTL (next test).
    """
    stop_ttl_merges(ch_client, migrated)
    expired = context_row("b-expired", first_seen_at=EXPIRED)
    recent = context_row("b-recent", first_seen_at=RECENT)
    context_writer.write([expired, recent])
    assert build_context_of(ch_client, migrated, "b-expired") == expired

    ch_client.command(
        f"ALTER TABLE {migrated}.{CONTEXT_TABLE} MATERIALIZE TTL", settings={"mutations_sync": 1}
    )

    assert build_context_of(ch_client, migrated, "b-expired") is None
    assert build_context_of(ch_client, migrated, "b-recent") == recent


def test_a_dropped_day_partition_takes_its_builds_contexts_with_it(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    context_writer.write([context_row("b-old", first_seen_at=OLD), context_row("b-recent")])

    ch_client.command(
        f"ALTER TABLE {migrated}.{CONTEXT_TABLE} DROP PARTITION ID '{OLD.strftime('%Y%m%d')}'"
    )

    assert build_context_of(ch_client, migrated, "b-old") is None
    assert build_context_of(ch_client, migrated, "b-recent") is not None


def test_every_revision_of_a_build_stays_in_its_first_seen_partition(
    ch_client: Client, migrated: str, context_writer: BuildContextWriter
) -> None:
    revisions: list[BuildContextRow] = [
        context_row(revision=r, status=s)
        for r, s in ((1, "QUEUED"), (2, "RUNNING"), (3, "SUCCEEDED"))
    ]

    context_writer.write(revisions)

    assert day_partitions(ch_client, migrated) == [T0.strftime("%Y%m%d")]
    assert build_context_of(ch_client, migrated, "b-1") == revisions[-1]
