"""What an ingest request reports when Kafka acknowledges only part of it (the 503 body's lists).

The broker is replaced by a topic whose acknowledgements the test decides: it acknowledges,
fails, or never answers each event, which a real broker cannot be made to do on cue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from schemas import BuildEvent, BuildScope, BuildStatus
from streams.ingest_api import produce_events


class Metadata:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset


class ScriptedTopic:
    """`send` like Faust's topic: returns a delivery future, resolved as `script[build_id]` says."""

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.offset = 0

    def get_topic_name(self) -> str:
        return "cipulse.build-events"

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        outcome = self.script.get(key.decode(), "ack")
        if outcome == "refuse":
            raise RuntimeError("MessageSizeTooLarge")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if outcome == "ack":
            self.offset += 1
            future.set_result(Metadata(0, self.offset))
        elif outcome == "fail":
            future.set_exception(RuntimeError("NotLeaderForPartition"))
        return future  # "hang": never resolved


def events(*build_ids: str) -> list[BuildEvent]:
    return [
        BuildEvent(event_id=f"{b}-1", build_id=b, project="p", pipeline="q", seq=1, event_time=datetime.now(UTC),
                   scope=BuildScope.BUILD, status=BuildStatus.QUEUED)
        for b in build_ids
    ]


def run(script: dict[str, str], *build_ids: str) -> Any:
    return asyncio.run(produce_events(ScriptedTopic(script), events(*build_ids), timeout=0.2))  # type: ignore[arg-type]


def test_every_acknowledged_event_is_reported_with_its_position() -> None:
    outcome = run({}, "a", "b")
    assert [(e.event_id, e.offset) for e in outcome.acknowledged] == [("a-1", 1), ("b-1", 2)]
    assert outcome.not_acknowledged == [] and outcome.problems == []


def test_failed_and_unanswered_events_are_named_and_the_others_reported_acknowledged() -> None:
    outcome = run({"b": "fail", "c": "hang"}, "a", "b", "c")
    assert [e.event_id for e in outcome.acknowledged] == ["a-1"]
    assert outcome.not_acknowledged == ["b-1", "c-1"]
    assert any("NotLeaderForPartition" in p for p in outcome.problems)
    assert any("did not acknowledge within 0.2s" in p for p in outcome.problems)


def test_a_refused_send_stops_the_batch_and_names_every_unsent_event() -> None:
    outcome = run({"b": "refuse"}, "a", "b", "c")
    assert [e.event_id for e in outcome.acknowledged] == ["a-1"]
    assert outcome.not_acknowledged == ["b-1", "c-1"]
    assert outcome.problems == ["the producer refused: RuntimeError('MessageSizeTooLarge')"]


def test_the_503_message_says_exactly_what_to_send_again() -> None:
    from streams.ingest_api import _not_acknowledged_message

    partial = run({"b": "fail"}, "a", "b")
    message = _not_acknowledged_message(partial, 2)
    assert "only 1 of 2 events were acknowledged" in message and "send the 1 in 'not_acknowledged' again" in message
    nothing = run({"a": "hang"}, "a")
    assert "none of the 1 event(s) was accepted" in _not_acknowledged_message(nothing, 1)
