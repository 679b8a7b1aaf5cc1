"""The CI adapters against a real worker and broker. POST /adapters/github: a signed workflow_run sequence
(requested -> in_progress -> completed with conclusion failure, from GitHub's published
example payloads) ends as a FAILED build in GET /builds/{id}, in the dashboard's data and in
ClickHouse metrics, and triggers the subscribed notification once; replays change nothing;
unsigned and mis-signed requests are refused; an unmappable webhook lands on the dead-letter
topic with its reason and payload; kept deliveries are translated again by
`cipulse adapters replay` (POST /adapters/replay). POST /adapters/gitlab and /adapters/cdevents:
published example sequences end in the statuses their mapping gives, through the same intake.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from datetime import UTC, datetime
from typing import Any

import pytest

from harness import KafkaBroker, WorkerProcess, consume_records, http_json, wait_until
from schemas import AdapterDelivery, DeadLetter, DeadLetterKind
from schemas.serde import decode, encode
from streams.adapters import cdevents, gitlab
from streams.adapters.github import sign
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"
GITLAB_FIXTURES = FIXTURES.parent / "gitlab"
CDEVENTS_FIXTURES = FIXTURES.parent / "cdevents"
SECRET = "gh-acme-secret"
GITLAB_TOKEN = "gl-acme-token"
CDEVENTS_TOKEN = "cde-acme-token"
ADMIN = "adapters-admin-token"
E2E_PROJECTS_PREFIX = "octo-org/e2e-"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as served:
        yield served


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[WorkerProcess]:
    work_dir = tmp_path_factory.mktemp("github-worker")
    subscriptions = work_dir / "subscriptions.json"
    subscriptions.write_text(json.dumps({"subscriptions": [{
        "id": "e2e-failures", "transitions": ["failed"],
        "channel": {"type": "webhook", "url": receiver.url},
        "grouping": {"group_wait": "1s", "group_interval": "2s"},
    }]}))
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=work_dir,
        extra_env={
            "CIPULSE_GITHUB_WEBHOOK_SECRETS": json.dumps({"acme": SECRET}),
            "CIPULSE_GITLAB_WEBHOOK_SECRETS": json.dumps({"acme": GITLAB_TOKEN}),
            "CIPULSE_CDEVENTS_TOKENS": json.dumps({"tekton": CDEVENTS_TOKEN}),
            "CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE": str(subscriptions),
            "CIPULSE_ADMIN_TOKEN": ADMIN,
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def run_payload(action: str, run_id: int, repository: tuple[int, str] | None = None) -> bytes:
    """GitHub's published example, as a fresh run (the broker is shared) ending in failure.

    With `repository` (id, full name), the run also belongs to a repository of its own and its
    times are now's, so windowed views (dashboard, stats) count it and nothing else.
    """
    payload = json.loads((FIXTURES / f"workflow_run.{action}.json").read_text())
    payload["workflow_run"]["id"] = run_id
    if action == "completed":
        payload["workflow_run"]["conclusion"] = "failure"
    if repository is not None:
        repo_id, full_name = repository
        payload["repository"].update(id=repo_id, full_name=full_name)
        step = {"requested": 0, "in_progress": 1, "completed": 2}[action]
        start = time.time() - 120
        for field_name, offset in (("created_at", 0), ("run_started_at", 1), ("updated_at", 1 + 60 * step)):
            payload["workflow_run"][field_name] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + offset))
    return json.dumps(payload).encode()


def post_raw(worker: WorkerProcess, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(f"{worker.api}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def deliver(worker: WorkerProcess, body: bytes, event: str = "workflow_run", delivery: str | None = None,
            secret: str | None = SECRET) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4())}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return post_raw(worker, "/adapters/github", body, headers)


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


def admin_post(worker: WorkerProcess, path: str, payload: Any) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}
    return post_raw(worker, path, json.dumps(payload).encode(), headers)


def notifications_for(receiver: Receiver, build_id: str) -> list[dict[str, Any]]:
    return [n for r in receiver.requests for n in r.json["notifications"] if n.get("subject_id") == build_id]


def test_a_failed_github_run_reaches_api_dashboard_metrics_and_one_notification(
    worker: WorkerProcess, receiver: Receiver
) -> None:
    run_id = uuid.uuid4().int % 10**12
    repo_id = uuid.uuid4().int % 10**9
    project = f"{E2E_PROJECTS_PREFIX}{uuid.uuid4().hex[:8]}"
    build_id = f"gh-{repo_id}-{run_id}-1"
    for action in ("requested", "in_progress", "completed"):
        status, body = deliver(worker, run_payload(action, run_id, (repo_id, project)))
        assert status == 202 and body["build_id"] == build_id, body

    state = wait_until(lambda: (b := build(worker, build_id)) and b.get("status") == "FAILED" and b, 30, "FAILED")
    assert state["project"] == project and state["executor"] == "github-actions"

    # the dashboard's snapshot (GET /builds) and ClickHouse's per-pipeline metrics
    def dashboard_row() -> dict[str, Any] | None:
        status, body = http_json(f"{worker.api}/builds?status=finished&project={project}")
        return next((b for b in body["builds"] if b["build_id"] == build_id), None) if status == 200 else None

    row = wait_until(dashboard_row, 30, f"{build_id} in the dashboard's finished builds")
    assert row["status"] == "FAILED" and row["pipeline"] == "test"

    def pipeline_stats() -> dict[str, Any] | None:
        status, body = http_json(f"{worker.api}/stats/pipelines?project={project}")
        return body["rows"][0] if status == 200 and body["rows"] else None

    stats = wait_until(pipeline_stats, 30, f"{project} in /stats/pipelines")
    assert (stats["pipeline"], stats["finished"], stats["success_rate"]) == ("test", 1, 0.0), stats

    # the subscription hears of the failure once, also after GitHub redelivers the whole run
    wait_until(lambda: notifications_for(receiver, build_id), 60, f"the failure notification of {build_id}")
    for action in ("requested", "in_progress", "completed"):
        assert deliver(worker, run_payload(action, run_id, (repo_id, project)))[0] == 202
    time.sleep(5)  # two group intervals: a repeated notification would have gone out by now
    [notification] = notifications_for(receiver, build_id)
    assert notification["transition"] == "FAILED" and notification["project"] == project


def test_kept_deliveries_are_translated_again_by_replay(worker: WorkerProcess) -> None:
    run_id = uuid.uuid4().int % 10**12
    build_id = f"gh-300029405-{run_id}-1"
    keys = [f"replay-{action}-{uuid.uuid4()}" for action in ("requested", "in_progress", "completed")]
    for key, action in zip(keys, ("requested", "in_progress", "completed"), strict=True):
        assert deliver(worker, run_payload(action, run_id), delivery=key)[0] == 202
    state = wait_until(lambda: (b := build(worker, build_id)) and b.get("status") == "FAILED" and b, 30, "FAILED")

    def replayed(dry_run: bool, delivery_keys: list[str]) -> dict[str, Any] | None:
        status, body = admin_post(worker, "/adapters/replay", {
            "adapter": "github", "delivery_keys": delivery_keys, "dry_run": dry_run,
        })
        assert status == 200, body
        return body if body["selected"] == len(delivery_keys) else None

    dry = wait_until(lambda: replayed(True, keys), 30, "the deliveries to be kept in ClickHouse")
    assert dry["events"] == 3 and dry["produced"] == [] and dry["still_unmappable"] == 0
    assert [d["subjects"] for d in dry["deliveries"]] == [[build_id]] * 3
    body = replayed(False, keys)
    assert body is not None and len(body["produced"]) == 3
    time.sleep(3)
    assert build(worker, build_id)["revision"] == state["revision"]  # the same events again: nothing changed

    # A delivery an older, buggy mapping had dead-lettered (kept, but no events): put it straight on
    # adapter-deliveries like the intake did, then the replay produces what it maps to now.
    lost_run = uuid.uuid4().int % 10**12
    lost_key = f"lost-{uuid.uuid4()}"
    body_bytes = run_payload("completed", lost_run)
    kept = AdapterDelivery(
        adapter="github", source="acme", delivery_key=lost_key, event_type="workflow_run",
        headers={"x-github-event": "workflow_run", "x-github-delivery": lost_key}, body=body_bytes,
        received_at=datetime.now(UTC),
    )
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": worker.bootstrap})
    producer.produce(worker.topic("adapter-deliveries"), key=f"github:{lost_key}".encode(), value=encode(kept))
    assert producer.flush(30) == 0
    wait_until(lambda: replayed(True, [lost_key]), 30, "the lost delivery to be kept")
    assert build(worker, f"gh-300029405-{lost_run}-1") is None
    assert replayed(False, [lost_key])["events"] == 1  # type: ignore[index]
    wait_until(lambda: (b := build(worker, f"gh-300029405-{lost_run}-1")) and b["status"] == "FAILED", 30,
               "the replayed build")

    # the same through the command line (it asks the worker, which owns the embedded ClickHouse)
    cli = subprocess.run(
        [sys.executable, "-m", "streams.cli", "adapters", "replay", "github", "--delivery", lost_key, "--dry-run",
         "--api", worker.api],
        env={**os.environ, "CIPULSE_ADMIN_TOKEN": ADMIN}, capture_output=True, text=True, timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"{lost_key}  workflow_run  1 events of gh-300029405-{lost_run}-1" in cli.stdout
    assert "1 deliveries, 1 translated, 0 still unmappable; would produce 1 events" in cli.stderr

    status, body = admin_post(worker, "/adapters/replay", {"adapter": "jenkins"})
    assert status == 422 and "unknown 'jenkins'" in body["error"]
    request = urllib.request.Request(f"{worker.api}/adapters/replay", data=b'{"adapter": "github"}', method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("an unauthenticated replay was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401


def audit(worker: WorkerProcess, audit_id: str) -> dict[str, Any] | None:
    status, body = http_json(f"{worker.api}/audits/{audit_id}")
    return body if status == 200 else None


def test_gitlab_pipeline_and_job_hooks_end_in_the_mapped_statuses(worker: WorkerProcess) -> None:
    project_id, pipeline_id = uuid.uuid4().int % 10**9, uuid.uuid4().int % 10**9
    # The published Pipeline Hook and Job Hook examples describe different projects and pipelines;
    # here they are one pipeline of one project, as GitLab would send them.
    path, name = "gitlab-org/gitlab-test", "Pipeline for branch: master"
    expected_status = None
    for name in ("pipeline.pending", "pipeline.running", "job.running", "job.failed", "pipeline.failed"):
        payload = json.loads((GITLAB_FIXTURES / f"{name}.json").read_text())
        if payload["object_kind"] == "pipeline":
            payload["project"]["id"] = project_id
            payload["object_attributes"]["id"] = pipeline_id
        else:
            payload["project_id"] = payload["project"]["id"] = project_id
            payload["pipeline_id"] = payload["commit"]["id"] = pipeline_id
            payload["commit"]["name"] = name
        payload["project"]["path_with_namespace"] = path
        body = json.dumps(payload).encode()
        event = "Pipeline Hook" if payload["object_kind"] == "pipeline" else "Job Hook"
        headers = {"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4())}
        translated = gitlab.translate({k.lower(): v for k, v in headers.items()}, body)
        builds = {e.build_id for e in translated if hasattr(e, "build_id")}
        assert builds == {f"gl-{project_id}-{pipeline_id}"}, builds
        expected_status = next((e.status.value for e in reversed(translated) if e.scope.value == "BUILD"), expected_status)
        status, answer = post_raw(worker, "/adapters/gitlab", body, {**headers, "X-Gitlab-Token": GITLAB_TOKEN})
        assert status == 202 and answer["outcome"] == "accepted", answer
    build_id = f"gl-{project_id}-{pipeline_id}"
    state = wait_until(lambda: (b := build(worker, build_id)) and b["status"] == expected_status and b, 30,
                       f"{build_id} {expected_status}")
    assert expected_status == "FAILED" and state["stages"], state
    # GitLab retrying the last delivery (same X-Gitlab-Event-UUID, same body) changes nothing
    status, answer = post_raw(worker, "/adapters/gitlab", body, {**headers, "X-Gitlab-Token": GITLAB_TOKEN})
    assert status == 200 and answer["outcome"] == "duplicate", answer
    status, answer = post_raw(worker, "/adapters/gitlab", b"{}", {"X-Gitlab-Event": "Pipeline Hook",
                                                                  "X-Gitlab-Token": "wrong"})
    assert status == 401 and GITLAB_TOKEN not in json.dumps(answer)


def test_cdevents_pipeline_run_and_change_review_reach_builds_and_audits(worker: WorkerProcess) -> None:
    run = f"run-{uuid.uuid4().hex[:12]}"
    change = f"change-{uuid.uuid4().hex[:12]}"
    build_id = audit_id = final = None
    for name, subject in (("pipelinerun_queued", run), ("pipelinerun_started", run), ("pipelinerun_finished", run),
                          ("change_reviewed", change), ("change_merged", change)):
        payload = json.loads((CDEVENTS_FIXTURES / f"{name}.json").read_text())
        payload["context"]["id"] = str(uuid.uuid4())
        payload["subject"]["id"] = subject
        context = payload["context"]
        headers = {"ce-specversion": "1.0", "ce-id": context["id"], "ce-source": context["source"],
                   "ce-type": context["type"], "content-type": "application/json"}
        body = json.dumps(payload).encode()
        translated = cdevents.translate(headers, body)
        build_id = next((e.build_id for e in translated if hasattr(e, "build_id")), build_id)
        final = next((e.status.value for e in translated if hasattr(e, "build_id")), final)
        audit_id = next((e.audit_id for e in translated if hasattr(e, "audit_id")), audit_id)
        status, answer = post_raw(worker, "/adapters/cdevents?source=tekton", body,
                                  {**headers, "Authorization": f"Bearer {CDEVENTS_TOKEN}"})
        assert status == 202 and answer["outcome"] == "accepted", answer
    assert build_id is not None and audit_id is not None and final in {"SUCCEEDED", "FAILED", "CANCELED"}
    wait_until(lambda: (b := build(worker, build_id)) and b["status"] == final, 30, f"{build_id} {final}")
    state = wait_until(lambda: (a := audit(worker, audit_id)) and a["status"] == "SYNCED" and a, 30, f"{audit_id} SYNCED")
    assert state["decision"] == "APPROVED", state
    # the same CloudEvent again (same source + id) is a duplicate: nothing produced
    status, answer = post_raw(worker, "/adapters/cdevents?source=tekton", body,
                              {**headers, "Authorization": f"Bearer {CDEVENTS_TOKEN}"})
    assert status == 200 and answer["outcome"] == "duplicate", answer
    status, answer = post_raw(worker, "/adapters/cdevents?source=tekton", b"{}", {"Authorization": "Bearer nope"})
    assert status == 401 and CDEVENTS_TOKEN not in json.dumps(answer)
