"""Produce Avro-framed build events to Kafka with an idempotent confluent-kafka producer.

The partitioner is murmur2 (Java's and aiokafka's default) so a build id lands on the
same partition whoever produces it: Faust tables and their table-routed API depend
on that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import BuildEvent
from schemas.serde import encode
from streams.exceptions import StreamsError

log = logging.getLogger(__name__)


class DeliveryError(StreamsError):
    """The broker did not acknowledge a record."""


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings every build-event producer uses (also the reporter SDK's sender)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return config


class BuildEventProducer:
    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self._topic = topic
        self.delivered = 0
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.key()!r}: {err}")
            log.error("delivery of %r failed: %s", msg.key(), err)
        else:
            self.delivered += 1

    def send(self, event: BuildEvent) -> None:
        self.send_raw(event.build_id.encode(), encode(event))

    def send_raw(
        self, key: bytes | None, value: bytes, on_failure: Callable[[str], None] | None = None
    ) -> None:
        """Produce bytes as they are (tests use it to inject garbage); `on_failure` hears a refusal."""
        def report_failure(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            if err is not None and on_failure is not None:
                on_failure(str(err))

        callback = self._on_delivery if on_failure is None else report_failure
        while True:
            try:
                self._producer.produce(self._topic, key=key, value=value, on_delivery=callback)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def poll(self) -> None:
        """Serve delivery callbacks without waiting."""
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every record is acknowledged; raise if any was refused or timed out."""
        try:
            remaining = self._producer.flush(timeout)
        except KafkaException as exc:
            raise DeliveryError(f"flush failed: {exc}") from exc
        if remaining:
            raise DeliveryError(f"{remaining} records not acknowledged after {timeout}s: is the broker up?")
        if self.failed:
            raise DeliveryError(f"{len(self.failed)} records refused by the broker, first: {self.failed[0]}")
