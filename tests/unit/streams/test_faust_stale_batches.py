"""Records fetched before a seek are not delivered; a seek followed by a queue clear is fetched again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams.faust_patches import CipulseApp
from streams.faust_stale_batches import PositionStamp, StampedRecords, stamp_positions

TP0, TP1 = TP("events", 0), TP("events", 1)


class PartitionState:
    """Stands in for aiokafka's TopicPartitionState: only the position matters here."""

    def __init__(self, position: int | None) -> None:
        self._position = position


def aiokafka_consumer(states: dict[TP, PartitionState]) -> Any:
    assignment = SimpleNamespace(state_value=states.get)
    return SimpleNamespace(_subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)))


def test_a_stamp_holds_until_the_partition_is_sought_reset_or_reassigned() -> None:
    state = PartitionState(437)
    stamp = PositionStamp(state, 437)
    assert stamp.still_current(state)
    state._position = 263  # seek_to_committed
    assert not stamp.still_current(state)
    assert not stamp.still_current(PartitionState(437))  # a new assignment: a new state object
    assert not stamp.still_current(None)  # no longer assigned
    state._position = None  # awaiting an offset reset
    assert not stamp.still_current(state)


def test_stamps_are_taken_per_fetched_partition() -> None:
    states = {TP0: PartitionState(437), TP1: PartitionState(90)}
    stamps = stamp_positions(aiokafka_consumer(states), [TP0, TP1, TP("events", 2)])
    assert stamps[TP0] == PositionStamp(states[TP0], 437)
    assert stamps[TP1] == PositionStamp(states[TP1], 90)
    assert stamps[TP("events", 2)] == PositionStamp(None, None)
    records = StampedRecords({TP0: ["r"]}, stamps)
    assert records == {TP0: ["r"]} and records.stamps == stamps


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Any:
    app = CipulseApp("stale-batch-test", broker="kafka://localhost:9092", autodiscover=False, store="memory://")
    instance = app.consumer
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    instance.seeks = []

    async def seek_in_thread(tp: TP, offset: int) -> bool:
        instance.seeks.append((tp, offset))
        return True

    monkeypatch.setattr(instance, "seek_in_thread", seek_in_thread)
    return instance


def fetched_batch(consumer: Any, monkeypatch: pytest.MonkeyPatch, offsets: list[tuple[TP, int]],
                  states: dict[TP, PartitionState], seek_after: int | None = None, seek_to: int = 0) -> None:
    """Faust's getmany yields `offsets` of a batch stamped with `states`; after `seek_after` records,
    TP0 is sought to `seek_to` (what the recovery's seek_to_committed does in the consumer thread)."""
    consumer._batch_stamps = stamp_positions(aiokafka_consumer(states), {tp for tp, _ in offsets})
    consumer._batch_consumer = aiokafka_consumer(states)

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for index, (tp, offset) in enumerate(offsets):
            if index == seek_after:
                states[TP0]._position = seek_to
            yield tp, SimpleNamespace(tp=tp, topic=tp.topic, offset=offset)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)


def delivered(consumer: Any) -> list[tuple[int, int]]:
    async def run() -> list[tuple[int, int]]:
        return [(tp.partition, message.offset) async for tp, message in consumer.getmany(1.0)]

    return asyncio.run(run())


def test_records_after_a_seek_of_their_partition_are_skipped_and_others_delivered(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    states = {TP0: PartitionState(440), TP1: PartitionState(93)}
    batch = [(TP0, 437), (TP1, 90), (TP0, 438), (TP1, 91), (TP0, 439), (TP1, 92)]
    fetched_batch(consumer, monkeypatch, batch, states, seek_after=2, seek_to=263)
    consumer._expect(TP0, 437)
    consumer._expect(TP1, 90)
    with caplog.at_level("INFO", logger="streams.faust_stale_batches"):
        assert delivered(consumer) == [(0, 437), (1, 90), (1, 91), (1, 92)]
    assert "events[0] x2" in caplog.text
    assert consumer.seeks == []  # the seek itself set the position they are fetched again from


def test_an_unsought_batch_is_delivered_whole(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    states = {TP0: PartitionState(12)}
    fetched_batch(consumer, monkeypatch, [(TP0, 10), (TP0, 11)], states)
    consumer._expect(TP0, 10)
    assert delivered(consumer) == [(0, 10), (0, 11)]


def test_flow_resumed_after_a_seek_fetches_the_sought_partitions_again_from_committed(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stock_perform_seek(self: Any) -> None:
        self._committed_offset.update({TP0: 263, TP1: None})  # what seek_to_committed read

    monkeypatch.setattr(faust_consumer.Consumer, "perform_seek", stock_perform_seek)
    asyncio.run(consumer.perform_seek())
    states = {TP0: PartitionState(500)}
    fetched_batch(consumer, monkeypatch, [(TP0, 480)], states)
    consumer._expect(TP0, 480)
    assert delivered(consumer) == [(0, 480)]
    assert consumer.seeks == []  # nothing until flow control resumes (and clears the stream queues)
    consumer.resume_flow()
    fetched_batch(consumer, monkeypatch, [(TP0, 263)], {TP0: PartitionState(264)})
    assert delivered(consumer) == [(0, 263)]
    assert consumer.seeks == [(TP0, 263)]  # before that fetch; TP1 has no committed offset to go back to
    fetched_batch(consumer, monkeypatch, [(TP0, 264)], {TP0: PartitionState(265)})
    delivered(consumer)
    assert consumer.seeks == [(TP0, 263)]  # once per resume


def test_a_revoked_partition_is_not_sought_again(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer._sought_before_resume = {TP0}
    consumer.resume_flow()

    async def revoke() -> None:
        await consumer.on_partitions_revoked({TP0})

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_revoked", lambda self, revoked: asyncio.sleep(0))
    asyncio.run(revoke())
    fetched_batch(consumer, monkeypatch, [], {TP0: PartitionState(1)})
    assert delivered(consumer) == []
    assert consumer.seeks == []


def test_resumed_flow_returns_partitions_out_of_the_fetch_for_a_full_queue(consumer: Any) -> None:
    # the recovery's clear emptied the queue, which therefore never drains to let TP0 back in
    consumer._active_partitions = {TP1}
    consumer._buffered_partitions = {TP0}
    consumer.resume_flow()
    assert consumer._active_partitions == {TP0, TP1}
    assert consumer._buffered_partitions == set()
