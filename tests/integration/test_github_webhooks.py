"""POST /adapters/github against a real worker and broker: a signed workflow_run sequence
(requested -> in_progress -> completed with conclusion failure, from GitHub's published
example payloads) ends as a FAILED build in GET /builds/{id}; replays change nothing; unsigned
and mis-signed requests are refused; an unmappable webhook lands on the dead-letter topic with
its reason and payload.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import KafkaBroker, WorkerProcess, consume_records, http_json, wait_until
from schemas import DeadLetter, DeadLetterKind
from schemas.serde import decode
from streams.adapters.github import sign

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"
SECRET = "gh-acme-secret"


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("github-worker"),
        extra_env={"CIPULSE_GITHUB_WEBHOOK_SECRETS": json.dumps({"acme": SECRET})},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def run_payload(action: str, run_id: int) -> bytes:
    payload = json.loads((FIXTURES / f"workflow_run.{action}.json").read_text())
    payload["workflow_run"]["id"] = run_id  # a fresh build per test run (the broker is shared)
    if action == "completed":
        payload["workflow_run"]["conclusion"] = "failure"
    return json.dumps(payload).encode()


def deliver(worker: WorkerProcess, body: bytes, event: str = "workflow_run", delivery: str | None = None,
            secret: str | None = SECRET) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4())}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    request = urllib.request.Request(f"{worker.api}/adapters/github", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def build(worker: WorkerProcess, build_id: str) -> dict[str, Any] | None:
    status, body = http_json(f"{worker.api}/builds/{build_id}")
    return body if status == 200 else None


def test_a_signed_run_sequence_ends_failed_and_replays_change_nothing(worker: WorkerProcess) -> None:
    run_id = uuid.uuid4().int % 10**12
    build_id = f"gh-300029405-{run_id}-1"
    deliveries = {}
    for action in ("requested", "in_progress", "completed"):
        deliveries[action] = str(uuid.uuid4())
        status, body = deliver(worker, run_payload(action, run_id), delivery=deliveries[action])
        assert status == 202 and body["build_id"] == build_id, body
    state = wait_until(
        lambda: (b := build(worker, build_id)) and b.get("status") == "FAILED" and b, 30, f"{build_id} FAILED"
    )
    assert state["project"] == "octo-org/octo-repo" and state["pipeline"] == "test"
    revision = state["revision"]

    status, body = deliver(worker, run_payload("completed", run_id), delivery=deliveries["completed"])
    assert status == 200 and body["outcome"] == "duplicate", body
    for action in ("requested", "in_progress", "completed"):  # GitHub-style redelivery under a new id
        assert deliver(worker, run_payload(action, run_id))[0] == 202

    status, body = deliver(worker, run_payload("completed", run_id), secret=None)
    assert status == 401 and "missing signature" in body["error"]
    status, body = deliver(worker, run_payload("completed", run_id), secret="not-the-secret")
    assert status == 401 and "does not match" in body["error"]

    # a job of the same build goes to the same partition after the replays: once its stage shows,
    # the replays were processed, and the only change since is that stage (one revision)
    job = json.loads((FIXTURES / "workflow_job.queued.json").read_text())
    job["repository"].update(id=300029405, full_name="octo-org/octo-repo")
    job["workflow_job"].update(run_id=run_id, workflow_name="test")
    assert deliver(worker, json.dumps(job).encode(), event="workflow_job")[0] == 202
    after = wait_until(
        lambda: (b := build(worker, build_id)) and b["stages"] and b, 30, f"the job's stage in {build_id}"
    )
    assert after["status"] == "FAILED" and after["revision"] == revision + 1, after

    log = worker.log_path.read_text(errors="replace")
    assert SECRET not in log


def test_an_unmappable_webhook_is_dead_lettered_with_reason_and_payload(worker: WorkerProcess) -> None:
    legacy = (FIXTURES / "workflow_job.completed.legacy.json").read_bytes()
    delivery = f"legacy-{uuid.uuid4()}"
    status, body = deliver(worker, legacy, event="workflow_job", delivery=delivery)
    assert status == 202 and body["detail"].startswith("dead-lettered: workflow_job has no workflow_name"), body
    letters = [decode(r.value(), DeadLetter) for r in consume_records(worker.bootstrap, worker.topic("dead-letter"), 1)]
    [letter] = [d for d in letters if d.key == delivery.encode()]
    assert letter.kind is DeadLetterKind.UNMAPPABLE and letter.payload == legacy and letter.processor == "github-adapter"
    assert "no workflow_name" in letter.reason
