"""The audit agent and the detection timer: review tracking for issue 3.

The agent applies audit events (review decisions, record-status syncs, cipulse's own
repairs) to the audit-state table and writes the history to ClickHouse. The timer walks
due audits (from a worker-local due index) through the pure `detect`: it publishes each
alert straight to the alerts topic (the delay target is threshold + 1 s, so alerts do not
queue behind the agent); the agent also consumes that topic and stores the "already
alerted" mark in the table state, so restarts never repeat an alert.
Until that mark is committed, the worker remembers the alerts it sent (`AuditRuntime.raised`).
Compensations go to the audit-events topic under deterministic ids, so a repeated one is a
duplicate. Only a crash (or a rebalance) between sending an alert and committing its mark
can send it again, with the same alert_id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import AuditAlert, AuditAlertKind, AuditEvent, DeadLetterKind
from schemas.exceptions import SchemaViolationError, UndecodableError
from schemas.serde import decode, encode
from sinks.audit_rows import AuditAlertRow, AuditEventRow, AuditRepairRow, AuditStateRow
from sinks.audit_writer import AuditSinkWriter
from sinks.bound_writes import writer_call
from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.audit_detection import (
    AuditPolicy,
    Compensate,
    InconsistencyAlert,
    StuckAlert,
    detect,
    mark_alerted,
    next_deadline,
)
from streams.audit_due_index import DueIndex
from streams.audit_sink_rows import audit_alert_row, audit_event_row, audit_repair_row, audit_state_row
from streams.audit_state import AuditAccepted, AuditRejected, AuditState, apply_audit_event
from streams.audit_transitions import OPEN_STATUSES, AuditStatus
from streams.batch_states import BatchStates, make_current
from streams.dead_letter import DeadLetterPublisher
from streams.failed_batches import stop_worker_on_failure
from streams.producer import BuildEventProducer
from streams.readiness import tables_ready
from streams.sink_agent import SinkHealth, write_until_accepted

log = logging.getLogger(__name__)

PROCESSOR = "audit-state"
RECHECK_AFTER = timedelta(seconds=5)
"""If a detection was sent but the agent has not marked it yet, look again this much later."""


def load_audit(raw: bytes | None) -> AuditState | None:
    return None if raw is None else AuditState.model_validate_json(raw)


def dump_audit(state: AuditState) -> bytes:
    return state.model_dump_json().encode()


@dataclass
class AuditTopics:
    events: TopicT
    alerts: TopicT
    inputs: TopicT
    """events + alerts: one co-partitioned channel, both keyed by audit id."""


@dataclass
class AuditRuntime:
    """Worker-local detection bookkeeping, all of it derivable from the table."""

    policy: AuditPolicy
    api_url: str
    index: DueIndex = field(default_factory=DueIndex)
    assignment: frozenset[Any] | None = None
    raised: set[str] = field(default_factory=set)
    """Alerts sent whose mark is not yet committed to the table."""
    alert_producer_factory: Callable[[], BuildEventProducer] | None = None
    """Makes a librdkafka producer for alerts (on first use, so building an app connects to
    nothing): microseconds per record where Faust's send path costs hundreds, which decides
    whether a burst of due audits is reported within threshold + 1 s."""
    alert_producer: BuildEventProducer | None = None


@dataclass
class _AuditRows:
    events: list[AuditEventRow] = field(default_factory=list)
    repairs: list[AuditRepairRow] = field(default_factory=list)
    alerts: list[AuditAlertRow] = field(default_factory=list)
    states: dict[str, AuditStateRow] = field(default_factory=dict)
    marked: list[str] = field(default_factory=list)
    """alert_ids whose mark this batch stores."""

    def counts(self) -> dict[str, int]:
        return {
            "audit_events": len(self.events),
            "audit_state": len(self.states),
            "audit_repairs": len(self.repairs),
            "audit_alerts": len(self.alerts),
        }


def register_audit_agent(
    app: faust.App,
    *,
    topics: AuditTopics,
    dead_letters: DeadLetterPublisher,
    table: TableT[bytes, Any],
    gateway: ClickHouseGateway,
    health: SinkHealth,
    runtime: AuditRuntime,
    batch_size: int,
    batch_wait_seconds: float,
    retry_max_seconds: float,
) -> None:
    alerts_topic = topics.alerts.get_topic_name()

    async def track_audits(stream: StreamT[Any]) -> None:
        states: BatchStates[AuditState] = BatchStates(table, load_audit, dump_audit)
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
            async with stop_worker_on_failure(stream, events):
                rows = _AuditRows()
                deliveries: list[Awaitable[Any]] = []
                for event in events:
                    make_current(event)
                    if event.message.topic == alerts_topic:
                        delivery = await _record_detection(event, dead_letters, states, rows)
                    else:
                        delivery = await _apply(event, dead_letters, states, rows)
                    if delivery is not None:
                        deliveries.append(delivery)
                await asyncio.gather(*deliveries)
                if any(rows.counts().values()):
                    await write_until_accepted(
                        gateway, health, retry_max_seconds,
                        writer_call(
                            AuditSinkWriter, "write",
                            events=rows.events, states=list(rows.states.values()), repairs=rows.repairs, alerts=rows.alerts,
                        ),
                        rows=rows.counts(),
                    )
                changed = list(states.staged())
                states.commit()
                runtime.raised.difference_update(rows.marked)
                for key, state in changed:
                    runtime.index.schedule(key.decode(), next_deadline(state, runtime.policy))

    app.agent(topics.inputs, name=PROCESSOR)(track_audits)

    async def detect_due_audits() -> None:
        """Publish what is due: alerts straight to the alerts topic, compensations to the events topic."""
        if not tables_ready(app):
            return
        assignment = frozenset(app.consumer.assignment())
        if assignment != runtime.assignment:
            runtime.index.rebuild(
                (key.decode(), next_deadline(state, runtime.policy))
                for key, raw in list(table.items())
                if (state := load_audit(raw)) is not None
            )
            runtime.assignment = assignment
            log.info("audit due index rebuilt: %d audits need a look", len(runtime.index))
        now = datetime.now(UTC)
        for audit_id in runtime.index.pop_due(now):
            state = load_audit(table.get(audit_id.encode()))
            if state is None:
                continue
            actions = detect(state, now, runtime.policy)
            for action in actions:
                key = audit_id.encode()
                if isinstance(action, Compensate):
                    await topics.events.send(key=key, value=encode(action.event))
                    log.warning("audit %s: sent compensation %s (%s)", audit_id, action.event.event_id, action.reason)
                elif action.alert_id not in runtime.raised:
                    alert = _alert_record(action, now, runtime.api_url)
                    await _publish_alert(runtime, topics, key, alert)
                    runtime.raised.add(alert.alert_id)
                    metrics.AUDIT_ALERTS.labels(alert.kind.value, "raised").inc()
                    log.warning("audit %s: %s alert %s: %s", audit_id, alert.kind.value, alert.alert_id, alert.reason)
            deadline = now + RECHECK_AFTER if actions else next_deadline(state, runtime.policy)
            runtime.index.schedule(audit_id, deadline)
        if runtime.alert_producer is not None:
            runtime.alert_producer.poll()

    app.timer(interval=0.25, name="audit-detection")(detect_due_audits)


async def _publish_alert(runtime: AuditRuntime, topics: AuditTopics, key: bytes, alert: AuditAlert) -> None:
    if runtime.alert_producer is None and runtime.alert_producer_factory is not None:
        runtime.alert_producer = runtime.alert_producer_factory()
    if runtime.alert_producer is None:
        await topics.alerts.send(key=key, value=encode(alert))
        return

    def forget(error: str) -> None:
        """Not delivered: let the next scan raise it again (same alert_id)."""
        runtime.raised.discard(alert.alert_id)
        runtime.index.schedule(alert.audit_id, datetime.now(UTC))
        log.error("audit %s: alert %s not delivered, will retry: %s", alert.audit_id, alert.alert_id, error)

    runtime.alert_producer.send_raw(key, encode(alert), on_failure=forget)


async def _apply(
    event: EventT[Any], dead_letters: DeadLetterPublisher, states: BatchStates[AuditState], rows: _AuditRows
) -> Awaitable[Any] | None:
    try:
        audit_event = decode(event.value, AuditEvent)
    except UndecodableError as exc:
        metrics.AUDIT_EVENTS.labels("undecodable").inc()
        return await dead_letters.publish(event, DeadLetterKind.UNDECODABLE, str(exc))
    except SchemaViolationError as exc:
        metrics.AUDIT_EVENTS.labels("invalid").inc()
        return await dead_letters.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc))
    key = audit_event.audit_id.encode()
    previous = states.get(key)
    outcome = apply_audit_event(previous, audit_event)
    if isinstance(outcome, AuditRejected):
        metrics.AUDIT_EVENTS.labels("rejected").inc()
        return await dead_letters.publish(event, DeadLetterKind.ILLEGAL_TRANSITION, outcome.reason)
    if not isinstance(outcome, AuditAccepted):
        metrics.AUDIT_EVENTS.labels("duplicate").inc()
        return None
    metrics.AUDIT_EVENTS.labels("accepted").inc()
    state = outcome.state
    states.put(key, state, event)
    rows.events.append(audit_event_row(audit_event, state))
    rows.states[state.audit_id] = audit_state_row(state)
    repair = audit_repair_row(audit_event, previous, state)
    if repair is not None:
        rows.repairs.append(repair)
        log.warning("audit %s repaired (%s): %s", state.audit_id, repair.mode, repair.reason)
    return None


async def _record_detection(
    event: EventT[Any],
    dead_letters: DeadLetterPublisher,
    states: BatchStates[AuditState],
    rows: _AuditRows,
) -> Awaitable[Any] | None:
    """Store that an alert was raised (in the table state and ClickHouse) so it is never raised again."""
    try:
        alert = decode(event.value, AuditAlert)
    except (UndecodableError, SchemaViolationError) as exc:
        return await dead_letters.publish(event, DeadLetterKind.SCHEMA_VIOLATION, str(exc))
    rows.marked.append(alert.alert_id)
    key = alert.audit_id.encode()
    state = states.get(key)
    marked = _mark(state, alert) if state is not None else None
    if marked is None:
        metrics.AUDIT_ALERTS.labels(alert.kind.value, "already_marked").inc()
        return None
    states.put(key, marked, event)
    rows.alerts.append(audit_alert_row(alert))
    return None


def _mark(state: AuditState, alert: AuditAlert) -> AuditState | None:
    """The state remembering `alert`, or None when it was already raised or no longer applies."""
    if alert.kind is AuditAlertKind.STUCK:
        still_open = state.status in OPEN_STATUSES and state.episode == alert.episode
        if not still_open or state.stuck_alerted_episode == alert.episode:
            return None
        return mark_alerted(state, alert.episode)
    if state.status is not AuditStatus.DECIDED and state.status is not AuditStatus.REPAIRED:
        return None
    if state.decision_id != alert.decision_id or state.inconsistency_alerted_decision_id == alert.decision_id:
        return None
    return state.model_copy(
        update={"inconsistency_alerted_decision_id": alert.decision_id, "compensation_sent_at": alert.raised_at}
    )


def _alert_record(action: StuckAlert | InconsistencyAlert, now: datetime, api_url: str) -> AuditAlert:
    links = {"audit": f"{api_url}/audits/{action.audit_id}", "timeline": f"{api_url}/audits/{action.audit_id}/timeline"}
    if isinstance(action, StuckAlert):
        return AuditAlert(
            alert_id=action.alert_id, audit_id=action.audit_id, kind=AuditAlertKind.STUCK, project=action.project,
            pipeline=action.pipeline, subject_kind=action.subject_kind.value, subject_id=action.subject_id,
            status=action.status.value, episode=action.episode, age_seconds=action.age.total_seconds(),
            threshold_seconds=action.threshold.total_seconds(), reviewers=list(action.reviewers),
            reason=(
                f"in {action.status.value} for {action.age.total_seconds():.0f}s since {action.opened_at.isoformat()}, "
                f"over the {action.threshold.total_seconds():.0f}s threshold"
                + (f"; reviewers: {', '.join(action.reviewers)}" if action.reviewers else "; no reviewer assigned")
            ),
            links=links, raised_at=now,
        )
    return AuditAlert(
        alert_id=action.alert_id, audit_id=action.audit_id, kind=AuditAlertKind.INCONSISTENT, project=action.project,
        pipeline=action.pipeline, subject_kind=action.subject_kind.value, subject_id=action.subject_id,
        status=AuditStatus.DECIDED.value, episode=0, decision_id=action.decision_id,
        age_seconds=action.age.total_seconds(), threshold_seconds=action.grace.total_seconds(),
        reason=action.reason, links=links, raised_at=now,
    )
