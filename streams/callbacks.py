"""The REST callback dispatcher: change sets from the build-status topic -> signed HTTP POSTs.

For each batch of change sets it finds the starts and finishes (`callback_events`), the
callbacks that want them (subscriptions from ClickHouse, cached for `cache_seconds`), delivers
them (`CallbackSender`), writes every attempt to `callback_deliveries`, dead-letters what was
given up (`DELIVERY_FAILED`, the undelivered body as payload), and only then lets the batch be
acknowledged. At-least-once: a crash before that replays the batch, and the receiver sees the
same `Idempotency-Key` again.

Limits, by design: a batch waits for its slowest callback (bounded by the retry budget, and by
one attempt per event while a callback is failing); a callback created while a batch is in
flight may miss that batch's events; nothing is sent for events that happened before a callback
was created (consumers that need history read `GET /builds/{id}/history`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
from confluent_kafka import Message

from schemas import BuildStatusChange, DeadLetterKind
from sinks.bound_writes import rows_write
from sinks import callback_queries
from sinks.callback_rows import STATUS_ACTIVE, STATUS_DISABLED, CallbackDeliveryRow, CallbackSubscriptionRow
from sinks.callback_writer import write_deliveries, write_subscription
from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.callback_events import CallbackHealth, CallbackTarget, callback_events, disable_reason, wants
from streams.callback_sender import CallbackDelivery, CallbackSender
from streams.callback_subscriptions import next_version, target_of
from streams.notify_subscriptions import DeliveryPolicy
from streams.settings import CipulseSettings
from streams.record_dead_letters import RecordDeadLetters
from streams.sink_agent import SinkHealth, write_until_accepted
from streams.thread_consumer import BatchHandler, ConsumerSettings, ThreadConsumer

log = logging.getLogger(__name__)

PROCESSOR = "callback-dispatcher"


class CallbackRegistry:
    """Subscriptions as ClickHouse has them, re-read at most every `cache_seconds`.

    The API of the same worker calls `invalidate` after every change, so its own changes apply
    to the next batch; other workers see them within `cache_seconds`.
    """

    def __init__(self, gateway: ClickHouseGateway, cache_seconds: float) -> None:
        self._gateway = gateway
        self._cache_seconds = cache_seconds
        self._targets: list[CallbackTarget] | None = None
        self._read_at = 0.0

    def invalidate(self) -> None:
        self._targets = None

    async def targets(self) -> list[CallbackTarget]:
        if self._targets is None or time.monotonic() - self._read_at > self._cache_seconds:
            rows = await self._gateway.call(callback_queries.current_subscriptions)
            self._targets = [target_of(row) for row in rows]
            self._read_at = time.monotonic()
            active = sum(1 for target in self._targets if target.active)
            metrics.CALLBACKS.labels(STATUS_ACTIVE).set(active)
            metrics.CALLBACKS.labels(STATUS_DISABLED).set(len(self._targets) - active)
        return self._targets


def delivery_policy(settings: CipulseSettings) -> DeliveryPolicy:
    initial = min(settings.callback_initial_backoff_seconds, settings.callback_max_backoff_seconds)
    return DeliveryPolicy(
        max_attempts=settings.callback_max_attempts,
        initial_backoff=timedelta(seconds=initial),
        max_backoff=timedelta(seconds=settings.callback_max_backoff_seconds),
        timeout=timedelta(seconds=settings.callback_timeout_seconds),
    )


async def disable_callback(
    gateway: ClickHouseGateway, registry: CallbackRegistry, target: CallbackTarget, health: CallbackHealth,
    disable_after: timedelta,
) -> CallbackSubscriptionRow | None:
    """Store the disabled version unless the callback changed meanwhile (deleted, re-enabled)."""
    reason = disable_reason(health, disable_after).replace("{id}", target.callback_id)
    while True:
        try:
            current = await gateway.call(callback_queries.subscription, target.callback_id)
            if current is None or current.status != STATUS_ACTIVE or current.version != target.version:
                log.info("callback %s changed meanwhile (%s); not disabling it", target.callback_id,
                         current.status if current else "gone")
                return None
            disabled = next_version(current, STATUS_DISABLED, reason, datetime.now(UTC))
            await gateway.call(write_subscription, disabled)
            break
        except Exception as exc:  # keep trying: the disable must not be lost
            log.error("callback %s: storing its disabled state failed, retrying: %s", target.callback_id, exc)
            await asyncio.sleep(1.0)
    registry.invalidate()
    metrics.CALLBACKS_DISABLED.labels(target.callback_id).inc()
    log.warning("callback %s (%s, project %s) disabled: %s", target.callback_id, target.url, target.project, reason)
    return disabled


def callback_dispatcher(
    *,
    source_topic: str,
    dead_letter_topic: str,
    gateway: ClickHouseGateway,
    health: SinkHealth,
    registry: CallbackRegistry,
    settings: CipulseSettings,
) -> ThreadConsumer:
    """The dispatcher's consumer (not started): group `<app id>-callback-dispatcher`.

    A consumer thread of its own, not a Faust agent (`streams.thread_consumer`): with no callback
    subscribed, which is the default, a batch costs only its fetch, not a Faust hop per change set.
    """
    disable_after = timedelta(seconds=settings.callback_disable_after_seconds)
    policy = delivery_policy(settings)

    async def seed(target: CallbackTarget) -> CallbackHealth:
        """The failure streak the log shows, counted only from the callback's (re)activation."""
        try:
            summaries = await gateway.call(callback_queries.delivery_summaries, [target.callback_id])
        except Exception as exc:  # the streak then starts with this process's own attempts
            log.error("callback %s: delivery log unreadable, its failure streak restarts now: %s", target.callback_id, exc)
            return CallbackHealth()
        summary = summaries.get(target.callback_id)
        if summary is None:
            return CallbackHealth()
        since = summary.failing_since
        if since is not None and target.active_since is not None and since < target.active_since:
            since = None
        return CallbackHealth(since, summary.last_success_at, summary.last_failure_at, summary.last_error)

    async def disable(target: CallbackTarget, callback_health: CallbackHealth) -> None:
        await disable_callback(gateway, registry, target, callback_health, disable_after)

    @asynccontextmanager
    async def open_handler() -> AsyncIterator[BatchHandler]:
        async with aiohttp.ClientSession() as session:
            sender = CallbackSender(session, policy, disable_after, disable, seed)
            dead_letters = RecordDeadLetters(settings.kafka_bootstrap, dead_letter_topic, PROCESSOR)
            try:
                yield lambda records: dispatch(records, sender, dead_letters)
            finally:
                dead_letters.close()

    async def dispatch(records: list[Message], sender: CallbackSender, dead_letters: RecordDeadLetters) -> None:
        targets = await _targets_until_read(registry)
        if not targets:  # nothing subscribed: no need to decode (the sink dead-letters bad records)
            return
        deliveries: list[CallbackDelivery] = []
        for record in records:
            change = dead_letters.decode_or_reject(record, BuildStatusChange)
            if change is None:
                continue
            for found in callback_events(change):
                deliveries.extend(
                    CallbackDelivery.of(target, found, settings.api_url, record)
                    for target in targets if wants(target, found)
                )
        if deliveries:
            outcomes = await sender.deliver_batch(deliveries)
            rows: list[CallbackDeliveryRow] = [row for outcome in outcomes for row in outcome.rows]
            await write_until_accepted(
                gateway, health, settings.sink_retry_max_seconds,
                rows_write(write_deliveries, rows),
                rows={"callback_deliveries": len(rows)},
            )
            for outcome in outcomes:
                if outcome.outcome == "gave_up":
                    delivery = outcome.delivery
                    dead_letters.reject(
                        delivery.source, DeadLetterKind.DELIVERY_FAILED,
                        f"{outcome.reason} (delivery {delivery.delivery_id}, {delivery.event.kind.value} of build "
                        f"{delivery.event.change.build_id}, {delivery.target.url})",
                        payload=delivery.body,
                    )
        await dead_letters.confirm()

    return ThreadConsumer(
        ConsumerSettings(
            bootstrap=settings.kafka_bootstrap, app_id=settings.app_id, processor=PROCESSOR, topic=source_topic,
            batch_size=settings.state_batch_size, batch_wait_seconds=settings.state_batch_wait_seconds,
            legacy_group=settings.app_id,  # the Faust agent that dispatched before: no callback is sent twice
            session_timeout_seconds=settings.consumer_session_timeout,
            instance_id=settings.group_instance_id,
        ),
        open_handler,
    )


async def _targets_until_read(registry: CallbackRegistry) -> list[CallbackTarget]:
    """The subscriptions; while ClickHouse is unreachable the batch waits (never skips them)."""
    delay = 0.5
    while True:
        try:
            return await registry.targets()
        except Exception as exc:
            log.error("callback subscriptions unreadable, batch held, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
