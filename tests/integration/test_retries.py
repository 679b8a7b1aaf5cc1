"""Build retries end to end: events in through Kafka, the worker's sink writes each build's
context to the embedded ClickHouse, and the REST API and CLI decide from the retention the
engine reports. An accepted retry is a RetryRequest on the retry-requests topic; every refusal
names its reason, and every decision is counted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import REPO, KafkaBroker, WorkerProcess, consume_records, http_json, wait_until
from schemas import BuildEvent, BuildScope, BuildStatus, RetryRequest, decode
from streams import api_models as m
from streams.producer import BuildEventProducer
from streams.retry_openapi import RETRY_ENDPOINTS, RetryAccepted, RetryDecisionsBody, RetryEligibilityBody

pytestmark = pytest.mark.integration

TOKEN = "retry-test-token"
NOW = datetime.now(UTC).replace(microsecond=0)
RETENTION = timedelta(days=28)
MARGIN = timedelta(hours=1)

FAILED_RECENTLY = "failed-3-days-ago"
RUNNING = "still-running"
IN_THE_MARGIN = "failed-28-days-ago"
"""First seen 28 days minus 30 minutes ago: its context is still stored, but the retry deadline
(one hour before the TTL removes it) passed 30 minutes ago."""


def build_events(build_id: str, first_seen: datetime, final: BuildStatus | None) -> list[BuildEvent]:
    statuses = [BuildStatus.QUEUED, BuildStatus.RUNNING] + ([final] if final is not None else [])
    return [
        BuildEvent(
            event_id=f"{build_id}-{seq}", build_id=build_id, project="payments", pipeline="deploy", seq=seq,
            event_time=first_seen + timedelta(minutes=seq), scope=BuildScope.BUILD, status=status,
            trigger_reason="PUSH", trigger_user="alice", branch="main", commit_sha="c0ffee" * 6 + "1234",
            environment={"DEPLOY_ENV": "staging", "REGION": "eu-west-1"}, executor="runner-7",
        )
        for seq, status in enumerate(statuses, start=1)
    ]


def context_stored(worker: WorkerProcess, build_id: str) -> bool:
    status, body = http_json(f"{worker.api}/builds/{build_id}/retry-eligibility")
    return status == 200 and body["context_present"] and body["status"] in ("FAILED", "RUNNING")


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker holding three builds of different ages and states; the tests only add decisions."""
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("retry-worker"),
        extra_env={
            "CIPULSE_ADMIN_TOKEN": TOKEN,
            "CIPULSE_CONTEXT_RETENTION_DAYS": "28",
            "CIPULSE_RETRY_SAFETY_MARGIN_SECONDS": str(int(MARGIN.total_seconds())),
            "CIPULSE_RETENTION_CACHE_SECONDS": "1",
        },
    )
    process.start()
    try:
        producer = BuildEventProducer(process.bootstrap, process.topic("build-events"))
        for event in (
            build_events(FAILED_RECENTLY, NOW - timedelta(days=3), BuildStatus.FAILED)
            + build_events(RUNNING, NOW - timedelta(hours=2), None)
            + build_events(IN_THE_MARGIN, NOW - RETENTION + timedelta(minutes=30), BuildStatus.FAILED)
        ):
            producer.send(event)
        producer.flush()
        for build_id in (FAILED_RECENTLY, RUNNING, IN_THE_MARGIN):
            wait_until(lambda: context_stored(process, build_id), 60, f"{build_id}'s context in ClickHouse")
        yield process
    finally:
        process.stop()


def post_retry(
    worker: WorkerProcess, build_id: str, body: Any = None, token: str | None = TOKEN, key: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["Idempotency-Key"] = key
    data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
    request = urllib.request.Request(f"{worker.api}/builds/{build_id}/retry", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(worker: WorkerProcess, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIPULSE_")}
    if token:
        env["CIPULSE_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "retry", *args, "--api", worker.api],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )


def test_a_recent_failed_build_is_eligible_with_its_deadline_and_the_live_retention(worker: WorkerProcess) -> None:
    oldest_day = f"{NOW - RETENTION + timedelta(minutes=31):%Y%m%d}"

    def with_oldest_partition() -> RetryEligibilityBody | None:
        """The retention is cached for a second: the first reads may predate the sink's insert."""
        status, raw = http_json(f"{worker.api}/builds/{FAILED_RECENTLY}/retry-eligibility")
        assert status == 200, raw
        body = RetryEligibilityBody.model_validate(raw)
        return body if body.retention.oldest_partition is not None else None

    body = wait_until(with_oldest_partition, 10, "the retention cache to see the stored partitions")
    assert (body.eligible, body.reason, body.status) == (True, "ELIGIBLE", "FAILED")
    assert body.first_seen_at == NOW - timedelta(days=3) + timedelta(minutes=1)
    assert body.deadline == body.first_seen_at + RETENTION - MARGIN
    assert body.retention.ttl_seconds == RETENTION.total_seconds()
    assert body.retention.ttl_expression == "toDateTime(first_seen_at) + toIntervalDay(28)"
    assert body.retention.oldest_partition == oldest_day
    assert body.retention.margin_seconds == MARGIN.total_seconds()


def test_an_accepted_retry_publishes_the_context_once_per_idempotency_key(worker: WorkerProcess) -> None:
    first_status, first = post_retry(worker, FAILED_RECENTLY, {"requested_by": "bob", "reason": "flaky"}, key="k-1")
    again_status, again = post_retry(worker, FAILED_RECENTLY, {"requested_by": "bob", "reason": "flaky"}, key="k-1")
    other_status, other = post_retry(worker, FAILED_RECENTLY, {"requested_by": "bob"}, key="k-2")

    assert (first_status, again_status, other_status) == (202, 202, 202), (first, again, other)
    accepted = RetryAccepted.model_validate(first)
    assert RetryAccepted.model_validate(again).retry_id == accepted.retry_id, "same key, same retry"
    assert RetryAccepted.model_validate(other).retry_id != accepted.retry_id
    assert accepted.topic == worker.topic("retry-requests")
    records = consume_records(worker.bootstrap, accepted.topic, minimum=3)
    retries = [decode(r.value(), RetryRequest) for r in records]
    mine = [r for r in retries if r.retry_id == accepted.retry_id]
    assert len(mine) == 2, "the CI system de-duplicates by retry_id; each POST was published"
    retry = mine[0]
    assert records[0].key() == FAILED_RECENTLY.encode()
    assert (retry.build_id, retry.project, retry.pipeline, retry.original_status) == (
        FAILED_RECENTLY, "payments", "deploy", "FAILED",
    )
    assert retry.variables == {"DEPLOY_ENV": "staging", "REGION": "eu-west-1"}
    assert (retry.commit_sha, retry.branch, retry.trigger_user) == ("c0ffee" * 6 + "1234", "main", "alice")
    assert (retry.requested_by, retry.reason) == ("bob", "flaky")
    assert retry.context_deadline == accepted.deadline


def test_a_running_build_is_refused_with_409(worker: WorkerProcess) -> None:
    status, raw = http_json(f"{worker.api}/builds/{RUNNING}/retry-eligibility")
    assert status == 200 and (raw["eligible"], raw["reason"]) == (False, "NOT_FINAL"), raw

    status, body = post_retry(worker, RUNNING)

    assert status == 409, body
    assert "is RUNNING; only a finished build" in m.ErrorBody.model_validate(body).error


def test_a_build_past_its_deadline_is_refused_with_410_naming_age_window_and_deadline(worker: WorkerProcess) -> None:
    status, body = post_retry(worker, IN_THE_MARGIN)

    assert status == 410, body
    message = m.ErrorBody.model_validate(body).error
    assert message.startswith("retry refused: build failed-28-days-ago was first seen 27d 23h ago"), message
    assert "its context is kept 28d (toDateTime(first_seen_at) + toIntervalDay(28))" in message
    assert "retries stop 1h before that, so the retry deadline" in message
    passed = re.search(r"passed (\d+)m", message)
    assert passed is not None and int(passed.group(1)) >= 29, f"the deadline passed 29+ minutes ago: {message}"


def test_unknown_builds_unauthenticated_and_malformed_requests_get_a_4xx_that_says_what_to_fix(
    worker: WorkerProcess,
) -> None:
    status, body = http_json(f"{worker.api}/builds/no-such-build/retry-eligibility")
    assert status == 404 and "not known to cipulse" in body["error"], body
    assert post_retry(worker, "no-such-build")[0] == 404

    status, body = post_retry(worker, FAILED_RECENTLY, token=None)
    assert status == 401, body
    status, body = post_retry(worker, FAILED_RECENTLY, token="wrong")
    assert status == 401, body

    status, body = post_retry(worker, FAILED_RECENTLY, b"{not json")
    assert status == 422 and "body is not JSON" in body["error"], body
    status, body = post_retry(worker, FAILED_RECENTLY, {"requested_by": ""})
    assert status == 422 and "requested_by" in body["error"], body


def test_the_cli_exit_status_says_whether_the_build_may_be_retried(worker: WorkerProcess) -> None:
    eligible = cli(worker, "check", FAILED_RECENTLY)
    refused = cli(worker, "check", IN_THE_MARGIN)
    requested = cli(worker, "request", FAILED_RECENTLY, "--reason", "from the cli", "--idempotency-key", "cli-1")
    unauthenticated = cli(worker, "request", FAILED_RECENTLY, token=None)

    assert eligible.returncode == 0, eligible.stdout + eligible.stderr
    assert refused.returncode != 0 and "OUTSIDE_RETENTION" in refused.stdout + refused.stderr
    assert requested.returncode == 0, requested.stdout + requested.stderr
    assert "retry" in requested.stdout.lower()
    assert unauthenticated.returncode != 0 and "CIPULSE_ADMIN_TOKEN" in unauthenticated.stderr


def test_every_decision_is_counted_by_action_and_reason(worker: WorkerProcess) -> None:
    post_retry(worker, IN_THE_MARGIN)
    http_json(f"{worker.api}/builds/{RUNNING}/retry-eligibility")

    def counted() -> RetryDecisionsBody | None:
        status, raw = http_json(f"{worker.api}/stats/retries?window=1h")
        assert status == 200, raw
        body = RetryDecisionsBody.model_validate(raw)
        reasons = {(d.action, d.reason) for d in body.decisions}
        return body if {("retry", "OUTSIDE_RETENTION"), ("check", "NOT_FINAL")} <= reasons else None

    body = wait_until(counted, 30, "decisions in /stats/retries")
    refusals = [d for d in body.decisions if (d.action, d.reason) == ("retry", "OUTSIDE_RETENTION")]
    assert refusals[0].decisions >= 1 and not refusals[0].eligible
    status, metrics = worker_metrics(worker)
    assert status == 200
    assert 'cipulse_retry_decisions_total{action="retry",verdict="OUTSIDE_RETENTION"}' in metrics


def worker_metrics(worker: WorkerProcess) -> tuple[int, str]:
    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
        return response.status, response.read().decode()


def test_every_retry_endpoint_answers_a_documented_status_with_its_model(worker: WorkerProcess) -> None:
    for endpoint in RETRY_ENDPOINTS:
        path = endpoint.path.replace("{build_id}", FAILED_RECENTLY)
        if endpoint.method == "post":
            status, body = post_retry(worker, FAILED_RECENTLY, key="contract")
        else:
            status, body = http_json(worker.api + path)
        assert status in endpoint.responses, (endpoint.path, status, body)
        model = endpoint.responses[status][1]
        assert model is not None, endpoint.path
        model.model_validate(body)
