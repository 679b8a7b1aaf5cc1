"""A batch consumer of one topic in a thread of its own, for processors that need no Faust table.

Why: every record Faust hands to an agent costs ~77 us of event-loop CPU
(`benchmarks/faust_ceiling.py`), and Faust's one delivery loop feeds every agent, so a processor
reading a busy topic both slows the build-state agent and starves behind it during a backlog.
A confluent-kafka consumer in its own thread and consumer group (`<app id>-<processor>`) reads
batches at a few microseconds per record in librdkafka. The thread runs its own asyncio loop, so
handlers use the same async helpers as the agents (the ClickHouse gateway, aiohttp).

Delivery is at-least-once, as with the agents: a batch's offsets become committable only after
its handler returned, and they are committed every `COMMIT_INTERVAL_SECONDS` (as Faust commits)
and when partitions are revoked. A crash, a handler failure or a rebalance re-delivers what was
not committed, so handlers must be idempotent. Records of partitions revoked while batched are
dropped from the batch: the partition's new owner reads them from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams import metrics

log = logging.getLogger(__name__)

COMMIT_INTERVAL_SECONDS = 1.0
LAG_REFRESH_SECONDS = 5.0
POLL_SECONDS = 0.2
RESTART_DELAY_SECONDS = 1.0
PREFETCH_RECORDS = 10_000
PREFETCH_KIB = 4096

TopicPartitionKey = tuple[str, int]
BatchHandler = Callable[[list[Message]], Awaitable[None]]
"""Processes one batch; returns once its effects are safe (then its offsets may be committed)."""
HandlerFactory = Callable[[], AbstractAsyncContextManager[BatchHandler]]
"""Opens a handler inside the consumer thread's loop (sessions, producers) and closes it at stop."""


def consumer_group(app_id: str, processor: str) -> str:
    """A processor's own consumer group: its commits are apart from the Faust agents' group."""
    return f"{app_id}-{processor}"


def next_offsets(records: Iterable[Message]) -> dict[TopicPartitionKey, int]:
    """Per partition, the offset to commit once `records` are handled: the highest one + 1."""
    offsets: dict[TopicPartitionKey, int] = {}
    for record in records:
        key = (record.topic() or "", record.partition() or 0)
        offset = (record.offset() or 0) + 1
        if offset > offsets.get(key, -1):
            offsets[key] = offset
    return offsets


def without_partitions(records: Sequence[Message], revoked: set[TopicPartitionKey]) -> list[Message]:
    """`records` minus those of `revoked` partitions (their new owner reads them again)."""
    return [record for record in records if (record.topic() or "", record.partition() or 0) not in revoked]


@dataclass(frozen=True)
class ConsumerSettings:
    bootstrap: str
    app_id: str
    processor: str
    topic: str
    batch_size: int
    batch_wait_seconds: float
    legacy_group: str | None = None
    """A group that consumed `topic` for this job before; a partition this group never committed starts
    at its offset (an upgrade from the Faust agent), else at the beginning."""
    session_timeout_seconds: float = 45.0
    """CIPULSE_CONSUMER_SESSION_TIMEOUT, as the worker's Faust consumer: also how long a rejoin after a
    broker outage can wait for the broker to expire this consumer's previous membership."""
    instance_id: str | None = None
    """Static membership (group.instance.id, `CipulseSettings.group_instance_id`): a restart rejoins at once."""


def heartbeat_seconds(session_timeout_seconds: float) -> float:
    """A third of the session (three missed heartbeats before the session ends), at most 3 s."""
    return min(3.0, session_timeout_seconds / 3)


@dataclass
class _Progress:
    """What the consumer thread holds between polls."""

    batch: list[Message] = field(default_factory=list)
    batch_started: float | None = None
    handled: dict[TopicPartitionKey, int] = field(default_factory=dict)  # handled, not yet committed
    committed: dict[TopicPartitionKey, int] = field(default_factory=dict)
    last_commit: float = 0.0
    last_lag: float = 0.0


class ThreadConsumer:
    """Runs `open_handler()`'s handler over batches of `settings.topic` until `stop`."""

    def __init__(self, settings: ConsumerSettings, open_handler: HandlerFactory,
                 on_failure: Callable[[Exception], None] | None = None) -> None:
        self._settings = settings
        self._open_handler = open_handler
        self._on_failure = on_failure
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = _Progress()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handling: asyncio.Future[None] | None = None
        self.group = consumer_group(settings.app_id, settings.processor)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._settings.processor, daemon=True)
        self._thread.start()
        log.info("%s consuming %s as group %s", self._settings.processor, self._settings.topic, self.group)

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the group; a batch not yet handled stays uncommitted (its next owner handles it)."""
        self._stopping.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_handling)  # e.g. a write retrying against a failing store
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.0fs", self._settings.processor, timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _cancel_handling(self) -> None:
        if self._handling is not None:
            self._handling.cancel()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                asyncio.run(self._consume())
            except Exception as exc:  # keep the processor running: restart with a fresh consumer
                log.exception("%s: consumer failed, restarting in %.0fs", self._settings.processor,
                              RESTART_DELAY_SECONDS)
                if self._on_failure is not None:
                    self._on_failure(exc)
                self._progress = _Progress()
                self._stopping.wait(RESTART_DELAY_SECONDS)
        self._loop = None

    async def _consume(self) -> None:
        s = self._settings
        consumer = Consumer({
            "bootstrap.servers": s.bootstrap,
            "group.id": self.group,
            "client.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # librdkafka prefetches up to 100k records / 64 MiB by default; a batch needs far less
            "queued.min.messages": PREFETCH_RECORDS,
            "queued.max.messages.kbytes": PREFETCH_KIB,
            "session.timeout.ms": round(s.session_timeout_seconds * 1000),
            "heartbeat.interval.ms": round(heartbeat_seconds(s.session_timeout_seconds) * 1000),
            **({"group.instance.id": s.instance_id} if s.instance_id else {}),
        })
        consumer.subscribe([s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._loop = asyncio.get_running_loop()
        try:
            async with self._open_handler() as handle:
                while not self._stopping.is_set():
                    self._poll(consumer)
                    if self._batch_due() and not await self._handle(handle):
                        break
                    self._commit_if_due(consumer)
                    self._report_lag(consumer)
        finally:
            self._commit(consumer)
            consumer.close()

    async def _handle(self, handle: BatchHandler) -> bool:
        """Handle the batch and mark it committable; False when `stop` cancelled it (left uncommitted)."""
        progress = self._progress
        batch = progress.batch
        self._handling = asyncio.ensure_future(handle(batch))
        try:
            await self._handling
        except asyncio.CancelledError:
            log.info("%s stopped while handling a batch: %d records left uncommitted", self._settings.processor,
                     len(batch))
            return False
        finally:
            self._handling = None
        # no rebalance callback runs while handling (they run inside `consume`): the batch is still ours
        for key, offset in next_offsets(batch).items():
            progress.handled[key] = max(offset, progress.handled.get(key, 0))
        progress.batch, progress.batch_started = [], None
        return True

    def _poll(self, consumer: Consumer) -> None:
        progress, s = self._progress, self._settings
        wait = POLL_SECONDS
        if progress.batch_started is not None:
            wait = max(0.0, min(wait, progress.batch_started + s.batch_wait_seconds - time.monotonic()))
        for record in consumer.consume(max(1, s.batch_size - len(progress.batch)), wait):
            error = record.error()
            if error is not None:
                if error.fatal():  # librdkafka retries everything else itself
                    raise KafkaException(error)
                log.warning("%s: consumer error: %s", s.processor, error)
                continue
            progress.batch.append(record)
        if progress.batch and progress.batch_started is None:
            progress.batch_started = time.monotonic()

    def _batch_due(self) -> bool:
        progress = self._progress
        if not progress.batch or progress.batch_started is None:
            return False
        full = len(progress.batch) >= self._settings.batch_size
        return full or time.monotonic() - progress.batch_started >= self._settings.batch_wait_seconds

    def _commit_if_due(self, consumer: Consumer) -> None:
        if time.monotonic() - self._progress.last_commit >= COMMIT_INTERVAL_SECONDS:
            self._commit(consumer)

    def _commit(self, consumer: Consumer, only: set[TopicPartitionKey] | None = None) -> None:
        """Commit what was handled (all of it, or the `only` partitions); a failure is retried next time."""
        progress = self._progress
        progress.last_commit = time.monotonic()
        due = {key: offset for key, offset in progress.handled.items() if only is None or key in only}
        if not due:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, partition, offset) for (topic, partition), offset in due.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            log.warning("%s: committing %s failed, retrying: %s", self._settings.processor, _describe(due), exc)
            return
        for key, offset in due.items():
            if progress.handled.get(key) == offset:
                del progress.handled[key]
            progress.committed[key] = offset

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:  # then librdkafka starts from the committed offsets by itself
            log.warning("%s: committed offsets unreadable at assignment: %s", self._settings.processor, exc)
            return
        for tp in committed:
            if tp.offset >= 0:
                self._progress.committed[(tp.topic, tp.partition)] = tp.offset
        starts = self._legacy_starts(consumer, [tp for tp in committed if tp.offset < 0])
        if starts:
            consumer.assign([starts.get((tp.topic, tp.partition), tp) for tp in committed])
        log.info("%s assigned %s", self._settings.processor,
                 _describe({(tp.topic, tp.partition): tp.offset for tp in committed}))

    def _legacy_starts(self, consumer: Consumer, fresh: list[TopicPartition]) -> dict[TopicPartitionKey, TopicPartition]:
        """Where a partition this group never committed starts: where `legacy_group` (the Faust agent
        that used to do this job) left off, so an upgrade neither re-reads the topic nor skips records."""
        legacy = self._settings.legacy_group
        if legacy is None or not fresh:
            return {}
        reader = Consumer({"bootstrap.servers": self._settings.bootstrap, "group.id": legacy,
                           "enable.auto.commit": False})
        try:  # committed() reads the group's offsets without joining it
            found = reader.committed([TopicPartition(tp.topic, tp.partition) for tp in fresh], timeout=10)
        except KafkaException as exc:
            log.warning("%s: offsets of %s unreadable, starting from the beginning: %s", self._settings.processor,
                        legacy, exc)
            return {}
        finally:
            reader.close()
        starts = {(tp.topic, tp.partition): tp for tp in found if tp.offset >= 0}
        if starts:
            log.info("%s: first start of group %s, continuing where %s left off: %s", self._settings.processor,
                     self.group, legacy, _describe({key: tp.offset for key, tp in starts.items()}))
        return starts

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit(consumer, only=revoked)  # already handled: do not make the next owner redo them
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({(tp.topic, tp.partition) for tp in partitions})  # no commit: the group moved on

    def _forget(self, revoked: set[TopicPartitionKey]) -> None:
        progress = self._progress
        progress.batch = without_partitions(progress.batch, revoked)
        if not progress.batch:
            progress.batch_started = None
        for key in revoked:
            progress.handled.pop(key, None)
            progress.committed.pop(key, None)
            try:
                metrics.CONSUMER_LAG.remove(self.group, key[0], str(key[1]))
            except KeyError:
                pass

    def _report_lag(self, consumer: Consumer) -> None:
        progress = self._progress
        now = time.monotonic()
        if now - progress.last_lag < LAG_REFRESH_SECONDS:
            return
        progress.last_lag = now
        for tp in consumer.assignment():
            key = (tp.topic, tp.partition)
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException:
                continue  # broker unreachable: keep the last figure
            done = progress.committed.get(key, low)
            metrics.CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(max(0, high - done))


def _describe(offsets: dict[TopicPartitionKey, int]) -> str:
    return ", ".join(f"{topic}[{partition}]@{offset}" for (topic, partition), offset in sorted(offsets.items()))
