"""The ClickHouse sink's own Kafka consumer: build-status change sets -> ClickHouse, off Faust's loop.

Why not a Faust agent: every record Faust hands to an agent costs ~77 us of event-loop CPU
(`benchmarks/faust_ceiling.py`), and Faust's one delivery loop feeds every agent, so while the
build-state agent had a backlog the sink got almost nothing (ClickHouse and the dashboards fell
up to ~570k change sets behind in the 1M-build run). Here a confluent-kafka consumer in its own
thread and consumer group (`<app id>-clickhouse-sink`) reads batches, a few microseconds per
record in librdkafka, and writes them through the worker's one ClickHouse gateway thread.

Delivery is at-least-once, as before: a batch's offsets become committable only after ClickHouse
accepted all its rows and its dead letters were acknowledged, and they are committed every
`COMMIT_INTERVAL_SECONDS` (as Faust commits) and when partitions are revoked. A crash, a failed
write or a rebalance re-delivers what was not committed; the tables' versioned keys make the
re-write harmless. Records of partitions revoked while batched are dropped from the batch: the
partition's new owner reads them from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from schemas import BuildStatusChange, DeadLetterKind
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode
from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.dead_letter import dead_letter_value
from streams.producer import BatchPublisher
from streams.sink_agent import SinkHealth, write_changes

log = logging.getLogger(__name__)

PROCESSOR = "clickhouse-sink"
GROUP_SUFFIX = "-clickhouse-sink"
COMMIT_INTERVAL_SECONDS = 1.0
LAG_REFRESH_SECONDS = 5.0
POLL_SECONDS = 0.2
RESTART_DELAY_SECONDS = 1.0

TopicPartitionKey = tuple[str, int]


def sink_group(app_id: str) -> str:
    """The sink's consumer group: its commits are apart from the Faust agents' group."""
    return f"{app_id}{GROUP_SUFFIX}"


def next_offsets(records: Iterable[Message]) -> dict[TopicPartitionKey, int]:
    """Per partition, the offset to commit once `records` are stored: the highest one + 1."""
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


@dataclass
class SinkSettings:
    bootstrap: str
    app_id: str
    topic: str
    dead_letter_topic: str
    batch_size: int
    flush_seconds: float
    retry_max_seconds: float


@dataclass
class _Progress:
    """What the consumer thread holds between polls."""

    batch: list[Message] = field(default_factory=list)
    batch_started: float | None = None
    stored: dict[TopicPartitionKey, int] = field(default_factory=dict)  # written, not yet committed
    committed: dict[TopicPartitionKey, int] = field(default_factory=dict)
    last_commit: float = 0.0
    last_lag: float = 0.0


class StatusSink:
    """Runs the sink in a thread of its own with its own asyncio loop (for the gateway's async API)."""

    def __init__(self, settings: SinkSettings, gateway: ClickHouseGateway, health: SinkHealth) -> None:
        self._settings = settings
        self._gateway = gateway
        self._health = health
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = _Progress()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store_task: asyncio.Future[None] | None = None
        self.group = sink_group(settings.app_id)

    def start(self) -> None:
        metrics.SINK_HEALTHY.set(1 if self._health.healthy else 0)
        self._thread = threading.Thread(target=self._run, name=PROCESSOR, daemon=True)
        self._thread.start()
        log.info("ClickHouse sink consuming %s as group %s", self._settings.topic, self.group)

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the group; a batch not yet written stays uncommitted (its next owner writes it)."""
        self._stopping.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_store)  # a write retrying against a failing ClickHouse
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("ClickHouse sink did not stop within %.0fs (a write is still retrying)", timeout)

    def _cancel_store(self) -> None:
        if self._store_task is not None:
            self._store_task.cancel()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                asyncio.run(self._consume())
            except Exception as exc:  # keep the sink running: restart with a fresh consumer
                log.exception("ClickHouse sink consumer failed, restarting in %.0fs", RESTART_DELAY_SECONDS)
                self._health.healthy = False
                self._health.last_error = f"sink consumer failed: {exc!r}"
                metrics.SINK_HEALTHY.set(0)
                self._progress = _Progress()
                self._stopping.wait(RESTART_DELAY_SECONDS)

    async def _consume(self) -> None:
        s = self._settings
        consumer = Consumer({
            "bootstrap.servers": s.bootstrap,
            "group.id": self.group,
            "client.id": f"{s.app_id}-{PROCESSOR}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        })
        publisher = BatchPublisher(s.bootstrap)
        consumer.subscribe([s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                self._poll(consumer)
                if self._batch_due():
                    self._store_task = asyncio.ensure_future(self._store(self._progress.batch, publisher))
                    try:
                        await self._store_task
                    except asyncio.CancelledError:
                        log.info("ClickHouse sink stopped during a write: %d change sets left uncommitted",
                                 len(self._progress.batch))
                        break
                    finally:
                        self._store_task = None
                    self._progress.batch, self._progress.batch_started = [], None
                self._commit_if_due(consumer)
                self._report_lag(consumer)
        finally:
            self._commit(consumer)
            consumer.close()
            publisher.close(timeout=1.0)

    def _poll(self, consumer: Consumer) -> None:
        progress, s = self._progress, self._settings
        wait = POLL_SECONDS
        if progress.batch_started is not None:
            wait = max(0.0, min(wait, progress.batch_started + s.flush_seconds - time.monotonic()))
        for record in consumer.consume(max(1, s.batch_size - len(progress.batch)), wait):
            error = record.error()
            if error is not None:
                if error.fatal():  # librdkafka retries everything else itself
                    raise KafkaException(error)
                log.warning("ClickHouse sink: consumer error: %s", error)
                continue
            progress.batch.append(record)
        if progress.batch and progress.batch_started is None:
            progress.batch_started = time.monotonic()

    def _batch_due(self) -> bool:
        progress = self._progress
        if not progress.batch or progress.batch_started is None:
            return False
        full = len(progress.batch) >= self._settings.batch_size
        return full or time.monotonic() - progress.batch_started >= self._settings.flush_seconds

    async def _store(self, records: list[Message], publisher: BatchPublisher) -> None:
        """Dead-letter what does not decode, write the rest until ClickHouse accepts it, then mark committable."""
        changes: list[BuildStatusChange] = []
        rejected = 0
        for record in records:
            value = record.value() or b""
            try:
                changes.append(decode(value, BuildStatusChange))
                continue
            except UndecodableError as exc:
                kind, reason = DeadLetterKind.UNDECODABLE, str(exc)
            except SchemaViolationError as exc:
                kind, reason = DeadLetterKind.SCHEMA_VIOLATION, str(exc)
            topic, partition, offset = record.topic() or "", record.partition() or 0, record.offset() or 0
            publisher.publish(self._settings.dead_letter_topic, record.key(), dead_letter_value(
                PROCESSOR, topic, partition, offset, record.key(), value, kind, reason,
            ))
            rejected += 1
        if rejected:
            await publisher.confirm()
        if changes:
            await write_changes(self._gateway, self._health, self._settings.retry_max_seconds, changes)
        for key, offset in next_offsets(records).items():
            self._progress.stored[key] = max(offset, self._progress.stored.get(key, 0))

    def _commit_if_due(self, consumer: Consumer) -> None:
        if time.monotonic() - self._progress.last_commit >= COMMIT_INTERVAL_SECONDS:
            self._commit(consumer)

    def _commit(self, consumer: Consumer, only: set[TopicPartitionKey] | None = None) -> None:
        """Commit what was stored (all of it, or the `only` partitions); a failure is retried next time."""
        progress = self._progress
        progress.last_commit = time.monotonic()
        due = {key: offset for key, offset in progress.stored.items() if only is None or key in only}
        if not due:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, partition, offset) for (topic, partition), offset in due.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            log.warning("ClickHouse sink: committing %s failed, retrying: %s", _describe(due), exc)
            return
        for key, offset in due.items():
            if progress.stored.get(key) == offset:
                del progress.stored[key]
            progress.committed[key] = offset

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            for tp in consumer.committed(partitions, timeout=10):
                if tp.offset >= 0:
                    self._progress.committed[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:  # only the lag figure needs them
            log.warning("ClickHouse sink: committed offsets unreadable at assignment: %s", exc)
        log.info("ClickHouse sink assigned %s", _describe({(tp.topic, tp.partition): tp.offset for tp in partitions}))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit(consumer, only=revoked)  # rows already written: do not make the next owner redo them
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({(tp.topic, tp.partition) for tp in partitions})  # no commit: the group moved on

    def _forget(self, revoked: set[TopicPartitionKey]) -> None:
        progress = self._progress
        progress.batch = without_partitions(progress.batch, revoked)
        if not progress.batch:
            progress.batch_started = None
        for key in revoked:
            progress.stored.pop(key, None)
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
