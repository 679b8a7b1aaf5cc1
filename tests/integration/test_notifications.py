"""Notifications end to end: real broker, real worker, real local HTTP receiver, embedded ClickHouse.

The Devtron seed (a finished deploy's success re-sent on every later pod event, and again after a
restart) must reach the receiver once; a receiver failing twice gets one delivery in three logged
attempts; twenty failures inside group_wait are one message; a run killed with its node is
notified as failed; a receiver that refuses is dead-lettered with the reason."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import WorkerProcess, consume_records, http_json, query_embedded_clickhouse, records_within, wait_until
from schemas import BuildEvent, BuildScope, BuildStatus, DeadLetter, DeadLetterKind, decode
from streams.producer import BuildEventProducer
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration


def subscriptions_file(tmp_path: Path, url: str, **overrides: Any) -> Path:
    subscription: dict[str, Any] = {
        "id": "deploys",
        "transitions": ["failed", "recovered", "succeeded", "canceled"],
        "channel": {"type": "webhook", "url": url, "hmac_secret": "s3cret"},
        "grouping": {"group_wait": "1s", "group_interval": "2s"},
        "delivery": {"max_attempts": 4, "initial_backoff": "100ms", "max_backoff": "500ms", "timeout": "5s"},
    }
    subscription.update(overrides)
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps({"subscriptions": [subscription]}))
    return path


def start_notifier(worker_factory: Any, subscriptions: Path) -> WorkerProcess:
    worker: WorkerProcess = worker_factory(CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE=str(subscriptions))
    return worker


def build_event(build_id: str, seq: int, status: BuildStatus, *, pipeline: str = "deploy-prod",
                scope: BuildScope = BuildScope.BUILD, event_id: str | None = None, **extra: Any) -> BuildEvent:
    started = datetime.now(UTC) - timedelta(minutes=5)
    return BuildEvent(
        event_id=event_id or f"{build_id}-{seq}", build_id=build_id, project="payments", pipeline=pipeline, seq=seq,
        event_time=started + timedelta(seconds=seq), scope=scope, status=status,
        stage_id="deploy" if scope is not BuildScope.BUILD else None,
        task_id="rollout" if scope is BuildScope.TASK else None, **extra,
    )


def send(worker: WorkerProcess, *events: BuildEvent) -> None:
    producer = BuildEventProducer(worker.bootstrap, worker.topic("build-events"))
    for event in events:
        producer.send(event)
    producer.flush()


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include `labels` (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def notifications_in(received: Receiver) -> list[dict[str, Any]]:
    return [n for request in received.requests for n in request.json["notifications"]]


def test_devtron_success_redelivered_fifty_times_across_a_restart_is_notified_once(
    worker_factory: Any, tmp_path: Path
) -> None:
    rng = random.Random(5343)
    with webhook_receiver() as receiver:
        worker = start_notifier(worker_factory, subscriptions_file(tmp_path, receiver.url))
        running = build_event("deploy-1", 1, BuildStatus.RUNNING)
        succeeded = build_event("deploy-1", 2, BuildStatus.SUCCEEDED)
        send(worker, running, succeeded)
        wait_until(lambda: receiver.count() == 1, 60, "the success notification")
        wait_until(lambda: metric(worker, "cipulse_notification_deliveries_total", outcome="delivered") == 1, 30,
                   "the receipt to be recorded")
        # Later pod events of the finished run: the same success again, and fresh copies of it.
        for i in range(25):
            send(worker, succeeded if i % 2 else build_event("deploy-1", 2, BuildStatus.SUCCEEDED, event_id=f"pod-{i}"))
            time.sleep(rng.uniform(0.0, 0.15))
        time.sleep(3)  # let the worker commit what it consumed (1 s commit interval)
        worker.kill()  # kill -9 in the middle of the redeliveries
        # The final change set is replayed as if its offsets had never been committed.
        finals = consume_records(worker.bootstrap, worker.topic("build-finals"), 1)
        replay = BuildEventProducer(worker.bootstrap, worker.topic("build-finals"))
        for _ in range(3):
            replay.send_raw(finals[0].key(), finals[0].value())
        replay.flush()
        worker.start()
        for i in range(25, 50):
            send(worker, succeeded if i % 2 else build_event("deploy-1", 2, BuildStatus.SUCCEEDED, event_id=f"pod-{i}"))
            time.sleep(rng.uniform(0.0, 0.15))
        wait_until(lambda: metric(worker, "cipulse_notification_requests_total", outcome="already_sent") >= 1, 60,
                   "the replayed request to be recognised as already sent")
        time.sleep(4)  # longer than group_wait + group_interval: a second message would have gone out
        assert receiver.count() == 1, [r.json for r in receiver.requests]
        only = receiver.requests[0]
        assert [n["transition"] for n in only.json["notifications"]] == ["SUCCEEDED"]
        assert only.headers["Idempotency-Key"] == only.json["notification_id"]
        assert worker.stop() == 0
    rows = query_embedded_clickhouse(
        worker.clickhouse_path,
        "SELECT outcome, count() FROM cipulse.notification_deliveries FINAL GROUP BY outcome ORDER BY outcome",
    )
    assert dict((outcome, count) for outcome, count in rows).get("delivered") == 1
    assert dict((outcome, count) for outcome, count in rows).get("deduplicated", 0) >= 1


def test_a_receiver_failing_twice_gets_one_delivery_with_three_attempts_logged(
    worker_factory: Any, tmp_path: Path
) -> None:
    with webhook_receiver(lambda n: 500 if n <= 2 else 200) as receiver:
        worker = start_notifier(worker_factory, subscriptions_file(tmp_path, receiver.url))
        send(worker, build_event("flaky-1", 1, BuildStatus.RUNNING), build_event("flaky-1", 2, BuildStatus.FAILED))
        wait_until(lambda: metric(worker, "cipulse_notification_deliveries_total", outcome="delivered") == 1, 60,
                   "the delivery after two failures")
        assert receiver.count() == 3
        keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
        assert len(keys) == 1, "every attempt carries the same idempotency key"
        notification_id = keys.pop()
        attempts = wait_until(
            lambda: body["attempts"] if (body := http_json(
                f"{worker.api}/notifications/{notification_id}/deliveries")[1]).get("attempts") else None,
            30, "the delivery log in ClickHouse",
        )
        assert [(a["attempt"], a["outcome"], a["http_status"]) for a in attempts] == [
            (1, "retry", 500), (2, "retry", 500), (3, "delivered", 200)
        ]
        status, health = http_json(f"{worker.api}/notifications/health")
        assert status == 200
        [deploys] = [h for h in health["subscriptions"] if h["subscription_id"] == "deploys"]
        assert (deploys["sent"], deploys["retries"], deploys["gave_up"]) == (1, 2, 0)


def test_twenty_failures_within_group_wait_are_one_grouped_message(worker_factory: Any, tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        subscriptions = subscriptions_file(
            tmp_path, receiver.url, grouping={"group_by": ["project", "transition"], "group_wait": "4s",
                                              "group_interval": "1m"},
        )
        worker = start_notifier(worker_factory, subscriptions)
        events: list[BuildEvent] = []
        for i in range(20):
            build_id = f"outage-{i}"
            events += [build_event(build_id, 1, BuildStatus.RUNNING, pipeline=f"svc-{i % 5}"),
                       build_event(build_id, 2, BuildStatus.FAILED, pipeline=f"svc-{i % 5}")]
        send(worker, *events)
        wait_until(lambda: receiver.count() >= 1, 60, "the grouped message")
        time.sleep(2)
        assert receiver.count() == 1
        message = receiver.requests[0].json
        assert sorted(n["subject_id"] for n in message["notifications"]) == sorted(f"outage-{i}" for i in range(20))
        assert message["labels"] == {"project": "payments", "transition": "FAILED"}


def test_a_run_killed_by_node_loss_is_notified_as_failed_with_the_reason(worker_factory: Any, tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        worker = start_notifier(worker_factory, subscriptions_file(tmp_path, receiver.url))
        send(
            worker,
            build_event("killed-1", 1, BuildStatus.RUNNING),
            build_event("killed-1", 2, BuildStatus.RUNNING, scope=BuildScope.TASK),
            build_event("killed-1", 3, BuildStatus.SUCCEEDED, scope=BuildScope.TASK, termination_reason="NodeLost"),
            build_event("killed-1", 4, BuildStatus.SUCCEEDED),
        )
        wait_until(lambda: receiver.count() == 1, 60, "the notification of the killed run")
        [notification] = notifications_in(receiver)
        assert (notification["transition"], notification["status"]) == ("FAILED", "FAILED")
        assert "node was lost" in notification["body"], notification["body"]
        assert "failed" in notification["title"]


def test_a_refusing_receiver_is_dead_lettered_with_the_reason_and_other_groups_still_flow(
    worker_factory: Any, tmp_path: Path
) -> None:
    with webhook_receiver(lambda n: 410) as receiver:
        worker = start_notifier(worker_factory, subscriptions_file(tmp_path, receiver.url))
        send(worker, build_event("gone-1", 1, BuildStatus.RUNNING), build_event("gone-1", 2, BuildStatus.CANCELED))
        letters = wait_until(
            lambda: [d for r in records_within(worker.bootstrap, worker.topic("dead-letter"), 1.0)
                     if (d := decode(r.value(), DeadLetter)).kind is DeadLetterKind.DELIVERY_FAILED],
            60, "the dead letter of the refused notification",
        )
        [letter] = letters
        assert letter.processor == "notifier" and "HTTP 410" in letter.reason
        assert json.loads(letter.payload)["notifications"][0]["subject_id"] == "gone-1"
        assert receiver.count() == 1  # a refusal is not retried


def test_recovery_and_a_stuck_review_are_notified_and_the_log_changelog_expires(
    worker_factory: Any, tmp_path: Path
) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    from schemas import AuditEvent, AuditEventKind, AuditSubjectKind, encode

    with webhook_receiver() as receiver:
        subscriptions = subscriptions_file(
            tmp_path, receiver.url, transitions=["failed", "recovered", "succeeded", "audit_stuck"],
        )
        worker: WorkerProcess = worker_factory(
            CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE=str(subscriptions), CIPULSE_AUDIT_STUCK_AFTER_SECONDS="2",
            CIPULSE_NOTIFY_LOG_RETENTION_DAYS="7",
        )
        send(worker, build_event("red-1", 1, BuildStatus.RUNNING), build_event("red-1", 2, BuildStatus.FAILED))
        wait_until(lambda: receiver.count() == 1, 60, "the failure notification")
        send(worker, build_event("green-2", 1, BuildStatus.RUNNING), build_event("green-2", 2, BuildStatus.SUCCEEDED))
        audits = BuildEventProducer(worker.bootstrap, worker.topic("audit-events"))
        review = AuditEvent(
            event_id="review-1", audit_id="review-1", subject_kind=AuditSubjectKind.BUILD, subject_id="green-2",
            project="payments", pipeline="deploy-prod", kind=AuditEventKind.REQUESTED, seq=1,
            event_time=datetime.now(UTC), reviewers=["alice"],
        )
        audits.send_raw(b"review-1", encode(review))
        audits.flush()
        wait_until(lambda: receiver.count() == 3, 60, "the recovery and stuck-review notifications")
        by_transition = {n["transition"]: n for n in notifications_in(receiver)}
        assert set(by_transition) == {"FAILED", "RECOVERED", "AUDIT_STUCK"}
        assert by_transition["RECOVERED"]["subject_id"] == "green-2"  # one message, not RECOVERED + SUCCEEDED
        assert "previous build of this pipeline FAILED" in by_transition["RECOVERED"]["body"]
        assert by_transition["AUDIT_STUCK"]["subject_id"] == "review-1" and "alice" in by_transition["AUDIT_STUCK"]["body"]

        admin = AdminClient({"bootstrap.servers": worker.bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, f"{worker.name}-notify-log-changelog")
        config = admin.describe_configs([resource])[resource].result(timeout=30)
        assert config["cleanup.policy"].value == "compact,delete"
        assert config["retention.ms"].value == str(7 * 86_400_000)


def test_a_full_group_sends_capped_messages_one_at_a_time_and_dead_letters_the_overflow(
    worker_factory: Any, tmp_path: Path
) -> None:
    """The receiver holds the first message for 3 s; meanwhile the group fills up to max_pending
    and refuses the rest with a dead letter each. Every build ends in exactly one place."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    from schemas import NotificationRequest
    from streams.notify_groups_table import GROUP_RECORD_LIMIT_BYTES

    def answer(n: int) -> int:
        if n == 1:
            time.sleep(3)  # the first message stays in flight; nothing else of the group is sent meanwhile
        return 204

    builds = {f"flood-{i}" for i in range(12)}
    with webhook_receiver(answer) as receiver:
        subscriptions = subscriptions_file(
            tmp_path, receiver.url, grouping={"group_by": ["project", "transition"], "group_wait": "0s",
                                              "group_interval": "1s", "max_per_message": 3, "max_pending": 5},
        )
        worker = start_notifier(worker_factory, subscriptions)
        events: list[BuildEvent] = []
        for build_id in sorted(builds):
            events += [build_event(build_id, 1, BuildStatus.RUNNING), build_event(build_id, 2, BuildStatus.FAILED)]
        send(worker, *events)

        def refused() -> list[DeadLetter]:
            return [d for r in records_within(worker.bootstrap, worker.topic("dead-letter"), 1.0)
                    if (d := decode(r.value(), DeadLetter)).kind is DeadLetterKind.DELIVERY_FAILED]

        def settled() -> bool:
            delivered = {n["subject_id"] for n in notifications_in(receiver)}
            return len(delivered) + len(refused()) >= len(builds)

        wait_until(settled, 90, "every build delivered or dead-lettered")
        time.sleep(3)  # a late duplicate would still arrive
        letters = refused()
        delivered = [n["subject_id"] for n in notifications_in(receiver)]
        refused_ids = [decode(d.payload, NotificationRequest).subject_id for d in letters]
        assert len(delivered) == len(set(delivered)) and len(refused_ids) == len(set(refused_ids))
        assert set(delivered) | set(refused_ids) == builds and not set(delivered) & set(refused_ids)
        assert len(letters) >= len(builds) - 3 - 5  # at most one message in flight + max_pending accepted
        assert all(len(r.json["notifications"]) <= 3 for r in receiver.requests)
        for letter in letters:
            assert letter.processor == "notifier"
            assert "holds 5 pending notifications (max_pending 5); receiver behind or down" in letter.reason
        assert metric(worker, "cipulse_notification_requests_total", outcome="group_full") == len(letters)

        admin = AdminClient({"bootstrap.servers": worker.bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, f"{worker.name}-notify-groups-changelog")
        config = admin.describe_configs([resource])[resource].result(timeout=30)
        assert config["max.message.bytes"].value == str(GROUP_RECORD_LIMIT_BYTES)
