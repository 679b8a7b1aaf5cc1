"""Quality gates end to end against a real worker: builds in through Kafka, decisions on the
gate-decisions topic only when they change (PENDING -> PASS -> FAIL -> PASS), a redelivered build
decides nothing, the API answers the current decision and the history from ClickHouse, and a bad
gates file stops the worker before it starts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, KafkaBroker, WorkerProcess, consume_records, http_json, records_within, wait_until
from schemas import BuildEvent, BuildScope, BuildStatus, GateDecision, NotificationRequest, decode
from streams.producer import BuildEventProducer
from webhook_receiver import webhook_receiver

pytestmark = pytest.mark.integration

GATE = "deploy-main"
GATES_FILE = f"""
gates:
  - id: {GATE}
    project: payments
    pipeline: deploy
    branch: main
    rules:
      min_builds: 2
      latest_build_succeeded: true
      success_rate: {{at_least: 0.5, last_builds: 4}}
  - id: quiet
    project: nobody
    rules: {{latest_build_succeeded: true}}
"""
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def build(n: int, final: BuildStatus, branch: str = "main") -> list[BuildEvent]:
    start = T0 + timedelta(minutes=5 * n)
    return [
        BuildEvent(
            event_id=f"g{n}-{seq}", build_id=f"gate-build-{n}-{branch}", project="payments", pipeline="deploy", seq=seq,
            event_time=start + timedelta(minutes=seq), scope=BuildScope.BUILD, status=status, branch=branch,
        )
        for seq, status in enumerate((BuildStatus.QUEUED, BuildStatus.RUNNING, final), start=1)
    ]


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    work_dir = tmp_path_factory.mktemp("gate-worker")
    gates = work_dir / "gates.yaml"
    gates.write_text(GATES_FILE)
    process = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=work_dir, extra_env={"CIPULSE_GATES_FILE": str(gates)})
    process.start()
    try:
        yield process
    finally:
        process.stop()


def metrics_text(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
        return str(response.read().decode())


def decisions(worker: WorkerProcess, minimum: int) -> list[GateDecision]:
    return [decode(m.value(), GateDecision) for m in consume_records(worker.bootstrap, worker.topic("gate-decisions"), minimum)]


def test_decisions_are_published_only_when_they_change(worker: WorkerProcess) -> None:
    producer = BuildEventProducer(worker.bootstrap, worker.topic("build-events"))
    expected: list[tuple[str, list[str]]] = []
    steps = [
        (1, BuildStatus.SUCCEEDED, ("PENDING", ["min_builds"])),
        (2, BuildStatus.SUCCEEDED, ("PASS", [])),
        (3, BuildStatus.FAILED, ("FAIL", ["latest_build_succeeded"])),
        (4, BuildStatus.SUCCEEDED, ("PASS", [])),
    ]
    for n, final, decision in steps:
        for event in build(n, final):
            producer.send(event)
        producer.flush()
        expected.append(decision)
        got = decisions(worker, len(expected))
        assert [(d.result.value, [f.rule for f in d.failing]) for d in got] == expected
    # Not a change: another success, a build of another branch, and a redelivered build.
    for event in build(5, BuildStatus.SUCCEEDED) + build(6, BuildStatus.FAILED, branch="feature") + build(2, BuildStatus.SUCCEEDED):
        producer.send(event)
    producer.flush()
    wait_until(
        lambda: 'cipulse_gate_inputs_total{kind="build",outcome="changed"} 5.0' in metrics_text(worker) or None,
        30, "the gate to apply build 5",
    )
    later = records_within(worker.bootstrap, worker.topic("gate-decisions"), 3.0)
    published = [decode(m.value(), GateDecision) for m in later]
    assert [d.result.value for d in published] == ["PENDING", "PASS", "FAIL", "PASS"]
    assert all(m.key() == GATE.encode() for m in later)
    assert len({d.decision_id for d in published}) == 4
    assert published[2].previous_result == "PASS" and published[2].failing[0].measured == "FAILED"
    assert published[3].inputs["success_rate"] == "0.75"

    def history_complete() -> list[dict[str, object]] | None:
        status, body = http_json(f"{worker.api}/gates/{GATE}/history")
        return body["decisions"] if status == 200 and len(body["decisions"]) == 4 else None

    history = wait_until(history_complete, 30, "four decisions in the history")
    assert [d["result"] for d in history] == ["PASS", "FAIL", "PASS", "PENDING"]
    assert [d["decision_id"] for d in history] == [d.decision_id for d in reversed(published)]
    status, limited = http_json(f"{worker.api}/gates/{GATE}/history?limit=1")
    assert status == 200 and [d["result"] for d in limited["decisions"]] == ["PASS"]

    status, current = http_json(f"{worker.api}/gates/{GATE}")
    assert status == 200
    assert current["result"] == "PASS" and current["decision_id"] == published[3].decision_id
    assert current["project"] == "payments" and current["pipeline"] == "deploy" and current["branch"] == "main"
    assert current["failing"] == []
    status, every = http_json(f"{worker.api}/gates")
    assert status == 200
    assert [(g["gate"], g["result"], g["decision_id"]) for g in every["gates"]] == [
        (GATE, "PASS", published[3].decision_id), ("quiet", "PENDING", None),
    ]
    assert f'cipulse_gate_decisions_total{{gate="{GATE}",result="PASS"}} 2.0' in metrics_text(worker)


def test_unknown_gates_and_bad_parameters_get_a_message(worker: WorkerProcess) -> None:
    status, body = http_json(f"{worker.api}/gates/nope")
    assert status == 404 and "unknown gate 'nope'" in body["error"] and GATE in body["error"]
    status, body = http_json(f"{worker.api}/gates/nope/history")
    assert status == 404
    status, body = http_json(f"{worker.api}/gates/{GATE}/history?limit=0")
    assert status == 400 and "limit='0'" in body["error"]
    status, body = http_json(f"{worker.api}/gates?projct=x")
    assert status == 400 and "unknown query parameter(s) projct" in body["error"]


def test_a_bad_gates_file_stops_the_worker_with_every_problem(kafka: KafkaBroker, tmp_path: Path) -> None:
    bad = tmp_path / "gates.yaml"
    bad.write_text("gates:\n  - id: g\n    project: p\n    rules: {success_rate: {at_least: 0.9}, p95_duration: {at_most: 10}}\n")
    process = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path, extra_env={"CIPULSE_GATES_FILE": str(bad)})
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=process.env, capture_output=True, timeout=60,
    )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"{bad}: gate 'g' (entry 1): field rules.success_rate: Value error, give last_builds" in err
    assert f"{bad}: gate 'g' (entry 1): field rules.p95_duration.at_most: Value error, 10 has no unit" in err


NOTIFY_GATES_FILE = """
gates:
  - id: deploy-alerts
    project: payments
    pipeline: deploy
    branch: main
    rules: {no_unacknowledged_failure_notification: true}
  - id: feature-alerts
    project: payments
    branch: feature
    rules: {no_unacknowledged_failure_notification: true}
"""


def current_result(worker: WorkerProcess, gate_id: str) -> str | None:
    status, body = http_json(f"{worker.api}/gates/{gate_id}")
    return str(body["result"]) if status == 200 else None


def test_an_unacknowledged_failure_notification_fails_the_gate_until_it_is_delivered(
    worker_factory: Any, tmp_path: Path
) -> None:
    acknowledge = threading.Event()
    with webhook_receiver(lambda n: 204 if acknowledge.is_set() else 503) as receiver:
        subscriptions = tmp_path / "subscriptions.json"
        subscriptions.write_text(json.dumps({"subscriptions": [{
            "id": "oncall",
            "transitions": ["failed", "recovered"],
            "channel": {"type": "webhook", "url": receiver.url},
            "grouping": {"group_wait": "200ms", "group_interval": "500ms"},
            "delivery": {"max_attempts": 100, "initial_backoff": "100ms", "max_backoff": "300ms", "timeout": "2s"},
        }]}))
        gates = tmp_path / "gates.yaml"
        gates.write_text(NOTIFY_GATES_FILE)
        worker: WorkerProcess = worker_factory(
            CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE=str(subscriptions), CIPULSE_GATES_FILE=str(gates),
        )
        producer = BuildEventProducer(worker.bootstrap, worker.topic("build-events"))
        for event in build(1, BuildStatus.FAILED):
            producer.send(event)
        producer.flush()
        [failed] = decisions(worker, 1)
        assert (failed.gate, failed.result.value) == ("deploy-alerts", "FAIL")
        assert [f.rule for f in failed.failing] == ["no_unacknowledged_failure_notification"]
        assert "build gate-build-1-main (deploy@main) to oncall" in failed.failing[0].message
        wait_until(lambda: receiver.count() >= 2 or None, 30, "the receiver to refuse the notification twice")

        # The pipeline recovers while the failure notification is still unacknowledged: still FAIL.
        for event in build(2, BuildStatus.SUCCEEDED):
            producer.send(event)
        producer.flush()
        requests = consume_records(worker.bootstrap, worker.topic("notify-requests"), 2)
        assert sorted(decode(r.value(), NotificationRequest).transition.value for r in requests) == ["FAILED", "RECOVERED"]
        wait_until(lambda: current_result(worker, "deploy-alerts") == "FAIL" or None, 30, "the API to answer FAIL")

        acknowledge.set()  # the receiver answers 2xx from now on
        wait_until(lambda: current_result(worker, "deploy-alerts") == "PASS" or None, 60, "PASS after the delivery")
        delivered = [r for r in receiver.requests if "FAILED" in [n["transition"] for n in r.json["notifications"]]]
        assert len(delivered) >= 3  # two or more refusals, then the acknowledged attempt
    later = [(m.key(), decode(m.value(), GateDecision)) for m in
             records_within(worker.bootstrap, worker.topic("gate-decisions"), 2.0)]
    assert [d.result.value for key, d in later if key == b"deploy-alerts"] == ["FAIL", "PASS"]
    passed = [d for key, d in later if key == b"deploy-alerts"][1]
    assert passed.previous_result == "FAIL" and passed.failing == []
    assert passed.inputs["unacknowledged_failure_notifications"] == "0"
    # The feature-branch gate never counted this failure (receipts of its project reach it, and pass it).
    assert {d.result.value for key, d in later if key == b"feature-alerts"} <= {"PASS"}
