"""Faust's Monitor sensor without its per-record statistics.

Checked against faust-streaming 0.15.3 (``faust/sensors/monitor.py``).

Why: Faust calls its Monitor for every record in, every stream event in and out, every record
acked, every table read and write and every message sent: counters, per-stream and per-task
dictionaries, timestamps and latency deques that only Faust's own ``/stats`` web views read.
That was ~8 % of a no-op agent's CPU. cipulse exports its own Prometheus metrics
(`streams.metrics`) and reads from the Monitor only what is not per record: committed and end
offsets for the lag gauge (``on_tp_commit``, ``track_tp_end_offset``), which stay. So does the
stream inbound time, which the aiokafka driver reads to log a stalled stream.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor


class LeanMonitor(Monitor):
    """Monitor whose per-record hooks only keep what Faust itself reads (stream inbound time)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()  # the aiokafka driver's stalled-stream check

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None
