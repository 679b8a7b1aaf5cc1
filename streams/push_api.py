"""`GET /stream/builds`: build-status change sets pushed to HTTP clients as Server-Sent Events.

Each connection has its own aiokafka consumer, assigned every partition of the build-status
topic (no consumer group, no commits: the client holds its position in the event ids, see
`streams.push_stream`), so any worker serves any client and one slow client delays nobody
else. `PushStreams` bounds how many run at once and stops them all when the worker stops; a
stream ends, and its consumer is closed, when the client goes away (seen within one poll, 0.25 s).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, cast

import faust
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response, View

from schemas import BuildStatusChange, SerdeError, decode
from streams import metrics
from streams.api_responses import error
from streams.exceptions import ApiRequestError, StreamPositionError
from streams.push_stream import (
    EVENT_TYPE,
    GAP_EVENT_TYPE,
    HEARTBEAT,
    StartPlan,
    StatusFilter,
    encode_position,
    parse_stream_request,
    plan_start,
    sse_event,
    sse_preamble,
)
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

ENDPOINT = "stream_builds"
POLL_SECONDS = 0.25
"""Longest a stream waits for records before it checks the client and the stop flag again."""
KAFKA_SETUP_TIMEOUT = 10.0
_ids = itertools.count(1)


class PushStreams:
    """The open streams of this worker: at most `max_clients`, each stoppable at shutdown."""

    def __init__(self, max_clients: int) -> None:
        self.max_clients = max_clients
        self._stops: set[asyncio.Event] = set()

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


async def position_consumer(consumer: AIOKafkaConsumer, topic: str, resume: dict[int, int] | None) -> StartPlan:
    """Assign every partition of `topic` and seek to where the stream starts."""
    # `consumer.topics()` fetches the same metadata but keeps only the names; the partitions of a
    # topic the consumer has not subscribed to are only in the client's answer.
    metadata = await consumer._client.fetch_all_metadata()
    partitions = metadata.partitions_for_topic(topic)
    if not partitions:
        raise ConnectionError(f"topic {topic} does not exist (yet): is the worker's build-state agent running?")
    assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
    consumer.assign(assigned)
    beginnings = await consumer.beginning_offsets(assigned)
    ends = await consumer.end_offsets(assigned)
    plan = plan_start(
        resume, {tp.partition: offset for tp, offset in beginnings.items()}, {tp.partition: offset for tp, offset in ends.items()}
    )
    for tp in assigned:
        consumer.seek(tp, plan.offsets[tp.partition])
    return plan


def register_push_api(app: faust.App, *, status_topic: str, settings: CipulseSettings) -> PushStreams:
    """Attach `GET /stream/builds` (described in `streams.push_openapi`); returns the stream registry."""
    streams = PushStreams(settings.sse_max_clients)

    @app.on_before_shutdown.connect
    async def stop_push_streams(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Open streams end (and close their consumers) before the web server waits for its handlers."""
        if streams.open:
            log.info("stopping %d SSE stream(s)", streams.open)
        streams.stop_all()

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
            connected, pushed = False, 0
            consumer = AIOKafkaConsumer(
                bootstrap_servers=[server.strip() for server in settings.kafka_bootstrap.split(",")],
                client_id=client_id, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                fetch_max_wait_ms=int(POLL_SECONDS * 1000),
            )
            try:
                try:
                    await asyncio.wait_for(consumer.start(), KAFKA_SETUP_TIMEOUT)
                    plan = await asyncio.wait_for(position_consumer(consumer, status_topic, resume), KAFKA_SETUP_TIMEOUT)
                except StreamPositionError as exc:
                    return error(self, ENDPOINT, 400, str(exc))
                except Exception as exc:
                    log.error("SSE stream %s: Kafka unavailable: %r", client_id, exc)
                    return error(self, ENDPOINT, 503, f"cannot read {status_topic} from Kafka: {exc!r}; retry later")
                response = web.StreamResponse(status=200, headers={
                    "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                })
                await response.prepare(cast(web.Request, request))
                metrics.API_REQUESTS.labels(ENDPOINT, "200").inc()
                metrics.SSE_CLIENTS.inc()
                connected = True
                log.info("SSE stream %s opened (%s) at %s", client_id, wanted, encode_position(plan.offsets))
                pushed = await _pump(consumer, cast(web.Request, request), response, wanted, plan, stop, settings)
                return cast(Response, response)
            finally:
                streams.close(stop)
                await consumer.stop()
                if connected:  # counted until its consumer is closed
                    metrics.SSE_CLIENTS.dec()
                    log.info("SSE stream %s closed, its consumer stopped, after %d change sets", client_id, pushed)

    return streams


async def _pump(
    consumer: AIOKafkaConsumer,
    request: web.Request,
    response: web.StreamResponse,
    wanted: StatusFilter,
    plan: StartPlan,
    stop: asyncio.Event,
    settings: CipulseSettings,
) -> int:
    """Write matching change sets until the client leaves or the worker stops; returns how many."""
    loop = asyncio.get_running_loop()
    position = dict(plan.offsets)
    pushed = 0
    try:
        await response.write(sse_preamble(position, next(iter(consumer.assignment())).topic))
        for gap in plan.gaps:
            await response.write(sse_event(encode_position(position), GAP_EVENT_TYPE, gap))
        last_write = loop.time()
        while not stop.is_set() and not _client_gone(request):
            batches = await consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=1000)
            chunks: list[bytes] = []
            for tp, records in batches.items():
                for record in records:
                    position[tp.partition] = record.offset + 1
                    if not wanted.key_may_match(record.key):
                        continue
                    try:
                        change = decode(record.value, BuildStatusChange)
                    except SerdeError as exc:
                        metrics.SSE_RECORDS_UNDECODABLE.inc()
                        log.error("SSE stream skips %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                        continue
                    if wanted.matches(change):
                        chunks.append(sse_event(encode_position(position), EVENT_TYPE, change.model_dump(mode="json")))
            if chunks:
                await response.write(b"".join(chunks))
                pushed += len(chunks)
                metrics.SSE_EVENTS_PUSHED.inc(len(chunks))
                last_write = loop.time()
            elif loop.time() - last_write >= settings.sse_heartbeat_seconds:
                await response.write(HEARTBEAT)
                last_write = loop.time()
    except ConnectionError as exc:  # the client went away mid-write
        log.debug("SSE client gone: %r", exc)
    return pushed


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
