"""Drains the outbox to Kafka on a background thread, in order, deleting only what the broker
acknowledged.

Rows are produced oldest first (at most `window` unacknowledged at a time) through an
idempotent producer (`enable.idempotence`, `acks=all`, at most 5 requests in flight, which is
what lets librdkafka keep per-partition order across its own retries). A row is deleted only
in its delivery callback's success branch. While the broker is away librdkafka holds the
produced rows and reconnects by itself; a row it gives up on (after `delivery_timeout_s`)
stops the drain: the rest of the queue is purged, the rows still in flight are waited for,
and after an exponential backoff with full jitter (`uniform(0, min(cap, base * 2**attempt))`)
the drain starts again from the oldest row left in the outbox. So the outbox order is the
send order, and nothing leaves the outbox unacknowledged.

At least once, not exactly once: a runner killed between the broker's ack and the delete
re-sends those rows on its next start. They carry the same `event_id` and `seq`, and the
worker's per-node `seq` ignores them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.reporter.exceptions import ReporterError
from streams.reporter.outbox import Outbox, OutboxRow, Synchronous

log = logging.getLogger(__name__)

_REQUIRED = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
_MAX_IN_FLIGHT = 5
_SETTLE_INTERVAL_S = 0.1


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreads the
    retries of many runners that lost the same broker at the same moment."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** min(attempt, 32)))


def sender_producer_config(base: dict[str, Any], delivery_timeout_s: float) -> dict[str, Any]:
    """The build-event producer settings plus what ordered, acknowledged draining needs."""
    config = {
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "max.in.flight.requests.per.connection": _MAX_IN_FLIGHT,
        **base,
    }
    for key, wanted in _REQUIRED.items():
        have = str(config.setdefault(key, wanted)).lower()
        if have != str(wanted).lower() and not (key == "acks" and have == "-1"):
            raise ReporterError(f"producer setting {key}={config[key]!r} breaks ordered delivery; the reporter needs {wanted!r}")
    if int(config["max.in.flight.requests.per.connection"]) > _MAX_IN_FLIGHT:
        raise ReporterError(
            "max.in.flight.requests.per.connection must be at most 5 with idempotence, or order is lost"
        )
    return config


@dataclass
class SenderStats:
    """Counters of the drain, read by the facade (plain ints: a torn read is harmless)."""

    delivered: int = 0
    failed_deliveries: int = 0
    backoffs: int = 0
    broker_down_reports: int = 0
    last_error: str | None = None


class OutboxSender:
    def __init__(
        self,
        outbox_path: Path,
        topic: str,
        producer_config: dict[str, Any],
        *,
        window: int,
        read_batch: int,
        backoff_base_s: float,
        backoff_cap_s: float,
        idle_wait_s: float,
        synchronous: Synchronous,
        on_deleted: Callable[[Outbox, list[int]], None],
        rng: random.Random | None = None,
    ) -> None:
        self._path = outbox_path
        self._topic = topic
        self._config = {**producer_config, "error_cb": self._on_error, "logger": log}
        self._window = window
        self._read_batch = read_batch
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._idle_wait_s = idle_wait_s
        self._synchronous = synchronous
        self._on_deleted = on_deleted
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="cipulse-reporter-sender", daemon=True)
        self.stats = SenderStats()
        # drain state, touched only by the sender thread (callbacks run inside its poll())
        self._in_flight: set[int] = set()
        self._acked: list[int] = []
        self._first_ack_at = 0.0
        self._failed = False
        self._fatal = False
        self._attempt = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New rows were accepted: look now instead of after the idle wait."""
        self._wake.set()

    def stop(self, drain_timeout_s: float) -> None:
        """Keep draining for up to `drain_timeout_s`, then stop; undelivered rows stay in the outbox."""
        self._deadline = time.monotonic() + drain_timeout_s
        self._stopping.set()
        self._wake.set()
        self._thread.join(drain_timeout_s + 30.0)
        if self._thread.is_alive():
            log.error("reporter sender did not stop within %.0f s", drain_timeout_s + 30.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        outbox = Outbox(self._path, synchronous=self._synchronous)
        try:
            while not self._stopping.is_set() or time.monotonic() < self._deadline:
                try:
                    if self._drain(outbox):
                        return
                except Exception as exc:  # noqa: BLE001 - the sender must outlive any one failure
                    self.stats.last_error = repr(exc)
                    log.exception("reporter sender failed; retrying after a backoff")
                    self._pause()
        finally:
            outbox.close()

    def _drain(self, outbox: Outbox) -> bool:
        """Run one producer until stopped (True) or a fatal error needs a new producer (False)."""
        producer = Producer(self._config)
        self._in_flight.clear()
        cursor = 0
        purged = False
        try:
            while True:
                stopping = self._stopping.is_set()
                if stopping and time.monotonic() >= self._deadline:
                    return True
                produced = 0
                if not self._failed and len(self._in_flight) < self._window:
                    rows = outbox.pending(cursor, min(self._window - len(self._in_flight), self._read_batch))
                    for row in rows:
                        self._produce(producer, row)
                        cursor = row.id
                    produced = len(rows)
                producer.poll(0.05 if self._in_flight else 0)
                self._settle(outbox)
                if self._failed:
                    self._settle(outbox, force=True)
                    if self._in_flight:
                        if not purged:  # queued rows must not overtake the failed one
                            producer.purge(in_queue=True, in_flight=False, blocking=True)
                            purged = True
                        continue
                    purged = False
                    if self._fatal:
                        return False
                    self._pause()
                    cursor = 0  # start again from the oldest row still in the outbox
                    continue
                if not produced and not self._in_flight:
                    self._settle(outbox, force=True)
                    if stopping:
                        return True  # drained
                    self._wake.wait(self._idle_wait_s)
                    self._wake.clear()
        finally:
            producer.purge(in_queue=True, in_flight=False, blocking=True)
            producer.flush(5.0)  # in-flight rows may still be acknowledged
            self._settle(outbox, force=True)
            self._in_flight.clear()

    def _produce(self, producer: Producer, row: OutboxRow) -> None:
        callback = partial(self._on_delivery, row.id)
        while True:
            try:
                producer.produce(self._topic, key=row.key, value=row.value, on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.05)
        self._in_flight.add(row.id)

    def _settle(self, outbox: Outbox, *, force: bool = False) -> None:
        """Delete acknowledged rows: in batches (one SQLite commit per `settle_interval_s` or
        `read_batch` rows, not one per row), and always before a rewind or going idle, since
        a rewind would re-send rows that were acknowledged but are still in the outbox."""
        if not self._acked:
            return
        if force or len(self._acked) >= self._read_batch or time.monotonic() - self._first_ack_at >= _SETTLE_INTERVAL_S:
            acked, self._acked = self._acked, []
            self._on_deleted(outbox, acked)

    def _pause(self) -> None:
        delay = backoff_delay(self._attempt, *self._backoff, self._rng)
        self._attempt += 1
        self.stats.backoffs += 1
        log.warning("reporter: delivery failed (%s); retrying in %.2f s (attempt %d), changes wait in the outbox",
                    self.stats.last_error, delay, self._attempt)
        self._stopping.wait(delay)
        self._failed = False
        self._fatal = False

    def _on_delivery(self, row_id: int, err: KafkaError | None, msg: Message) -> None:
        self._in_flight.discard(row_id)
        if err is None:
            if not self._acked:
                self._first_ack_at = time.monotonic()
            self._acked.append(row_id)
            self.stats.delivered += 1
            self._attempt = 0
            return
        self.stats.failed_deliveries += 1
        if err.code() != KafkaError._PURGE_QUEUE:
            self.stats.last_error = f"{msg.topic()}: {err.str()}"
            if err.fatal():
                self._fatal = True
        self._failed = True

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.stats.broker_down_reports += 1
            log.warning("reporter: Kafka unreachable (%s); changes wait in the outbox", err.str())
        elif err.fatal():
            self._fatal = True
            self._failed = True
            self.stats.last_error = err.str()
            log.error("reporter: fatal producer error %s; a new producer takes over", err.str())
        else:
            log.info("reporter: producer error %s", err.str())
