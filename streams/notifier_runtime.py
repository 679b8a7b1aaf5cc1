"""The notifier's worker-local side: the sender, rate limiters and the due index.

Nothing here is the source of truth. The `notify-groups` table holds every pending and in-flight
notification. This object only remembers what this process is doing about them: which
flushes its sender is working on (`sending`), and which ones have a receipt on the way to the
agent (`receipted`). Orphans are in-flight flushes that a previous run left behind; they are
re-sent only after `RESUBMIT_AFTER`, which gives the agent time to consume a receipt that
may already be in the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from schemas import NotifierSignal, NotifierSignalKind
from streams import metrics
from streams.audit_due_index import DueIndex
from streams.notify_grouping import GroupFlush, RateLimiter
from streams.notify_sender import ChannelDispatcher, DeliveryResult
from streams.notify_subscriptions import Subscription

log = logging.getLogger(__name__)

RESUBMIT_AFTER = timedelta(seconds=5)
PublishSignal = Callable[[NotifierSignal], Awaitable[None]]
"""Sends a signal keyed by its group key and returns once the broker acknowledged it."""


@dataclass
class NotifierRuntime:
    subscriptions: Mapping[str, Subscription]
    index: DueIndex = field(default_factory=DueIndex)
    assignment: frozenset[object] | None = None
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    sending: set[str] = field(default_factory=set)
    receipted: set[str] = field(default_factory=set)
    orphans: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    """flush_id -> (group key, when to re-send it if it is still in flight)."""
    _dispatcher: ChannelDispatcher | None = None
    _session: aiohttp.ClientSession | None = None

    def allow(self, subscription: Subscription, now: datetime) -> bool:
        """Take a token of the subscription's rate limit (always yes without one)."""
        if subscription.rate_limit is None:
            return True
        limiter = self.limiters.setdefault(subscription.id, RateLimiter(per_minute=subscription.rate_limit.per_minute))
        allowed = limiter.allow(now)
        if not allowed:
            metrics.NOTIFICATION_RATE_LIMITED.labels(subscription.id).inc()
        return allowed

    def next_allowed(self, subscription: Subscription, now: datetime) -> datetime:
        limiter = self.limiters.get(subscription.id)
        return now if limiter is None else limiter.next_allowed(now)

    def submit(self, subscription: Subscription, flush: GroupFlush, publish: PublishSignal) -> None:
        """Hand `flush` to its channel's sender, unless this process is already on it."""
        if flush.flush_id in self.sending or flush.flush_id in self.receipted:
            return
        if self._dispatcher is None:
            self._session = aiohttp.ClientSession()
            self._dispatcher = ChannelDispatcher(self._session, self._receipt_sender(publish))
        self.sending.add(flush.flush_id)
        self.orphans.pop(flush.flush_id, None)
        metrics.NOTIFICATIONS_IN_FLIGHT.set(len(self.sending))
        self._dispatcher.submit(subscription, flush)

    def settled(self, flush_ids: set[str]) -> None:
        """The agent committed these receipts: forget them."""
        self.receipted.difference_update(flush_ids)

    def adopt_orphans(self, flushes: list[tuple[str, GroupFlush]], now: datetime) -> None:
        """In-flight flushes found in the table after an assignment change."""
        for key, flush in flushes:
            if flush.flush_id not in self.sending and flush.flush_id not in self.receipted:
                self.orphans.setdefault(flush.flush_id, (key, now + RESUBMIT_AFTER))

    def due_orphans(self, now: datetime) -> list[tuple[str, str]]:
        """(group key, flush id) of orphans to look at now; they leave the orphan list."""
        due = [(key, flush_id) for flush_id, (key, when) in self.orphans.items() if when <= now]
        for _, flush_id in due:
            del self.orphans[flush_id]
        return due

    async def drain(self, timeout: float) -> None:
        """Give deliveries in progress up to `timeout` seconds, then stop the sender.

        What is not finished stays in flight in the table and is re-sent by the next owner.
        """
        if self._dispatcher is None:
            return
        try:
            await asyncio.wait_for(self._dispatcher.drain(), timeout)
        except TimeoutError:
            log.warning("notifier stopping with %d message(s) still being delivered; the next run re-sends them",
                        len(self.sending))
        await self._dispatcher.close()
        if self._session is not None:
            await self._session.close()
        self._dispatcher = None
        self._session = None

    def _receipt_sender(self, publish: PublishSignal) -> Callable[[Subscription, GroupFlush, DeliveryResult], Awaitable[None]]:
        async def send_receipt(subscription: Subscription, flush: GroupFlush, result: DeliveryResult) -> None:
            """Report the outcome to the agent, retrying until the broker has it."""
            signal = NotifierSignal(
                kind=NotifierSignalKind.DELIVERED if result.delivered else NotifierSignalKind.GAVE_UP,
                group_key=flush.group_key,
                flush_id=flush.flush_id,
                attempts=list(result.attempts),
                reason="" if result.delivered else (result.last_error or "gave up"),
                signalled_at=datetime.now(UTC),
                notification_ids=[n.notification_id for n in flush.notifications],
                projects=sorted({n.project for n in flush.notifications}),
            )
            for attempt in result.attempts:
                metrics.NOTIFICATION_ATTEMPTS.labels(result.channel.value, attempt.outcome).inc()
            delay = 0.5
            while True:
                try:
                    await publish(signal)
                    break
                except Exception as exc:  # the broker is away: the receipt must not be lost
                    log.error("receipt of notification %s not published, retrying in %.1fs: %s",
                              flush.flush_id[:12], delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            self.receipted.add(flush.flush_id)
            self.sending.discard(flush.flush_id)
            metrics.NOTIFICATIONS_IN_FLIGHT.set(len(self.sending))

        return send_receipt
