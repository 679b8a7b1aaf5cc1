"""The notification requester: turns final build statuses and audit alerts into notification
requests, one per subscription that wants the transition, keyed by the request's group key.

Its input is the build-finals topic (change sets of builds entering a final status, keyed by
pipeline+branch, published by the build-state agent) and the audit-alerts topic. Keying the
finals by pipeline puts every build of a pipeline in one partition, so the `pipeline-outcomes`
table can tell a recovery (a success after a failure) from a plain success on any number of
workers. Keying the requests by group key gives each group to exactly one grouping agent.

At-least-once like the other agents: a batch's requests are acknowledged by the broker before
the outcome table is written and the offsets committed. A replay yields the same requests with
the same `notification_id`s, which the grouping agent recognises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import EventT, StreamT, TableT, TopicT

from schemas import AuditAlert, BuildStatusChange, NotificationRequest
from schemas.serde import encode
from streams.batch_states import BatchStates, make_current
from streams.dead_letter import DeadLetterPublisher
from streams.failed_batches import stop_worker_on_failure
from streams.notify_grouping import group_key, group_labels
from streams.notify_requests import audit_alert_requests, build_requests
from streams.notify_subscriptions import Subscription
from streams.notify_transitions import PipelineOutcome, outcome_before, pipeline_key, record_outcome

log = logging.getLogger(__name__)

PROCESSOR = "notify-requester"


def load_outcome(raw: bytes | None) -> PipelineOutcome | None:
    return None if raw is None else PipelineOutcome.model_validate_json(raw)


def dump_outcome(outcome: PipelineOutcome) -> bytes:
    return outcome.model_dump_json().encode()


def request_key(request: NotificationRequest, subscriptions: Mapping[str, Subscription]) -> bytes:
    """The Kafka key of a request: its group key under the subscription's `group_by`."""
    policy = subscriptions[request.subscription_id].grouping
    return group_key(request.subscription_id, group_labels(request, policy.group_by)).encode()


@dataclass(frozen=True)
class RequesterTopics:
    inputs: TopicT
    """build-finals + audit-alerts in one channel."""
    alerts_name: str
    requests: TopicT


def register_requester_agent(
    app: faust.App,
    *,
    topics: RequesterTopics,
    dead_letters: DeadLetterPublisher,
    outcomes: TableT[bytes, Any],
    subscriptions: Sequence[Subscription],
    api_url: str,
    batch_size: int,
    batch_wait_seconds: float,
) -> None:
    by_id = {s.id: s for s in subscriptions}

    async def request_notifications(stream: StreamT[Any]) -> None:
        states: BatchStates[PipelineOutcome] = BatchStates(outcomes, load_outcome, dump_outcome)
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=batch_wait_seconds):
            async with stop_worker_on_failure(stream, events):
                deliveries: list[Awaitable[Any]] = []
                now = datetime.now(UTC)
                for event in events:
                    make_current(event)
                    if event.message.topic == topics.alerts_name:
                        requests = await _alert_requests(event, dead_letters, subscriptions, now, deliveries)
                    else:
                        requests = await _build_requests(event, dead_letters, states, subscriptions, now, api_url, deliveries)
                    for request in requests:
                        deliveries.append(await topics.requests.send(key=request_key(request, by_id), value=encode(request)))
                        log.info(
                            "notification %s for %s: %s %s", request.notification_id[:12], request.subscription_id,
                            request.transition.value, request.title,
                        )
                await asyncio.gather(*deliveries)
                states.commit()

    app.agent(topics.inputs, name=PROCESSOR)(request_notifications)


async def _build_requests(
    event: EventT[Any],
    dead_letters: DeadLetterPublisher,
    states: BatchStates[PipelineOutcome],
    subscriptions: Sequence[Subscription],
    now: datetime,
    api_url: str,
    deliveries: list[Awaitable[Any]],
) -> list[NotificationRequest]:
    change = await dead_letters.decode_or_reject(event, BuildStatusChange, deliveries)
    if change is None:
        return []
    key = pipeline_key(change).encode()
    outcome = states.get(key)
    requests = build_requests(
        change, outcome_before(outcome, change), subscriptions, now,
        links={"build": f"{api_url}/builds/{change.build_id}", "history": f"{api_url}/builds/{change.build_id}/history"},
    )
    updated = record_outcome(outcome, change)
    if updated is not None and updated != outcome:
        states.put(key, updated, event)
    return requests


async def _alert_requests(
    event: EventT[Any],
    dead_letters: DeadLetterPublisher,
    subscriptions: Sequence[Subscription],
    now: datetime,
    deliveries: list[Awaitable[Any]],
) -> list[NotificationRequest]:
    # A bad alert is dead-lettered by the audit agent too; `processor` tells the two apart.
    alert = await dead_letters.decode_or_reject(event, AuditAlert, deliveries)
    if alert is None:
        return []
    return audit_alert_requests(alert, subscriptions, now)
