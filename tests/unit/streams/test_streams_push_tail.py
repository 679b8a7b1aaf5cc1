"""The shared tail and a catch-up reader run for real against an in-memory topic (control-record
holes included) while records keep arriving: a resumed client catches up and joins with every
record once, a live client gets everything from its start, a client that never reads is dropped
without holding the others, and the tail stops after its last client (plus the linger)."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from schemas import BuildStatus, BuildStatusChange
from schemas.serde import encode
from streams import metrics
from streams.push_fanout import Subscriber
from streams.push_stream import StatusFilter
from streams.push_tail import SharedTail, catch_up

TOPIC = "t.build-status"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@dataclass
class Record:
    offset: int
    key: bytes
    value: bytes


class Topic:
    def __init__(self, partitions: int, seed: int) -> None:
        self.logs: dict[int, dict[int, Record]] = {p: {} for p in range(partitions)}
        self.ends = dict.fromkeys(range(partitions), 0)
        self.random = random.Random(seed)

    def append(self, partition: int) -> None:
        if self.random.random() < 0.2:  # a transaction marker: an offset without a record
            self.ends[partition] += 1
        offset = self.ends[partition]
        build_id = f"b-{partition}-{offset}"
        change = BuildStatusChange(
            build_id=build_id, project=("payments", "search")[offset % 2], pipeline="deploy", seq=1, revision=1,
            event_id="e", event_time=NOW, status=BuildStatus.QUEUED, first_seen_at=NOW,
        )
        self.logs[partition][offset] = Record(offset, build_id.encode(), encode(change))
        self.ends[partition] = offset + 1


class FakeConsumer:
    """The part of AIOKafkaConsumer the push channel uses, over `Topic`."""

    def __init__(self, topic: Topic, batch: int) -> None:
        self.topic, self.stopped, self.batch = topic, False, batch
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self._client = self

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    async def fetch_all_metadata(self) -> Any:
        return self

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.topic.logs)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.topic.ends[tp.partition] for tp in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def highwater(self, tp: TopicPartition) -> int:
        return self.topic.ends[tp.partition]

    async def position(self, tp: TopicPartition) -> int:
        return int(self.positions[tp])

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int = 10) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0.001 * (self.batch == 1))
        batches: dict[TopicPartition, list[Record]] = {}
        for tp in partitions or list(self.positions):
            if tp in self.paused:
                continue
            log = self.topic.logs[tp.partition]
            records = [log[o] for o in sorted(log) if o >= self.positions[tp]][: random.randint(1, min(max_records, self.batch))]
            if records:
                batches[tp] = records
            # past the records returned, and past the markers after them when it reached the end
            self.positions[tp] = records[-1].offset + 1 if records else self.topic.ends[tp.partition]
            if records and records[-1].offset == max(log):
                self.positions[tp] = self.topic.ends[tp.partition]
        return batches


def received(events: list[tuple[str, str]]) -> list[tuple[int, int]]:
    out = []
    for _, data in events:
        _, partition, offset = json.loads(data)["build_id"].split("-")
        out.append((int(partition), int(offset)))
    return out


def test_the_shared_tail_and_a_catch_up_reader_hand_over_without_loss_or_duplication() -> None:
    async def scenario() -> None:
        topic = Topic(partitions=3, seed=7)
        for i in range(90):
            topic.append(i % 3)
        consumers: list[FakeConsumer] = []

        def make(client_id: str) -> FakeConsumer:  # a slow tail (1 record a read), fast catch-up readers
            consumers.append(FakeConsumer(topic, batch=1 if not consumers else 50))
            return consumers[-1]

        tail = SharedTail(TOPIC, make, "app", linger=0.05)
        dropped_before = metrics.SSE_CLIENTS_DROPPED.labels("slow")._value.get()
        for _ in range(3):
            await tail.acquire()
        assert tail.starts == 1 and len(consumers) == 1
        live = Subscriber("live", StatusFilter(), (await tail.plan(None)).offsets)
        resume = {0: 3, 1: 0, 2: 17}
        resumed = Subscriber("resumed", StatusFilter(), (await tail.plan(resume)).offsets)
        slow = Subscriber("slow", StatusFilter(), (await tail.plan(None)).offsets, limit=4)
        live_start = dict(live.position)
        for subscriber in (live, resumed, slow):
            tail.fanout.register(subscriber, live_end=subscriber is not resumed)
        assert resumed.behind == {0, 1, 2} and not live.behind
        stop = asyncio.Event()
        reader = asyncio.create_task(catch_up(tail, resumed, make, stop))
        got: dict[str, list[tuple[str, str]]] = {"live": [], "resumed": []}

        async def produce() -> None:
            for i in range(300):
                topic.append(random.Random(i).randrange(3))
                await asyncio.sleep(0)

        async def drain() -> None:
            while not stop.is_set():
                for subscriber in (live, resumed):
                    got[subscriber.name] += [(e.event_id, e.data) for e in subscriber.drain()]
                await asyncio.sleep(0.002)

        drainer = asyncio.create_task(drain())
        await produce()
        assert await reader > 0  # it read privately before it joined
        await asyncio.sleep(0.2)  # the tail reads the rest
        stop.set()
        await drainer
        for subscriber in (live, resumed):
            got[subscriber.name] += [(e.event_id, e.data) for e in subscriber.drain()]

        assert resumed.live == {0, 1, 2} and consumers[1].stopped  # joined; its reader stopped
        for name, start, wanted in (("live", live_start, {0, 1}), ("resumed", resume, {0, 1})):
            expected = sorted(
                (p, o) for p, log in topic.logs.items() for o in log if o >= start[p] and o % 2 in wanted
            )
            assert sorted(received(got[name])) == expected, name  # every record once
            for partition in topic.logs:  # in offset order per partition
                offsets = [o for p, o in received(got[name]) if p == partition]
                assert offsets == sorted(offsets)
        assert slow.dropped == "slow" and slow not in tail.fanout.subscribers
        assert metrics.SSE_CLIENTS_DROPPED.labels("slow")._value.get() == dropped_before + 1
        for _ in range(3):
            tail.release()
        await asyncio.sleep(0.2)
        assert not tail.running and consumers[0].stopped  # the last client left: the tail stopped
        await tail.acquire()
        assert tail.starts == 2
        tail.release()
        await tail.close()
        assert not tail.running

    asyncio.run(scenario())
