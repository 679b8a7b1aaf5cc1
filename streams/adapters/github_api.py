"""POST /adapters/github: GitHub Actions webhooks, verified, mapped and produced before the answer.

Order of checks: 401 (no secret for the source, no `X-Hub-Signature-256`) -> 413 (body over
CIPULSE_INGEST_MAX_BODY_BYTES) -> 401 (signature does not match HMAC-SHA256(secret, body)) ->
400 (no `X-GitHub-Event` / `X-GitHub-Delivery`). Nothing is produced before the signature is
verified, and no secret or signature is ever logged or answered.

Then, keyed by `X-GitHub-Delivery`:
- a delivery id this worker already acknowledged -> 200 `duplicate`, nothing produced (another
  worker would produce it again, which is harmless: same event ids and seqs, ignored by the build);
- `ping` -> 200 `pong`;
- mappable (`streams.adapters.github`) -> the events go to build-events (acks=all) -> 202;
- well signed but unmappable -> a `DeadLetter` (kind UNMAPPABLE, the reason, the raw body as
  payload, the delivery id as key) to the dead-letter topic -> 202 `dead-lettered: <reason>`.
  202 rather than 4xx: GitHub shows any non-2xx as a failed delivery and re-sending cannot help;
  the payload is kept and counted in `cipulse_dead_letters_total{processor="github-adapter"}`.
- Kafka did not acknowledge -> 503 (GitHub's redelivery, or a re-send, is then harmless).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any
from datetime import UTC, datetime

import faust
from faust.types import TopicT
from faust.web import Request, Response, View

from schemas import DeadLetter, DeadLetterKind
from schemas.serde import encode
from streams import metrics
from streams.adapters.github import SignatureRefused, Unmappable, choose_secret, map_webhook, signature_present, verify_signature
from streams.adapters.github_openapi import GitHubWebhookAccepted
from streams.api_responses import answer, error
from streams.exceptions import IngestRefused
from streams.ingest_api import _not_acknowledged_message, _read_body, produce_events
from streams.ingest_openapi import IngestNotAcknowledgedBody
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

ENDPOINT = "github_webhook"
PROCESSOR = "github-adapter"
REMEMBERED_DELIVERIES = 10_000


class DeliveryLog:
    """Delivery ids this worker has answered with 2xx (bounded, oldest forgotten first)."""

    def __init__(self, size: int = REMEMBERED_DELIVERIES) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def outcome(self, delivery: str) -> str | None:
        return self._seen.get(delivery)

    def remember(self, delivery: str, outcome: str) -> None:
        self._seen[delivery] = outcome
        self._seen.move_to_end(delivery)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


def register_github_adapter(
    app: faust.App, *, events: TopicT, dead_letter: TopicT, settings: CipulseSettings, deliveries: DeliveryLog | None = None
) -> None:
    """Attach POST /adapters/github (described in `streams.adapters.github_openapi`)."""
    seen = deliveries if deliveries is not None else DeliveryLog()
    topic_name = events.get_topic_name()

    @app.page("/adapters/github", name=ENDPOINT)
    class GitHubWebhookView(View):
        async def post(self, request: Request) -> Response:
            return await handle(self, request)

    async def handle(view: View, request: Request) -> Response:
        try:
            source, secret = choose_secret(settings.github_webhook_secrets, request.query.get("source"))
            signature_present(request.headers.get("X-Hub-Signature-256"))
            body = await _read_body(request, settings.ingest_max_body_bytes)
            verify_signature(secret, body, request.headers.get("X-Hub-Signature-256"))
        except SignatureRefused as exc:
            metrics.INGEST_EVENTS.labels("refused").inc()
            log.info("%s: refused with 401: %s", ENDPOINT, exc)
            return error(view, ENDPOINT, 401, str(exc))
        except IngestRefused as exc:
            log.info("%s: refused with %d: %s", ENDPOINT, exc.status, exc)
            return error(view, ENDPOINT, exc.status, str(exc))
        event_type = (request.headers.get("X-GitHub-Event") or "").strip()
        delivery = (request.headers.get("X-GitHub-Delivery") or "").strip()
        if not event_type or not delivery:
            return error(view, ENDPOINT, 400, "X-GitHub-Event and X-GitHub-Delivery headers are required (GitHub always sends them)")
        previous = seen.outcome(delivery)
        if previous is not None:
            log.info("%s: delivery %s (%s) again: already %s, nothing produced", ENDPOINT, delivery, event_type, previous)
            return answer(view, ENDPOINT, 200, GitHubWebhookAccepted(
                delivery=delivery, source=source, event=event_type, outcome="duplicate",
                detail=f"delivery {delivery} was already {previous}; nothing produced",
            ).model_dump(mode="json"))
        if event_type == "ping":
            seen.remember(delivery, "answered (ping)")
            return answer(view, ENDPOINT, 200, GitHubWebhookAccepted(
                delivery=delivery, source=source, event=event_type, outcome="pong", detail="webhook verified",
            ).model_dump(mode="json"))
        try:
            try:
                payload = json.loads(body)
            except json.JSONDecodeError as exc:
                raise Unmappable(f"the body is not JSON ({exc.msg} at position {exc.pos})") from None
            except UnicodeDecodeError:
                raise Unmappable("the body is not UTF-8 JSON") from None
            mapped = map_webhook(event_type, payload)
        except Unmappable as exc:
            return await dead_letter_it(view, body, source, event_type, delivery, str(exc))
        outcome = await produce_events(events, mapped, settings.ingest_ack_timeout_seconds)
        metrics.INGEST_EVENTS.labels("accepted").inc(len(outcome.acknowledged))
        if outcome.not_acknowledged:
            metrics.INGEST_EVENTS.labels("not_acknowledged").inc(len(outcome.not_acknowledged))
            log.error("%s: delivery %s: Kafka acknowledged %d of %d events on %s: %s", ENDPOINT, delivery,
                      len(outcome.acknowledged), len(mapped), topic_name, "; ".join(outcome.problems))
            failure = IngestNotAcknowledgedBody(
                error=_not_acknowledged_message(outcome, len(mapped)),
                acknowledged=outcome.acknowledged, not_acknowledged=outcome.not_acknowledged,
            )
            return answer(view, ENDPOINT, 503, failure.model_dump(mode="json"))
        seen.remember(delivery, f"accepted ({len(mapped)} events)")
        log.info("%s: delivery %s (%s %s) -> %d events of build %s", ENDPOINT, delivery, event_type,
                 payload.get("action"), len(mapped), mapped[0].build_id)
        return answer(view, ENDPOINT, 202, GitHubWebhookAccepted(
            delivery=delivery, source=source, event=event_type, outcome="accepted", build_id=mapped[0].build_id,
            topic=topic_name, events=outcome.acknowledged,
            detail="acknowledged by the broker; the live state follows within moments (GET /builds/{build_id})",
        ).model_dump(mode="json"))

    async def dead_letter_it(view: View, body: bytes, source: str, event_type: str, delivery: str, reason: str) -> Response:
        record = DeadLetter(
            source_topic=f"http:/adapters/github?source={source}",
            source_partition=-1,
            source_offset=-1,
            key=delivery.encode(),
            payload=body,
            kind=DeadLetterKind.UNMAPPABLE,
            reason=f"GitHub {event_type} delivery {delivery}: {reason}",
            failed_at=datetime.now(UTC),
            processor=PROCESSOR,
        )
        try:
            delivery_future = await dead_letter.send(key=delivery.encode(), value=encode(record))
            await _wait(delivery_future, settings.ingest_ack_timeout_seconds)
        except Exception as exc:
            log.error("%s: delivery %s: dead letter not acknowledged: %r", ENDPOINT, delivery, exc)
            return error(view, ENDPOINT, 503, f"could not dead-letter the unmappable webhook ({reason}): Kafka failed; send it again")
        metrics.DEAD_LETTERS.labels(PROCESSOR, DeadLetterKind.UNMAPPABLE.value).inc()
        log.warning("%s: delivery %s (%s) -> dead-letter: %s", ENDPOINT, delivery, event_type, reason)
        seen.remember(delivery, f"dead-lettered ({reason})")
        return answer(view, ENDPOINT, 202, GitHubWebhookAccepted(
            delivery=delivery, source=source, event=event_type, outcome="dead-lettered",
            topic=dead_letter.get_topic_name(), detail=f"dead-lettered: {reason}",
        ).model_dump(mode="json"))


async def _wait(future: Awaitable[Any], timeout: float) -> None:
    await asyncio.wait_for(asyncio.ensure_future(future), timeout)
