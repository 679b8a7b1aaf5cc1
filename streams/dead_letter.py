"""Send rejected input to the dead-letter topic with its origin and a reason.

Nothing is dropped silently: every record an agent cannot use ends here with the
original bytes, `topic[partition]@offset`, and a sentence that says what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from faust.types import EventT, TopicT

from schemas import DeadLetter, DeadLetterKind, TopLevelRecord
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode, encode
from streams import metrics

log = logging.getLogger(__name__)

R = TypeVar("R", bound=TopLevelRecord)


class DeadLetterPublisher:
    """Publishes `DeadLetter` records for one processor (agent) name."""

    def __init__(self, topic: TopicT, processor: str) -> None:
        self._topic = topic
        self._processor = processor

    async def publish(
        self, event: EventT[Any], kind: DeadLetterKind, reason: str, payload: bytes | None = None
    ) -> Awaitable[Any]:
        """Queue the dead letter and return its delivery future (await it before acking).

        `payload` replaces the event's bytes when something else is what failed (a notification
        given up carries the message that was not delivered, not the receipt that reported it).
        """
        message = event.message
        key = _as_bytes(message.key)
        value = dead_letter_value(
            self._processor, message.topic, message.partition, message.offset, key,
            payload if payload is not None else (_as_bytes(message.value) or b""), kind, reason,
        )
        return await self._topic.send(key=key, value=value)


    async def decode_or_reject(self, event: EventT[Any], model: type[R], deliveries: list[Awaitable[Any]]) -> R | None:
        """The event's record, or None after queueing its dead letter (its future joins `deliveries`)."""
        try:
            return decode(event.value, model)
        except UndecodableError as exc:
            deliveries.append(await self.publish(event, DeadLetterKind.UNDECODABLE, str(exc)))
        except SchemaViolationError as exc:
            deliveries.append(await self.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc)))
        return None


def dead_letter_value(
    processor: str, topic: str, partition: int, offset: int, key: bytes | None, payload: bytes,
    kind: DeadLetterKind, reason: str,
) -> bytes:
    """The encoded `DeadLetter` for one rejected record; logs it and counts it for `processor`."""
    log.warning("%s: %s[%d]@%d -> dead-letter (%s): %s", processor, topic, partition, offset, kind.value, reason)
    metrics.DEAD_LETTERS.labels(processor, kind.value).inc()
    return encode(DeadLetter(
        source_topic=topic, source_partition=partition, source_offset=offset, key=key, payload=payload,
        kind=kind, reason=reason, failed_at=datetime.now(UTC), processor=processor,
    ))


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode()
