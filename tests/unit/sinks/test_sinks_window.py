"""The stats window: inclusive bounds, millisecond precision, UTC, and its refusals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.exceptions import SinkError
from sinks.queries import window_bounds


def test_bounds_are_now_minus_window_and_now_in_utc() -> None:
    now = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    start, end = window_bounds(timedelta(hours=1), now)

    assert end == datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert start == datetime(2026, 5, 1, 11, 0, tzinfo=timezone.utc)
    assert end.utcoffset() == timedelta(0)


@given(
    now=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(timezone.utc),
    ),
    window=st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=400)),
)
def test_bounds_are_whole_milliseconds_and_never_after_now(
    now: datetime, window: timedelta
) -> None:
    start, end = window_bounds(window, now)

    assert end <= now < end + timedelta(milliseconds=1)
    assert start.microsecond % 1000 == 0 and end.microsecond % 1000 == 0
    assert start <= end


def test_default_now_is_the_current_time() -> None:
    _, end = window_bounds(timedelta(minutes=5))

    assert abs(datetime.now(timezone.utc) - end) < timedelta(seconds=5)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(SinkError, match="timezone-aware"):
        window_bounds(timedelta(hours=1), datetime(2026, 5, 1))


@pytest.mark.parametrize("window", [timedelta(0), timedelta(seconds=-1)])
def test_empty_or_negative_window_is_rejected(window: timedelta) -> None:
    with pytest.raises(SinkError, match="positive"):
        window_bounds(window, datetime(2026, 5, 1, tzinfo=timezone.utc))
