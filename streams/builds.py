"""The build-state agent: keeps every build's current state in a Faust table and
publishes a change set for each accepted event.

Delivery guarantee: events are taken in batches; the batch's change sets (produced with
librdkafka, `streams.producer.BatchPublisher`) and dead letters must be acknowledged by the
broker before the changed states are written to the table, and the offsets are acknowledged
after that (Faust also flushes its producer, changelog included, before committing offsets).
That confirmation runs in the background while the next batch is processed
(`streams.batch_pipeline`); batches confirm one at a time, in order.
A crash replays the batch: states the table already has turn replayed events into no-ops
(per-node sequence numbers), and states it lacks re-publish the same change sets (same
revision), which downstream writes de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import BuildEvent, BuildScope, DeadLetterKind
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode, encode
from streams import metrics
from streams.batch_pipeline import PendingBatch, hold_acks, release_acks
from streams.batch_states import BatchStates, make_current
from streams.build_state import Accepted, BuildState, Ignored, apply_event
from streams.change_set import change_set
from streams.dead_letter import DeadLetterPublisher
from streams.notify_transitions import enters_final_status, pipeline_key
from streams.producer import BatchPublisher

log = logging.getLogger(__name__)

PROCESSOR = "build-state"


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
    finals_topic: TopicT,
    dead_letters: DeadLetterPublisher,
    table: TableT[bytes, Any],
    batch_size: int,
    batch_wait_seconds: float,
    publisher: Callable[[], BatchPublisher],
) -> None:
    """Attach the build-state agent to `app`.

    Change sets go to `status_topic` keyed by build; those of a build entering a final status
    also go to `finals_topic` keyed by pipeline+branch (notifications, quality gates). Both
    through the `publisher` the agent creates when it starts (Faust's topics only name them).
    """
    outputs = _Outputs(status_topic.get_topic_name(), finals_topic.get_topic_name())

    async def track_builds(stream: StreamT[Any]) -> None:
        states: BatchStates[BuildState] = BatchStates(table, load_state, dump_state)
        changes = publisher()
        confirming: asyncio.Task[None] | None = None
        try:
            async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
                hold_acks(events)  # acked by _confirm, not when this body returns
                batch = PendingBatch(events)
                for event in events:
                    batch.deliveries.extend(await _process(event, batch, outputs, dead_letters, states))
                states.seal()
                if confirming is not None:
                    await confirming  # one batch confirms at a time, in order; raises its failure
                confirming = asyncio.create_task(_confirm(batch, changes, states, stream))
                confirming.add_done_callback(_log_failure)
        finally:
            if confirming is not None:
                confirming.cancel()  # an unconfirmed batch is not acked: it is replayed
            changes.close(timeout=1.0)

    app.agent(source, name=PROCESSOR)(track_builds)


async def _confirm(
    batch: PendingBatch, changes: BatchPublisher, states: BatchStates[BuildState], stream: StreamT[Any]
) -> None:
    """Produce the batch's change sets; once the broker has them and its dead letters, write its
    states to the table, then ack its events."""
    batch.outbox.send(changes)
    await changes.confirm()
    await asyncio.gather(*batch.deliveries)
    states.commit_sealed()
    if batch.accepted:  # once per batch: a labelled counter costs ~4 us per increment
        metrics.BUILD_EVENTS.labels("accepted").inc(batch.accepted)
        metrics.CHANGE_SETS_PUBLISHED.inc(batch.accepted)
    await release_acks(stream, batch.events)


def _log_failure(confirming: asyncio.Task[None]) -> None:
    """Say at once why a batch was not confirmed (the agent raises it when it takes the next one)."""
    if not confirming.cancelled() and confirming.exception() is not None:
        log.error("batch of build events not confirmed, it will be replayed: %s", confirming.exception())


class _Outputs:
    __slots__ = ("status", "finals")

    def __init__(self, status: str, finals: str) -> None:
        self.status = status
        self.finals = finals


async def _process(
    event: EventT[Any],
    batch: PendingBatch,
    outputs: _Outputs,
    dead_letters: DeadLetterPublisher,
    states: BatchStates[BuildState],
) -> list[Awaitable[Any]]:
    try:
        build_event = decode(event.value, BuildEvent)
    except UndecodableError as exc:
        metrics.BUILD_EVENTS.labels("undecodable").inc()
        return [await dead_letters.publish(event, DeadLetterKind.UNDECODABLE, str(exc))]
    except SchemaViolationError as exc:
        metrics.BUILD_EVENTS.labels("invalid").inc()
        return [await dead_letters.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc))]

    key = build_event.build_id.encode()
    make_current(event)
    outcome = apply_event(states.get(key), build_event)
    if isinstance(outcome, Ignored):
        metrics.BUILD_EVENTS.labels(outcome.kind).inc()
        log.debug("ignored %s event: %s", outcome.kind, outcome.reason)
        return []
    if not isinstance(outcome, Accepted):
        metrics.BUILD_EVENTS.labels("rejected").inc()
        return [await dead_letters.publish(event, DeadLetterKind.ILLEGAL_TRANSITION, outcome.reason)]

    _note_correction(outcome, build_event)
    change = change_set(outcome, build_event)
    payload = encode(change)
    batch.outbox.publish(outputs.status, key, payload)
    if enters_final_status(change):
        batch.outbox.publish(outputs.finals, pipeline_key(change).encode(), payload)
    states.put(key, outcome.state, event)
    batch.accepted += 1
    return []


def _note_correction(outcome: Accepted, event: BuildEvent) -> None:
    """Count and log a status this event reported that its termination facts overruled."""
    state = outcome.state
    node: Any = state
    if event.scope is not BuildScope.BUILD:
        node = state.stages.get(event.stage_id or "")
        if node is not None and event.task_id is not None:
            node = node.tasks.get(event.task_id)
    if node is None or node.seq != event.seq or node.corrected_from is None or node.status == event.status:
        return
    metrics.STATUS_CORRECTIONS.labels(event.status.value, node.status.value).inc()
    log.warning(
        "build %s seq %d (%s %s/%s): %s", event.build_id, event.seq, event.scope.value.lower(),
        event.stage_id or "-", event.task_id or "-", node.correction_reason,
    )
