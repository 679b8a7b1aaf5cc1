"""Notification delivery against real HTTP receivers on loopback: acknowledgement, retries,
Retry-After, signatures, idempotency keys, and isolation between channels."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness import free_port
from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.notify_grouping import GroupFlush, GroupScheduler
from streams.notify_sender import ChannelDispatcher, DeliveryResult, deliver, delivery_rows
from streams.notify_subscriptions import GroupingPolicy, Subscription

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, tzinfo=UTC)
SECRET = "receiver-shared-secret"


def note(i: int) -> NotificationRequest:
    return NotificationRequest(
        notification_id=f"n{i}", subscription_id="oncall", subject_kind="BUILD", subject_id=f"b{i}",
        project="payments", pipeline="deploy-prod", transition=NotificationTransition.FAILED, status="FAILED",
        version=1, channel=NotificationChannel.WEBHOOK, title=f"payments/deploy-prod build b{i} failed",
        body="task deploy/rollout: its node was lost", created_at=T0,
    )


def flush_of(count: int) -> GroupFlush:
    scheduler = GroupScheduler({"oncall": GroupingPolicy.model_validate({"group_wait": "0s"})})
    for i in range(count):
        scheduler.add(note(i), T0)
    [flush] = scheduler.due(T0)
    return flush


def subscription(url: str, kind: str = "webhook", **delivery: Any) -> Subscription:
    channel: dict[str, Any] = {"type": kind, "url": url}
    if kind == "webhook":
        channel["hmac_secret"] = SECRET
    return Subscription.model_validate({
        "id": f"sub-{kind}-{url.rsplit(':', 1)[-1].split('/')[0]}", "transitions": ["failed"], "channel": channel,
        "delivery": {"max_attempts": 5, "initial_backoff": "10ms", "max_backoff": "50ms", "timeout": "5s", **delivery},
    })


@asynccontextmanager
async def receiver(answer: Callable[[int], web.StreamResponse | Any]) -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """A real HTTP server; `answer(n)` decides the n-th response (1-based)."""
    requests: list[web.Request] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        requests.append(request)
        result = answer(len(requests))
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/hook", requests, bodies
    finally:
        await runner.cleanup()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_receiver_failing_twice_then_succeeding_gets_one_delivery_in_three_logged_attempts() -> None:
    async def scenario() -> tuple[DeliveryResult, list[web.Request], list[bytes], Subscription]:
        async with receiver(lambda n: web.Response(status=500 if n <= 2 else 204)) as (url, requests, bodies):
            sub = subscription(url)
            async with aiohttp.ClientSession() as session:
                result = await deliver(session, sub, flush_of(1))
            return result, requests, bodies, sub

    result, requests, bodies, sub = run(scenario())
    assert result.delivered and [a.outcome for a in result.attempts] == ["retry", "retry", "delivered"]
    assert [a.http_status for a in result.attempts] == [500, 500, 204]
    keys = {r.headers["Idempotency-Key"] for r in requests}
    assert keys == {result.message_id}, "every retry carries the same idempotency key"
    expected = "sha256=" + hmac.new(SECRET.encode(), bodies[-1], hashlib.sha256).hexdigest()
    assert requests[-1].headers["X-Cipulse-Signature-256"] == expected
    rows = delivery_rows(flush_of(1), result.attempts)
    assert [(r.attempt, r.outcome) for r in rows] == [(1, "retry"), (2, "retry"), (3, "delivered")]


def test_429_with_retry_after_is_honoured() -> None:
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def scenario() -> DeliveryResult:
        answers = {1: web.Response(status=429, headers={"Retry-After": "2"}), 2: web.Response(status=200)}
        async with receiver(lambda n: answers[n]) as (url, _, _):
            async with aiohttp.ClientSession() as session:
                return await deliver(session, subscription(url), flush_of(1), sleep=record_sleep)

    result = run(scenario())
    assert result.delivered and waits == [2.0]


def test_a_refusal_is_not_retried_and_gives_up_with_the_reason() -> None:
    async def scenario() -> tuple[DeliveryResult, list[web.Request]]:
        async with receiver(lambda n: web.Response(status=400, text="bad payload")) as (url, requests, _):
            async with aiohttp.ClientSession() as session:
                return await deliver(session, subscription(url), flush_of(1)), requests

    result, requests = run(scenario())
    assert not result.delivered and len(requests) == 1
    assert result.last_error is not None and "HTTP 400" in result.last_error


def test_an_unreachable_receiver_is_retried_up_to_max_attempts_then_given_up() -> None:
    async def scenario() -> DeliveryResult:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{free_port()}/hook"
            return await deliver(session, subscription(url, max_attempts=3), flush_of(1))

    result = run(scenario())
    assert [a.outcome for a in result.attempts] == ["retry", "retry", "gave_up"]
    assert all(a.http_status == 0 and a.error for a in result.attempts)


def test_a_slow_receiver_does_not_hold_up_another_channel() -> None:
    async def slow(n: int) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(status=200)

    async def scenario() -> dict[str, float]:
        finished: dict[str, float] = {}
        started = time.monotonic()

        async def on_result(sub: Subscription, flush: GroupFlush, result: DeliveryResult) -> None:
            finished[sub.id] = time.monotonic() - started

        async with receiver(slow) as (slow_url, _, _), receiver(lambda n: web.Response(status=200)) as (fast_url, _, _):
            async with aiohttp.ClientSession() as session:
                dispatcher = ChannelDispatcher(session, on_result)
                slow_sub, fast_sub = subscription(slow_url), subscription(fast_url)
                dispatcher.submit(slow_sub, flush_of(1))
                dispatcher.submit(fast_sub, flush_of(2))
                await dispatcher.drain()
                await dispatcher.close()
        return {"slow": finished[slow_sub.id], "fast": finished[fast_sub.id]}

    times = run(scenario())
    assert times["slow"] >= 3.0
    assert times["fast"] < times["slow"] - 2.0


def test_a_slack_channel_gets_a_slack_compatible_grouped_message() -> None:
    async def scenario() -> tuple[DeliveryResult, list[bytes]]:
        async with receiver(lambda n: web.Response(status=200, text="ok")) as (url, _, bodies):
            async with aiohttp.ClientSession() as session:
                return await deliver(session, subscription(url, kind="slack"), flush_of(20)), bodies

    result, bodies = run(scenario())
    assert result.delivered and len(bodies) == 1
    message = json.loads(bodies[0])
    assert "20" in message["text"] and message["blocks"]
