"""The Kafka side of the SSE push channel: one shared tail per worker, short-lived catch-up readers.

`SharedTail` is the worker's one consumer of the build-status topic for all `/stream/builds`
clients: assigned every partition (no consumer group, no commits), started by the first client
at the live end, and stopped `linger` seconds after the last one left (a reloading dashboard
reconnects within its 2 s retry and finds it still running). It decodes each record once and
dispatches it through `streams.push_fanout.Fanout`.

`catch_up` serves a client that resumes behind the tail: a private consumer reads its
partitions from the client's position until, per partition, the reader's position reaches the
tail's (`Fanout.attach`), then that partition is paused; the reader stops when all have joined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from schemas import BuildStatusChange, SerdeError, decode
from streams import metrics
from streams.push_fanout import Decoded, Fanout, Subscriber, TailRecord, encode_change
from streams.push_stream import Position, StartPlan, plan_start

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""Longest a reader waits for records before it looks at its stop conditions again."""
KAFKA_SETUP_TIMEOUT = 10.0
TAIL_LINGER_SECONDS = 5.0
ConsumerFactory = Callable[[str], AIOKafkaConsumer]
"""client id -> a new (not started) consumer: no group, no commits, auto_offset_reset='none'."""


def kafka_consumer_factory(bootstrap: str) -> ConsumerFactory:
    servers = [server.strip() for server in bootstrap.split(",")]

    def make(client_id: str) -> AIOKafkaConsumer:
        # 'none': a position deleted by retention raises OffsetOutOfRangeError, reported as a gap
        return AIOKafkaConsumer(
            bootstrap_servers=servers, client_id=client_id, group_id=None, enable_auto_commit=False,
            auto_offset_reset="none", fetch_max_wait_ms=int(POLL_SECONDS * 1000),
        )

    return make


def record_decoder(topic: str, reader: str) -> Callable[[TailRecord], Decoded | None]:
    def decode_record(record: TailRecord) -> Decoded | None:
        metrics.SSE_RECORDS_DECODED.labels(reader).inc()
        try:
            return encode_change(decode(record.value or b"", BuildStatusChange))
        except SerdeError as exc:
            metrics.SSE_RECORDS_UNDECODABLE.inc()
            log.error("SSE skips %s[%d]@%d: %s", topic, record.partition, record.offset, exc)
            return None

    return decode_record


def tail_records(batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
                 decoder: Callable[[TailRecord], Decoded | None]) -> Iterable[TailRecord]:
    for tp, records in batches.items():
        for record in records:
            yield TailRecord(tp.partition, record.offset, record.key, record.value, decoder)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # `consumer.topics()` fetches the same metadata but keeps only the names; the partitions of a
    # topic the consumer has not subscribed to are only in the client's answer.
    metadata = await consumer._client.fetch_all_metadata()
    partitions = metadata.partitions_for_topic(topic)
    if not partitions:
        raise ConnectionError(f"topic {topic} does not exist (yet): is the worker's build-state agent running?")
    return [TopicPartition(topic, partition) for partition in sorted(partitions)]


async def read_gaps(consumer: AIOKafkaConsumer, exc: OffsetOutOfRangeError) -> dict[TopicPartition, int]:
    """The earliest retained offset of each partition the consumer fell out of; it is moved there."""
    lost: dict[TopicPartition, int] = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    beginnings = await consumer.beginning_offsets(list(lost) or list(consumer.assignment()))
    for tp, earliest in beginnings.items():
        consumer.seek(tp, earliest)
    return dict(beginnings)


class SharedTail:
    """The worker's one reader of the build-status topic for SSE clients (see the module doc)."""

    def __init__(self, topic: str, make_consumer: ConsumerFactory, app_id: str, linger: float = TAIL_LINGER_SECONDS) -> None:
        self.topic = topic
        self.fanout = Fanout()
        self._make_consumer = make_consumer
        self._name = f"{app_id}-sse-tail"
        self._linger = linger
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._users = 0
        self._idle_stop: asyncio.TimerHandle | None = None
        self._closed = False
        self._stopping: asyncio.Future[None] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def acquire(self) -> None:
        """Count a client in and make sure the tail runs; `release` must follow, even on error."""
        self._users += 1
        if self._idle_stop is not None:
            self._idle_stop.cancel()
            self._idle_stop = None
        async with self._lock:
            if self._closed:
                raise ConnectionError("the worker is stopping")
            if not self.running:
                await self._start()

    def release(self) -> None:
        self._users -= 1
        if self._users == 0 and not self._closed and self._idle_stop is None:
            self._idle_stop = asyncio.get_running_loop().call_later(self._linger, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle_stop = None
        if self._users == 0 and self._consumer is not None:  # running, or failed and not yet closed
            self._stopping = asyncio.ensure_future(self._stop_locked(f"no SSE client for {self._linger:.0f}s"))

    async def _start(self) -> None:
        if self._consumer is not None:  # the previous tail failed: close what is left of it
            await self._stop_consumer("restart")
        consumer = self._make_consumer(self._name)
        try:
            await asyncio.wait_for(consumer.start(), KAFKA_SETUP_TIMEOUT)
            partitions = await asyncio.wait_for(topic_partitions(consumer, self.topic), KAFKA_SETUP_TIMEOUT)
            consumer.assign(partitions)
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), KAFKA_SETUP_TIMEOUT)
        except BaseException:
            await consumer.stop()
            raise
        for tp, end in ends.items():
            consumer.seek(tp, end)
        self._consumer = consumer
        self.fanout.start_at({tp.partition: end for tp, end in ends.items()})
        self._task = asyncio.create_task(self._run(consumer), name=self._name)
        self.starts += 1
        metrics.SSE_KAFKA_READERS.labels("tail").inc()
        log.info("SSE shared tail started: one consumer for %s at %s", self.topic, _where(self.fanout.tail_next))

    def known_ends(self) -> Position:
        """The end of each partition as far as the tail knows (no request): its position, or the
        high watermark of its last fetch."""
        consumer = self._consumer
        ends = dict(self.fanout.tail_next)
        if consumer is not None:
            for tp in consumer.assignment():
                ends[tp.partition] = max(ends.get(tp.partition, 0), consumer.highwater(tp) or 0)
        return ends

    async def plan(self, resume: Position | None) -> StartPlan:
        """Where a client starts; the tail must run.

        Without a Kafka request when it can: a new client starts where the tail is, a resume
        position naming the tail's partitions within their known ends is taken as it is (a range
        that retention deleted since is reported as a gap by the catch-up reader). Otherwise
        (a new partition, an id from a worker that has seen more) the topic is asked, which
        waits for the tail's fetch in flight on the same connection (up to 0.25 s per request).
        """
        consumer = self._consumer
        if consumer is None:
            raise ConnectionError("the SSE shared tail is not running")
        if resume is None:
            return StartPlan(offsets=dict(self.fanout.tail_next))
        ends = self.known_ends()
        if set(resume) == set(ends) and all(offset <= ends[partition] for partition, offset in resume.items()):
            return StartPlan(offsets=dict(resume))
        partitions = await topic_partitions(consumer, self.topic)
        beginnings = await consumer.beginning_offsets(partitions)
        latest = await consumer.end_offsets(partitions)
        return plan_start(
            resume, {tp.partition: offset for tp, offset in beginnings.items()},
            {tp.partition: offset for tp, offset in latest.items()},
        )

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        decoder = record_decoder(self.topic, "tail")
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=2000)
                except OffsetOutOfRangeError as exc:
                    for tp, earliest in (await read_gaps(consumer, exc)).items():
                        log.warning("SSE shared tail fell behind retention in %s[%d]: goes on at %d",
                                    tp.topic, tp.partition, earliest)
                        self.fanout.tail_gap(tp.partition, earliest)
                    continue
                # from here to the end of the dispatch there is no await: catch-up readers attach between batches
                for subscriber in self.fanout.dispatch(tail_records(batches, decoder)):
                    metrics.SSE_CLIENTS_DROPPED.labels("slow").inc()
                    log.warning("SSE stream %s dropped: %d events queued, it does not keep up with the live tail; "
                                "it can resume with its last event id", subscriber.name, len(subscriber))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("SSE shared tail failed, its %d client(s) are disconnected (they resume): %r",
                      len(self.fanout.subscribers), exc)
            self.fanout.drop_all("tail failed")

    async def _stop_locked(self, why: str) -> None:
        async with self._lock:
            if self._users == 0 or self._closed:
                await self._stop_consumer(why)

    async def _stop_consumer(self, why: str) -> None:
        task, consumer = self._task, self._consumer
        self._task, self._consumer = None, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if consumer is not None:
            await consumer.stop()
            metrics.SSE_KAFKA_READERS.labels("tail").dec()
            log.info("SSE shared tail stopped (%s), its consumer closed", why)
        self.fanout.drop_all("tail stopped")

    async def close(self) -> None:
        """The worker stops: the tail stops now (its clients end with their streams)."""
        self._closed = True
        if self._idle_stop is not None:
            self._idle_stop.cancel()
            self._idle_stop = None
        async with self._lock:
            await self._stop_consumer("the worker stops")


async def catch_up(tail: SharedTail, subscriber: Subscriber, make_consumer: ConsumerFactory, stop: asyncio.Event) -> int:
    """Read the subscriber's partitions that are behind the tail privately until each has
    joined the tail; returns how many records it read."""
    fanout = tail.fanout
    behind = {TopicPartition(tail.topic, partition) for partition in subscriber.behind}
    consumer = make_consumer(f"{subscriber.name}-catch-up")
    decoder = record_decoder(tail.topic, "catch_up")
    read = 0
    metrics.SSE_KAFKA_READERS.labels("catch_up").inc()
    try:
        await asyncio.wait_for(consumer.start(), KAFKA_SETUP_TIMEOUT)
        consumer.assign(sorted(behind))
        beginnings = await asyncio.wait_for(consumer.beginning_offsets(sorted(behind)), KAFKA_SETUP_TIMEOUT)
        for tp in behind:
            subscriber.gap(tp.partition, beginnings[tp])  # only if retention deleted records it has not seen
            consumer.seek(tp, subscriber.position[tp.partition])
        log.info("SSE stream %s catches up privately in partition(s) %s from %s, the tail is at %s",
                 subscriber.name, ",".join(str(tp.partition) for tp in sorted(behind)),
                 _where(subscriber.position), _where(fanout.tail_next))
        while behind and not stop.is_set() and subscriber.dropped is None:
            positions = {tp: await consumer.position(tp) for tp in behind}
            # no await from here to the attach: the tail cannot dispatch in between
            joined = {tp for tp, at in positions.items() if fanout.attach(subscriber, tp.partition, at)}
            if joined:
                consumer.pause(*joined)
                behind -= joined
                log.info("SSE stream %s joined the shared tail in partition(s) %s at %s", subscriber.name,
                         ",".join(str(tp.partition) for tp in sorted(joined)), _where(subscriber.position))
                continue
            if not subscriber.has_room():
                await _wait_for_room(subscriber, stop)
                continue
            try:
                batches = await consumer.getmany(*behind, timeout_ms=int(POLL_SECONDS * 1000),
                                                 max_records=max(1, min(500, subscriber.limit // 4)))
            except OffsetOutOfRangeError as exc:
                for tp, earliest in (await read_gaps(consumer, exc)).items():
                    subscriber.gap(tp.partition, earliest)
                continue
            for record in tail_records(batches, decoder):
                if record.partition in subscriber.live:
                    continue
                read += 1
                if not subscriber.take(record):  # the tail filled the room `has_room` saw
                    fanout.drop(subscriber, "slow")
                    metrics.SSE_CLIENTS_DROPPED.labels("slow").inc()
                    log.warning("SSE stream %s dropped while catching up: %d events queued, it does not keep up; "
                                "it can resume with its last event id", subscriber.name, len(subscriber))
                    break
    finally:
        await consumer.stop()
        metrics.SSE_KAFKA_READERS.labels("catch_up").dec()
    if not behind:
        log.info("SSE stream %s caught up after %d record(s): its catch-up consumer stopped, it reads the shared tail",
                 subscriber.name, read)
    return read


async def _wait_for_room(subscriber: Subscriber, stop: asyncio.Event) -> None:
    while not (subscriber.has_room() or stop.is_set() or subscriber.dropped is not None):
        await asyncio.sleep(0.02)


def _where(position: Position) -> str:
    return ",".join(f"{partition}:{offset}" for partition, offset in sorted(position.items()))
