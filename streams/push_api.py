"""`GET /stream/builds`: build-status change sets pushed to HTTP clients as Server-Sent Events.

A worker reads the build-status topic once for all its clients: one shared tail consumer
(`streams.push_tail.SharedTail`; no consumer group, no commits: a client holds its position in
the event ids, see `streams.push_stream`), started by the first client, decodes each record once
and fans it out to every client's filter and bounded queue (`streams.push_fanout`). A client
that resumes behind the tail reads privately until it has caught up, then joins the tail
(`streams.push_tail.catch_up`). A client too slow for the live rate is disconnected (it resumes
with its last id) instead of holding the others back. `PushStreams` bounds how many streams run
at once and stops them all when the worker stops; a stream ends when the client goes away
(seen within one poll, 0.25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any, cast

import faust
from aiohttp import web
from faust.web import Request, Response, View

from streams import metrics
from streams.api_responses import error
from streams.exceptions import ApiRequestError, StreamPositionError
from streams.push_fanout import Subscriber
from streams.push_stream import (
    GAP_EVENT_TYPE,
    HEARTBEAT,
    StartPlan,
    encode_position,
    parse_stream_request,
    sse_event,
    sse_event_json,
    sse_preamble,
)
from streams.push_tail import (
    KAFKA_SETUP_TIMEOUT,
    POLL_SECONDS,
    ConsumerFactory,
    SharedTail,
    catch_up,
    kafka_consumer_factory,
)
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

ENDPOINT = "stream_builds"
_ids = itertools.count(1)


class PushStreams:
    """The open streams of this worker: at most `max_clients`, each stoppable at shutdown."""

    def __init__(self, max_clients: int) -> None:
        self.max_clients = max_clients
        self._stops: set[asyncio.Event] = set()
        self.tail: SharedTail | None = None

    @property
    def open(self) -> int:
        return len(self._stops)

    def try_open(self) -> asyncio.Event | None:
        """A stop flag for a new stream, or None when the worker is full."""
        if len(self._stops) >= self.max_clients:
            return None
        stop = asyncio.Event()
        self._stops.add(stop)
        return stop

    def close(self, stop: asyncio.Event) -> None:
        self._stops.discard(stop)

    def stop_all(self) -> None:
        for stop in self._stops:
            stop.set()


def register_push_api(
    app: faust.App, *, status_topic: str, settings: CipulseSettings,
    make_consumer: ConsumerFactory | None = None,
) -> PushStreams:
    """Attach `GET /stream/builds` (described in `streams.push_openapi`); returns the stream registry."""
    streams = PushStreams(settings.sse_max_clients)
    consumers = make_consumer or kafka_consumer_factory(settings.kafka_bootstrap)
    client_queue = settings.sse_client_queue_events
    tail = SharedTail(status_topic, consumers, settings.app_id, linger=settings.sse_tail_linger_seconds)
    streams.tail = tail

    @app.on_before_shutdown.connect
    async def stop_push_streams(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Open streams end, and the shared tail stops, before the web server waits for its handlers."""
        if streams.open:
            log.info("stopping %d SSE stream(s)", streams.open)
        streams.stop_all()
        await tail.close()

    @app.page("/stream/builds", name=ENDPOINT)
    class BuildStreamView(View):
        async def get(self, request: Request) -> Response:
            try:
                wanted, resume = parse_stream_request(request.query, request.headers.get("Last-Event-ID"))
            except ApiRequestError as exc:
                return error(self, ENDPOINT, 400, str(exc))
            stop = streams.try_open()
            if stop is None:
                refused = error(
                    self, ENDPOINT, 503,
                    f"this worker already serves {streams.max_clients} SSE streams (CIPULSE_SSE_MAX_CLIENTS): "
                    "retry later or connect to another worker",
                )
                refused.headers["Retry-After"] = "5"
                return refused
            client_id = f"{settings.app_id}-sse-{next(_ids)}"
            subscriber: Subscriber | None = None
            reader: asyncio.Task[int] | None = None
            connected = False
            try:
                try:
                    await tail.acquire()
                    plan = await asyncio.wait_for(tail.plan(resume), KAFKA_SETUP_TIMEOUT)
                    if not tail.running:
                        raise ConnectionError("the SSE shared tail stopped")
                except StreamPositionError as exc:
                    return error(self, ENDPOINT, 400, str(exc))
                except Exception as exc:
                    log.error("SSE stream %s: Kafka unavailable: %r", client_id, exc)
                    return error(self, ENDPOINT, 503, f"cannot read {status_topic} from Kafka: {exc!r}; retry later")
                # no await between the tail's position and the registration: nothing slips past
                subscriber = Subscriber(client_id, wanted, plan.offsets, client_queue)
                tail.fanout.register(subscriber, live_end=resume is None)
                start = StartPlan(offsets=dict(subscriber.position), gaps=plan.gaps)
                if subscriber.behind:
                    reader = asyncio.create_task(catch_up(tail, subscriber, consumers, stop), name=f"{client_id}-catch-up")
                response = web.StreamResponse(status=200, headers={
                    "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                })
                await response.prepare(cast(web.Request, request))
                metrics.API_REQUESTS.labels(ENDPOINT, "200").inc()
                metrics.SSE_CLIENTS.inc()
                connected = True
                log.info("SSE stream %s opened (%s) at %s, %s", client_id, wanted, encode_position(start.offsets),
                         "catching up" if reader else "on the shared tail")
                await _pump(subscriber, reader, cast(web.Request, request), response, start, stop, settings, status_topic)
                return cast(Response, response)
            finally:
                if subscriber is not None:
                    tail.fanout.unregister(subscriber)
                if reader is not None:
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
                tail.release()
                streams.close(stop)
                if connected:
                    metrics.SSE_CLIENTS.dec()
                    assert subscriber is not None
                    log.info("SSE stream %s closed after %d change sets%s", client_id, subscriber.pushed,
                             f" ({subscriber.dropped})" if subscriber.dropped else "")

    return streams


async def _pump(
    subscriber: Subscriber,
    reader: asyncio.Task[int] | None,
    request: web.Request,
    response: web.StreamResponse,
    start: StartPlan,
    stop: asyncio.Event,
    settings: CipulseSettings,
    topic: str,
) -> None:
    """Write the subscriber's queued events until the client leaves, is dropped, or the worker stops."""
    loop = asyncio.get_running_loop()
    try:
        await response.write(sse_preamble(start.offsets, topic))
        for gap in start.gaps:
            await response.write(sse_event(encode_position(start.offsets), GAP_EVENT_TYPE, gap))
        last_write = loop.time()
        while not stop.is_set() and not _client_gone(request) and subscriber.dropped is None:
            if reader is not None and reader.done():
                if not reader.cancelled() and reader.exception() is not None:
                    log.error("SSE stream %s: its catch-up reader failed, the stream ends (the client resumes): %r",
                              subscriber.name, reader.exception())
                    return
                reader = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriber.wakeup.wait(), POLL_SECONDS)
            if subscriber.dropped is not None:
                return
            events = subscriber.drain()
            if events:
                await response.write(b"".join(sse_event_json(e.event_id, e.event, e.data) for e in events))
                changes = sum(1 for e in events if e.event != GAP_EVENT_TYPE)
                subscriber.pushed += changes
                metrics.SSE_EVENTS_PUSHED.inc(changes)
                last_write = loop.time()
            elif loop.time() - last_write >= settings.sse_heartbeat_seconds:
                await response.write(HEARTBEAT)
                last_write = loop.time()
    except ConnectionError as exc:  # the client went away mid-write
        log.debug("SSE client gone: %r", exc)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
