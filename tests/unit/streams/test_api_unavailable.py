"""What a key-routed lookup and /ready answer while the cluster is not in a steady state.

`GET /builds/{id}` must say 503 + Retry-After (never a false 404, never a 500) while the owner's
table is rebalanced or restored, or the owner is gone; /ready must notice a silent broker. The
Faust app is replaced by a stand-in with exactly the attributes the code reads, and the "other
worker" by a real aiohttp server (or a closed port), so forwarding goes over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from streams.broker_probe import BrokerProbe
from streams.key_routing import FORWARDED_HEADER, route_to_owner

SELF = "http://127.0.0.1:6066"


class Recovery:
    def __init__(self, in_recovery: bool) -> None:
        self.in_recovery = in_recovery

    def active_remaining_total(self) -> int:
        return 1234


class Consumer:
    def __init__(self, assigned: bool) -> None:
        self.assigned = assigned

    def assignment(self) -> set[str]:
        return {"tp"} if self.assigned else set()


class Router:
    def __init__(self, owner: str | None) -> None:
        self.owner = owner

    def key_store(self, table_name: str, key: Any) -> URL:
        if self.owner is None:
            raise KeyError(key)
        return URL(self.owner)


def fake_app(owner: str | None = SELF, *, rebalancing: bool = False, in_recovery: bool = False,
             assigned: bool = True, stopping: bool = False, http: aiohttp.ClientSession | None = None) -> Any:
    return SimpleNamespace(
        router=Router(owner), conf=SimpleNamespace(canonical_url=URL(SELF)), should_stop=stopping,
        consumer=Consumer(assigned), rebalancing=rebalancing,
        tables=SimpleNamespace(recovery=Recovery(in_recovery)), http_client=http,
    )


class FakeView:
    """The two response factories of a Faust view the code uses."""

    def json(self, value: Any, *, status: int = 200, headers: Any = None) -> web.Response:
        return web.json_response(value, status=status, headers=headers)

    def bytes(self, value: bytes, *, content_type: str | None = None, status: int = 200, headers: Any = None) -> web.Response:
        return web.Response(body=value, content_type=content_type, status=status, headers=headers)


class FakeRequest:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = URL(url)
        self.method = "GET"
        self.headers = headers or {}


async def not_found() -> web.Response:
    return web.json_response({"error": "unknown build 'b1': no event for it was accepted"}, status=404)


async def lookup(app: Any, request: FakeRequest | None = None,
                 local: Callable[[], Awaitable[web.Response]] = not_found) -> tuple[int, dict[str, Any], Any]:
    request = request or FakeRequest(f"{SELF}/builds/b1")
    response = await route_to_owner(app, SimpleNamespace(name="build-state"), "b1", FakeView(), request,  # type: ignore[arg-type]
                                    "build_state", local)
    assert response.body is not None
    return response.status, json.loads(bytes(response.body)), response.headers  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def other_worker(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    """A worker on a free port answering every GET /builds/{id} with `status`; yields its URL and the requests seen."""
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(body, status=status, headers=headers)

    server = web.Application()
    server.router.add_get("/builds/{build_id}", handle)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


# --- the owner itself --------------------------------------------------------------------------


def test_an_owner_restoring_its_table_answers_503_with_retry_after_not_a_false_404() -> None:
    status, body, headers = asyncio.run(lookup(fake_app(in_recovery=True)))
    assert status == 503 and headers["Retry-After"] == "2"
    assert "restored from its changelog (1234 records to go)" in body["error"]


def test_an_owner_in_a_rebalance_or_without_partitions_or_stopping_answers_503() -> None:
    for app, words in (
        (fake_app(rebalancing=True), "rebalanced between the workers"),
        (fake_app(assigned=False), "no Kafka partitions assigned"),
        (fake_app(stopping=True), "shutting down"),
    ):
        status, body, headers = asyncio.run(lookup(app))
        assert status == 503 and int(headers["Retry-After"]) > 0 and words in body["error"], body


def test_a_ready_owner_answers_from_its_table_so_a_404_means_the_key_is_absent() -> None:
    status, body, headers = asyncio.run(lookup(fake_app()))
    assert status == 404 and "Retry-After" not in headers and "no event for it" in body["error"]


def test_no_known_owner_for_the_key_answers_503() -> None:
    status, body, headers = asyncio.run(lookup(fake_app(owner=None)))
    assert status == 503 and headers["Retry-After"] == "2" and "rebalanced" in body["error"]


# --- forwarding ---------------------------------------------------------------------------------


def test_an_owner_that_left_answers_503_with_retry_after_not_a_500() -> None:
    async def scenario() -> tuple[int, dict[str, Any], Any]:
        async with aiohttp.ClientSession() as http:
            gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
            return await lookup(fake_app(owner=gone, http=http))

    status, body, headers = asyncio.run(scenario())
    assert status == 503 and headers["Retry-After"] == "5"
    assert "is unreachable" in body["error"] and "retry shortly" in body["error"]


def test_the_owners_answer_is_relayed_with_its_status_and_retry_after() -> None:
    async def scenario() -> tuple[tuple[int, dict[str, Any], Any], list[Any]]:
        restoring = {"error": "the table is being rebalanced/restored on this worker"}
        async with other_worker(503, restoring, {"Retry-After": "2"}) as (url, seen), aiohttp.ClientSession() as http:
            return await lookup(fake_app(owner=url, http=http)), seen

    (status, body, headers), seen = asyncio.run(scenario())
    assert status == 503 and headers["Retry-After"] == "2" and "restored" in body["error"]
    assert seen and seen[0][FORWARDED_HEADER] == SELF  # marked, so the owner never forwards it again


def test_the_owners_200_is_relayed() -> None:
    async def scenario() -> tuple[int, dict[str, Any], Any]:
        async with other_worker(200, {"build_id": "b1"}) as (url, _), aiohttp.ClientSession() as http:
            return await lookup(fake_app(owner=url, http=http))

    status, body, headers = asyncio.run(scenario())
    assert (status, body) == (200, {"build_id": "b1"}) and "Retry-After" not in headers


def test_a_forwarded_lookup_is_never_forwarded_again() -> None:
    async def forbidden() -> web.Response:
        raise AssertionError("not the owner: must not read its table")

    request = FakeRequest(f"{SELF}/builds/b1", {FORWARDED_HEADER: "http://127.0.0.1:7000"})
    # no http client: a second hop would crash on None
    status, body, headers = asyncio.run(lookup(fake_app(owner="http://127.0.0.1:7001"), request, forbidden))
    assert status == 503 and headers["Retry-After"] == "2"
    assert "http://127.0.0.1:7000 sent this lookup here" in body["error"]


# --- the broker probe behind /ready -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_broker_probe_reports_an_outage_with_its_start_and_clears_when_the_broker_answers() -> None:
    answers: list[BaseException | None] = []

    async def fetch() -> None:
        outcome = answers.pop(0)
        if outcome is not None:
            raise outcome

    clock = Clock()
    started = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    probe = BrokerProbe(fetch, refresh_seconds=2.0, clock=clock, now=lambda: started)

    async def scenario() -> list[str | None]:
        seen: list[str | None] = []
        answers.extend([None, ConnectionRefusedError("refused"), None])
        for _ in range(3):
            seen.append(probe.problem())  # starts a probe when stale, answers from the last finished one
            await asyncio.sleep(0.02)  # let the background probe run
            seen.append(probe.problem())  # within refresh_seconds: cached, no new probe
            clock.t += 2.5
        return seen

    seen = asyncio.run(scenario())
    assert seen[:2] == [None, None]  # first probe ok
    assert seen[2] is None  # the failing probe has not finished when this answer is given
    assert seen[3] == ("Kafka broker unreachable since 2024-05-01T12:00:00+00:00: "
                       "metadata request failed: ConnectionRefusedError('refused')")
    assert seen[4] == seen[3]  # stale answer while the next probe runs
    assert seen[5] is None  # back
    assert answers == []  # exactly one probe per refresh period


def test_a_silent_broker_counts_as_unreachable_after_the_timeout_and_ready_never_waits_for_it() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    probe = BrokerProbe(hang, timeout_seconds=0.05)

    async def scenario() -> tuple[str | None, str | None]:
        loop = asyncio.get_running_loop()
        before = loop.time()
        first = probe.problem()
        assert loop.time() - before < 0.01  # returned at once
        await asyncio.sleep(0.2)
        return first, probe.problem()

    first, later = asyncio.run(scenario())
    assert first is None
    assert later is not None and later.startswith("Kafka broker unreachable since ") and "within 0.05s" in later
