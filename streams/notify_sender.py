"""Deliver one notification message over its channel, with acknowledgement and retries.

A message counts as delivered only on a 2xx answer. Failures follow `notify_delivery.next_action`
(exponential backoff with full jitter, `Retry-After` on 429/503, give up after the configured
attempts or on a refusal such as 400). Every attempt is reported, so the delivery log in
ClickHouse shows attempts, latency and outcome. `ChannelDispatcher` gives each subscription its
own queue and task: a slow or failing receiver never holds up another channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from schemas import DeliveryAttempt, NotificationChannel, NotificationRequest
from sinks.notification_rows import NO_ATTEMPT, NO_HTTP_STATUS, OUTCOME_DEDUPLICATED, NotificationDeliveryRow
from streams.notify_delivery import Delivered, GiveUp, Retry, next_action, sign, slack_body, webhook_body, webhook_headers
from streams.notify_grouping import GroupFlush
from streams.notify_subscriptions import LogChannel, SlackChannel, Subscription, WebhookChannel

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryResult:
    message_id: str
    channel: NotificationChannel
    attempts: tuple[DeliveryAttempt, ...]

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].outcome == "delivered"

    @property
    def last_error(self) -> str | None:
        return self.attempts[-1].error or None if self.attempts else None


def request_for(channel: WebhookChannel | SlackChannel, flush: GroupFlush) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of the POST that carries `flush` over `channel`."""
    if isinstance(channel, SlackChannel):
        body = json.dumps(slack_body(flush), separators=(",", ":")).encode()
        return str(channel.url), body, webhook_headers(flush.flush_id, None)
    body = webhook_body(flush)
    signature = sign(body, channel.hmac_secret) if channel.hmac_secret is not None else None
    return str(channel.url), body, webhook_headers(flush.flush_id, signature, channel.headers)


async def deliver(
    session: aiohttp.ClientSession,
    subscription: Subscription,
    flush: GroupFlush,
    *,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
) -> DeliveryResult:
    """Send `flush` until acknowledged or given up; never raises for receiver failures."""
    channel = subscription.channel
    now = datetime.now(UTC)
    if isinstance(channel, LogChannel):
        log.info(
            "notification %s to %s (%d%s): %s", flush.flush_id[:12], subscription.id, len(flush.notifications),
            ", repeat" if flush.is_repeat else "", "; ".join(n.title for n in flush.notifications),
        )
        return DeliveryResult(flush.flush_id, channel.kind, (_attempt(1, "delivered", 0, "", 0.0, now),))
    url, body, headers = request_for(channel, flush)
    policy = subscription.delivery
    rng = rng or random.Random()
    attempts: list[DeliveryAttempt] = []
    number = 0
    while True:
        number += 1
        attempted_at = datetime.now(UTC)
        started = time.monotonic()
        status_or_error: int | BaseException
        answer_headers: dict[str, str] = {}
        try:
            timeout = aiohttp.ClientTimeout(total=policy.timeout.total_seconds())
            async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
                status_or_error = response.status
                answer_headers = dict(response.headers)
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            status_or_error = exc
        latency_ms = (time.monotonic() - started) * 1000
        action = next_action(number, status_or_error, answer_headers, policy, now=datetime.now(UTC), rng=rng)
        status = status_or_error if isinstance(status_or_error, int) else 0
        if isinstance(action, Delivered):
            attempts.append(_attempt(number, "delivered", status, "", latency_ms, attempted_at))
            return DeliveryResult(flush.flush_id, channel.kind, tuple(attempts))
        if isinstance(action, GiveUp):
            attempts.append(_attempt(number, "gave_up", status, action.reason, latency_ms, attempted_at))
            log.error("notification %s to %s given up: %s", flush.flush_id, subscription.id, action.reason)
            return DeliveryResult(flush.flush_id, channel.kind, tuple(attempts))
        assert isinstance(action, Retry)
        attempts.append(_attempt(number, "retry", status, action.reason, latency_ms, attempted_at))
        log.warning("notification %s to %s: %s", flush.flush_id, subscription.id, action.reason)
        await sleep(action.after)


def delivery_rows(flush: GroupFlush, attempts: Iterable[DeliveryAttempt]) -> list[NotificationDeliveryRow]:
    """One delivery-log row per attempt (the ClickHouse table keys them by id and attempt)."""
    first = flush.notifications[0]
    return [
        NotificationDeliveryRow(
            notification_id=flush.flush_id,
            subscription_id=flush.subscription_id,
            channel=first.channel.value,
            project=first.project,
            subject_kind=first.subject_kind,
            subject_id=first.subject_id,
            transition=first.transition.value,
            attempt=attempt.number,
            outcome=attempt.outcome,
            http_status=attempt.http_status,
            error=attempt.error,
            latency_ms=attempt.latency_ms,
            attempted_at=attempt.attempted_at,
            grouped_count=max(1, len(flush.notifications)),
        )
        for attempt in attempts
    ]


def suppressed_row(request: NotificationRequest, now: datetime) -> NotificationDeliveryRow:
    """The delivery-log row of a request dropped because the log holds an acknowledged send."""
    return NotificationDeliveryRow(
        notification_id=request.notification_id,
        subscription_id=request.subscription_id,
        channel=request.channel.value,
        project=request.project,
        subject_kind=request.subject_kind,
        subject_id=request.subject_id,
        transition=request.transition.value,
        attempt=NO_ATTEMPT,
        outcome=OUTCOME_DEDUPLICATED,
        http_status=NO_HTTP_STATUS,
        error="",
        latency_ms=0.0,
        attempted_at=now,
        grouped_count=1,
    )


def _attempt(
    number: int, outcome: str, http_status: int, error: str, latency_ms: float, attempted_at: datetime
) -> DeliveryAttempt:
    return DeliveryAttempt(
        number=number, outcome=outcome, http_status=http_status, error=error, latency_ms=latency_ms,
        attempted_at=attempted_at,
    )


OnResult = Callable[[Subscription, GroupFlush, DeliveryResult], Awaitable[None]]


class ChannelDispatcher:
    """A queue and a sending task per subscription, so one receiver's trouble stays its own."""

    def __init__(self, session: aiohttp.ClientSession, on_result: OnResult, sleep: Sleep = asyncio.sleep) -> None:
        self._session = session
        self._on_result = on_result
        self._sleep = sleep
        self._queues: dict[str, asyncio.Queue[tuple[Subscription, GroupFlush]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, subscription: Subscription, flush: GroupFlush) -> None:
        queue = self._queues.get(subscription.id)
        if queue is None:
            queue = self._queues[subscription.id] = asyncio.Queue()
            self._tasks[subscription.id] = asyncio.create_task(self._run(queue), name=f"notify-{subscription.id}")
        queue.put_nowait((subscription, flush))

    async def drain(self) -> None:
        """Wait until every submitted message was delivered or given up."""
        await asyncio.gather(*(queue.join() for queue in self._queues.values()))

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, queue: asyncio.Queue[tuple[Subscription, GroupFlush]]) -> None:
        while True:
            subscription, flush = await queue.get()
            try:
                result = await deliver(self._session, subscription, flush, sleep=self._sleep)
                await self._on_result(subscription, flush, result)
            except Exception:  # a bug in a callback must not kill the channel's task
                log.exception("delivery of %s to %s failed unexpectedly", flush.flush_id, subscription.id)
            finally:
                queue.task_done()
