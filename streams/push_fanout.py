"""One reader, many SSE clients: how the shared tail hands records to clients, without I/O.

A worker reads the build-status topic once for all its `/stream/builds` clients (the *shared
tail*, `streams.push_tail`). `Fanout` holds what the tail has dispatched (`tail_next`: per
partition, the next offset it will hand out; it only grows) and the connected `Subscriber`s.
Each record is decoded at most once (`TailRecord.decoded`, on the first client that needs it),
then offered to every subscriber that is *live* on its partition.

A subscriber is live on a partition once its own position there is at or past `tail_next`:
from then on every record it still needs comes from the tail, and the records below its
position that the tail hands out later are skipped (they were delivered already). A client
that starts behind the tail (a resume from an older id) reads those partitions with a private
catch-up reader and asks `Fanout.attach` after each batch: the switch happens when the
reader's position has reached `tail_next`, checked and recorded without an `await` in between,
so the tail cannot dispatch in the middle. Each partition thus has exactly one source at a
time, records below the subscriber's position are dropped, and none at or above it is missed.

Everything a subscriber will write (events and gaps, from the tail or its catch-up reader)
goes through one FIFO queue, and each event's id is the subscriber's position when it was
queued. Events are written in queue order, so an id always covers exactly the events written
before it: resuming from it repeats none and skips none. The queue is bounded for the tail:
a client too slow to take live events is dropped (`Subscriber.dropped`) rather than block the
tail; it reconnects with its last id. A catch-up reader waits for room instead (`has_room`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from schemas import BuildStatusChange
from streams.push_stream import EVENT_TYPE, GAP_EVENT_TYPE, Position, StatusFilter, encode_position

CLIENT_QUEUE_EVENTS = 1000
"""Events a client may have queued before it counts as too slow and is dropped."""


@dataclass(frozen=True)
class Decoded:
    change: BuildStatusChange
    data: str
    """The change set as one line of compact JSON: the `data:` of its SSE event."""


def encode_change(change: BuildStatusChange) -> Decoded:
    return Decoded(change, json.dumps(change.model_dump(mode="json"), separators=(",", ":")))


class TailRecord:
    """A build-status record, decoded on first use and then shared by every client."""

    __slots__ = ("partition", "offset", "key", "_value", "_decode", "_decoded", "_done")

    def __init__(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None,
        decode: Callable[[TailRecord], Decoded | None],
    ) -> None:
        self.partition, self.offset, self.key, self._value = partition, offset, key, value
        self._decode = decode
        self._decoded: Decoded | None = None
        self._done = False

    @property
    def value(self) -> bytes | None:
        return self._value

    def decoded(self) -> Decoded | None:
        """The change set, or None when the record cannot be decoded (`decode` logs and counts that, once)."""
        if not self._done:
            self._decoded, self._done = self._decode(self), True
        return self._decoded


@dataclass(frozen=True)
class QueuedEvent:
    event_id: str
    event: str
    data: str


class Subscriber:
    """One client: its filter, its position (the id of its next event) and its queue of events to write."""

    def __init__(self, name: str, wanted: StatusFilter, start: Mapping[int, int], limit: int = CLIENT_QUEUE_EVENTS) -> None:
        if limit < 2:
            raise ValueError("a client queue holds at least 2 events")
        self.name = name
        self.wanted = wanted
        self.position: Position = dict(start)
        """Partition -> next offset, counting the records the filter skipped: the id of the next event."""
        self.live: set[int] = set()
        """Partitions the shared tail feeds; the others are read by the client's catch-up reader."""
        self.limit = limit
        self.dropped: str | None = None
        self.queued = 0
        self.pushed = 0
        """Change sets written to the client (kept by the writer)."""
        self._events: deque[QueuedEvent] = deque()
        self.wakeup = asyncio.Event()
        """Set when there is something to write, or the subscriber was dropped."""

    @property
    def behind(self) -> set[int]:
        return set(self.position) - self.live

    def __len__(self) -> int:
        return len(self._events)

    def has_room(self) -> bool:
        """A catch-up reader reads on only while the queue is at most half full, leaving the rest to the tail."""
        return len(self._events) <= self.limit // 2

    def take(self, record: TailRecord) -> bool:
        """Queue `record` if it is new to this client and matches. False, with nothing changed, when
        it matches but the queue is full: the client is too slow."""
        partition = record.partition
        if record.offset < self.position[partition]:
            return True  # delivered already, by the catch-up reader
        decoded = record.decoded() if self.wanted.key_may_match(record.key) else None
        wanted = decoded is not None and self.wanted.matches(decoded.change)
        if wanted and len(self._events) >= self.limit:
            return False
        self.position[partition] = record.offset + 1
        if decoded is not None and wanted:
            self._push(QueuedEvent(encode_position(self.position), EVENT_TYPE, decoded.data))
        return True

    def gap(self, partition: int, earliest: int) -> None:
        """Records from our position to `earliest` were deleted (retention) before they were read: say so, skip them."""
        if earliest <= self.position[partition]:
            return
        missed = {
            "partition": partition, "resume_offset": self.position[partition], "earliest_offset": earliest,
            "missed": earliest - self.position[partition],
        }
        self.position[partition] = earliest
        self._push(QueuedEvent(encode_position(self.position), GAP_EVENT_TYPE, json.dumps(missed, separators=(",", ":"))))

    def _push(self, event: QueuedEvent) -> None:
        self._events.append(event)
        self.queued += 1
        self.wakeup.set()

    def drain(self) -> list[QueuedEvent]:
        """Everything queued, in order; clears the wake-up unless the subscriber was dropped."""
        events = list(self._events)
        self._events.clear()
        if self.dropped is None:
            self.wakeup.clear()
        return events

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self.wakeup.set()


class Fanout:
    """The shared tail's position and its subscribers; every method is synchronous (atomic in asyncio)."""

    def __init__(self) -> None:
        self.tail_next: Position = {}
        """Partition -> next offset the tail hands out; every later record at or past it will be dispatched."""
        self.subscribers: set[Subscriber] = set()
        self._by_partition: dict[int, set[Subscriber]] = {}

    def start_at(self, positions: Mapping[int, int]) -> None:
        """The tail (re)starts at `positions`; only allowed while nobody subscribes."""
        if self.subscribers:
            raise RuntimeError("the shared tail cannot move under its subscribers")
        self.tail_next = dict(positions)
        self._by_partition = {partition: set() for partition in positions}

    def register(self, subscriber: Subscriber, *, live_end: bool) -> None:
        """Add a subscriber; partitions it starts at or past the tail in are live at once.

        With `live_end` (a client without a resume id) its start is raised to the tail's
        position, so a new client never needs a catch-up reader.
        """
        for partition, start in subscriber.position.items():
            tail = self.tail_next.get(partition)
            if tail is None:
                continue  # a partition added after the tail started: the catch-up reader keeps it
            if live_end and start < tail:
                subscriber.position[partition] = start = tail
            if start >= tail:
                self._go_live(subscriber, partition)
        self.subscribers.add(subscriber)

    def attach(self, subscriber: Subscriber, partition: int, reader_position: int) -> bool:
        """The catch-up reader has handed over every record below `reader_position`: switch the
        partition to the tail if the tail has not dispatched anything past it yet."""
        tail = self.tail_next.get(partition)
        if subscriber not in self.subscribers or tail is None or reader_position < tail:
            return False
        subscriber.position[partition] = max(subscriber.position[partition], reader_position)
        self._go_live(subscriber, partition)
        return True

    def _go_live(self, subscriber: Subscriber, partition: int) -> None:
        subscriber.live.add(partition)
        self._by_partition[partition].add(subscriber)

    def unregister(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        for partition in subscriber.live:
            self._by_partition.get(partition, set()).discard(subscriber)

    def dispatch(self, records: Iterable[TailRecord]) -> list[Subscriber]:
        """Hand the tail's next records (in offset order per partition) to the live subscribers;
        returns the ones dropped because their queue was full."""
        dropped: list[Subscriber] = []
        for record in records:
            partition = record.partition
            if record.offset < self.tail_next[partition]:
                continue
            self.tail_next[partition] = record.offset + 1
            for subscriber in self._by_partition[partition]:
                if not subscriber.take(record):
                    dropped.append(subscriber)
            for subscriber in dropped:
                if subscriber in self.subscribers:
                    self.drop(subscriber, "slow")
        return dropped

    def tail_gap(self, partition: int, earliest: int) -> None:
        """The tail fell behind retention in `partition`: it goes on at `earliest`, live subscribers get a gap."""
        self.tail_next[partition] = max(self.tail_next[partition], earliest)
        for subscriber in self._by_partition[partition]:
            subscriber.gap(partition, earliest)

    def drop_all(self, reason: str) -> None:
        for subscriber in list(self.subscribers):
            self.drop(subscriber, reason)

    def drop(self, subscriber: Subscriber, reason: str) -> None:
        self.unregister(subscriber)
        subscriber.drop(reason)
