"""A Faust consumer that hands fetched records to the agents without idle turns.

Checked against faust-streaming 0.15.3 (``Consumer._drain_messages`` and ``_wait_next_records``).

Two costs of the stock consumer, measured with `benchmarks/faust_ceiling.py` (a no-op agent):

*Four Tasks per record.* The stock drain loop delivers each record with
``await self.wait_first(callback(message), self.suspend_flow.wait())``, i.e. four new Tasks
(callback, suspend flag, stopped flag, crashed flag), an ``asyncio.wait`` and three or more
event-loop turns per record: about a third of the CPU of a no-op agent. The callback (the
conductor putting the event on its channels) nearly always finishes without suspending. This
loop is the stock one except for that line: the callback runs inline
(`streams.inline_await.start_inline`), and only if it suspends (flow control suspended during a
rebalance, a full channel queue) is its rest raced against ``suspend_flow`` through
``wait_first`` exactly as before.

A first version (2026-11-26) broke the kill -9 + restart test in 6 of 11 runs: records fetched
before the recovery's seek were delivered after it and the same records fetched again were
dropped below the read offset. `streams.faust_stale_batches` (which this consumer's subclass
adds) now skips records fetched before a seek and fetches again what the recovery's queue clear
removed, whatever the delivery speed.

*A one-second sleep under backlog.* A stream whose queue passes 80 % of
``stream_buffer_maxsize`` takes its partition out of the fetch until the queue drains to 40 %.
When every partition is out, the stock fetch loop sleeps a flat second, however soon the
streams drain: with a backlog the worker idled ~half of the time (no-op agent: 8k events/s
on 9 CPU-seconds per 24 s). Here the loop waits for a partition to come back, at most that
second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING, RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service, ServiceT

from streams.inline_await import Suspended, start_inline

YIELD_EVERY_RECORDS = 100
"""Records delivered between two turns given to the other tasks (stock: 100)."""
NO_ACTIVE_PARTITION_WAIT_SECONDS = 1.0
"""Longest wait for a partition to rejoin the fetch when all are out (stock: a flat sleep of it)."""


class PromptDeliveryConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer that delivers records inline and fetches again as soon as a stream drains."""

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

    def still_deliverable(self, tp: TP) -> bool:
        """False when the record in hand was fetched before a seek moved its partition (a subclass knows)."""
        return True

    def on_stale_record(self, tp: TP, count: int = 1) -> None:
        """`count` records of `tp` that `still_deliverable` refused were skipped (a subclass counts them)."""

    async def _deliver(self, message: Message) -> None:
        finished, rest = start_inline(cast(Coroutine[Any, Any, None], self.callback(message)))
        if not finished:
            assert isinstance(rest, Suspended)
            await self.wait_first(rest.rest(), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - the consumer's fetch task
        deliver = self._deliver
        still_deliverable = self.still_deliverable
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)  # getmany may return at once again and again
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > YIELD_EVERY_RECORDS:
                            await asyncio.sleep(0)
                            since_yield = 0
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        # every await above may have let a seek move the partition: check after them
                        if not still_deliverable(tp):
                            self.on_stale_record(tp)
                            continue
                        offset = message.offset
                        read_offset = get_read_offset(tp)
                        if read_offset is None or offset >= read_offset:
                            gap = offset - (read_offset or 0)
                            if gap > 1 and read_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, read_offset + 1, offset)
                                if not still_deliverable(tp):
                                    self.on_stale_record(tp)
                                    continue
                            await deliver(message)
                            if still_deliverable(tp):  # else a seek during the delivery set the read offset
                                set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)
