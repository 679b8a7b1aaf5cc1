"""A Faust consumer that never commits past a record it did not process.

Checked against faust-streaming 0.15.3 (``faust/transport/consumer.py``) with aiokafka 0.14.

Why: after a kill -9 + restart and the rebalance that follows, the stock consumer could
commit offsets past records that were never handed to an agent, so they were silently
lost (worker restart test: ~36 build-events per partition gone, no change sets, no dead
letters). Two pieces of stock behaviour combine:

* ``Consumer._drain_messages`` treats a jump in delivered offsets (a record dropped by
  ``getmany`` when flow stops / the generation changes / the partition is not active, or
  a fetch position ahead of the seek) as a *gap*, i.e. offsets that do not exist, and
  ``_new_offset`` later counts gap offsets as acked. That is right for compacted topics
  and transaction markers, wrong for our append-only, non-transactional input topics.
* ``Consumer._new_offset`` returns ``None`` only when ``min(acked) - committed > 1``;
  ``committed`` is the *next* offset to read, so one unacked offset at the head (the
  committed offset itself) is committed past -- whether it was never delivered or is
  still being processed.

The defence, in a subclass wired in through the app's transport (Faust has no
``consumer`` class setting; ``App._new_transport`` is the only hook):

* ``_new_offset`` is strict: no commit while the committed offset itself is unacked
  (``min(acked) > committed``).
* ``getmany`` tracks the next offset it expects per partition (reset by every seek). When
  an acked topic's partition jumps ahead, it logs a WARNING and seeks the partition back
  to the expected offset instead of letting the drain loop record a gap -- at most
  MAX_SEEK_BACKS times per (partition, offset). If the jump still repeats from that offset, the offsets really do
  not exist (retention, compaction, transaction markers): it logs a WARNING naming the
  range and marks the range as a gap *including* the expected offset, so the strict
  ``_new_offset`` does not stall on it.
* Every gap the stock drain loop still records is logged as a WARNING.

If the installed Faust is not the version this was checked against, ``check_faust_version``
logs an ERROR at worker start: re-read ``_new_offset``, ``_add_gap``, ``getmany``,
``seek``/``perform_seek`` and ``_drain_messages`` before trusting these overrides.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Optional, cast

import faust
from faust.tables.manager import TableManager
from faust.transport import drivers as faust_drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.utils.functional import consecutive_numbers
from intervaltree import IntervalTree

from streams import faust_stream_turns, metrics
from streams.faust_monitor import LeanMonitor
from streams.faust_pauses import PromptTableManager
from streams.faust_producer import QuickSizeProducer
from streams.faust_stale_batches import StaleBatchGuardConsumer
from streams.table_options import table_options

log = logging.getLogger(__name__)

CHECKED_FAUST_VERSION = "0.15.3"
# seek-backs per (partition, offset) before a hole is accepted as offsets that do not exist
MAX_SEEK_BACKS = 2
STUCK_HEAD_SECONDS = 10.0
"""How long a partition's committed offset may stay unacked, undelivered and not in flight before
the consumer seeks back to it (see `NoSilentSkipConsumer._repair_stuck_heads`)."""


def check_faust_version(version: str | None = None) -> bool:
    """True when the installed Faust is the version these overrides were checked against."""
    installed = version if version is not None else faust.__version__
    if installed != CHECKED_FAUST_VERSION:
        log.error(
            "streams.faust_patches was checked against faust-streaming %s but %s is installed: "
            "re-check Consumer._new_offset/_add_gap/getmany/seek/_drain_messages before relying on it",
            CHECKED_FAUST_VERSION, installed,
        )
        return False
    return True


def strict_new_offset(acked: list[int], gaps: IntervalTree, committed: Optional[int]) -> Optional[int]:
    """The offset to commit for one partition, or None; mutates `acked` and `gaps` as Faust does.

    Same as faust 0.15.3 ``Consumer._new_offset`` except that nothing is committed while
    the committed offset (the next one to read) is neither acked nor a gap.
    """
    if not acked:
        return None
    max_offset = max(acked)
    if gaps:
        candidates = sorted(gaps.overlap(0, max_offset), key=lambda entry: entry.begin)
        if candidates:
            filled: list[int] = []
            for entry in candidates:
                filled.extend(range(entry.begin, entry.end))
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], max_offset + 1))
    acked.sort()
    if committed is not None and acked[0] > committed:
        return None
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    return batch[-1] + 1


class NoSilentSkipConsumer(StaleBatchGuardConsumer):
    """aiokafka consumer that seeks back over delivery holes and commits only contiguous acks
    (never delivers a record fetched before a seek: `streams.faust_stale_batches`; fetches again
    as soon as a stream drains: `streams.faust_delivery`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expected_offset: dict[TP, int] = {}
        self._sought_back: dict[tuple[TP, int], int] = {}
        self._stuck_since: dict[TP, tuple[int, float]] = {}
        self._last_stuck_check = 0.0

    # -- commit side ------------------------------------------------------------------

    def _new_offset(self, tp: TP) -> Optional[int]:
        acked = self._acked[tp]
        offset = strict_new_offset(acked, self._gap[tp], self._committed_offset[tp])
        if offset is not None:
            # strict_new_offset dropped the committed batch from `acked`; keep the index in step
            self._acked_index[tp].intersection_update(acked)
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        log.warning(
            "offsets %d..%d of %s skipped in delivery and recorded as a gap (treated as acked); committed=%s",
            offset_from, offset_to, tp, self._committed_offset[tp],
        )
        await super()._add_gap(tp, offset_from, offset_to)

    async def _add_gap_inclusive(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Like `_add_gap`, but the committed offset itself may be part of the gap."""
        committed = self._committed_offset[tp]
        if committed is not None:
            offset_from = max(offset_from, committed)
        if offset_from <= offset_to:
            gaps = self._gap[tp]
            gaps.addi(offset_from, offset_to + 1)
            gaps.merge_overlaps()

    # -- delivery side ----------------------------------------------------------------

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._expect(partition, offset)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # perform_seek's source of truth: the offsets it sets as read and committed offsets
        committed = await super().seek_to_committed()
        for tp, offset in committed.items():
            self._expect(tp, offset)
        return committed

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._expected_offset.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _expect(self, tp: TP, offset: Optional[int]) -> None:
        if offset is None or offset < 0:
            self._expected_offset.pop(tp, None)
        else:
            self._expected_offset[tp] = offset

    def stuck_heads(self, now: float) -> list[tuple[TP, int]]:
        """Partitions whose committed offset has been neither acked nor in flight for STUCK_HEAD_SECONDS
        although the partition holds records from there on.

        Two shapes of the same drop between the fetch and the streams: later offsets were acked (the
        records from the committed offset on were fetched once, but no agent got them: a delivery
        race the hole check in `getmany` cannot see when the drop happens after it), or nothing at
        all was delivered since the committed offset while the broker's end offset is past it (seen
        once after a kill -9 + restart: the partition fetched to its end, nothing delivered). The
        strict commit keeps the records safe, but without a seek back this worker never processes them.
        (A partition Faust took out of the fetch for a full stream queue counts too: if that queue was
        cleared, nothing is in flight and the partition would never be fetched again.)
        """
        app = self.app
        if app.rebalancing or cast(TableManager, app.tables).recovery.in_recovery:
            self._stuck_since.clear()
            return []
        in_flight = {message.tp for message in list(self._unacked_messages) if not message.acked}
        acks_enabled_for = app.topics.acks_enabled_for
        stuck: list[tuple[TP, int]] = []
        suspects: dict[TP, tuple[int, float]] = {}
        for tp, committed in list(self._committed_offset.items()):
            if committed is None or tp in in_flight or tp in self._paused_partitions or not acks_enabled_for(tp.topic):
                continue
            acked = self._acked.get(tp)
            if acked:
                if min(acked) <= committed or self._gap[tp].overlaps(committed):
                    continue
            else:
                end = self._end_offset(tp)
                if end is None or end <= committed:
                    continue  # caught up (or nothing known yet): nothing waits beyond the committed offset
            first_seen = self._stuck_since.get(tp)
            since = first_seen[1] if first_seen is not None and first_seen[0] == committed else now
            suspects[tp] = (committed, since)
            if now - since >= STUCK_HEAD_SECONDS:
                stuck.append((tp, committed))
        self._stuck_since = {tp: value for tp, value in suspects.items() if (tp, value[0]) not in stuck}
        return stuck

    def _end_offset(self, tp: TP) -> Optional[int]:
        """The broker's end offset of `tp` as the last fetch saw it; None when unknown or no longer assigned."""
        try:
            return cast(Optional[int], self.highwater(tp))
        except Exception:  # aiokafka asserts the partition is assigned; a rebalance may have just taken it
            return None

    async def _repair_stuck_heads(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_stuck_check < 1.0:
            return
        self._last_stuck_check = now
        for tp, committed in self.stuck_heads(now):
            acked = self._acked.get(tp)
            log.warning(
                "%s: offsets from %d on never reached an agent (%s, nothing in flight for %.0fs); seeking back to %d",
                tp, committed, f"acked from {min(acked)}" if acked else f"nothing acked, end offset {self._end_offset(tp)}",
                STUCK_HEAD_SECONDS, committed,
            )
            self.on_buffer_drop(tp)  # if Faust took it out of the fetch for a queue that no longer holds it
            if await self.seek_in_thread(tp, committed):
                metrics.CONSUMER_SEEK_BACKS.labels(cause="stuck").inc()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        await self._repair_stuck_heads()
        rewound: set[TP] = set()  # the rest of this batch is fetched again after the seek
        acks_enabled_for = self.app.topics.acks_enabled_for
        async for tp, message in super().getmany(timeout):
            if tp in rewound:
                continue
            offset = message.offset
            expected = self._expected_offset.get(tp)
            if expected is not None and offset > expected and acks_enabled_for(message.topic):
                if await self._on_hole(tp, expected, offset):
                    rewound.add(tp)
                    continue
            if expected is None or offset >= expected:
                self._expected_offset[tp] = offset + 1
            yield tp, message

    async def seek_in_thread(self, tp: TP, offset: int) -> bool:
        sought = await super().seek_in_thread(tp, offset)
        if sought:
            self._expect(tp, offset)
        return sought

    async def _on_hole(self, tp: TP, expected: int, offset: int) -> bool:
        """Handle offsets expected..offset-1 never delivered; True when the partition was rewound."""
        attempts = self._sought_back.get((tp, expected), 0)
        if attempts < MAX_SEEK_BACKS:
            self._sought_back[(tp, expected)] = attempts + 1
            log.warning(
                "offsets %d..%d of %s were not delivered (next delivered: %d); seeking back to %d",
                expected, offset - 1, tp, offset, expected,
            )
            if await self.seek_in_thread(tp, expected):
                metrics.CONSUMER_SEEK_BACKS.labels(cause="hole").inc()
            return True
        log.warning(
            "offsets %d..%d of %s still missing after seeking back (deleted by retention, compacted or "
            "transaction markers?); treating them as a gap",
            expected, offset - 1, tp,
        )
        await self._add_gap_inclusive(tp, expected, offset - 1)
        return False


class NoSilentSkipTransport(faust_aiokafka.Transport):
    Consumer = NoSilentSkipConsumer
    Producer = QuickSizeProducer


SHUTDOWN_STREAM_WAIT_SECONDS = 10.0
"""How long a stopping worker waits for records its agents already took (see `_consumer_wait_empty`)."""


class CipulseApp(faust.App):
    """faust.App whose consumer is `NoSilentSkipConsumer` (for kafka:// / aiokafka:// brokers),
    whose tables get bounded RocksDB options (`streams.table_options`) unless given others, and
    whose streams give the event loop a turn every few records (`streams.faust_stream_turns`),
    and whose Monitor keeps no per-record statistics (`streams.faust_monitor`) unless given another."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", LeanMonitor)
        kwargs.setdefault("TableManager", PromptTableManager)
        super().__init__(*args, **kwargs)
        faust_stream_turns.install()

    async def on_started(self) -> None:
        await super().on_started()
        tune_gc()

    def Table(self, name: str, **kwargs: Any) -> Any:  # noqa: N802 - Faust's name
        if kwargs.get("options") is None:
            kwargs["options"] = table_options()
        return super().Table(name, **kwargs)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """At shutdown, wait a bounded time for records the agents took; during a rebalance, as stock.

        A rebalance must wait until the revoked partitions' records are processed (or the old owner
        could write their table state after the new owner restored it). At shutdown the streams are
        already stopping: a record buffered in `take_events` when its stream stopped is never acked,
        and Faust's unbounded wait then hangs the stop (faust-streaming #162) until the process is
        killed. Not waiting longer is safe: an unprocessed record is not committed, so the partition's
        next owner processes it, exactly as after a kill.
        """
        if not self.should_stop:
            await super()._consumer_wait_empty(consumer, logger)
            return
        # Not `asyncio.wait_for(consumer.wait_empty())`: its inner wait swallows the cancellation.
        logger.info("Wait for streams (at most %.0fs)...", SHUTDOWN_STREAM_WAIT_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_STREAM_WAIT_SECONDS
        while True:
            consumer._clean_unacked_messages()
            if not consumer._unacked_messages or loop.time() >= deadline:
                break
            await consumer.commit()
            await asyncio.sleep(0.1)
        pending = len(consumer._unacked_messages)
        if pending:
            log.warning(
                "shutdown: %d record(s) the agents took were not processed within %.0fs; they are not committed "
                "and go to the partition's next owner", pending, SHUTDOWN_STREAM_WAIT_SECONDS,
            )
        await consumer.commit_and_end_transactions()

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        transport_cls = faust_drivers.by_url(url)
        if transport_cls is not faust_aiokafka.Transport:
            log.error("broker %s does not use the aiokafka transport: offset safety patches NOT applied", url)
            return super()._new_transport()
        check_faust_version()
        return NoSilentSkipTransport(self.conf.broker_consumer, self)


GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Once the worker runs: move what startup allocated out of the collector's sight, collect less often.

    Startup leaves hundreds of thousands of long-lived objects (pydantic and Faust classes,
    schemas, the ClickHouse client) that every full collection would scan again; `gc.freeze`
    exempts them. Per event the worker allocates many short-lived containers (decoded
    records, models, change sets) that reference counting frees; the cyclic collector's
    default threshold (700 allocations) ran a young-generation pass every few events.
    Cycles are still collected, only in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def gap_ranges(gaps: IntervalTree) -> Iterable[tuple[int, int]]:
    """Inclusive (first, last) ranges of a gap tree, for logs and tests."""
    return [(entry.begin, entry.end - 1) for entry in sorted(gaps)]
