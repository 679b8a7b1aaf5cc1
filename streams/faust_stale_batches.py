"""A Faust consumer that never hands an agent a record fetched before a seek moved its partition.

Checked against faust-streaming 0.15.3 (``Consumer.getmany``/``perform_seek``/``resume_flow``,
``tables/recovery.py`` ``_resume_streams``) with aiokafka 0.14 (``TopicPartitionState``).

Why: after a kill -9 + restart, the table recovery resumes the stream partitions, then seeks them
to their committed offsets, then resumes flow control, which clears every stream queue. The drain
loop runs all along, so three things went wrong (seen in the kill test's worker logs, e.g. "offsets
from 263 on never reached an agent (acked from 437)", repaired only by the 10 s stuck-partition check):

* a batch fetched *before* the seek was still being handed out *after* it; its offsets became the
  drain loop's read offset, and the same records fetched again from the committed offset fell
  below it and were dropped as already read ("DROPPED MESSAGE ROFF", visible only with DEVLOG=1);
* records fetched *after* the seek but queued before the clear were cleared unprocessed, while the
  fetch position had moved past them;
* a partition whose stream queue had filled up was out of the fetch until that queue drained, and
  a cleared queue never drains: the partition was never fetched again (with faster delivery this
  hit most restarts: "nothing acked, end offset 925" and the kill test stuck).

So: each batch carries the aiokafka position of its partitions as they were when the fetch returned
(stamped in the consumer thread, where positions change); a record whose partition has been sought
or reset since is skipped, since the seek already set the position from which it will be fetched
again. When flow resumes (which clears the stream queues), partitions out of the fetch for a
full queue are put back, and before the next fetch every assigned partition is sought to its
committed offset (or, with none yet, to the first offset delivered), so whatever the clear
removed is fetched again (what an agent already took is processed twice, which the per-node
sequence checks make harmless).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from aiokafka import TopicPartition
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams import metrics
from streams.faust_delivery import PromptDeliveryConsumer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PositionStamp:
    """A partition's aiokafka state object and its position when a batch was fetched."""

    state: Any
    position: Optional[int]

    def still_current(self, state: Any) -> bool:
        """True while no seek, reset or new assignment moved the partition since the stamp."""
        return state is self.state and state is not None and getattr(state, "_position", None) == self.position


class StampedRecords(dict):  # type: ignore[type-arg]
    """A fetched RecordMap plus the `PositionStamp` of each of its partitions."""

    def __init__(self, records: RecordMap, stamps: Mapping[TP, PositionStamp]) -> None:
        super().__init__(records)
        self.stamps = dict(stamps)


def partition_state(aiokafka_consumer: Any, tp: TP) -> Any:
    """The consumer's `TopicPartitionState` of `tp`, or None when it is not assigned."""
    subscription = aiokafka_consumer._subscription.subscription
    if subscription is None or subscription.assignment is None:
        return None
    return subscription.assignment.state_value(tp)


def stamp_positions(aiokafka_consumer: Any, tps: Any) -> dict[TP, PositionStamp]:
    """Stamps for `tps`; call it in the consumer thread, with no await since the fetch returned."""
    stamps: dict[TP, PositionStamp] = {}
    for tp in tps:
        state = partition_state(aiokafka_consumer, tp)
        stamps[tp] = PositionStamp(state, getattr(state, "_position", None))
    return stamps


class PositionStampingThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread whose fetches return `StampedRecords`."""

    async def _fetch_records(self, consumer: Any, active_partitions: Any, timeout: Optional[float] = None,
                             max_records: Optional[int] = None) -> RecordMap:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        return StampedRecords(records, stamp_positions(consumer, records.keys()))


class StaleBatchGuardConsumer(PromptDeliveryConsumer):
    """aiokafka consumer that skips records fetched before a seek and re-seeks after a queue clear."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_stamps: dict[TP, PositionStamp] = {}
        self._reseek_after_clear = False
        self._first_uncommitted_delivery: dict[TP, int] = {}
        self._batch_consumer: Any = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return PositionStampingThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Any, timeout: float) -> RecordMap:
        records = await super()._getmany(active_partitions, timeout)
        self._batch_stamps = dict(getattr(records, "stamps", {}))
        self._batch_consumer = self._thread._consumer
        return records

    def still_deliverable(self, tp: TP) -> bool:
        """False when `tp` was sought, reset or reassigned since the batch being delivered was fetched."""
        stamp = self._batch_stamps.get(tp)
        if stamp is None or self._batch_consumer is None:
            return True  # not a stamped fetch: nothing to compare with
        return stamp.still_current(partition_state(self._batch_consumer, tp))

    def on_stale_record(self, tp: TP, count: int = 1) -> None:
        metrics.CONSUMER_STALE_RECORDS_SKIPPED.inc(count)
        log.info("skipped records fetched before their partition was sought (fetched again from the new "
                 "position): %s[%d] x%d", tp.topic, tp.partition, count)

    def resume_flow(self) -> None:
        super().resume_flow()
        # Flow control clears the stream queues whenever it resumes (the recovery does that right
        # before this; App.on_rebalance_return right after). A partition taken out of the fetch because
        # its queue was full waits for that queue to drain, which a cleared queue never does: bring it
        # back. And whatever was queued is gone while the fetch positions moved past it: fetch it again.
        self.return_buffered_partitions_to_fetch()
        self._reseek_after_clear = True

    def return_buffered_partitions_to_fetch(self) -> None:
        """Put every partition Faust took out of the fetch for a full stream queue back in (if its queue
        is in fact still full, the next record put there takes it out again)."""
        for tp in list(self._buffered_partitions):
            self.on_buffer_drop(tp)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        await self._reseek_cleared_partitions()
        skipped: Counter[TP] = Counter()
        async for tp, message in super().getmany(timeout):
            if not self.still_deliverable(tp):
                skipped[tp] += 1
                continue
            self._note_delivery(tp, message.offset)
            yield tp, message
        for tp, count in sorted(skipped.items()):
            self.on_stale_record(tp, count)

    async def _reseek_cleared_partitions(self) -> None:
        """Before the first fetch after a flow resume: every assigned partition of an acked topic back to
        its committed offset, or, with nothing committed yet, to the first offset delivered since."""
        if not self._reseek_after_clear:
            return
        self._reseek_after_clear = False
        acks_enabled_for = self.app.topics.acks_enabled_for
        partitions = sorted(tp for tp in self.assignment() if acks_enabled_for(tp.topic))
        sought: list[str] = []
        for tp in partitions:
            committed = self._committed_offset.get(tp)
            target = committed if committed is not None else self._first_uncommitted_delivery.get(tp)
            if target is None:
                continue  # nothing committed and nothing delivered: nothing was cleared
            if await self.seek_in_thread(tp, target):
                metrics.CONSUMER_SEEK_BACKS.labels(cause="resumed").inc()
                sought.append(f"{tp.topic}[{tp.partition}]@{target}")
        if sought:
            log.info("flow resumed (stream queues cleared): fetching again from the committed offsets: %s",
                     ", ".join(sought))

    def _note_delivery(self, tp: TP, offset: int) -> None:
        """Remember where delivery began on a partition with no committed offset (the re-seek's target)."""
        if self._committed_offset.get(tp) is None and tp not in self._first_uncommitted_delivery:
            self._first_uncommitted_delivery[tp] = offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._first_uncommitted_delivery.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def seek_in_thread(self, tp: TP, offset: int) -> bool:
        """`seek`, but run in the aiokafka consumer's own thread (its fetcher is not thread-safe);
        False when `tp` is no longer assigned (a rebalance took it meanwhile: its next owner reads it).

        Always to a known offset: a reset to the earliest offset leaves the position unset until the
        broker answers, and Faust's livelock check then fails on aiokafka's position assertion."""
        thread = self._thread

        async def in_thread() -> bool:
            consumer = thread._ensure_consumer()
            if tp not in consumer.assignment():
                return False
            consumer.seek(TopicPartition(tp.topic, tp.partition), offset)  # aiokafka type-checks it
            return True

        if not await thread.call_thread(in_thread):
            log.info("%s[%d] was not sought to %d: no longer assigned", tp.topic, tp.partition, offset)
            return False
        self._read_offset[tp] = offset if offset else None
        return True
