"""POST /adapters/github over HTTP (the shared intake, `streams.adapters.intake`; aiohttp test
server, topics replaced by recording fakes): valid, missing and wrong signatures, a replayed
delivery id, ping, dead-lettering, and the raw delivery kept for every authenticated request.

The real broker and worker path is covered by tests/integration/test_github_webhooks.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from schemas import AdapterDelivery, BuildEvent, DeadLetter, DeadLetterKind
from schemas.serde import decode
from streams.adapters.github import sign
from streams.adapters.intake import IntakeTopics, register_adapter
from streams.adapters.registry import BY_NAME
from streams.settings import CipulseSettings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github"
SECRET = "acme-webhook-secret"
OTHER_SECRET = "other-webhook-secret"


class Metadata:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset


class RecordingTopic:
    """Acknowledges every send at once and keeps the records."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[bytes, bytes]] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        self.sent.append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(Metadata(0, len(self.sent) - 1))
        return future


class Harness:
    def __init__(self, client: TestClient[Any, Any], topics: IntakeTopics) -> None:
        self.client = client
        self.events, self.audits = cast(RecordingTopic, topics.build_events), cast(RecordingTopic, topics.audit_events)
        self.raw, self.dead = cast(RecordingTopic, topics.deliveries), cast(RecordingTopic, topics.dead_letter)

    def kept(self) -> list[AdapterDelivery]:
        return [decode(value, AdapterDelivery) for _, value in self.raw.sent]

    async def post(self, body: bytes, *, event: str = "workflow_run", delivery: str | None = "d-1",
                   secret: str | None = SECRET, source: str | None = None,
                   signature: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event}
        if delivery is not None:
            headers["X-GitHub-Delivery"] = delivery
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = sign(secret, body)
        path = "/adapters/github" + (f"?source={source}" if source else "")
        response = await self.client.post(path, data=body, headers=headers)
        return response.status, await response.json()


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = CipulseSettings(
        data_dir=tmp_path, github_webhook_secrets={"acme": SecretStr(SECRET), "other": SecretStr(OTHER_SECRET)}, ingest_max_body_bytes=65536,
    )
    app = faust.App("github-test", web_enabled=True, store="memory://", autodiscover=False)
    topics = IntakeTopics(
        build_events=RecordingTopic("cipulse.build-events"), audit_events=RecordingTopic("cipulse.audit-events"),  # type: ignore[arg-type]
        deliveries=RecordingTopic("cipulse.adapter-deliveries"), dead_letter=RecordingTopic("cipulse.dead-letter"),  # type: ignore[arg-type]
    )
    register_adapter(app, BY_NAME["github"], topics=topics, settings=settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    try:
        yield Harness(client, topics)
    finally:
        await client.close()


def body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


async def _valid_signature_produces_the_mapped_event(api: Harness) -> None:
    status, answer = await api.post(body("workflow_run.completed"), source="acme")
    assert status == 202, answer
    assert answer["outcome"] == "accepted" and answer["build_id"] == "gh-300029405-289782451-1"
    [(key, value)] = api.events.sent
    event = decode(value, BuildEvent)
    assert key == b"gh-300029405-289782451-1" and event.status.value == "SUCCEEDED"
    assert [e["event_id"] for e in answer["events"]] == [event.event_id]
    [kept] = api.kept()
    assert (kept.adapter, kept.source, kept.delivery_key, kept.event_type) == ("github", "acme", "d-1", "workflow_run")
    assert kept.body == body("workflow_run.completed")
    assert kept.headers["x-github-event"] == "workflow_run" and "x-hub-signature-256" not in kept.headers
    assert api.raw.sent[0][0] == b"github:d-1"


async def _missing_or_wrong_signatures_are_refused_and_produce_nothing(api: Harness, caplog: pytest.LogCaptureFixture) -> None:
    payload = body("workflow_run.completed")
    for kwargs, reason in (
        ({"secret": None, "source": "acme"}, "missing signature"),
        ({"signature": "sha1=" + "0" * 40, "source": "acme"}, "missing signature"),
        ({"secret": OTHER_SECRET, "source": "acme"}, "does not match"),
        ({"secret": SECRET, "source": "other"}, "does not match"),
        ({"secret": SECRET}, "several GitHub sources"),  # two configured, none chosen
        ({"secret": SECRET, "source": "nope"}, "no GitHub webhook secret is configured"),
    ):
        status, answer = await api.post(payload, **kwargs)
        assert status == 401 and reason in answer["error"], (kwargs, answer)
    assert api.events.sent == [] and api.dead.sent == [] and api.raw.sent == []
    assert SECRET not in caplog.text and OTHER_SECRET not in caplog.text
    assert sign(SECRET, payload).split("=")[1] not in caplog.text


async def _a_replayed_delivery_id_changes_nothing(api: Harness) -> None:
    payload = body("workflow_run.requested")
    assert (await api.post(payload, source="acme", delivery="replay-1"))[0] == 202
    status, answer = await api.post(payload, source="acme", delivery="replay-1")
    assert status == 200 and answer["outcome"] == "duplicate", answer
    assert len(api.events.sent) == 1
    # a new delivery id of the same webhook (another worker, or after the log forgot it) maps to the
    # same event id and seq, which the build ignores (tests/unit/streams/test_github_adapter.py)
    assert (await api.post(payload, source="acme", delivery="replay-2"))[0] == 202
    first, second = (decode(value, BuildEvent) for _, value in api.events.sent)
    assert (first.event_id, first.seq) == (second.event_id, second.seq)


async def _unmappable_webhooks_are_dead_lettered_with_reason_and_payload(api: Harness) -> None:
    legacy = body("workflow_job.completed.legacy")
    status, answer = await api.post(legacy, event="workflow_job", source="acme", delivery="legacy-1")
    assert status == 202 and answer["outcome"] == "dead-lettered", answer
    assert answer["detail"].startswith("dead-lettered: workflow_job has no workflow_name")
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    status, answer = await api.post(push, event="push", source="acme", delivery="push-1")
    assert status == 202 and "unsupported GitHub event type 'push'" in answer["detail"]
    assert api.events.sent == []
    letters = [decode(value, DeadLetter) for _, value in api.dead.sent]
    assert [(d.kind, d.key, d.payload, d.processor) for d in letters] == [
        (DeadLetterKind.UNMAPPABLE, b"legacy-1", legacy, "github-adapter"),
        (DeadLetterKind.UNMAPPABLE, b"push-1", push, "github-adapter"),
    ]
    assert "no workflow_name" in letters[0].reason and "legacy-1" in letters[0].reason
    # kept as received, so a fixed mapping can translate them later (`cipulse adapters replay`)
    assert [(d.delivery_key, d.body) for d in api.kept()] == [("legacy-1", legacy), ("push-1", push)]


async def _ping_and_missing_headers(api: Harness) -> None:
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    status, answer = await api.post(ping, event="ping", source="other", secret=OTHER_SECRET, delivery="ping-1")
    assert status == 200 and answer["outcome"] == "pong"
    status, answer = await api.post(ping, event="ping", source="other", secret=OTHER_SECRET, delivery=None)
    assert status == 400 and "X-GitHub-Delivery" in answer["error"]
    assert api.events.sent == [] and api.dead.sent == [] and api.raw.sent == []


@pytest.mark.parametrize(
    "scenario",
    [_valid_signature_produces_the_mapped_event, _missing_or_wrong_signatures_are_refused_and_produce_nothing,
     _a_replayed_delivery_id_changes_nothing, _unmappable_webhooks_are_dead_lettered_with_reason_and_payload,
     _ping_and_missing_headers],
    ids=lambda f: f.__name__.strip("_"),
)
def test_github_webhook_endpoint(scenario: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        async with serving(tmp_path) as api:
            if scenario is _missing_or_wrong_signatures_are_refused_and_produce_nothing:
                await scenario(api, caplog)
            else:
                await scenario(api)

    asyncio.run(go())
