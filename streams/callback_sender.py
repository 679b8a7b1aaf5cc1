"""Deliver one batch of REST callback events: one sending task per callback, retries with
backoff, the disable rule between attempts.

The policy of each attempt is the notifier's (`streams.notify_delivery.next_action`): a 2xx is
the acknowledgement; 429/503 honour `Retry-After`; other 5xx, 408, 425 and transport errors back
off exponentially with full jitter; other statuses (400, 404, 410...) and the last allowed
attempt give up. Signing and headers are the notifier's too (`sign`, `webhook_headers`), plus
`X-Cipulse-Event` and `X-Cipulse-Callback-Id`.

Bounding how long a batch (and so the Kafka partition) waits for a bad receiver:
- callbacks are delivered concurrently, each callback's events in order;
- a callback that is already failing (its last attempt failed) gets a single attempt per
  event instead of the full retry budget, so an outage costs one timeout per event;
- once the disable rule fires, the callback's remaining events in the batch are `skipped`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from sinks.callback_rows import (
    NO_ATTEMPT,
    NO_HTTP_STATUS,
    OUTCOME_DELIVERED,
    OUTCOME_GAVE_UP,
    OUTCOME_RETRY,
    OUTCOME_SKIPPED,
    CallbackDeliveryRow,
)
from streams import metrics
from streams.callback_events import (
    CallbackEvent,
    CallbackHealth,
    CallbackTarget,
    after_attempt,
    callback_body,
    delivery_id,
    should_disable,
)
from streams.notify_delivery import Delivered, GiveUp, Retry, next_action, sign, webhook_headers
from streams.notify_subscriptions import DeliveryPolicy

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Disable = Callable[[CallbackTarget, CallbackHealth], Awaitable[None]]
"""Store the callback as disabled (with the health that condemned it)."""
SeedHealth = Callable[[CallbackTarget], Awaitable[CallbackHealth]]
"""The health the delivery log shows for a callback this process has not tried yet."""

EVENT_HEADER = "X-Cipulse-Event"
CALLBACK_HEADER = "X-Cipulse-Callback-Id"


@dataclass(frozen=True)
class CallbackDelivery:
    """One event for one callback; `source` is the Kafka event it came from (for dead letters)."""

    target: CallbackTarget
    event: CallbackEvent
    delivery_id: str
    body: bytes
    source: Any = None

    @classmethod
    def of(cls, target: CallbackTarget, event: CallbackEvent, api_url: str, source: Any = None) -> CallbackDelivery:
        return cls(target, event, delivery_id(target.callback_id, event), callback_body(target.callback_id, event, api_url), source)

    def headers(self) -> dict[str, str]:
        signature = sign(self.body, self.target.secret) if self.target.secret else None
        extra = {EVENT_HEADER: self.event.kind.value, CALLBACK_HEADER: self.target.callback_id}
        return webhook_headers(self.delivery_id, signature, extra)


@dataclass(frozen=True)
class CallbackOutcome:
    delivery: CallbackDelivery
    outcome: str
    """delivered, gave_up or skipped."""
    rows: tuple[CallbackDeliveryRow, ...]
    reason: str = ""


@dataclass
class CallbackSender:
    """Keeps each callback's health between batches (per subscription version)."""

    session: aiohttp.ClientSession
    policy: DeliveryPolicy
    disable_after: timedelta
    disable: Disable
    seed: SeedHealth
    rng: random.Random = field(default_factory=random.Random)
    sleep: Sleep = asyncio.sleep
    _health: dict[tuple[str, int], CallbackHealth] = field(default_factory=dict)

    async def deliver_batch(self, deliveries: Sequence[CallbackDelivery]) -> list[CallbackOutcome]:
        """Deliver everything; returns one outcome per delivery, in the input order."""
        by_callback: dict[str, list[int]] = {}
        for index, delivery in enumerate(deliveries):
            by_callback.setdefault(delivery.target.callback_id, []).append(index)
        outcomes: list[CallbackOutcome | None] = [None] * len(deliveries)

        async def run(indexes: list[int]) -> None:
            disabled = False
            for index in indexes:
                delivery = deliveries[index]
                if disabled or not delivery.target.active:
                    outcomes[index] = _skipped(delivery)
                else:
                    outcomes[index], disabled = await self._deliver(delivery)
                metrics.CALLBACK_DELIVERIES.labels(
                    delivery.target.callback_id, delivery.event.kind.value, outcomes[index].outcome  # type: ignore[union-attr]
                ).inc()

        await asyncio.gather(*(run(indexes) for indexes in by_callback.values()))
        return [outcome for outcome in outcomes if outcome is not None]

    def health(self, target: CallbackTarget) -> CallbackHealth | None:
        return self._health.get((target.callback_id, target.version))

    async def _health_of(self, target: CallbackTarget) -> CallbackHealth:
        key = (target.callback_id, target.version)
        if key not in self._health:
            for stale in [k for k in self._health if k[0] == target.callback_id]:
                del self._health[stale]
            self._health[key] = await self.seed(target)
        return self._health[key]

    async def _deliver(self, delivery: CallbackDelivery) -> tuple[CallbackOutcome, bool]:
        """(outcome, whether the callback was disabled on the way)."""
        target = delivery.target
        key = (target.callback_id, target.version)
        health = await self._health_of(target)
        policy = self.policy if not health.failing else self.policy.model_copy(update={"max_attempts": 1})
        headers = delivery.headers()
        rows: list[CallbackDeliveryRow] = []
        number = 0
        while True:
            number += 1
            attempted_at = datetime.now(UTC)
            started = time.monotonic()
            status_or_error: int | BaseException
            answer_headers: dict[str, str] = {}
            try:
                timeout = aiohttp.ClientTimeout(total=policy.timeout.total_seconds())
                async with self.session.post(target.url, data=delivery.body, headers=headers, timeout=timeout) as response:
                    status_or_error = response.status
                    answer_headers = dict(response.headers)
                    await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status_or_error = exc
            latency_ms = (time.monotonic() - started) * 1000
            now = datetime.now(UTC)
            action = next_action(number, status_or_error, answer_headers, policy, now=now, rng=self.rng)
            status = status_or_error if isinstance(status_or_error, int) else NO_HTTP_STATUS
            if isinstance(action, Delivered):
                self._health[key] = after_attempt(health, attempted_at, None)
                rows.append(_row(delivery, number, OUTCOME_DELIVERED, status, "", latency_ms, attempted_at))
                metrics.CALLBACK_ATTEMPTS.labels(OUTCOME_DELIVERED).inc()
                log.info("callback %s: %s %s of build %s delivered (attempt %d, HTTP %d)", target.callback_id,
                         delivery.delivery_id[:12], delivery.event.kind.value, delivery.event.change.build_id, number, status)
                return CallbackOutcome(delivery, OUTCOME_DELIVERED, tuple(rows)), False
            error = action.reason
            health = self._health[key] = after_attempt(health, attempted_at, error)
            if should_disable(health, now, self.disable_after):
                rows.append(_row(delivery, number, OUTCOME_GAVE_UP, status, error, latency_ms, attempted_at))
                metrics.CALLBACK_ATTEMPTS.labels(OUTCOME_GAVE_UP).inc()
                await self.disable(target, health)
                reason = f"callback {target.callback_id} disabled after failing since {health.failing_since}: {error}"
                return CallbackOutcome(delivery, OUTCOME_GAVE_UP, tuple(rows), reason), True
            if isinstance(action, GiveUp):
                rows.append(_row(delivery, number, OUTCOME_GAVE_UP, status, error, latency_ms, attempted_at))
                metrics.CALLBACK_ATTEMPTS.labels(OUTCOME_GAVE_UP).inc()
                log.error("callback %s: %s %s of build %s given up: %s", target.callback_id, delivery.delivery_id[:12],
                          delivery.event.kind.value, delivery.event.change.build_id, error)
                return CallbackOutcome(delivery, OUTCOME_GAVE_UP, tuple(rows), f"callback {target.callback_id}: {error}"), False
            assert isinstance(action, Retry)
            rows.append(_row(delivery, number, OUTCOME_RETRY, status, error, latency_ms, attempted_at))
            metrics.CALLBACK_ATTEMPTS.labels(OUTCOME_RETRY).inc()
            log.warning("callback %s: %s %s of build %s: %s", target.callback_id, delivery.delivery_id[:12],
                        delivery.event.kind.value, delivery.event.change.build_id, error)
            await self.sleep(action.after)


def _skipped(delivery: CallbackDelivery) -> CallbackOutcome:
    row = _row(delivery, NO_ATTEMPT, OUTCOME_SKIPPED, NO_HTTP_STATUS, "callback disabled: not attempted", 0.0,
               datetime.now(UTC))
    log.debug("callback %s disabled: %s %s of build %s not attempted", delivery.target.callback_id,
              delivery.delivery_id[:12], delivery.event.kind.value, delivery.event.change.build_id)
    return CallbackOutcome(delivery, OUTCOME_SKIPPED, (row,))


def _row(
    delivery: CallbackDelivery, attempt: int, outcome: str, http_status: int, error: str, latency_ms: float,
    attempted_at: datetime,
) -> CallbackDeliveryRow:
    change = delivery.event.change
    return CallbackDeliveryRow(
        delivery_id=delivery.delivery_id,
        callback_id=delivery.target.callback_id,
        project=change.project,
        pipeline=change.pipeline,
        build_id=change.build_id,
        event=delivery.event.kind.value,
        stage_id=delivery.event.stage_id,
        task_id=delivery.event.task_id,
        revision=change.revision,
        attempt=attempt,
        outcome=outcome,
        http_status=http_status,
        error=error,
        latency_ms=latency_ms,
        attempted_at=attempted_at,
    )
