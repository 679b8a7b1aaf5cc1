"""Framing between the worker and its ClickHouse engine process (sinks.engine_wire)."""

from __future__ import annotations

import io
import pickle
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.engine_wire import WireClosed, receive_frame, receive_message, send_message
from sinks.exceptions import SinkWriteError

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary()
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.lists(values, max_size=5))
def test_messages_come_out_in_order_and_equal(messages: list[object]) -> None:
    pipe = io.BytesIO()
    for message in messages:
        send_message(pipe, message)
    pipe.seek(0)
    assert [receive_message(pipe) for _ in messages] == messages
    with pytest.raises(WireClosed):
        receive_message(pipe)


def test_a_message_cut_short_is_a_closed_pipe_not_garbage() -> None:
    pipe = io.BytesIO()
    send_message(pipe, ("rows", [1, 2, 3]))
    whole = pipe.getvalue()
    for cut in (0, 3, 8, len(whole) - 1):
        with pytest.raises(WireClosed):
            receive_frame(io.BytesIO(whole[:cut]))


def test_a_sink_write_error_keeps_its_table_across_the_pipe() -> None:
    pipe = io.BytesIO()
    send_message(pipe, SinkWriteError("insert into build_events failed: disk full", "build_events"))
    pipe.seek(0)
    error = receive_message(pipe)
    assert isinstance(error, SinkWriteError)
    assert (str(error), error.table) == ("insert into build_events failed: disk full", "build_events")
