"""Quality gate agents: route inputs to gates, re-evaluate a gate on every input, store decisions.

Why three agents. A gate's inputs arrive on topics keyed differently (build-finals by
pipeline@branch, audit topics by audit id), and a gate may cover a whole project, so no source
partition holds all of one gate's inputs. The router re-keys every input by each gate it
concerns onto `gate-inputs` (the record's own bytes, keyed by gate id), so one partition, and
one worker, owns each gate: its `gate-state` table holds the window of final builds and the
open stuck audits and unacknowledged failure notifications, and the gate agent decides from it
alone. Notification requests and the notifier's receipts are read only when a gate has the
`no_unacknowledged_failure_notification` rule: a FAILED request opens a notification in every gate
covering its project/pipeline/branch, and a DELIVERED / GAVE_UP receipt goes to every such gate of
the projects it names (`NotifierSignal` v2 lists the flush's notification ids and projects). The decision sink writes what
reaches `gate-decisions` to ClickHouse for the API's current decision and history.

Guarantees, as everywhere: at-least-once in (each agent acknowledges a batch only after its
outputs are acknowledged, and writes its table after that), idempotent out (a redelivered input
changes no state, so no decision; a batch replayed after a crash repeats the same decision ids,
see `streams.gate_rules.decision_id`). Bad input goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import (
    AuditAlert,
    AuditEvent,
    BuildStatusChange,
    DeadLetterKind,
    GateDecision,
    NotificationRequest,
    NotifierSignal,
)
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.models import TopLevelRecord
from schemas.serde import decode, encode
from sinks.gate_rows import GATE_DECISIONS_TABLE, GateDecisionRow, write_gate_decisions
from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.batch_states import BatchStates, make_current
from streams.dead_letter import DeadLetterPublisher
from streams.failed_batches import stop_worker_on_failure
from streams.gate_config import Gate
from streams.gate_rules import decide
from streams.gate_state import (
    FAILURE_TRANSITIONS,
    SETTLING_RECEIPTS,
    GateState,
    apply_audit_alert,
    apply_audit_event,
    apply_final_build,
    apply_notification_receipt,
    apply_notification_request,
    dump_gate_state,
    empty_state,
    load_gate_state,
)
from streams.sink_agent import SinkHealth, row_sink

log = logging.getLogger(__name__)

ROUTER = "gate-router"
EVALUATOR = "gate-agent"
DECISION_SINK = "gate-decision-sink"


@dataclass(frozen=True)
class GateTopics:
    sources: TopicT
    """build-finals + audit-alerts + audit-events (+ notify-requests + notify-signals when a gate has
    the notification rule, see `watches_notifications`) in one channel (the router's input)."""
    finals_name: str
    alerts_name: str
    requests_name: str
    signals_name: str
    inputs: TopicT
    decisions: TopicT


def gates_for(record: TopLevelRecord, gates: Sequence[Gate]) -> list[Gate]:
    """The gates an input concerns (the router's only decision)."""
    if isinstance(record, BuildStatusChange):
        return [g for g in gates if g.rules.uses_builds and g.covers_build(record.project, record.pipeline, record.branch)]
    if isinstance(record, AuditAlert | AuditEvent):
        return [g for g in gates if g.covers_audit(record.project, record.pipeline)]
    if isinstance(record, NotificationRequest):
        if record.transition not in FAILURE_TRANSITIONS:
            return []
        return [g for g in gates if g.covers_notification(record.project, record.pipeline, record.branch)]
    if isinstance(record, NotifierSignal):
        if record.kind not in SETTLING_RECEIPTS or not record.notification_ids:
            return []
        return [g for g in gates if g.rules.no_unacknowledged_failure_notification and g.project in record.projects]
    return []


def watches_notifications(gates: Sequence[Gate]) -> bool:
    """Whether the router must read notify-requests and notify-signals (otherwise it leaves them alone)."""
    return any(g.rules.no_unacknowledged_failure_notification for g in gates)


def apply_input(state: GateState, gate: Gate, record: TopLevelRecord) -> GateState | None:
    if isinstance(record, BuildStatusChange):
        return apply_final_build(state, gate, record)
    if isinstance(record, AuditAlert):
        return apply_audit_alert(state, gate, record)
    if isinstance(record, AuditEvent):
        return apply_audit_event(state, gate, record)
    if isinstance(record, NotificationRequest):
        return apply_notification_request(state, gate, record)
    if isinstance(record, NotifierSignal):
        return apply_notification_receipt(state, gate, record)
    return None


_INPUT_KINDS: dict[type[TopLevelRecord], str] = {
    BuildStatusChange: "build", AuditAlert: "audit_alert", AuditEvent: "audit_event",
    NotificationRequest: "notification_request", NotifierSignal: "notification_receipt",
}


def register_gate_agents(
    app: faust.App,
    *,
    gates: Sequence[Gate],
    topics: GateTopics,
    dead_letter_topic: TopicT,
    table: TableT[bytes, Any],
    gateway: ClickHouseGateway,
    health: SinkHealth,
    batch_size: int,
    batch_wait_seconds: float,
    retry_max_seconds: float,
) -> None:
    """Nothing is registered without gates: the topics stay unread and no table is recovered."""
    if not gates:
        return
    by_id: Mapping[str, Gate] = {g.id: g for g in gates}
    router_dead = DeadLetterPublisher(dead_letter_topic, ROUTER)
    dead_letters = DeadLetterPublisher(dead_letter_topic, EVALUATOR)
    sink_dead = DeadLetterPublisher(dead_letter_topic, DECISION_SINK)
    source_types: dict[str, type[TopLevelRecord]] = {
        topics.finals_name: BuildStatusChange, topics.alerts_name: AuditAlert,
        topics.requests_name: NotificationRequest, topics.signals_name: NotifierSignal,
    }

    async def route_gate_inputs(stream: StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
            async with stop_worker_on_failure(stream, events):
                deliveries: list[Awaitable[Any]] = []
                for event in events:
                    expected = source_types.get(event.message.topic, AuditEvent)
                    record = await router_dead.decode_or_reject(event, expected, deliveries)
                    if record is None:
                        continue
                    for gate in gates_for(record, gates):
                        deliveries.append(await topics.inputs.send(key=gate.id.encode(), value=event.value))
                await asyncio.gather(*deliveries)

    async def evaluate_gates(stream: StreamT[Any]) -> None:
        states: BatchStates[GateState] = BatchStates(table, load_gate_state, dump_gate_state)
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
            async with stop_worker_on_failure(stream, events):
                deliveries: list[Awaitable[Any]] = []
                published: list[GateDecision] = []
                now = datetime.now(UTC)
                for event in events:
                    make_current(event)
                    decision = await _evaluate_one(event, by_id, states, dead_letters, deliveries, now)
                    if decision is not None:
                        deliveries.append(await topics.decisions.send(key=decision.gate.encode(), value=encode(decision)))
                        published.append(decision)
                await asyncio.gather(*deliveries)
                states.commit()
                for decision in published:
                    metrics.GATE_DECISIONS.labels(decision.gate, decision.result.value).inc()
                    log.info(
                        "gate %s: %s -> %s (decision %s, input revision %d)%s", decision.gate,
                        decision.previous_result or "none", decision.result.value, decision.decision_id[:12],
                        decision.input_revision,
                        "".join(f"; {f.rule}: {f.message}" for f in decision.failing),
                    )

    store_gate_decisions = row_sink(
        GateDecision, GateDecisionRow.from_decision, write_gate_decisions, GATE_DECISIONS_TABLE,
        dead_letters=sink_dead, gateway=gateway, health=health, batch_size=batch_size,
        flush_seconds=batch_wait_seconds, retry_max_seconds=retry_max_seconds,
    )

    app.agent(topics.sources, name=ROUTER)(route_gate_inputs)
    app.agent(topics.inputs, name=EVALUATOR)(evaluate_gates)
    app.agent(topics.decisions, name=DECISION_SINK)(store_gate_decisions)


async def _evaluate_one(
    event: EventT[Any],
    gates: Mapping[str, Gate],
    states: BatchStates[GateState],
    dead_letters: DeadLetterPublisher,
    deliveries: list[Awaitable[Any]],
    now: datetime,
) -> GateDecision | None:
    message = event.message
    key = message.key if isinstance(message.key, bytes) else str(message.key or "").encode()
    try:
        record = decode(event.value)
    except UndecodableError as exc:
        deliveries.append(await dead_letters.publish(event, DeadLetterKind.UNDECODABLE, str(exc)))
        return None
    except SchemaViolationError as exc:
        deliveries.append(await dead_letters.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc)))
        return None
    input_kind = _INPUT_KINDS.get(type(record))
    if input_kind is None:
        deliveries.append(await dead_letters.publish(
            event, DeadLetterKind.SCHEMA_VIOLATION,
            f"a {type(record).__name__} is not a gate input; gate-inputs carries BuildStatusChange, AuditAlert, "
            "AuditEvent, NotificationRequest or NotifierSignal",
        ))
        return None
    gate = gates.get(key.decode(errors="replace"))
    if gate is None:
        metrics.GATE_INPUTS.labels(input_kind, "unknown_gate").inc()
        log.warning(
            "%s: %s[%d]@%d is for gate %r, which the gates file no longer defines; skipped",
            EVALUATOR, message.topic, message.partition, message.offset, key.decode(errors="replace"),
        )
        return None
    state = states.get(key) or empty_state(gate)
    updated = apply_input(state, gate, record)
    metrics.GATE_INPUTS.labels(input_kind, "unchanged" if updated is None else "changed").inc()
    if updated is None:
        return None
    remembered, decision = decide(gate, updated, now)
    states.put(key, remembered, event)
    return decision
