"""`PromptDeliveryConsumer`: inline delivery, the stock race only when the callback suspends,
and a fetch loop that waits for a drained stream instead of a flat second."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from streams import faust_delivery
from streams.faust_delivery import PromptDeliveryConsumer
from streams.faust_patches import CipulseApp

TP0 = TP("events", 0)


def new_consumer() -> Any:
    """A consumer of a fresh app, made inside the running loop (its flags bind to that loop)."""
    app = CipulseApp("delivery-test", broker="kafka://localhost:9092", autodiscover=False, store="memory://")
    instance = app.consumer
    assert isinstance(instance, PromptDeliveryConsumer)
    return instance


def test_a_callback_that_does_not_suspend_is_delivered_without_the_race() -> None:
    delivered: list[int] = []
    races: list[int] = []

    async def callback(message: int) -> None:
        delivered.append(message)

    async def wait_first(*coros: Any, **kwargs: Any) -> None:
        races.append(len(coros))

    async def scenario() -> None:
        consumer = new_consumer()
        consumer.callback = callback
        consumer.wait_first = wait_first
        await consumer._deliver(7)

    asyncio.run(scenario())
    assert delivered == [7]
    assert races == []


def test_a_callback_that_suspends_is_raced_against_suspended_flow_and_finishes() -> None:
    async def scenario() -> list[str]:
        consumer = new_consumer()
        log: list[str] = []
        room = asyncio.Event()

        async def callback(message: int) -> None:  # a full channel queue: waits for room
            log.append(f"put {message}")
            await room.wait()
            log.append(f"delivered {message}")

        consumer.callback = callback
        asyncio.get_running_loop().call_later(0.01, room.set)
        await asyncio.wait_for(consumer._deliver(3), 5)
        return log

    assert asyncio.run(scenario()) == ["put 3", "delivered 3"]


def test_suspended_flow_abandons_a_delivery_stuck_on_a_full_queue() -> None:
    """Stock behaviour kept: during a rebalance a blocked put is given up (the record is fetched again)."""

    async def scenario() -> list[str]:
        consumer = new_consumer()
        log: list[str] = []

        async def callback(message: int) -> None:
            try:
                await asyncio.Event().wait()  # never gets room
            except asyncio.CancelledError:
                log.append("abandoned")
                raise

        consumer.callback = callback
        asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
        await asyncio.wait_for(consumer._deliver(3), 5)
        return log

    assert asyncio.run(scenario()) == ["abandoned"]


def no_active_partitions(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every partition out of the fetch (its stream's queue full); records the fetches made."""
    fetches: list[Any] = []
    consumer._active_partitions = set()
    consumer._buffered_partitions = {TP0}
    monkeypatch.setattr(consumer, "_get_active_partitions", lambda: consumer._active_partitions)

    async def getmany(active_partitions: Any, timeout: float) -> dict[TP, list[Any]]:
        fetches.append(set(active_partitions))
        return {TP0: ["record"]}

    monkeypatch.setattr(consumer, "_getmany", getmany)
    return fetches


def test_the_fetch_loop_resumes_as_soon_as_a_stream_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_delivery, "NO_ACTIVE_PARTITION_WAIT_SECONDS", 30.0)

    async def scenario() -> tuple[float, list[Any]]:
        consumer = new_consumer()
        fetches = no_active_partitions(consumer, monkeypatch)
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, consumer.on_buffer_drop, TP0)  # the stream's queue drained to 40 %
        records, _ = await asyncio.wait_for(consumer._wait_next_records(1.0), 10)
        assert records == {}  # this turn fetched nothing: every partition was out when it began
        records, active = await consumer._wait_next_records(1.0)
        assert records == {TP0: ["record"]} and active == {TP0}
        return loop.time() - started, fetches

    seconds, fetches = asyncio.run(scenario())
    # woken by the drop at 0.05 s: stock Faust sleeps a flat second here, and the limit is 30 s
    assert seconds < 0.9
    assert fetches == [{TP0}]


def test_with_no_partition_back_the_fetch_loop_waits_at_most_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_delivery, "NO_ACTIVE_PARTITION_WAIT_SECONDS", 0.05)

    async def scenario() -> tuple[Any, Any, list[Any]]:
        consumer = new_consumer()
        fetches = no_active_partitions(consumer, monkeypatch)
        records, active = await asyncio.wait_for(consumer._wait_next_records(1.0), 10)
        return records, active, fetches

    assert asyncio.run(scenario()) == ({}, set(), [])
