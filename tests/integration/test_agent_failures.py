"""An agent that fails on a batch (here: the broker refuses the build-state agent's change sets)
stops the worker with the reason and commits none of that input; the next start processes it,
each event once (`streams/failed_batches.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from harness import WorkerProcess, http_json, wait_for_embedded_path_free, wait_until
from streams.demo_feed import simulate_builds
from streams.failed_batches import EXIT_AGENT_FAILED
from streams.producer import BuildEventProducer
from test_bad_input import committed_lag
from test_faults import clickhouse_counts, events_written

pytestmark = pytest.mark.integration


def set_max_message_bytes(bootstrap: str, topic: str, size: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(size), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_refused_change_sets_stop_the_worker_uncommitted_and_the_restart_processes_every_event_once(
    worker_factory: Any,
) -> None:
    worker: WorkerProcess = worker_factory()
    status_topic, source = worker.topic("build-status"), worker.topic("build-events")
    set_max_message_bytes(worker.bootstrap, status_topic, 100)  # every change set is larger
    builds = simulate_builds(23, 6, datetime.now(UTC) - timedelta(minutes=30), spacing_seconds=5)
    producer = BuildEventProducer(worker.bootstrap, source)
    for build in builds:
        for event in build.events:
            producer.send(event)
    producer.flush()
    sent = sum(len(build.events) for build in builds)

    assert worker.process is not None
    wait_until(lambda: worker.process is not None and worker.process.poll() is not None, 60,
               "the worker to stop after its agent failed")
    assert worker.process.returncode == EXIT_AGENT_FAILED, worker.log_tail(80)
    wait_for_embedded_path_free(worker.clickhouse_path)
    log = worker.log_path.read_text(errors="replace")
    assert "failed on a batch" in log and "MSG_SIZE_TOO_LARGE" in log
    assert "raise the topic's max.message.bytes" in log  # says what to fix
    assert log.count("delivery of") <= 3, "one line per topic and cause, not one per refused record"
    assert committed_lag(worker, source) == sent, "input committed although its change sets were refused"

    set_max_message_bytes(worker.bootstrap, status_topic, 1_048_588)
    worker.start()

    def all_final() -> bool:
        for build in builds:
            status, body = http_json(f"{worker.api}/builds/{build.build_id}")
            if status != 200 or body["status"] != build.final_status.value:
                return False
        return True

    wait_until(all_final, 120, "every build to reach its final status after the restart")
    wait_until(lambda: committed_lag(worker, source) == 0, 60, "the whole input to be committed")
    wait_until(lambda: events_written(worker) >= sent, 60, "every event to be in ClickHouse")
    assert events_written(worker) == sent  # each event once: the failed batch left nothing half done
    worker.stop()
    final_events, final_results, raw_events = clickhouse_counts(worker)
    assert (final_events, final_results, raw_events) == (sent, len(builds), sent)
