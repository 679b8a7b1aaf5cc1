"""The build-state agent's librdkafka publisher: every record confirmed, Faust's partitioning,
and a refused record fails the batch instead of being dropped."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.admin import AdminClient, NewTopic

from harness import KafkaBroker, consume_records
from streams.producer import BatchPublisher, DeliveryError

pytestmark = pytest.mark.integration

PARTITIONS = 3


def create_topics(bootstrap: str, *names: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1, config=config) for name in names])
    for future in futures.values():
        future.result(30)


def test_a_confirmed_batch_is_on_the_broker_in_faust_partitions(kafka: KafkaBroker) -> None:
    status, finals = f"pub{uuid.uuid4().hex[:8]}.status", f"pub{uuid.uuid4().hex[:8]}.finals"
    create_topics(kafka.bootstrap, status, finals)
    publisher = BatchPublisher(kafka.bootstrap)
    sent = {f"build-{n}".encode(): f"value-{n}".encode() for n in range(300)}

    async def run() -> None:
        await publisher.confirm()  # nothing published: returns at once
        for key, value in sent.items():
            publisher.publish(status, key, value)
        publisher.publish(finals, b"pipeline", b"final")
        await publisher.confirm()

    try:
        asyncio.run(run())
    finally:
        publisher.close()
    records = consume_records(kafka.bootstrap, status, len(sent))
    assert {r.key(): r.value() for r in records} == sent
    partitioner = DefaultPartitioner()
    for record in records:  # where Faust's aiokafka producer would have put the key
        assert record.partition() == partitioner(record.key(), list(range(PARTITIONS)), list(range(PARTITIONS)))
    assert [r.value() for r in consume_records(kafka.bootstrap, finals, 1)] == [b"final"]


def test_a_refused_record_fails_confirm(kafka: KafkaBroker) -> None:
    topic = f"pub{uuid.uuid4().hex[:8]}.small"
    create_topics(kafka.bootstrap, topic, **{"max.message.bytes": "2000"})
    publisher = BatchPublisher(kafka.bootstrap, **{"compression.type": "none"})

    async def run() -> None:
        publisher.publish(topic, b"ok", b"x")
        publisher.publish(topic, b"too-big", b"x" * 50_000)
        await publisher.confirm()

    try:
        with pytest.raises(DeliveryError, match="too-big.*raise the topic's max.message.bytes"):
            asyncio.run(run())
    finally:
        publisher.close()


def test_confirm_sends_at_once_whatever_the_linger(kafka: KafkaBroker) -> None:
    """The agent's batch is confirmed by a flush, which does not wait out `linger.ms`."""
    topic = f"pub{uuid.uuid4().hex[:8]}.linger"
    create_topics(kafka.bootstrap, topic)
    publisher = BatchPublisher(kafka.bootstrap, **{"linger.ms": 300_000})  # five minutes

    async def run() -> None:
        publisher.publish(topic, b"k", b"v")
        await asyncio.wait_for(publisher.confirm(), timeout=60)  # TimeoutError if it waited for the linger

    try:
        asyncio.run(run())
    finally:
        publisher.close()
    assert [r.value() for r in consume_records(kafka.bootstrap, topic, 1)] == [b"v"]
