"""Reporter SDK against real brokers: changes accepted while Kafka is down all arrive once and in
order when it comes back, and a worker accepts what the reporter sends."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import KafkaBroker, WorkerProcess, consume_records, free_port_pair, http_json, wait_until
from schemas import BuildEvent, BuildStatus
from schemas.serde import decode
from streams.reporter import BuildReporter, BuildSnapshot, ReporterConfig, StageSnapshot, TaskSnapshot
from streams.reporter.diff import event_id_for

pytestmark = pytest.mark.integration

S = BuildStatus
BUILDS = 10
CHANGES_PER_BUILD = 100  # build + stage on the first report, then one new task per report


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def records_on(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' watermark spans)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        spans = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions]
    finally:
        consumer.close()
    return sum(high - low for low, high in spans)


def growing_build(build_id: str, tasks: int) -> BuildSnapshot:
    return BuildSnapshot(build_id, "reporter", "ci", S.RUNNING, commit_sha="c0ffee", stages=(
        StageSnapshot("test", S.RUNNING, tasks=tuple(TaskSnapshot(f"t{n:03d}", S.RUNNING) for n in range(tasks))),
    ))


def test_changes_accepted_while_the_broker_is_down_arrive_once_and_in_order(tmp_path: Path) -> None:
    broker = KafkaBroker(port=free_port_pair(), data_dir=tmp_path / "kafka")  # ours alone: we stop it
    topic = f"reporter-{uuid.uuid4().hex[:8]}.build-events"
    reporter: BuildReporter | None = None
    try:
        broker.start()
        create_topic(broker.bootstrap, topic, partitions=3)
        broker.stop()

        reporter = BuildReporter(ReporterConfig(
            bootstrap=broker.bootstrap, outbox_path=tmp_path / "runner" / "outbox.sqlite", topic=topic,
            delivery_timeout_s=3.0, backoff_base_s=0.2, backoff_cap_s=2.0,
        ))
        latencies = []
        build_ids = [f"rb-{n}" for n in range(BUILDS)]
        for tasks in range(CHANGES_PER_BUILD - 1):  # 0 tasks: 2 changes; then +1 change per report
            for build_id in build_ids:
                started = time.perf_counter()
                reporter.report(growing_build(build_id, tasks))
                latencies.append(time.perf_counter() - started)
        assert reporter.pending() == BUILDS * CHANGES_PER_BUILD
        latencies.sort()
        # never waits for Kafka (a 3 s delivery timeout): the cost is one local SQLite commit
        assert latencies[len(latencies) // 2] < 0.05 and latencies[-1] < 1.5, (latencies[len(latencies) // 2], latencies[-1])
        # the sender gave up on the unreachable broker at least once and is backing off
        wait_until(lambda: reporter is not None and reporter.stats.backoffs >= 1, 30, "the sender to back off")
        assert reporter.pending() == BUILDS * CHANGES_PER_BUILD and reporter.stats.delivered == 0

        broker.start()
        assert reporter.flush(timeout=120) == 0, reporter.stats
        assert reporter.close(timeout=5) == 0

        assert records_on(broker.bootstrap, topic) == BUILDS * CHANGES_PER_BUILD  # no duplicates
        records = consume_records(broker.bootstrap, topic, minimum=BUILDS * CHANGES_PER_BUILD, timeout=60)
        seqs: dict[str, list[int]] = defaultdict(list)
        partition_of: dict[str, set[int]] = defaultdict(set)
        for record in sorted(records, key=lambda r: (r.partition(), r.offset())):
            event = decode(record.value(), BuildEvent)
            assert record.key() == event.build_id.encode() and event.event_id == event_id_for(event.build_id, event.seq)
            seqs[event.build_id].append(event.seq)
            partition_of[event.build_id].add(record.partition())
        assert dict(seqs) == {b: list(range(1, CHANGES_PER_BUILD + 1)) for b in build_ids}
        assert all(len(partitions) == 1 for partitions in partition_of.values())
    finally:
        if reporter is not None:
            reporter.close(timeout=0)
        broker.stop()


def api_state(worker: WorkerProcess, build_id: str) -> dict[str, Any] | None:
    status, body = http_json(f"{worker.api}/builds/{build_id}")
    return body if status == 200 else None


def test_a_worker_accepts_the_reporters_events_and_shows_the_final_tree(worker_factory: Any, tmp_path: Path) -> None:
    worker: WorkerProcess = worker_factory()
    config = ReporterConfig(bootstrap=worker.bootstrap, outbox_path=tmp_path / "outbox.sqlite",
                            topic=worker.topic("build-events"))
    build = "reported-1"
    with BuildReporter(config) as reporter:
        reporter.report(BuildSnapshot(build, "sdk", "ci", S.QUEUED, branch="main", stages=(
            StageSnapshot("compile", S.QUEUED), StageSnapshot("test", S.QUEUED))))
        reporter.report(BuildSnapshot(build, "sdk", "ci", S.RUNNING, executor="runner-7", stages=(
            StageSnapshot("compile", S.RUNNING, tasks=(TaskSnapshot("javac", S.RUNNING),)),)))
        reporter.report(BuildSnapshot(build, "sdk", "ci", S.RUNNING, stages=(
            StageSnapshot("compile", S.SUCCEEDED, tasks=(TaskSnapshot("javac", S.SUCCEEDED, exit_code=0),)),
            StageSnapshot("test", S.RUNNING, tasks=(TaskSnapshot("unit", S.RUNNING),)))))
        reporter.report(BuildSnapshot(build, "sdk", "ci", S.FAILED, error_reason="tests failed", stages=(
            StageSnapshot("test", S.FAILED, tasks=(TaskSnapshot("unit", S.FAILED, exit_code=1),)),)))
        assert reporter.flush(timeout=60) == 0

    state = wait_until(lambda: (s := api_state(worker, build)) and s["status"] == "FAILED" and s, 60,
                       "the reported build to be FAILED in the API")
    assert (state["branch"], state["executor"], state["error_reason"], state["last_seq"]) == (
        "main", "runner-7", "tests failed", 13)  # 3 + 3 + 4 + 3 changes
    assert {sid: (s["status"], {tid: t["status"] for tid, t in s["tasks"].items()}) for sid, s in state["stages"].items()} == {
        "compile": ("SUCCEEDED", {"javac": "SUCCEEDED"}),
        "test": ("FAILED", {"unit": "FAILED"}),
    }
    assert state["stages"]["test"]["tasks"]["unit"]["exit_code"] == 1
