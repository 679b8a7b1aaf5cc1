"""Dead letters for records read by a consumer thread (`streams.thread_consumer`), through librdkafka.

The Faust agents reject Faust events (`streams.dead_letter.DeadLetterPublisher`); the consumer
threads hold confluent-kafka records and their own producer, and must not touch Faust's loop.
"""

from __future__ import annotations

from typing import TypeVar

from confluent_kafka import Message

from schemas import DeadLetterKind, TopLevelRecord
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode
from streams.dead_letter import dead_letter_value
from streams.producer import BatchPublisher

R = TypeVar("R", bound=TopLevelRecord)


class RecordDeadLetters:
    """Queues `DeadLetter`s for one processor; `confirm` before the batch's offsets may be committed."""

    def __init__(self, bootstrap: str, topic: str, processor: str) -> None:
        self._publisher = BatchPublisher(bootstrap)
        self._topic = topic
        self._processor = processor

    def reject(self, record: Message, kind: DeadLetterKind, reason: str, payload: bytes | None = None) -> None:
        """Queue the record's dead letter; `payload` replaces its bytes when something else failed."""
        key = record.key()
        self._publisher.publish(self._topic, key, dead_letter_value(
            self._processor, record.topic() or "", record.partition() or 0, record.offset() or 0, key,
            payload if payload is not None else (record.value() or b""), kind, reason,
        ))

    def decode_or_reject(self, record: Message, model: type[R]) -> R | None:
        """The record's model, or None after queueing its dead letter."""
        try:
            return decode(record.value() or b"", model)
        except UndecodableError as exc:
            self.reject(record, DeadLetterKind.UNDECODABLE, str(exc))
        except SchemaViolationError as exc:
            self.reject(record, DeadLetterKind.SCHEMA_VIOLATION, str(exc))
        return None

    async def confirm(self) -> None:
        """Return once every queued dead letter is acknowledged (raises DeliveryError if one was refused)."""
        await self._publisher.confirm()

    def close(self) -> None:
        self._publisher.close(timeout=1.0)
