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
        origin = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("%s: %s -> dead-letter (%s): %s", self._processor, origin, kind.value, reason)
        record = DeadLetter(
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            key=_as_bytes(message.key),
            payload=payload if payload is not None else (_as_bytes(message.value) or b""),
            kind=kind,
            reason=reason,
            failed_at=datetime.now(UTC),
            processor=self._processor,
        )
        metrics.DEAD_LETTERS.labels(self._processor, kind.value).inc()
        return await self._topic.send(key=_as_bytes(message.key), value=encode(record))


    async def decode_or_reject(self, event: EventT[Any], model: type[R], deliveries: list[Awaitable[Any]]) -> R | None:
        """The event's record, or None after queueing its dead letter (its future joins `deliveries`)."""
        try:
            return decode(event.value, model)
        except UndecodableError as exc:
            deliveries.append(await self.publish(event, DeadLetterKind.UNDECODABLE, str(exc)))
        except SchemaViolationError as exc:
            deliveries.append(await self.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc)))
        return None


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode()
