"""Produce Avro-framed build events to Kafka with an idempotent confluent-kafka producer.

The partitioner is murmur2 (Java's and aiokafka's default) so a build id lands on the
same partition whoever produces it: Faust tables and their table-routed API depend
on that.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import BuildEvent
from schemas.serde import encode
from streams.exceptions import StreamsError
from streams.log_throttle import LogThrottle

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


_REFUSAL_HINTS = {
    KafkaError.MSG_SIZE_TOO_LARGE: " (the record is larger than the topic accepts: raise the topic's "
    "max.message.bytes, or the broker's message.max.bytes)",
    KafkaError.UNKNOWN_TOPIC_OR_PART: " (the topic does not exist: create it, or start the worker, which creates "
    "its topics)",
}
"""What to fix, added to the broker's refusal where the cause is plain."""


class BatchPublisher:
    """Produces an agent batch's output records with librdkafka and confirms them as a whole.

    Faust's send path costs the event loop several tasks, futures and callbacks per record
    (``Topic.send`` -> aiokafka's accumulator and sender task); librdkafka queues a record in
    a few microseconds and batches, compresses and delivers it on its own threads. `confirm`
    waits, off the event loop, until the broker acknowledged every record produced since the
    last `confirm`, so an agent can still write its table and ack its input only after its
    outputs are safe (at-least-once, as with Faust's send futures).

    Records are never timed out (``message.timeout.ms`` 0: the idempotent producer retries
    until the broker is back, in order and without duplicates), so `confirm` waits through a
    broker outage as Faust's producer did, logging every `WAIT_LOG_SECONDS`. A record the
    broker refuses for good (too large, topic gone) fails `confirm` with `DeliveryError`.
    Murmur2 partitioning, as Java and aiokafka: keys land where Faust would have put them.
    """

    WAIT_LOG_SECONDS = 30.0

    LINGER_MS = 100
    """How long librdkafka gathers records before it sends a request on its own. `confirm`'s flush
    sends at once whatever the linger, so this never delays a batch; a short linger (5 ms) only
    split each agent batch into many small compressed requests, for librdkafka's threads and the
    broker to handle on the worker's cores: ~12 % more worker CPU per event in paired drains."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        config = producer_config(
            bootstrap,
            **{"linger.ms": self.LINGER_MS, "message.timeout.ms": 0, "delivery.report.only.error": True,
               **overrides},
        )
        self._producer = Producer(config)
        self._failed: list[str] = []
        self._error_lines = LogThrottle(10.0)
        self._unconfirmed = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-publisher")

    def _on_error(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:  # only errors are reported (delivery.report.only.error)
            return
        hint = _REFUSAL_HINTS.get(err.code(), "")
        self._failed.append(f"{msg.topic()} {msg.key()!r}: {err}{hint}")
        admitted, held_back = self._error_lines.admit(f"{msg.topic()} {err.code()}")
        if admitted:  # every refused record fails confirm anyway; one line per topic and cause
            log.error(
                "delivery of %r to %s failed: %s%s%s", msg.key(), msg.topic(), err, hint,
                f" ({held_back} more like it since the last line)" if held_back else "",
            )

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record (never blocks the loop for long: a batch is confirmed before the next)."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_error)
                break
            except BufferError:  # local queue full: let librdkafka deliver some first
                self._producer.poll(0.05)
        self._unconfirmed += 1

    async def confirm(self) -> None:
        """Return once every record published so far is acknowledged; raise DeliveryError if one was refused."""
        if self._unconfirmed == 0 and not self._failed:
            return
        abandon = threading.Event()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._flush, abandon)
        except asyncio.CancelledError:
            abandon.set()  # the agent is stopping: let the flushing thread go (the batch stays unacked)
            raise
        self._unconfirmed = 0
        if self._failed:
            failed, self._failed = self._failed, []
            raise DeliveryError(f"{len(failed)} records refused by the broker, first: {failed[0]}")

    def _flush(self, abandon: threading.Event) -> None:
        started = last_log = time.monotonic()
        while self._producer.flush(0.5) > 0 and not abandon.is_set():
            now = time.monotonic()
            if now - last_log >= self.WAIT_LOG_SECONDS:
                last_log = now
                log.warning(
                    "%d records still unacknowledged after %.0f s: is the broker reachable? (waiting, never dropped)",
                    len(self._producer), now - started,
                )

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (best effort) and stop the flushing thread."""
        try:
            self._producer.flush(timeout)
        finally:
            self._executor.shutdown(wait=False)
