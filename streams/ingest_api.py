"""HTTP ingest: build events POSTed as JSON, produced to the build-events topic before the 202.

Any worker can serve a request (nothing is table-routed). Events go out through the worker's
own Faust producer (aiokafka, `acks=all` from `streams.app`), keyed by build id. Its default
partitioner is aiokafka's `DefaultPartitioner`: murmur2 of the key bytes, masked positive,
modulo the partition count over all partitions, the same formula as Java's and librdkafka's
`murmur2_random` that `streams.producer` uses, so an ingested event lands on the partition
whose worker owns the build (tests/integration/test_push_and_ingest.py checks it against a
librdkafka producer). The answer waits for the broker's acknowledgement of every event; when
Kafka fails or is slow, the 503 names exactly the events that were acknowledged and those that
were not. The checks before that are pure and live in `streams.ingest`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import faust
from faust.types import TopicT
from faust.web import Request, Response, View

from schemas import BuildEvent
from schemas.serde import encode
from streams import metrics
from streams.api_responses import answer, error
from streams.exceptions import IngestRefused
from streams.ingest import (
    IngestInvalid, IngestTooLarge, authorize, check_projects, check_record_sizes, parse_batch, parse_event,
)
from streams.ingest_openapi import (
    IngestAccepted, IngestedEvent, IngestInvalidBody, IngestNotAcknowledgedBody, IngestTooLargeBody,
)
from streams.acked_produce import Outgoing, produce_acknowledged
from streams.request_body import read_limited_body
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)



@dataclass
class ProduceOutcome:
    """What the broker acknowledged of one request's events, and what it did not (and why)."""

    acknowledged: list[IngestedEvent] = field(default_factory=list)
    not_acknowledged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def produce_events(
    topic: TopicT, events: list[BuildEvent], timeout: float, values: Sequence[bytes] | None = None
) -> ProduceOutcome:
    """Send every event keyed by build id and wait for each acknowledgement (`streams.acked_produce`).

    `values` are the events already encoded (`schemas.serde.encode`), when the caller has them.
    """
    records = [
        Outgoing(topic, event.build_id.encode(), encode(event) if values is None else values[index], event.event_id)
        for index, event in enumerate(events)
    ]
    acked = await produce_acknowledged(records, timeout)
    build_of = {event.event_id: event.build_id for event in events}
    return ProduceOutcome(
        acknowledged=[
            IngestedEvent(event_id=ack.record_id, build_id=build_of[ack.record_id], partition=ack.partition,
                          offset=ack.offset)
            for ack in acked.acknowledged
        ],
        not_acknowledged=acked.not_acknowledged,
        problems=list(dict.fromkeys(acked.problems)),
    )


def register_ingest_api(app: faust.App, *, events: TopicT, settings: CipulseSettings) -> None:
    """Attach POST /ingest/builds and /ingest/builds/batch (described in `streams.ingest_openapi`)."""
    topic_name = events.get_topic_name()
    # one event = one Kafka record: the broker's per-record limit (and the producer's) bounds it
    max_event_bytes = min(settings.ingest_max_event_bytes, int(app.conf.producer_max_request_size))

    async def ingest(view: View, request: Request, endpoint: str, batch: bool) -> Response:
        try:
            allowed = authorize(request.headers.get("Authorization"), settings.ingest_tokens)
            body = await read_limited_body(request, settings.ingest_max_body_bytes)
            parsed = parse_batch(body, settings.ingest_max_batch) if batch else [parse_event(body)]
        except IngestInvalid as exc:
            metrics.INGEST_EVENTS.labels("invalid").inc(exc.invalid_events)
            metrics.INGEST_EVENTS.labels("refused").inc(exc.events - exc.invalid_events)
            log.info("%s: refused %d invalid of %d events", endpoint, exc.invalid_events, exc.events)
            invalid = IngestInvalidBody(error=str(exc), problems=exc.problems)
            return answer(view, endpoint, 422, invalid.model_dump(mode="json"))
        except IngestRefused as exc:
            log.info("%s: refused with %d: %s", endpoint, exc.status, exc)
            return error(view, endpoint, exc.status, str(exc))
        try:
            check_projects(parsed, allowed, batch)
        except IngestRefused as exc:
            metrics.INGEST_EVENTS.labels("refused").inc(len(parsed))
            log.info("%s: refused with %d: %s", endpoint, exc.status, exc)
            return error(view, endpoint, exc.status, str(exc))
        records = [(event.build_id.encode(), encode(event)) for event in parsed]
        try:
            check_record_sizes(parsed, records, max_event_bytes, batch)
        except IngestTooLarge as exc:
            metrics.INGEST_EVENTS.labels("refused").inc(len(parsed))
            log.info("%s: refused with 413: %s", endpoint, exc)
            too_large = IngestTooLargeBody(error=str(exc), problems=exc.problems)
            return answer(view, endpoint, 413, too_large.model_dump(mode="json"))
        outcome = await produce_events(
            events, parsed, settings.ingest_ack_timeout_seconds, values=[value for _, value in records]
        )
        metrics.INGEST_EVENTS.labels("accepted").inc(len(outcome.acknowledged))
        if outcome.not_acknowledged:
            metrics.INGEST_EVENTS.labels("not_acknowledged").inc(len(outcome.not_acknowledged))
            log.error(
                "%s: Kafka acknowledged %d of %d events on %s: %s", endpoint, len(outcome.acknowledged), len(parsed),
                topic_name, "; ".join(outcome.problems),
            )
            failure = IngestNotAcknowledgedBody(
                error=_not_acknowledged_message(outcome, len(parsed)),
                acknowledged=outcome.acknowledged, not_acknowledged=outcome.not_acknowledged,
            )
            return answer(view, endpoint, 503, failure.model_dump(mode="json"))
        accepted = IngestAccepted(
            accepted=len(outcome.acknowledged), topic=topic_name, events=outcome.acknowledged,
            detail="acknowledged by the broker; the live state follows within moments (GET /builds/{build_id})",
        )
        return answer(view, endpoint, 202, accepted.model_dump(mode="json"))

    @app.page("/ingest/builds", name="ingest_build")
    class IngestBuildView(View):
        async def post(self, request: Request) -> Response:
            return await ingest(self, request, "ingest_build", batch=False)

    @app.page("/ingest/builds/batch", name="ingest_builds_batch")
    class IngestBatchView(View):
        async def post(self, request: Request) -> Response:
            return await ingest(self, request, "ingest_builds_batch", batch=True)


def _not_acknowledged_message(outcome: ProduceOutcome, total: int) -> str:
    reason = "; ".join(dict.fromkeys(outcome.problems)) or "unknown"
    if not outcome.acknowledged:
        return (
            f"Kafka failed ({reason}): none of the {total} event(s) was accepted; send them again"
        )
    return (
        f"Kafka failed ({reason}): only {len(outcome.acknowledged)} of {total} events were acknowledged (listed in "
        f"'acknowledged'); send the {len(outcome.not_acknowledged)} in 'not_acknowledged' again (re-sending all is "
        "harmless too: a build ignores an event whose seq it already has)"
    )
