"""A batch confirming in the background: the next batch reads its states before the table has
them, the table gets batches in order, and its events stay unacked until it is confirmed."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.events import Event
from faust.types.tuples import ConsumerMessage
from hypothesis import given
from hypothesis import strategies as st

from streams.batch_pipeline import Outbox, hold_acks, release_acks
from streams.batch_states import BatchStates


class _Event:
    """Stands in for the Faust event whose partition a staged write goes to."""


def _load(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _dump(state: str) -> bytes:
    return state.encode()


KEYS = st.sampled_from([b"a", b"b", b"c"])
WRITE = st.tuples(KEYS, st.one_of(st.none(), st.text(alphabet="xyz", min_size=1, max_size=3)))
STEP = st.one_of(
    st.tuples(st.just("write"), WRITE),
    st.tuples(st.just("seal"), st.none()),
    st.tuples(st.just("commit"), st.none()),
)


@given(st.lists(STEP, max_size=60))
def test_reads_see_every_staged_write_and_the_table_only_committed_batches_in_order(
    steps: list[tuple[str, Any]],
) -> None:
    table: dict[bytes, bytes] = {}
    states = BatchStates(table, _load, _dump)  # type: ignore[arg-type]
    batches: list[dict[bytes, str | None]] = [{}]  # writes per batch, sealed ones then the open one
    committed: dict[bytes, str] = {}
    for action, argument in steps:
        if action == "write":
            key, value = argument
            if value is None:
                states.delete(key, _Event())  # type: ignore[arg-type]
            else:
                states.put(key, value, _Event())  # type: ignore[arg-type]
            batches[-1][key] = value
        elif action == "seal":
            states.seal()
            batches.append({})
        elif len(batches) > 1:  # commit the oldest sealed batch, if there is one
            states.commit_sealed()
            for key, value in batches.pop(0).items():
                if value is None:
                    committed.pop(key, None)
                else:
                    committed[key] = value
        for key in (b"a", b"b", b"c"):
            latest: str | None = committed.get(key)
            for batch in batches:
                if key in batch:
                    latest = batch[key]
            assert states.get(key) == latest
        assert {key: raw.decode() for key, raw in table.items()} == committed


class _Consumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: ConsumerMessage) -> bool:
        self.acked.append(message.offset)
        return True


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()


class _Stream:
    """Faust's Stream.ack is the event's ack plus sensor calls (no-ops in the worker)."""

    async def ack(self, event: Event) -> bool:
        return event.ack()


def _event(app: _App, offset: int) -> Event:
    message = ConsumerMessage("builds", 0, offset, 0.0, 0, None, b"k", b"v", None)
    message.incref()  # the conductor's reference for the one stream that reads the topic
    return Event(app, b"k", b"v", None, message)  # type: ignore[arg-type]


def test_held_events_are_acked_only_when_released_whatever_the_order() -> None:
    app = _App()
    events = [_event(app, offset) for offset in range(3)]
    hold_acks(events)
    for event in events:  # what take_events does when the agent's body returns
        event.ack()
    assert app.consumer.acked == [] and not any(event.message.acked for event in events)
    asyncio.run(release_acks(_Stream(), events))  # type: ignore[arg-type]
    assert app.consumer.acked == [0, 1, 2]

    late = [_event(app, 3)]
    hold_acks(late)
    asyncio.run(release_acks(_Stream(), late))  # type: ignore[arg-type]  # confirmed before take_events acked it
    assert app.consumer.acked == [0, 1, 2]
    late[0].ack()
    assert app.consumer.acked == [0, 1, 2, 3]


class _Publisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.records.append((topic, key, value))


def test_the_outbox_produces_its_records_in_the_order_they_were_published() -> None:
    outbox = Outbox()
    outbox.publish("status", b"b1", b"1")
    outbox.publish("finals", b"p/main", b"1")
    outbox.publish("status", b"b2", b"2")
    publisher = _Publisher()
    outbox.send(publisher)  # type: ignore[arg-type]
    assert publisher.records == [("status", b"b1", b"1"), ("finals", b"p/main", b"1"), ("status", b"b2", b"2")]
