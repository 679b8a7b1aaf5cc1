"""The notification grouping agent and its timer: group, flush, send, log.

The agent is the only writer of the `notify-groups` and `notify-log` tables. It consumes two
topics, both keyed by group key: notification requests from the requester, and signals.
- A request joins its group unless the log or the group already has it (`notify_flow`). A
  group already holding `max_pending` notifications refuses it: the request goes to the
  dead-letter topic (DELIVERY_FAILED, the original bytes, ready to replay).
- FLUSH_DUE comes from the timer. Faust timers cannot write tables, so the timer only says
  when; the agent decides, applies the rate limit, and moves the flush from `pending` to
  `in_flight` in one table write. After the batch commits, it hands the flush to the sender.
- DELIVERED / GAVE_UP are the sender's receipts. A delivered flush is written to the log, so
  a redelivered request can never be sent again. A given-up flush goes to the dead-letter
  topic with its last error. Receipts name the flush's notifications and projects, for the
  quality gates' "no unacknowledged failure notification" rule; so that rule also hears about a
  request that is never sent, the agent answers such a request itself with a receipt without
  a flush id: DELIVERED for one the log already holds, GAVE_UP for one it dead-letters (group
  full, subscription gone). The agent ignores these answers when they come back. Every attempt goes to ClickHouse. A group sends one message at a
  time: the receipt's table write schedules the group's next look (at once when a full
  message waits), so a backlog drains without waiting for another request.

Exactly-once effect: a crash before a flush's receipt is committed leaves it in flight, and
it is re-sent with the same `Idempotency-Key`. A crash after that leaves it in the log, and it
is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import DeadLetterKind, NotificationRequest, NotifierSignal, NotifierSignalKind
from schemas.serde import encode
from sinks.bound_writes import writer_call
from sinks.gateway import ClickHouseGateway
from sinks.notification_rows import NotificationDeliveryRow
from sinks.notification_writer import NotificationSinkWriter
from streams import metrics
from streams.batch_states import BatchStates, make_current
from streams.dead_letter import DeadLetterPublisher
from streams.failed_batches import stop_worker_on_failure
from streams.notifier_runtime import NotifierRuntime
from streams.notify_delivery import webhook_body
from streams.notify_flow import FlushOutcome, NotifierGroup, RequestOutcome, accept_request, flush_if_due, next_look, settle
from streams.notify_grouping import GroupFlush
from streams.notify_log_table import TableNotificationLog, dump_sent, load_sent
from streams.notify_requester import request_key
from streams.notify_sender import delivery_rows, suppressed_row
from streams.readiness import tables_ready
from streams.sink_agent import SinkHealth, write_until_accepted

log = logging.getLogger(__name__)

PROCESSOR = "notifier"
RECHECK_AFTER = timedelta(seconds=5)
"""A FLUSH_DUE the agent has not answered yet is sent again this much later."""
TICK_SECONDS = 0.25


def load_group(raw: bytes | None) -> NotifierGroup | None:
    return None if raw is None else NotifierGroup.model_validate_json(raw)


def dump_group(entry: NotifierGroup) -> bytes:
    return entry.model_dump_json().encode()


@dataclass(frozen=True)
class NotifierTopics:
    requests: TopicT
    signals: TopicT
    inputs: TopicT
    """requests + signals: one co-partitioned channel."""


@dataclass
class _Batch:
    deliveries: list[Awaitable[Any]] = field(default_factory=list)
    rows: list[NotificationDeliveryRow] = field(default_factory=list)
    flushes: list[GroupFlush] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)
    held_until: dict[str, datetime] = field(default_factory=dict)
    """Group keys a rate limit held back, and when to look again."""


def register_notifier_agent(
    app: faust.App,
    *,
    topics: NotifierTopics,
    dead_letters: DeadLetterPublisher,
    groups_table: TableT[bytes, Any],
    log_table: TableT[bytes, Any],
    gateway: ClickHouseGateway,
    health: SinkHealth,
    runtime: NotifierRuntime,
    batch_size: int,
    batch_wait_seconds: float,
    retry_max_seconds: float,
) -> None:
    signals_name = topics.signals.get_topic_name()

    async def publish_signal(signal: NotifierSignal) -> None:
        delivery = await topics.signals.send(key=signal.group_key.encode(), value=encode(signal))
        await delivery

    def submit(flush: GroupFlush) -> None:
        subscription = runtime.subscriptions.get(flush.subscription_id)
        if subscription is not None:
            runtime.submit(subscription, flush, publish_signal)

    async def notify(stream: StreamT[Any]) -> None:
        groups: BatchStates[NotifierGroup] = BatchStates(groups_table, load_group, dump_group)
        sent = TableNotificationLog(BatchStates(log_table, load_sent, dump_sent))
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
            async with stop_worker_on_failure(stream, events):
                batch = _Batch()
                for event in events:
                    make_current(event)
                    sent.current = event
                    if event.message.topic == signals_name:
                        await _on_signal(event, runtime, dead_letters, groups, sent, batch)
                    else:
                        await _on_request(event, runtime, dead_letters, topics, groups, sent, batch)
                await asyncio.gather(*batch.deliveries)
                if batch.rows:
                    rows = batch.rows
                    await write_until_accepted(
                        gateway, health, retry_max_seconds,
                        writer_call(NotificationSinkWriter, "write", rows),
                        rows={"notification_deliveries": len(rows)},
                    )
                changed = list(groups.staged())
                removed = list(groups.deleted())
                groups.commit()
                sent.states.commit()
                runtime.settled(batch.settled)
                for key, entry in changed:
                    subscription = runtime.subscriptions.get(entry.group.subscription_id)
                    look = next_look(entry, subscription.grouping) if subscription is not None else None
                    runtime.index.schedule(key.decode(), batch.held_until.get(key.decode(), look))
                for key in removed:
                    runtime.index.schedule(key.decode(), None)
                for flush in batch.flushes:
                    submit(flush)

    app.agent(topics.inputs, name=PROCESSOR)(notify)

    async def tick() -> None:
        """Say FLUSH_DUE to every due group; re-send flushes an earlier run left in flight."""
        if not tables_ready(app):
            return
        now = datetime.now(UTC)
        assignment = frozenset(app.consumer.assignment())
        if assignment != runtime.assignment:
            _rebuild(runtime, groups_table, now)
            runtime.assignment = assignment
        for key in runtime.index.pop_due(now):
            runtime.index.schedule(key, now + RECHECK_AFTER)  # before sending: the answer may come first
            signal = NotifierSignal(kind=NotifierSignalKind.FLUSH_DUE, group_key=key, signalled_at=now)
            await topics.signals.send(key=key.encode(), value=encode(signal))
        for key, flush_id in runtime.due_orphans(now):
            entry = load_group(groups_table.get(key.encode()))
            flush = next((f for f in entry.in_flight if f.flush_id == flush_id), None) if entry else None
            if flush is not None:
                log.warning("re-sending notification %s of %s: an earlier run left it unacknowledged",
                            flush_id[:12], key)
                submit(flush)

    app.timer(interval=TICK_SECONDS, name="notify-flush-timer")(tick)

    @app.on_before_shutdown.connect
    async def drain_sender(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Let deliveries in progress finish (and report) before the producer stops."""
        await runtime.drain(timeout=5.0)


def _message_key(event: EventT[Any]) -> bytes:
    key = event.message.key
    return key if isinstance(key, bytes) else str(key or "").encode()


def _rebuild(runtime: NotifierRuntime, groups_table: TableT[bytes, Any], now: datetime) -> None:
    """Re-derive the due index and the orphans from the table (start, rebalance)."""
    looks: list[tuple[str, datetime | None]] = []
    orphans: list[tuple[str, GroupFlush]] = []
    for raw_key, raw in list(groups_table.items()):
        entry = load_group(raw)
        if entry is None:
            continue
        key = raw_key.decode()
        subscription = runtime.subscriptions.get(entry.group.subscription_id)
        # a group of a removed subscription still gets one look: the agent dead-letters it
        looks.append((key, next_look(entry, subscription.grouping) if subscription is not None else now))
        orphans.extend((key, flush) for flush in entry.in_flight)
    runtime.index.rebuild(looks)
    runtime.adopt_orphans(orphans, now)
    log.info("notifier: %d group(s) to watch, %d message(s) in flight", len(runtime.index), len(orphans))


async def _answer_unsent(
    topics: NotifierTopics, key: bytes, request: NotificationRequest, kind: NotifierSignalKind, reason: str
) -> Awaitable[Any]:
    """A receipt without a flush for a request the agent will not send (for quality gates only)."""
    answer = NotifierSignal(
        kind=kind, group_key=key.decode(errors="replace"), reason=reason, signalled_at=datetime.now(UTC),
        notification_ids=[request.notification_id], projects=[request.project],
    )
    return await topics.signals.send(key=key, value=encode(answer))


async def _on_request(
    event: EventT[Any],
    runtime: NotifierRuntime,
    dead_letters: DeadLetterPublisher,
    topics: NotifierTopics,
    groups: BatchStates[NotifierGroup],
    sent: TableNotificationLog,
    batch: _Batch,
) -> None:
    request = await dead_letters.decode_or_reject(event, NotificationRequest, batch.deliveries)
    if request is None:
        return
    subscription = runtime.subscriptions.get(request.subscription_id)
    if subscription is None:
        metrics.NOTIFICATION_REQUESTS.labels(request.subscription_id, "unknown_subscription").inc()
        batch.deliveries.append(await dead_letters.publish(
            event, DeadLetterKind.UNMAPPABLE,
            f"subscription {request.subscription_id!r} is not in the subscription file any more; "
            "restore it and replay this record to send the notification",
        ))
        batch.deliveries.append(await _answer_unsent(
            topics, _message_key(event), request, NotifierSignalKind.GAVE_UP, "subscription not configured",
        ))
        return
    key = request_key(request, runtime.subscriptions)
    if key != event.message.key:  # the subscription's group_by changed since it was requested
        batch.deliveries.append(await topics.requests.send(key=key, value=event.value))
        return
    now = datetime.now(UTC)
    entry = groups.get(key)
    updated, outcome = accept_request(entry, request, subscription.grouping, sent, now)
    metrics.NOTIFICATION_REQUESTS.labels(subscription.id, outcome.value).inc()
    if outcome is RequestOutcome.GROUP_FULL:
        pending = len(entry.group.pending) if entry is not None else 0
        batch.deliveries.append(await dead_letters.publish(
            event, DeadLetterKind.DELIVERY_FAILED,
            f"notification {request.notification_id} ({request.subject_kind} {request.subject_id} "
            f"{request.transition.value}) not sent: group {key.decode()} holds {pending} pending notifications "
            f"(max_pending {subscription.grouping.max_pending}); receiver behind or down. "
            "Replay this record to the notify-requests topic once the group has drained",
        ))
        batch.deliveries.append(await _answer_unsent(
            topics, key, request, NotifierSignalKind.GAVE_UP, f"group full (max_pending {subscription.grouping.max_pending})",
        ))
        return
    if outcome is RequestOutcome.ALREADY_SENT:
        batch.deliveries.append(await _answer_unsent(topics, key, request, NotifierSignalKind.DELIVERED, "already delivered"))
        batch.rows.append(suppressed_row(request, now))
        log.info("notification %s for %s already delivered; not sent again",
                 request.notification_id[:12], subscription.id)
    if updated is not None and updated is not entry:
        groups.put(key, updated, event)


async def _on_signal(
    event: EventT[Any],
    runtime: NotifierRuntime,
    dead_letters: DeadLetterPublisher,
    groups: BatchStates[NotifierGroup],
    sent: TableNotificationLog,
    batch: _Batch,
) -> None:
    signal = await dead_letters.decode_or_reject(event, NotifierSignal, batch.deliveries)
    if signal is None:
        return
    key = signal.group_key.encode()
    entry = groups.get(key)
    now = datetime.now(UTC)
    if signal.kind is NotifierSignalKind.FLUSH_DUE:
        if entry is not None:
            await _flush(event, key, entry, runtime, dead_letters, groups, sent, batch, now)
        return
    if signal.flush_id is None:
        if signal.notification_ids:
            return  # this agent's own answer to a request it did not send; only quality gates read it
        batch.deliveries.append(await dead_letters.publish(
            event, DeadLetterKind.SCHEMA_VIOLATION, f"{signal.kind.value} receipt without a flush_id"
        ))
        return
    delivered = signal.kind is NotifierSignalKind.DELIVERED
    last_attempt = signal.attempts[-1].number if signal.attempts else 1
    updated, flush = settle(entry, signal.flush_id, delivered, sent, now, max(1, last_attempt))
    batch.settled.add(signal.flush_id)
    if flush is None or updated is None:
        return  # a redelivered receipt: its effects are already stored
    groups.put(key, updated, event)
    batch.rows.extend(delivery_rows(flush, signal.attempts))
    channel = flush.notifications[0].channel.value
    metrics.NOTIFICATION_DELIVERIES.labels(flush.subscription_id, channel, "delivered" if delivered else "gave_up").inc()
    if delivered:
        log.info("notification %s to %s delivered (%d notification(s), attempt %d)",
                 flush.flush_id[:12], flush.subscription_id, len(flush.notifications), last_attempt)
        return
    batch.deliveries.append(await dead_letters.publish(
        event, DeadLetterKind.DELIVERY_FAILED,
        f"notification {flush.flush_id} to subscription {flush.subscription_id} given up after "
        f"{len(signal.attempts)} attempt(s): {signal.reason}",
        payload=webhook_body(flush),
    ))


async def _flush(
    event: EventT[Any],
    key: bytes,
    entry: NotifierGroup,
    runtime: NotifierRuntime,
    dead_letters: DeadLetterPublisher,
    groups: BatchStates[NotifierGroup],
    sent: TableNotificationLog,
    batch: _Batch,
    now: datetime,
) -> None:
    subscription = runtime.subscriptions.get(entry.group.subscription_id)
    if subscription is None:
        pending = [n.notification_id for n in entry.group.pending]
        batch.deliveries.append(await dead_letters.publish(
            event, DeadLetterKind.UNMAPPABLE,
            f"group {entry.group.group_key} belongs to subscription {entry.group.subscription_id!r}, which is not "
            f"in the subscription file any more; {len(pending)} pending notification(s) dropped: {pending}",
            payload=entry.model_dump_json().encode(),
        ))
        groups.delete(key, event)
        return
    updated, flush, outcome = flush_if_due(
        entry, subscription.grouping, sent, now, lambda: runtime.allow(subscription, now)
    )
    if outcome is FlushOutcome.RATE_LIMITED:
        batch.held_until[key.decode()] = runtime.next_allowed(subscription, now)
        groups.put(key, entry, event)  # so the index hears about it after the commit
        log.info("notification group %s held back by the rate limit of %s", entry.group.group_key, subscription.id)
        return
    if updated is None:
        groups.delete(key, event)
        return
    groups.put(key, updated, event)
    if flush is not None:
        batch.flushes.append(flush)
        metrics.NOTIFICATION_FLUSHES.labels(subscription.id, "repeat" if flush.is_repeat else "new").inc()
