"""Dedup keys are stable and distinguish what matters; every notification-log implementation keeps
the first acknowledged send and lets the sender drop what was already sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.batch_states import BatchStates
from streams.notify_dedup import InMemoryNotificationLog, NotificationLog, SentRecord, dedup_key, unsent
from streams.notify_log_table import TableNotificationLog, dump_sent, load_sent

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
N = NotificationTransition

class _Event:
    """Stands in for the Faust event whose partition a staged write goes to."""


def table_log() -> TableNotificationLog:
    """The worker's log over a dict in place of the Faust table (staged and committed alike)."""
    log = TableNotificationLog(BatchStates({}, load_sent, dump_sent))  # type: ignore[arg-type]
    log.current = _Event()  # type: ignore[assignment]
    return log


LOG_IMPLEMENTATIONS: list[Callable[[], NotificationLog]] = [InMemoryNotificationLog, table_log]


@pytest.fixture(params=LOG_IMPLEMENTATIONS, ids=lambda factory: getattr(factory, "__name__", str(factory)))
def log(request: pytest.FixtureRequest) -> NotificationLog:
    factory: Callable[[], NotificationLog] = request.param
    return factory()


def test_the_key_is_a_fixed_sha256_of_the_canonical_tuple() -> None:
    key = dedup_key("oncall", "BUILD", "b1", N.FAILED, 7)
    assert key == dedup_key("oncall", "BUILD", "b1", N.FAILED, 7)
    assert len(key) == 64 and int(key, 16) >= 0
    # pinned: a change of the key format would re-send everything already logged
    assert key == "096a7e33048340516378caf47560046f6074f691dcd2fb0724b0e0e9a497b144"


components = st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.sampled_from(list(N)),
                       st.integers(min_value=0, max_value=2**63 - 1))


@given(components, components)
def test_different_tuples_never_share_a_key(a: tuple[str, str, str, N, int], b: tuple[str, str, str, N, int]) -> None:
    assert (dedup_key(*a) == dedup_key(*b)) == (a == b)


def test_field_boundaries_cannot_be_shifted_into_a_collision() -> None:
    assert dedup_key("a|b", "c", "d", N.FAILED, 1) != dedup_key("a", "b|c", "d", N.FAILED, 1)
    assert dedup_key("a", "BUILD", "b1", N.FAILED, 1) != dedup_key("a", "BUILD", "b1", N.FAILED, 2)


def test_a_recorded_send_is_remembered_and_the_first_record_wins(log: NotificationLog) -> None:
    assert not log.was_sent("k")
    assert log.get("k") is None
    log.record_sent("k", T0, attempt=3)
    log.record_sent("k", T0 + timedelta(minutes=1), attempt=1)  # re-send after a crash before logging
    assert log.was_sent("k")
    assert log.get("k") == SentRecord(key="k", sent_at=T0, attempt=3)


def test_forgetting_drops_only_records_older_than_the_cutoff() -> None:
    log = InMemoryNotificationLog()
    log.record_sent("old", T0, attempt=1)
    log.record_sent("new", T0 + timedelta(days=8), attempt=1)
    assert log.forget_sent_before(T0 + timedelta(days=7)) == 1
    assert not log.was_sent("old") and log.was_sent("new")


def request(key: str) -> NotificationRequest:
    return NotificationRequest(
        notification_id=key, subscription_id="s", subject_kind="BUILD", subject_id="b1", project="p",
        transition=N.FAILED, status="FAILED", version=1, channel=NotificationChannel.LOG, title="t", body="",
        created_at=T0,
    )


def test_unsent_drops_acknowledged_and_repeated_notifications_keeping_order(log: NotificationLog) -> None:
    log.record_sent("b", T0, attempt=1)
    remaining = unsent([request("a"), request("b"), request("c"), request("a")], log)
    assert [r.notification_id for r in remaining] == ["a", "c"]


def test_a_send_that_was_never_acknowledged_is_still_unsent(log: NotificationLog) -> None:
    """The log is written after the 2xx only: a failed attempt leaves the notification to retry."""
    pending = [request("a")]
    assert unsent(pending, log) == pending
    log.record_sent("a", T0, attempt=2)
    assert unsent(pending, log) == []


def test_a_sent_record_round_trips_through_json() -> None:
    record = SentRecord(key="k", sent_at=T0, attempt=2)
    assert SentRecord.model_validate_json(record.model_dump_json()) == record


def test_the_table_log_reaches_the_table_only_on_commit_and_reads_it_back() -> None:
    table: dict[bytes, bytes] = {}
    states = BatchStates(table, load_sent, dump_sent)  # type: ignore[arg-type]
    log = TableNotificationLog(states)
    with pytest.raises(RuntimeError, match="current event"):
        log.record_sent("k", T0, attempt=1)
    log.current = _Event()  # type: ignore[assignment]
    log.record_sent("k", T0, attempt=2)
    assert log.was_sent("k") and table == {}
    states.commit()
    assert load_sent(table[b"k"]) == SentRecord(key="k", sent_at=T0, attempt=2)
    fresh = TableNotificationLog(BatchStates(table, load_sent, dump_sent))  # type: ignore[arg-type]
    assert fresh.was_sent("k") and not fresh.was_sent("other")
