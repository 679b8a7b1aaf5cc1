"""A batch confirmed in the background while the agent processes the next one.

Waiting for the broker's acknowledgement of a batch's outputs left the agent idle for a fifth of
a backlog drain (~40 ms per 500-event batch here), while Faust could not even buffer the next
batch (`take_events` refills only when the agent's body returns). So the agent hands each batch
to a background task that produces its records, waits for their acknowledgement, then writes
the batch's states to the table and acks its input, while the agent takes and processes the
next batch. At most one batch confirms at a time, and batches confirm in order: the flush of a
batch covers exactly its own records, and table writes never go back in time.

`take_events` acks a batch's events when the agent's body returns, which would let Faust commit
offsets whose outputs are not safe yet; `hold_acks` takes one more reference on each message
first, and `release_acks` drops it once the batch is confirmed, so an event's offset is committed
only after its outputs and its state are written, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from faust.types import EventT, StreamT

from streams.producer import BatchPublisher


class Outbox:
    """A batch's output records, produced when the batch before it is confirmed."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.records.append((topic, key, value))

    def send(self, publisher: BatchPublisher) -> None:
        for topic, key, value in self.records:
            publisher.publish(topic, key, value)


class PendingBatch:
    """One batch between processing and confirmation: its events, outputs and dead letters."""

    __slots__ = ("events", "outbox", "deliveries", "accepted")

    def __init__(self, events: Sequence[EventT[Any]]) -> None:
        self.events = events
        self.outbox = Outbox()
        self.deliveries: list[Awaitable[Any]] = []
        self.accepted = 0


def hold_acks(events: Iterable[EventT[Any]]) -> None:
    """Keep the events unacked when `take_events` acks them (see the module docstring)."""
    for event in events:
        event.message.incref()


async def release_acks(stream: StreamT[Any], events: Iterable[EventT[Any]]) -> None:
    """Drop the reference `hold_acks` took: the offsets become committable."""
    for event in events:
        await stream.ack(event)
