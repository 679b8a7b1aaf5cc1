"""Records fetched before a seek are not delivered; a seek followed by a queue clear is fetched again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams import metrics
from streams.faust_stale_batches import PositionStamp, StaleBatchGuardConsumer, StampedRecords, stamp_positions

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


def test_flow_resumed_fetches_every_assigned_partition_again_from_committed_once(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tp2 = TP("events", 2)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0, TP1, tp2, TP("changelog", 0)})
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: topic == "events")
    consumer._committed_offset.update({TP0: 263})  # TP1 and tp2: nothing committed yet
    fetched_batch(consumer, monkeypatch, [(TP0, 480), (TP1, 7), (TP1, 8)], {TP0: PartitionState(481), TP1: PartitionState(9)})
    consumer._expect(TP0, 480)
    consumer._expect(TP1, 7)
    assert delivered(consumer) == [(0, 480), (1, 7), (1, 8)]
    assert consumer.seeks == []  # nothing until flow resumes (which clears the stream queues)
    consumer.resume_flow()
    fetched_batch(consumer, monkeypatch, [(TP0, 263)], {TP0: PartitionState(264)})
    assert delivered(consumer) == [(0, 263)]
    # before that fetch; TP1 from where its uncommitted delivery began; tp2 had nothing to lose
    assert consumer.seeks == [(TP0, 263), (TP1, 7)]
    fetched_batch(consumer, monkeypatch, [(TP0, 264)], {TP0: PartitionState(265)})
    delivered(consumer)
    assert len(consumer.seeks) == 2  # once per resume


def test_a_record_in_hand_is_not_delivered_once_its_partition_moved(consumer: Any) -> None:
    states = {TP0: PartitionState(440)}
    consumer._batch_stamps = stamp_positions(aiokafka_consumer(states), [TP0])
    consumer._batch_consumer = aiokafka_consumer(states)
    assert consumer.still_deliverable(TP0)
    states[TP0]._position = 263  # a seek while the drain loop awaited
    assert not consumer.still_deliverable(TP0)


def test_resumed_flow_returns_partitions_out_of_the_fetch_for_a_full_queue(consumer: Any) -> None:
    # the recovery's clear emptied the queue, which therefore never drains to let TP0 back in
    consumer._active_partitions = {TP1}
    consumer._buffered_partitions = {TP0}
    consumer.resume_flow()
    assert consumer._active_partitions == {TP0, TP1}
    assert consumer._buffered_partitions == set()


class RecordingAiokafkaConsumer:
    """Checks what aiokafka checks: assigned partitions, given as aiokafka TopicPartitions."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = {TopicPartition(tp.topic, tp.partition) for tp in assigned}
        self.calls: list[tuple[Any, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, partition: Any, offset: int) -> None:
        assert type(partition) is TopicPartition
        self.calls.append((partition, offset))


def test_seeks_run_in_the_consumer_thread_with_aiokafka_partitions(consumer: Any) -> None:
    aiokafka = RecordingAiokafkaConsumer({TP0, TP1})

    async def call_thread(function: Any) -> Any:
        return await function()

    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: aiokafka, call_thread=call_thread)

    async def seeks() -> list[bool]:
        return [await StaleBatchGuardConsumer.seek_in_thread(consumer, TP0, 263),
                await StaleBatchGuardConsumer.seek_in_thread(consumer, TP1, 0),
                await StaleBatchGuardConsumer.seek_in_thread(consumer, TP("events", 2), 5)]

    assert asyncio.run(seeks()) == [True, True, False]  # partition 2 is not assigned (any more)
    assert aiokafka.calls == [(TopicPartition("events", 0), 263), (TopicPartition("events", 1), 0)]
    assert consumer._read_offset[TP0] == 263 and consumer._read_offset[TP1] is None


def test_a_revoked_partition_forgets_where_its_uncommitted_delivery_began(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._note_delivery(TP0, 7)
    consumer._note_delivery(TP0, 9)  # the first one counts
    assert consumer._first_uncommitted_delivery == {TP0: 7}

    async def stock_revoke(self: Any, revoked: set[TP]) -> None:
        return None

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_revoked", stock_revoke)
    asyncio.run(consumer.on_partitions_revoked({TP0}))
    assert consumer._first_uncommitted_delivery == {}


def test_records_the_drain_loop_skips_as_stale_are_counted(consumer: Any) -> None:
    before = metrics.CONSUMER_STALE_RECORDS_SKIPPED._value.get()
    consumer.on_stale_record(TP0)
    assert metrics.CONSUMER_STALE_RECORDS_SKIPPED._value.get() == before + 1
