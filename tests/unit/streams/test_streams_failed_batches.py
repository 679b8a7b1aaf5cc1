"""A failed agent batch is never acked (not even by take_events' late ack), leaves the in-flight
set, parks its agent and stops the worker once; a batch cancelled by a stop is not acked either."""

from __future__ import annotations

import asyncio
import signal
from weakref import WeakSet

import pytest
from faust.events import Event
from faust.types.tuples import ConsumerMessage

from streams import failed_batches
from streams.failed_batches import stop_worker_on_failure


class _Consumer:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self._unacked_messages: WeakSet[ConsumerMessage] = WeakSet()

    def ack(self, message: ConsumerMessage) -> bool:
        self.acked.append(message.offset)
        return True


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()


class _Stream:
    def __init__(self) -> None:
        self.app = _App()


def _batch(stream: _Stream, offsets: range) -> list[Event]:
    events = []
    for offset in offsets:
        message = ConsumerMessage("builds", 0, offset, 0.0, 0, None, b"k", b"v", None)
        message.incref()  # the conductor's reference for the one stream reading the topic
        stream.app.consumer._unacked_messages.add(message)
        events.append(Event(stream.app, b"k", b"v", None, message))  # type: ignore[arg-type]
    return events


@pytest.fixture
def signals_sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(failed_batches, "_failure", None)
    monkeypatch.setattr(failed_batches, "_signal_stop", lambda: sent.append(signal.SIGTERM))
    return sent


def test_a_failed_batch_is_never_acked_parks_its_agent_and_stops_the_worker_once(signals_sent: list[int]) -> None:
    stream = _Stream()
    events = _batch(stream, range(3))

    async def run() -> None:
        task = asyncio.create_task(agent_batch_of(stream, events, RuntimeError("broker refused the change sets")))
        await asyncio.sleep(0.05)
        assert not task.done()  # parked: Faust does not restart it, its stream takes nothing more
        assert signals_sent == [signal.SIGTERM]
        assert isinstance(failed_batches.agent_failure(), RuntimeError)
        task.cancel()  # what the worker's stop does
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert len(stream.app.consumer._unacked_messages) == 0  # the stop does not wait for them
    for event in events:
        event.ack()  # take_events' ack when its abandoned generator is closed
    assert stream.app.consumer.acked == [] and not any(event.message.acked for event in events)

    later = _batch(stream, range(3, 5))  # a second failure does not signal again

    async def second() -> None:
        task = asyncio.create_task(agent_batch_of(stream, later, ValueError("a bug")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(second())
    assert signals_sent == [signal.SIGTERM]


async def agent_batch_of(stream: _Stream, events: list[Event], failure: Exception) -> None:
    async with stop_worker_on_failure(stream, events):  # type: ignore[arg-type]
        raise failure


def test_a_batch_cancelled_by_a_stop_is_not_acked_and_does_not_stop_the_worker(signals_sent: list[int]) -> None:
    stream = _Stream()
    events = _batch(stream, range(2))

    async def run() -> None:
        async def agent_batch() -> None:
            async with stop_worker_on_failure(stream, events):  # type: ignore[arg-type]
                await asyncio.Event().wait()  # waiting for the broker when the stop comes

        task = asyncio.create_task(agent_batch())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    for event in events:
        event.ack()
    assert stream.app.consumer.acked == [] and signals_sent == []


def test_a_batch_that_succeeds_is_acked_by_take_events_as_before(signals_sent: list[int]) -> None:
    stream = _Stream()
    events = _batch(stream, range(2))

    async def run() -> None:
        async with stop_worker_on_failure(stream, events):  # type: ignore[arg-type]
            pass

    asyncio.run(run())
    for event in events:
        event.ack()
    assert stream.app.consumer.acked == [0, 1] and signals_sent == []


def test_every_agent_batch_loop_runs_its_batches_under_the_guard() -> None:
    """A take_events loop without it would let Faust commit a batch its agent failed on."""
    from pathlib import Path

    sources = Path(__file__).resolve().parents[3] / "streams"
    loops = 0
    for path in sorted(sources.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.lstrip().startswith("async for events in") and "take_events(" in line:
                loops += 1
                assert "async with stop_worker_on_failure(stream, events):" in lines[number + 1], f"{path}:{number + 1}"
    assert loops >= 7  # builds, audits, two gate agents, notifier, requester, the row sinks
