"""Review (audit) tracking against a real broker, worker and ClickHouse engine: the BK-CI seed
(a decision whose record-status message was lost) is repaired once and alerted once, stuck
reviews raise one alert per episode, restarts repeat nothing, and manual repairs are checked."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from harness import WorkerProcess, consume_records, http_json, records_within, wait_until
from schemas import (
    AuditAlert,
    AuditAlertKind,
    AuditDecision,
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    DeadLetter,
    DeadLetterKind,
    decode,
    encode,
)
from streams.producer import BuildEventProducer

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token-1234"
AUDIT_ENV = {
    "CIPULSE_AUDIT_STUCK_AFTER_SECONDS": "3",
    "CIPULSE_AUDIT_SYNC_GRACE_SECONDS": "3",
    "CIPULSE_ADMIN_TOKEN": TOKEN,
}


class AuditFeed:
    """Produces one audit's events with increasing seq, as a review system would."""

    def __init__(self, worker: WorkerProcess, audit_id: str) -> None:
        self.producer = BuildEventProducer(worker.bootstrap, worker.topic("audit-events"))
        self.audit_id = audit_id
        self.seq = 0

    def send(self, kind: AuditEventKind, **fields: Any) -> AuditEvent:
        self.seq += 1
        event = AuditEvent(
            event_id=f"{self.audit_id}-{self.seq}", audit_id=self.audit_id, subject_kind=AuditSubjectKind.TEMPLATE_INSTANCE,
            subject_id=f"pipeline-from-template-{self.audit_id}", project="payments", pipeline="deploy-prod", kind=kind,
            seq=self.seq, event_time=datetime.now(UTC), **fields,
        )
        self.producer.send_raw(self.audit_id.encode(), encode(event))
        self.producer.flush()
        return event


def audit_status(worker: WorkerProcess, audit_id: str) -> str | None:
    status, body = http_json(f"{worker.api}/audits/{audit_id}")
    return body["status"] if status == 200 else None


def alerts_for(worker: WorkerProcess, audit_id: str, seconds: float) -> list[AuditAlert]:
    records = records_within(worker.bootstrap, worker.topic("audit-alerts"), seconds)
    return [a for a in (decode(r.value(), AuditAlert) for r in records) if a.audit_id == audit_id]


def timeline(worker: WorkerProcess, audit_id: str) -> dict[str, Any]:
    status, body = http_json(f"{worker.api}/audits/{audit_id}/timeline")
    assert status == 200, body
    return dict(body["timeline"])


def timeline_having(worker: WorkerProcess, audit_id: str, *parts: str) -> dict[str, Any] | None:
    """The audit's ClickHouse timeline once every one of `parts` is non-empty."""
    found = timeline(worker, audit_id)
    return found if all(found[part] for part in parts) else None


def test_lost_record_status_message_is_repaired_once_and_alerted_once(worker_factory: Any) -> None:
    """The BK-CI seed: reviewed, decided, but the status-change message never came."""
    worker: WorkerProcess = worker_factory(**AUDIT_ENV)
    feed = AuditFeed(worker, "seed-audit")
    feed.send(AuditEventKind.REQUESTED, reviewers=["alice", "bob"])
    feed.send(AuditEventKind.REVIEW_STARTED, actor="alice")
    feed.send(AuditEventKind.DECIDED, decision=AuditDecision.APPROVED, decision_id="d-1", actor="alice")
    # ... and the RECORD_SYNCED that should follow is lost.

    wait_until(lambda: audit_status(worker, "seed-audit") == "REPAIRED", 60, "the reconciler to repair the audit")
    _, state = http_json(f"{worker.api}/audits/seed-audit")
    assert "d-1" in state["repair_reason"] and "grace period" in state["repair_reason"]

    alerts = alerts_for(worker, "seed-audit", seconds=4)  # several scans after the repair
    assert [a.kind for a in alerts] == [AuditAlertKind.INCONSISTENT]
    assert alerts[0].decision_id == "d-1" and alerts[0].links["timeline"].endswith("/audits/seed-audit/timeline")

    history = wait_until(
        lambda: timeline_having(worker, "seed-audit", "repairs", "alerts"), 30, "the repair and the alert in ClickHouse"
    )
    assert [r["mode"] for r in history["repairs"]] == ["automatic"]
    assert [a["kind"] for a in history["alerts"]] == ["INCONSISTENT"]
    assert [e["kind"] for e in history["events"]] == ["REQUESTED", "REVIEW_STARTED", "DECIDED", "REPAIRED"]


def test_stuck_review_raises_one_alert_per_episode_and_a_synced_decision_none(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory(**AUDIT_ENV)
    feed = AuditFeed(worker, "slow-audit")
    feed.send(AuditEventKind.REQUESTED, reviewers=["carol"])
    feed.send(AuditEventKind.REVIEW_STARTED, actor="carol")

    first = wait_until(lambda: alerts_for(worker, "slow-audit", seconds=1), 30, "a stuck alert")
    assert [(a.kind, a.episode) for a in first] == [(AuditAlertKind.STUCK, 1)]
    assert first[0].reviewers == ["carol"] and first[0].age_seconds >= 3
    status, listed = http_json(f"{worker.api}/audits?stuck=true")
    assert status == 200 and [e["audit"]["audit_id"] for e in listed["audits"]] == ["slow-audit"]

    feed.send(AuditEventKind.DECIDED, decision=AuditDecision.REJECTED, decision_id="d-9", actor="carol")
    feed.send(AuditEventKind.RECORD_SYNCED, decision=AuditDecision.REJECTED, decision_id="d-9")
    wait_until(lambda: audit_status(worker, "slow-audit") == "SYNCED", 30, "the audit to be synced")
    later = alerts_for(worker, "slow-audit", seconds=5)  # past threshold and grace once more
    assert [(a.kind, a.episode) for a in later] == [(AuditAlertKind.STUCK, 1)]


def test_worker_killed_between_decision_and_grace_end_repairs_and_alerts_exactly_once(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory(**AUDIT_ENV)
    feed = AuditFeed(worker, "crash-audit")
    feed.send(AuditEventKind.REQUESTED, reviewers=["dan"])
    feed.send(AuditEventKind.DECIDED, decision=AuditDecision.APPROVED, decision_id="d-7", actor="dan")
    wait_until(lambda: audit_status(worker, "crash-audit") == "DECIDED", 30, "the decision to be applied")
    worker.kill()

    worker.start()
    wait_until(lambda: audit_status(worker, "crash-audit") == "REPAIRED", 60, "the repair after the restart")
    alerts = alerts_for(worker, "crash-audit", seconds=4)
    assert [a.kind for a in alerts] == [AuditAlertKind.INCONSISTENT]
    history = wait_until(lambda: timeline_having(worker, "crash-audit", "repairs", "alerts"), 30, "the repair in ClickHouse")
    assert len(history["repairs"]) == 1 and len(history["alerts"]) == 1


def post_repair(worker: WorkerProcess, audit_id: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{worker.api}/audits/{audit_id}/repair", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_manual_repair_is_authenticated_validated_applied_and_recorded(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory(**{**AUDIT_ENV, "CIPULSE_AUDIT_STUCK_AFTER_SECONDS": "3600"})
    feed = AuditFeed(worker, "manual-audit")
    feed.send(AuditEventKind.REQUESTED, reviewers=["erin"])
    wait_until(lambda: audit_status(worker, "manual-audit") == "REQUESTED", 30, "the request to be applied")
    good = {"target_status": "CANCELED", "reason": "template instance deleted", "actor": "ops-erin"}

    assert post_repair(worker, "manual-audit", good, token=None)[0] == 401
    status, body = post_repair(worker, "manual-audit", good, token="wrong")
    assert status == 401 and TOKEN not in json.dumps(body)
    status, body = post_repair(worker, "manual-audit", {"target_status": "SYNCED", "reason": "x", "actor": ""})
    assert status == 422 and "target_status" in body["error"] and "actor" in body["error"]
    status, body = post_repair(worker, "nope-audit", good)
    assert status == 404
    status, body = post_repair(worker, "manual-audit", {**good, "target_status": "REPAIRED"})
    assert status == 400 and body["error"].startswith("repair refused:")

    status, body = post_repair(worker, "manual-audit", good)
    assert status == 202, body
    wait_until(lambda: audit_status(worker, "manual-audit") == "CANCELED", 30, "the manual repair to be applied")
    history = wait_until(lambda: timeline_having(worker, "manual-audit", "repairs"), 30, "the repair in ClickHouse")
    (repair,) = history["repairs"]
    assert (repair["mode"], repair["actor"], repair["reason"], repair["to_status"]) == (
        "manual", "ops-erin", "template instance deleted", "CANCELED"
    )
    assert TOKEN not in worker.log_tail(10_000)


def test_sync_for_another_decision_goes_to_dead_letter_with_both_ids(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory(**AUDIT_ENV)
    feed = AuditFeed(worker, "mismatch-audit")
    feed.send(AuditEventKind.REQUESTED)
    feed.send(AuditEventKind.DECIDED, decision=AuditDecision.APPROVED, decision_id="d-1", actor="x")
    feed.send(AuditEventKind.RECORD_SYNCED, decision=AuditDecision.APPROVED, decision_id="d-1")
    feed.send(AuditEventKind.RECORD_SYNCED, decision=AuditDecision.APPROVED, decision_id="d-2")
    records = consume_records(worker.bootstrap, worker.topic("dead-letter"), minimum=1, timeout=60)
    letters = [decode(r.value(), DeadLetter) for r in records]
    assert Counter(letter.kind for letter in letters) == {DeadLetterKind.ILLEGAL_TRANSITION: 1}
    assert "d-1" in letters[0].reason and "d-2" in letters[0].reason and letters[0].processor == "audit-state"


def test_audit_read_endpoints_answer_with_their_documented_models(worker_factory: Any) -> None:
    from streams.audit_openapi import AUDIT_ENDPOINTS

    worker: WorkerProcess = worker_factory(**AUDIT_ENV)
    feed = AuditFeed(worker, "contract-audit")
    feed.send(AuditEventKind.REQUESTED, reviewers=["zoe"])
    wait_until(lambda: timeline_having(worker, "contract-audit", "events"), 60, "the audit in ClickHouse")
    for endpoint in AUDIT_ENDPOINTS:
        if endpoint.method != "get":
            continue
        url = worker.api + endpoint.path.replace("{audit_id}", "contract-audit")
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read()
        assert status in endpoint.responses, endpoint.path
        model = endpoint.responses[status][1]
        assert model is not None
        model.model_validate_json(body)
    status, body = http_json(f"{worker.api}/audits?min_age=abc")
    assert status == 400 and "min_age" in body["error"]
    status, body = http_json(f"{worker.api}/audits?stuck=maybe")
    assert status == 400 and "stuck='maybe' must be true or false" in body["error"]
