"""The lean Monitor and the producer buffer's cached setting keep what cipulse and Faust read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.faust_monitor import LeanMonitor
from streams.faust_patches import CipulseApp
from streams.faust_producer import QuickSizeProducer, QuickSizeProducerBuffer

TP0 = TP("events", 0)


def new_app() -> Any:
    return CipulseApp("lean-test", broker="kafka://localhost:9092", store="memory://", autodiscover=False)


def test_the_app_s_monitor_is_lean_unless_another_is_given() -> None:
    assert isinstance(new_app().monitor, LeanMonitor)

    class Other(LeanMonitor):
        pass

    app = CipulseApp("lean-test-2", store="memory://", autodiscover=False, Monitor=Other)
    assert type(app.monitor) is Other


def test_per_record_hooks_keep_no_statistics_but_the_stream_inbound_time() -> None:
    monitor = new_app().monitor
    message = SimpleNamespace(time_in=None)
    monitor.on_message_in(TP0, 5, message)
    state = monitor.on_stream_event_in(TP0, 5, SimpleNamespace(task_owner=None), SimpleNamespace())
    monitor.on_stream_event_out(TP0, 5, SimpleNamespace(), SimpleNamespace(), state)
    monitor.on_message_out(TP0, 5, message)
    assert monitor.messages_received_total == 0 and monitor.events_total == 0
    assert message.time_in is None
    assert TP0 in monitor.stream_inbound_time  # the aiokafka driver's stalled-stream check reads it


def test_committed_and_end_offsets_for_the_lag_gauge_are_still_tracked() -> None:
    monitor = new_app().monitor
    monitor.on_tp_commit({TP0: 41})
    monitor.track_tp_end_offset(TP0, 100)
    assert monitor._tp_committed_offsets_dict() == {"events": {0: 41}}
    assert monitor._tp_end_offsets_dict() == {"events": {0: 100}}


def test_the_producer_buffer_counts_pending_messages_and_reads_the_setting_once() -> None:
    async def scenario() -> tuple[int, int, int]:
        app = new_app()
        producer = app.producer
        assert isinstance(producer, QuickSizeProducer)
        buffer = producer.buffer
        assert isinstance(buffer, QuickSizeProducerBuffer)
        empty = buffer.size
        buffer.pending.put_nowait("a")
        buffer.pending.put_nowait("b")
        reads = 0
        original = type(app.conf).producer_threaded

        class Counting:
            def __get__(self, obj: Any, owner: Any) -> Any:
                nonlocal reads
                reads += 1
                return original.__get__(obj, owner)

        type(app.conf).producer_threaded = Counting()  # type: ignore[assignment]
        try:
            sizes = [buffer.size for _ in range(3)]
        finally:
            type(app.conf).producer_threaded = original  # type: ignore[assignment]
        return empty, sizes[-1], reads

    empty, two, reads = asyncio.run(scenario())
    assert (empty, two) == (0, 2)
    assert reads == 0  # read once, by the first `size` above, before counting began
