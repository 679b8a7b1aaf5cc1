"""The detection timer's due index hands out each due audit once, at its latest deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.audit_due_index import DueIndex

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def test_only_due_audits_are_returned_and_only_once() -> None:
    index = DueIndex()
    index.schedule("a", T0 + timedelta(seconds=1))
    index.schedule("b", T0 + timedelta(seconds=5))
    assert index.pop_due(T0) == []
    assert index.pop_due(T0 + timedelta(seconds=1)) == ["a"]
    assert index.pop_due(T0 + timedelta(seconds=2)) == []
    assert index.pop_due(T0 + timedelta(seconds=9)) == ["b"]
    assert len(index) == 0


def test_rescheduling_replaces_the_earlier_deadline_and_none_removes() -> None:
    index = DueIndex()
    index.schedule("a", T0 + timedelta(seconds=1))
    index.schedule("a", T0 + timedelta(seconds=10))
    assert index.pop_due(T0 + timedelta(seconds=5)) == []
    index.schedule("a", None)
    assert index.pop_due(T0 + timedelta(days=1)) == []


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.lists(st.integers(0, 100), min_size=1, max_size=4)))
def test_every_audit_comes_due_exactly_once_at_its_last_scheduled_deadline(schedules: dict[str, list[int]]) -> None:
    index = DueIndex()
    for audit_id, seconds in schedules.items():
        for second in seconds:
            index.schedule(audit_id, T0 + timedelta(seconds=second))
    seen: dict[str, int] = {}
    for second in range(0, 102):
        for audit_id in index.pop_due(T0 + timedelta(seconds=second)):
            assert audit_id not in seen
            seen[audit_id] = second
    assert seen == {audit_id: seconds[-1] for audit_id, seconds in schedules.items()}
