"""REST callbacks end to end: real broker, real worker, real local HTTP receivers.

A callback created through the API receives a build's starts and finishes, signed with
HMAC-SHA256 and carrying a stable `Idempotency-Key`, so a replay of the same change sets is
recognisable by the receiver. A receiver that keeps failing is retried (every attempt in the
delivery history), dead-lettered, then disabled after the configured period; re-enabling it
resumes deliveries. A deleted callback gets nothing more. Bad calls get 401/404/422."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import WorkerProcess, consume_records, http_json, wait_until
from schemas import BuildEvent, BuildScope, BuildStatus, DeadLetter, DeadLetterKind, decode
from streams.producer import BuildEventProducer
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token"
SECRET = "callback-secret-0123"
ALL_EVENTS = ["build_started", "build_finished", "stage_started", "stage_finished", "task_started", "task_finished"]
S = BuildStatus


def call(worker: WorkerProcess, method: str, path: str, body: Any = None, token: str | None = TOKEN,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(worker.api + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def create(worker: WorkerProcess, url: str, **overrides: Any) -> dict[str, Any]:
    body = {"url": url, "project": "payments", "pipeline": "deploy", "events": ALL_EVENTS, "secret": SECRET, **overrides}
    status, created = call(worker, "POST", "/callbacks", body)
    assert status == 201, created
    return dict(created)


def build(build_id: str, *steps: tuple[int, BuildStatus, BuildScope]) -> list[BuildEvent]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        BuildEvent(
            event_id=f"{build_id}-{seq}", build_id=build_id, project="payments", pipeline="deploy", seq=seq,
            event_time=start + timedelta(seconds=seq), scope=scope, status=status,
            stage_id="test" if scope is not BuildScope.BUILD else None,
            task_id="unit" if scope is BuildScope.TASK else None,
        )
        for seq, status, scope in steps
    ]


def full_build(build_id: str) -> list[BuildEvent]:
    return build(
        build_id, (1, S.RUNNING, BuildScope.BUILD), (2, S.RUNNING, BuildScope.STAGE), (3, S.RUNNING, BuildScope.TASK),
        (4, S.SUCCEEDED, BuildScope.TASK), (5, S.SUCCEEDED, BuildScope.STAGE), (6, S.SUCCEEDED, BuildScope.BUILD),
    )


def send(worker: WorkerProcess, events: list[BuildEvent]) -> None:
    producer = BuildEventProducer(worker.bootstrap, worker.topic("build-events"))
    for event in events:
        producer.send(event)
    producer.flush()


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


def of_build(receiver: Receiver, build_id: str) -> list[Any]:
    return [r for r in receiver.requests if r.json["build_id"] == build_id]


def start_worker(worker_factory: Any, **extra: str) -> WorkerProcess:
    worker: WorkerProcess = worker_factory(CIPULSE_ADMIN_TOKEN=TOKEN, CIPULSE_CALLBACK_CACHE_SECONDS="0.5", **extra)
    return worker


def test_receiver_gets_signed_deduplicable_deliveries_and_nothing_after_delete(worker_factory: Any) -> None:
    with webhook_receiver() as receiver, webhook_receiver() as witness:
        worker = start_worker(worker_factory)
        callback = create(worker, receiver.url)
        assert "secret" not in callback and callback["signed"] is True and callback["status"] == "active"
        send(worker, full_build("b-1"))
        wait_until(lambda: len(of_build(receiver, "b-1")) == 6, 60, "six deliveries of build b-1")

        deliveries = of_build(receiver, "b-1")
        assert [r.json["event"] for r in deliveries] == [
            "build_started", "stage_started", "task_started", "task_finished", "stage_finished", "build_finished",
        ]
        for request in deliveries:
            expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(request.headers["X-Cipulse-Signature-256"], expected)
            assert request.headers["Idempotency-Key"] == request.json["delivery_id"]
            assert request.headers["X-Cipulse-Event"] == request.json["event"]
            assert request.json["callback_id"] == callback["callback_id"]
        assert deliveries[-1].json["build"]["status"] == "SUCCEEDED"
        assert deliveries[3].json["node"] == {**deliveries[3].json["node"], "scope": "TASK", "task_id": "unit"}
        first_keys = [r.headers["Idempotency-Key"] for r in deliveries]
        assert len(set(first_keys)) == 6

        # The same change sets again (as after a crash before the commit): the same keys, the same bytes.
        changes = consume_records(worker.bootstrap, worker.topic("build-status"), 6)
        replay = BuildEventProducer(worker.bootstrap, worker.topic("build-status"))
        for record in changes:
            replay.send_raw(record.key(), record.value())
        replay.flush()
        wait_until(lambda: len(of_build(receiver, "b-1")) == 12, 60, "the replayed deliveries")
        again = of_build(receiver, "b-1")[6:]
        assert sorted(r.headers["Idempotency-Key"] for r in again) == sorted(first_keys)
        assert {r.body for r in again} == {r.body for r in deliveries}

        status, listed = http_json(f"{worker.api}/callbacks?project=payments")
        assert status == 200
        [shown] = listed["callbacks"]
        assert shown["callback_id"] == callback["callback_id"] and shown["delivered"] == 12
        assert shown["last_success_at"] is not None and shown["failing_since"] is None
        status, history = http_json(f"{worker.api}/callbacks/{callback['callback_id']}/deliveries?limit=1000")
        assert status == 200
        assert {a["delivery_id"] for a in history["attempts"]} == set(first_keys)
        assert all(a["outcome"] == "delivered" and a["http_status"] == 204 for a in history["attempts"])
        assert metric(worker, "cipulse_callback_deliveries_total", outcome="delivered") == 12

        # Delete: a witness callback on the same events proves the next build was dispatched.
        witness_callback = create(worker, witness.url, events=["build_finished"], secret=None)
        status, deleted = call(worker, "DELETE", f"/callbacks/{callback['callback_id']}")
        assert status == 200 and deleted["status"] == "deleted"
        assert call(worker, "DELETE", f"/callbacks/{callback['callback_id']}")[0] == 404
        assert http_json(f"{worker.api}/callbacks/{callback['callback_id']}")[0] == 404
        send(worker, full_build("b-2"))
        wait_until(lambda: len(of_build(witness, "b-2")) == 1, 60, "the witness to get build b-2")
        assert "X-Cipulse-Signature-256" not in witness.requests[0].headers
        assert of_build(receiver, "b-2") == []
        assert [c["callback_id"] for c in http_json(f"{worker.api}/callbacks")[1]["callbacks"]] == [
            witness_callback["callback_id"]
        ]


def test_failing_receiver_is_retried_dead_lettered_disabled_and_reenabled(worker_factory: Any) -> None:
    answer = {"status": 503}
    with webhook_receiver(lambda n: answer["status"]) as receiver:
        worker = start_worker(
            worker_factory, CIPULSE_CALLBACK_MAX_ATTEMPTS="3", CIPULSE_CALLBACK_INITIAL_BACKOFF_SECONDS="0.1",
            CIPULSE_CALLBACK_MAX_BACKOFF_SECONDS="0.2", CIPULSE_CALLBACK_TIMEOUT_SECONDS="2",
            CIPULSE_CALLBACK_DISABLE_AFTER_SECONDS="3",
        )
        callback = create(worker, receiver.url, events=["build_started", "build_finished"])
        callback_id = callback["callback_id"]
        send(worker, build("f-1", (1, S.RUNNING, BuildScope.BUILD)))

        def history() -> list[dict[str, Any]]:
            return list(http_json(f"{worker.api}/callbacks/{callback_id}/deliveries")[1]["attempts"])

        wait_until(lambda: len(history()) == 3, 60, "three logged attempts of the first delivery")
        attempts = sorted(history(), key=lambda a: a["attempt"])
        assert [(a["attempt"], a["outcome"], a["http_status"]) for a in attempts] == [
            (1, "retry", 503), (2, "retry", 503), (3, "gave_up", 503),
        ]
        assert len({a["delivery_id"] for a in attempts}) == 1
        assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 1  # every retry: the same key
        dead = [decode(r.value(), DeadLetter) for r in consume_records(worker.bootstrap, worker.topic("dead-letter"), 1)]
        assert dead[0].kind is DeadLetterKind.DELIVERY_FAILED and dead[0].processor == "callback-dispatcher"
        assert "HTTP 503 on attempt 3 of 3" in dead[0].reason and json.loads(dead[0].payload)["event"] == "build_started"
        shown = http_json(f"{worker.api}/callbacks/{callback_id}")[1]
        assert shown["status"] == "active" and shown["failing_since"] is not None and "503" in shown["last_error"]

        time.sleep(3.2)  # the failure streak must outlast CIPULSE_CALLBACK_DISABLE_AFTER_SECONDS
        send(worker, build("f-1", (2, S.SUCCEEDED, BuildScope.BUILD)))
        wait_until(lambda: http_json(f"{worker.api}/callbacks/{callback_id}")[1]["status"] == "disabled", 60,
                   "the callback to be disabled")
        shown = http_json(f"{worker.api}/callbacks/{callback_id}")[1]
        assert shown["disabled_at"] is not None and "every delivery attempt since" in shown["status_reason"]
        assert metric(worker, "cipulse_callbacks_disabled_total", callback=callback_id) == 1
        assert f"callback {callback_id}" in worker.log_path.read_text() and "disabled" in worker.log_path.read_text()
        requests_when_disabled = receiver.count()

        send(worker, build("f-2", (1, S.RUNNING, BuildScope.BUILD)))
        wait_until(lambda: any(a["outcome"] == "skipped" and a["build_id"] == "f-2" for a in history()), 60,
                   "the event of the disabled callback to be logged as skipped")
        assert receiver.count() == requests_when_disabled

        answer["status"] = 204
        status, enabled = call(worker, "POST", f"/callbacks/{callback_id}/enable")
        assert status == 200 and enabled["status"] == "active"
        send(worker, build("f-2", (2, S.FAILED, BuildScope.BUILD)))
        wait_until(lambda: any(r.json["build_id"] == "f-2" and r.json["event"] == "build_finished"
                               for r in receiver.requests if r.body), 60, "delivery after re-enabling")
        wait_until(lambda: http_json(f"{worker.api}/callbacks/{callback_id}")[1]["failing_since"] is None, 30,
                   "the failure streak to end")


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "message"),
    [
        ("POST", "/callbacks", {"url": "http://x/h", "project": "p", "events": ["build_started"]}, None, 401,
         "missing credentials"),
        ("POST", "/callbacks", {"url": "http://x/h", "project": "p", "events": ["build_started"]}, "wrong", 401,
         "wrong bearer token"),
        ("POST", "/callbacks", {"url": "mailto:x", "project": "p", "events": ["build_begun"], "secret": "x"}, TOKEN,
         422, "url:"),
        ("POST", "/callbacks", {"project": "p", "events": []}, TOKEN, 422, "events:"),
        ("DELETE", "/callbacks/cb-nope", None, TOKEN, 404, "unknown callback 'cb-nope'"),
        ("DELETE", "/callbacks/cb-nope", None, None, 401, "missing credentials"),
        ("POST", "/callbacks/cb-nope/enable", None, TOKEN, 404, "unknown callback"),
        ("GET", "/callbacks/cb-nope", None, None, 404, "unknown callback"),
        ("GET", "/callbacks/cb-nope/deliveries", None, None, 404, "unknown callback"),
        ("GET", "/callbacks?projet=x", None, None, 400, "unknown query parameter(s) projet"),
    ],
)
def test_bad_calls_get_a_4xx_that_says_what_to_fix(
    api_worker: WorkerProcess, method: str, path: str, body: Any, token: str | None, status: int, message: str
) -> None:
    got, answer = call(api_worker, method, path, body, token=token)
    assert got == status, answer
    assert message in answer["error"]


def test_idempotency_key_makes_a_repeated_create_the_same_callback(api_worker: WorkerProcess) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "project": "web", "events": ["build_finished"]}
    first = call(api_worker, "POST", "/callbacks", body, headers={"Idempotency-Key": "create-web-1"})
    second = call(api_worker, "POST", "/callbacks", body, headers={"Idempotency-Key": "create-web-1"})
    assert first[0] == second[0] == 201 and first[1]["callback_id"] == second[1]["callback_id"]
    assert call(api_worker, "POST", "/callbacks", body)[1]["callback_id"] != first[1]["callback_id"]


@pytest.fixture(scope="module")
def api_worker(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    worker = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("callbacks-api"),
                           extra_env={"CIPULSE_ADMIN_TOKEN": TOKEN})
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
