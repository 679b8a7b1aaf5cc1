"""The build-state agent: keeps every build's current state in a Faust table and
publishes a change set for each accepted event.

Delivery guarantee: events are taken in batches and acknowledged only after the
batch's change sets and dead letters are acknowledged by the broker (Faust also
flushes the producer before committing offsets). A crash replays the batch; the
per-node sequence numbers in `apply_event` turn the replay into no-ops.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from typing import Any, cast

import faust
from faust import streams as faust_streams
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import BuildEvent, DeadLetterKind
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode, encode
from streams import metrics
from streams.build_state import Accepted, BuildState, Ignored, apply_event
from streams.change_set import change_set
from streams.dead_letter import DeadLetterPublisher

log = logging.getLogger(__name__)

PROCESSOR = "build-state"


def _make_current(event: EventT[Any]) -> None:
    """Make `event` the current event of *this task* for table writes.

    Tables pick the changelog partition and RocksDB shard from the current event, and
    take_events() leaves the last buffered one current. Only the task-local context
    variable is set: changing `stream.current_event` would race with take_events()'s
    background buffering, which reads that attribute (it lost one event and doubled
    another in the integration tests).
    """
    faust_streams._current_event.set(weakref.ref(event))


def load_state(raw: bytes | None) -> BuildState | None:
    """Table values are the state's JSON bytes (pydantic's Rust codec); None for unknown builds."""
    if raw is None:
        return None
    return BuildState.model_validate_json(raw)


def dump_state(state: BuildState) -> bytes:
    return state.model_dump_json().encode()


def register_build_agent(
    app: faust.App,
    *,
    source: TopicT,
    status_topic: TopicT,
    dead_letters: DeadLetterPublisher,
    table: TableT[bytes, Any],
    batch_size: int,
) -> None:
    """Attach the build-state agent to `app`."""

    async def track_builds(stream: StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=0.2):
            deliveries: list[Awaitable[Any]] = []
            for event in events:
                _make_current(event)
                delivery = await _process(event, status_topic, dead_letters, table)
                if delivery is not None:
                    deliveries.append(delivery)
            # Acks happen when this loop resumes: only after every send is acknowledged.
            await asyncio.gather(*deliveries)

    app.agent(source, name=PROCESSOR)(track_builds)


async def _process(
    event: EventT[Any], status_topic: TopicT, dead_letters: DeadLetterPublisher, table: TableT[bytes, Any]
) -> Awaitable[Any] | None:
    try:
        build_event = decode(event.value, BuildEvent)
    except UndecodableError as exc:
        metrics.BUILD_EVENTS.labels("undecodable").inc()
        return await dead_letters.publish(event, DeadLetterKind.UNDECODABLE, str(exc))
    except SchemaViolationError as exc:
        metrics.BUILD_EVENTS.labels("invalid").inc()
        return await dead_letters.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc))

    key = build_event.build_id.encode()
    outcome = apply_event(load_state(table.get(key)), build_event)
    if isinstance(outcome, Ignored):
        metrics.BUILD_EVENTS.labels(outcome.kind).inc()
        log.debug("ignored %s event: %s", outcome.kind, outcome.reason)
        return None
    if not isinstance(outcome, Accepted):
        metrics.BUILD_EVENTS.labels("rejected").inc()
        return await dead_letters.publish(event, DeadLetterKind.ILLEGAL_TRANSITION, outcome.reason)

    # Publish before updating the table: if we die in between, the replayed event is
    # applied again and re-publishes the same change (same revision), never loses it.
    delivery = await status_topic.send(key=key, value=encode(change_set(outcome, build_event)))
    table[key] = dump_state(outcome.state)
    metrics.BUILD_EVENTS.labels("accepted").inc()
    metrics.CHANGE_SETS_PUBLISHED.inc()
    return delivery
