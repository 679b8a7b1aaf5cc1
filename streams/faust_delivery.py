"""A Faust consumer that fetches again as soon as a stream drains, not a second later.

Checked against faust-streaming 0.15.3 (``Consumer._wait_next_records``).

Why: a stream whose queue passes 80 % of ``stream_buffer_maxsize`` takes its partition out of
the fetch until the queue drains to 40 %. When every partition is out, the stock fetch loop
sleeps a flat second, however soon the streams drain: with a backlog the worker idled about
half of the time (`benchmarks/faust_ceiling.py`, a no-op agent: 8k events/s on 9 CPU-seconds
per 24 s; a trace of the fetch loop showed one-second gaps between fetches). Here the loop
waits for a partition to come back, at most that second.

Tried and withdrawn: delivering each record to the conductor inline instead of through
``wait_first`` (four Tasks and three loop turns per record, ~30 % of a no-op agent's CPU).
It broke the kill -9 + restart test (`test_worker_killed_mid_stream...`, 6 failures in 11
runs, 0 in 9 without it): after the restart, records fetched again from the committed offsets
fell below the drain loop's read offset and were dropped ("DROPPED MESSAGE ROFF", seen only
with ``DEVLOG=1``). A fix needs a guard keyed to when each fetch was issued; see issue 8's notes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

NO_ACTIVE_PARTITION_WAIT_SECONDS = 1.0
"""Longest wait for a partition to rejoin the fetch when all are out (stock: a flat sleep of it)."""


class PromptDeliveryConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer whose fetch loop resumes as soon as a stream drains a partition back in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partition_rejoined = asyncio.Event()

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._partition_rejoined.set()

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, set[TP] | None]:
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
        try:
            self.not_waiting_next_records.set()
            client_only = self.app.client_only
            active_partitions = None if client_only else self._get_active_partitions()
            records: RecordMap = {}
            if client_only or active_partitions:
                records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
            else:
                # every partition is out of the fetch (streams' queues full, or none assigned):
                # wait until a stream drains one, not a flat second
                self._partition_rejoined.clear()
                await self.wait(self._partition_rejoined, timeout=NO_ACTIVE_PARTITION_WAIT_SECONDS)  # type: ignore[arg-type]
            return records, active_partitions
        finally:
            self.not_waiting_next_records.set()
