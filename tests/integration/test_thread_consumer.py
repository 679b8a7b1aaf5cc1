"""The consumer thread behind the ClickHouse sink and the callback dispatcher, on a real broker:
offsets are committed only after the handler returned, a failing handler gets the batch again,
and a stop during a handler that never finishes leaves the batch uncommitted."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import KafkaBroker, wait_until
from streams.thread_consumer import BatchHandler, ConsumerSettings, ThreadConsumer

pytestmark = pytest.mark.integration

PARTITIONS = 2
RECORDS = 60


def topic_with_records(bootstrap: str) -> str:
    topic = f"tc{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the creation is confirmed
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(RECORDS):
        producer.produce(topic, f"v{n}".encode(), f"k{n}".encode(), partition=n % PARTITIONS)
    assert producer.flush(30) == 0
    return topic


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def consumer_for(bootstrap: str, topic: str, handle: Callable[[list[Message]], Awaitable[None]],
                 legacy_group: str | None = None) -> ThreadConsumer:
    @asynccontextmanager
    async def open_handler() -> AsyncIterator[BatchHandler]:
        yield handle

    settings = ConsumerSettings(bootstrap=bootstrap, app_id=f"app{uuid.uuid4().hex[:6]}", processor="test",
                                topic=topic, batch_size=25, batch_wait_seconds=0.1, legacy_group=legacy_group)
    return ThreadConsumer(settings, open_handler)


def test_every_record_is_handled_and_committed_after_its_batch(kafka: KafkaBroker) -> None:
    topic = topic_with_records(kafka.bootstrap)
    seen: list[bytes] = []

    async def handle(records: list[Message]) -> None:
        seen.extend(record.value() or b"" for record in records)

    consumer = consumer_for(kafka.bootstrap, topic, handle)
    consumer.start()
    try:
        wait_until(lambda: len(seen) >= RECORDS, 60, "every record handled")
        wait_until(lambda: committed_total(kafka.bootstrap, consumer.group, topic) == RECORDS, 30, "all committed")
    finally:
        consumer.stop()
    assert sorted(seen) == sorted(f"v{n}".encode() for n in range(RECORDS))
    assert not consumer.alive


def test_a_failing_handler_gets_its_batch_again_and_nothing_is_committed_before(kafka: KafkaBroker) -> None:
    topic = topic_with_records(kafka.bootstrap)
    seen: list[bytes] = []
    failures: list[int] = []

    async def handle(records: list[Message]) -> None:
        if not failures:
            failures.append(len(records))
            raise RuntimeError("the store refused the first batch")
        seen.extend(record.value() or b"" for record in records)

    consumer = consumer_for(kafka.bootstrap, topic, handle)
    consumer.start()
    try:
        wait_until(lambda: set(seen) >= {f"v{n}".encode() for n in range(RECORDS)}, 60, "every record handled")
        wait_until(lambda: committed_total(kafka.bootstrap, consumer.group, topic) == RECORDS, 30, "all committed")
    finally:
        consumer.stop()
    assert failures and failures[0] > 0


def test_a_stop_during_a_handler_that_never_returns_leaves_its_batch_uncommitted(kafka: KafkaBroker) -> None:
    topic = topic_with_records(kafka.bootstrap)
    entered = threading.Event()

    async def handle(records: list[Message]) -> None:
        entered.set()
        await asyncio.sleep(3600)  # e.g. a write retrying against a store that stays down

    consumer = consumer_for(kafka.bootstrap, topic, handle)
    consumer.start()
    try:
        assert entered.wait(60), "the handler was never called"
    finally:
        started = time.monotonic()
        consumer.stop(timeout=10)
        stopped_in = time.monotonic() - started
    assert not consumer.alive and stopped_in < 10
    assert committed_total(kafka.bootstrap, consumer.group, topic) == 0


def test_a_first_start_continues_where_the_legacy_group_left_off(kafka: KafkaBroker) -> None:
    topic = topic_with_records(kafka.bootstrap)  # 30 records per partition
    legacy = f"legacy{uuid.uuid4().hex[:6]}"
    committer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": legacy, "enable.auto.commit": False})
    try:  # what the Faust agent had committed before the upgrade
        committer.commit(offsets=[TopicPartition(topic, 0, 20), TopicPartition(topic, 1, 25)], asynchronous=False)
    finally:
        committer.close()
    seen: list[tuple[int, int]] = []

    async def handle(records: list[Message]) -> None:
        seen.extend((record.partition() or 0, record.offset() or 0) for record in records)

    consumer = consumer_for(kafka.bootstrap, topic, handle, legacy_group=legacy)
    consumer.start()
    try:
        wait_until(lambda: len(seen) >= (30 - 20) + (30 - 25), 60, "the records after the legacy offsets")
        wait_until(lambda: committed_total(kafka.bootstrap, consumer.group, topic) == RECORDS, 30, "all committed")
    finally:
        consumer.stop()
    assert sorted(seen) == [(0, n) for n in range(20, 30)] + [(1, n) for n in range(25, 30)]
