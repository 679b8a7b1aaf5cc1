"""POST /adapters/<name>: one intake for every CI adapter (GitHub, GitLab, CDEvents).

The adapter module says who sent the request, what it is and what it means (its pure functions,
`streams.adapters.contract`); this view does the rest the same way for all of them:

1. 413 when the body passes CIPULSE_INGEST_MAX_BODY_BYTES (read in chunks);
2. 401 unless `adapter.authenticate` accepts the request (nothing is produced or kept before,
   no secret is logged or answered);
3. 400 when `adapter.identify` finds no idempotency key or event type;
4. 200 `duplicate` for a key this worker already answered with 2xx (nothing produced; another
   worker would produce it again, which is harmless: same event ids and seqs), 200 `pong` for
   the adapter's ping events;
5. the request as received (body + the adapter's kept headers) goes to adapter-deliveries, from
   where a sink keeps it in ClickHouse for `cipulse adapters replay` — before the translation,
   so a request a mapping bug refused is kept too;
6. `adapter.translate`: build events to build-events (keyed by build id), audit events to
   audit-events (keyed by audit id), all acknowledged -> 202 `accepted`; `Unmappable` -> a
   `DeadLetter` (UNMAPPABLE, the reason, the raw body) -> 202 `dead-lettered: <reason>`. 202
   rather than 4xx: CI systems show any non-2xx as a failed delivery and re-sending cannot help.
   Kafka not acknowledging any of these -> 503 naming what was not acknowledged (a re-send is
   harmless).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import faust
from faust.types import TopicT
from faust.web import Request, Response, View
from pydantic import SecretStr

from schemas import AdapterDelivery, AuditEvent, BuildEvent, DeadLetter, DeadLetterKind
from schemas.serde import encode
from streams import metrics
from streams.acked_produce import AckedOutcome, Outgoing, produce_acknowledged
from streams.adapters.contract import Adapter, BadDelivery, Delivery, Refused, Translated, Unmappable, lower_headers
from streams.adapters.intake_openapi import AdapterAccepted, AdapterNotAcknowledged, AdapterRecord
from streams.api_responses import answer, error
from streams.exceptions import IngestRefused
from streams.request_body import read_limited_body
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

REMEMBERED_DELIVERIES = 10_000


@dataclass(frozen=True)
class IntakeTopics:
    """Where the adapters' records go."""

    build_events: TopicT
    audit_events: TopicT
    deliveries: TopicT
    dead_letter: TopicT


class DeliveryLog:
    """Delivery keys this worker has answered with 2xx (bounded, oldest forgotten first).

    Only saves a produce: the build and audit state ignore repeated seqs anyway.
    """

    def __init__(self, size: int = REMEMBERED_DELIVERIES) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def outcome(self, key: str) -> str | None:
        return self._seen.get(key)

    def remember(self, key: str, outcome: str) -> None:
        self._seen[key] = outcome
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


def endpoint_name(adapter: Adapter) -> str:
    return f"{adapter.name}_webhook"


def processor_name(adapter: Adapter) -> str:
    return f"{adapter.name}-adapter"


def configured_secrets(settings: CipulseSettings, adapter: Adapter) -> Mapping[str, SecretStr]:
    """The adapter's {source: secret} from its CIPULSE_* setting."""
    secrets: Mapping[str, SecretStr] = getattr(settings, adapter.secrets_setting.removeprefix("CIPULSE_").lower())
    return secrets


def outgoing_records(translated: list[Translated], topics: IntakeTopics) -> list[Outgoing]:
    """Each translated event on its topic, keyed the way its state agent is partitioned."""
    records: list[Outgoing] = []
    for event in translated:
        if isinstance(event, BuildEvent):
            records.append(Outgoing(topics.build_events, event.build_id.encode(), encode(event), event.event_id))
        else:
            records.append(Outgoing(topics.audit_events, event.audit_id.encode(), encode(event), event.event_id))
    return records


def answered_records(translated: list[Translated], outcome: AckedOutcome) -> list[AdapterRecord]:
    by_id = {event.event_id: event for event in translated}
    return [
        AdapterRecord(
            event_id=ack.record_id,
            kind="build" if isinstance(by_id[ack.record_id], BuildEvent) else "audit",
            subject_id=subject_of(by_id[ack.record_id]),
            topic=ack.topic, partition=ack.partition, offset=ack.offset,
        )
        for ack in outcome.acknowledged
        if ack.record_id in by_id
    ]


def subject_of(event: Translated) -> str:
    return event.build_id if isinstance(event, BuildEvent) else event.audit_id


def register_adapter(
    app: faust.App,
    adapter: Adapter,
    *,
    topics: IntakeTopics,
    settings: CipulseSettings,
    deliveries: DeliveryLog | None = None,
) -> None:
    """Attach POST /adapters/<adapter.name> (described in `streams.adapters.intake_openapi`)."""
    seen = deliveries if deliveries is not None else DeliveryLog()
    secrets = configured_secrets(settings, adapter)
    endpoint = endpoint_name(adapter)
    processor = processor_name(adapter)
    timeout = settings.ingest_ack_timeout_seconds

    @app.page(f"/adapters/{adapter.name}", name=endpoint)
    class AdapterView(View):
        async def post(self, request: Request) -> Response:
            return await handle(self, request)

    async def handle(view: View, request: Request) -> Response:
        try:
            body = await read_limited_body(request, settings.ingest_max_body_bytes)
            headers = lower_headers(request.headers)
            source = adapter.authenticate(secrets, request.query.get("source"), headers, body)
        except Refused as exc:
            metrics.INGEST_EVENTS.labels("refused").inc()
            log.info("%s: refused with 401: %s", endpoint, exc)
            return error(view, endpoint, 401, str(exc))
        except IngestRefused as exc:
            log.info("%s: refused with %d: %s", endpoint, exc.status, exc)
            return error(view, endpoint, exc.status, str(exc))
        try:
            delivery = adapter.identify(headers, body)
        except BadDelivery as exc:
            return error(view, endpoint, 400, str(exc))
        accepted = Accepting(view, source, delivery)
        previous = seen.outcome(delivery.key)
        if previous is not None:
            log.info("%s: delivery %s (%s) again: already %s, nothing produced", endpoint, delivery.key,
                     delivery.event_type, previous)
            return accepted.answer(200, "duplicate", f"delivery {delivery.key} was already {previous}; nothing produced")
        if delivery.event_type in adapter.pings:
            seen.remember(delivery.key, f"answered ({delivery.event_type})")
            return accepted.answer(200, "pong", "webhook verified")

        kept = {name: headers[name] for name in adapter.kept_headers if name in headers}
        raw = AdapterDelivery(
            adapter=adapter.name, source=source, delivery_key=delivery.key, event_type=delivery.event_type,
            headers=kept, body=body, received_at=datetime.now(UTC),
        )
        raw_record = Outgoing(topics.deliveries, f"{adapter.name}:{delivery.key}".encode(), encode(raw), "raw delivery")
        try:
            translated = adapter.translate(headers, body)
        except Unmappable as exc:
            return await dead_letter_it(accepted, raw_record, body, str(exc))
        records = [raw_record, *outgoing_records(translated, topics)]
        outcome = await produce_acknowledged(records, timeout)
        metrics.INGEST_EVENTS.labels("accepted").inc(len(answered_records(translated, outcome)))
        if not outcome.complete:
            metrics.INGEST_EVENTS.labels("not_acknowledged").inc(len(outcome.not_acknowledged))
            log.error("%s: delivery %s: Kafka acknowledged %d of %d records: %s", endpoint, delivery.key,
                      len(outcome.acknowledged), len(records), outcome.explain())
            failure = AdapterNotAcknowledged(
                error=f"Kafka did not acknowledge {len(outcome.not_acknowledged)} of {len(records)} records "
                f"({outcome.explain()}); send the delivery again, a re-send is harmless",
                acknowledged=answered_records(translated, outcome),
                not_acknowledged=outcome.not_acknowledged,
            )
            return answer(view, endpoint, 503, failure.model_dump(mode="json"))
        seen.remember(delivery.key, f"accepted ({len(translated)} events)")
        subjects = sorted({subject_of(event) for event in translated})
        log.info("%s: delivery %s (%s) from %s -> %d events of %s", endpoint, delivery.key, delivery.event_type,
                 source, len(translated), ", ".join(subjects) or "nothing")
        return accepted.answer(
            202, "accepted", "acknowledged by the broker; the live state follows within moments",
            records=answered_records(translated, outcome),
            build_id=next((e.build_id for e in translated if isinstance(e, BuildEvent)), None),
            audit_id=next((e.audit_id for e in translated if isinstance(e, AuditEvent)), None),
        )

    class Accepting:
        """Answers about one authenticated delivery."""

        def __init__(self, view: View, source: str, delivery: Delivery) -> None:
            self.view, self.source, self.delivery = view, source, delivery

        def answer(self, status: int, outcome: str, detail: str, *, records: list[AdapterRecord] | None = None,
                   build_id: str | None = None, audit_id: str | None = None, topic: str | None = None) -> Response:
            body = AdapterAccepted(
                adapter=adapter.name, delivery=self.delivery.key, source=self.source, event=self.delivery.event_type,
                outcome=outcome, build_id=build_id, audit_id=audit_id, topic=topic, events=records or [],  # type: ignore[arg-type]
                detail=detail,
            )
            return answer(self.view, endpoint, status, body.model_dump(mode="json"))

    async def dead_letter_it(accepted: Accepting, raw_record: Outgoing, body: bytes, reason: str) -> Response:
        delivery = accepted.delivery
        record = DeadLetter(
            source_topic=f"http:/adapters/{adapter.name}?source={accepted.source}",
            source_partition=-1,
            source_offset=-1,
            key=delivery.key.encode(),
            payload=body,
            kind=DeadLetterKind.UNMAPPABLE,
            reason=f"{adapter.name} {delivery.event_type} delivery {delivery.key}: {reason}",
            failed_at=datetime.now(UTC),
            processor=processor,
        )
        dead = Outgoing(topics.dead_letter, delivery.key.encode(), encode(record), "dead letter")
        outcome = await produce_acknowledged([raw_record, dead], timeout)
        if not outcome.complete:
            log.error("%s: delivery %s: dead letter not acknowledged: %s", endpoint, delivery.key, outcome.explain())
            return error(accepted.view, endpoint, 503,
                         f"could not dead-letter the unmappable delivery ({reason}): Kafka failed; send it again")
        metrics.DEAD_LETTERS.labels(processor, DeadLetterKind.UNMAPPABLE.value).inc()
        log.warning("%s: delivery %s (%s) -> dead-letter: %s", endpoint, delivery.key, delivery.event_type, reason)
        seen.remember(delivery.key, f"dead-lettered ({reason})")
        return accepted.answer(202, "dead-lettered", f"dead-lettered: {reason}", topic=topics.dead_letter.get_topic_name())
