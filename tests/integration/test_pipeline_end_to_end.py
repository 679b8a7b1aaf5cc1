"""One real broker, one real worker process, the real embedded ClickHouse engine:
events in at one end, the same facts out of the API and ClickHouse at the other."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import WorkerProcess, consume_records, http_json, query_embedded_clickhouse, wait_until
from schemas import BuildEvent, BuildScope, BuildStatus, DeadLetter, DeadLetterKind, decode, encode, encode_dict
from streams.build_state import Accepted, BuildState, apply_event
from streams.demo_feed import SimulatedBuild, simulate_builds
from streams.producer import BuildEventProducer

pytestmark = pytest.mark.integration

FINAL = {"SUCCEEDED", "FAILED", "CANCELED"}


def producer_for(worker: WorkerProcess) -> BuildEventProducer:
    return BuildEventProducer(worker.bootstrap, worker.topic("build-events"))


def recent_builds(count: int, seed: int) -> list[SimulatedBuild]:
    return simulate_builds(seed, count, datetime.now(UTC) - timedelta(minutes=50), spacing_seconds=5)


def in_order_state(build: SimulatedBuild) -> BuildState:
    state = None
    for event in build.events:
        outcome = apply_event(state, event)
        if isinstance(outcome, Accepted):
            state = outcome.state
    assert state is not None
    return state


def api_state(worker: WorkerProcess, build_id: str) -> dict[str, Any] | None:
    status, body = http_json(f"{worker.api}/builds/{build_id}")
    return body if status == 200 else None


def wait_for_finished(worker: WorkerProcess, builds: list[SimulatedBuild], timeout: float = 120) -> None:
    def all_final() -> bool:
        return all((state := api_state(worker, b.build_id)) and state["status"] == b.final_status.value for b in builds)

    wait_until(all_final, timeout, f"{len(builds)} builds to reach their final status in the API")


def stats_total(worker: WorkerProcess) -> dict[str, int]:
    status, body = http_json(f"{worker.api}/stats/pipelines?window=2h")
    assert status == 200, body
    totals: Counter[str] = Counter()
    for row in body["rows"]:
        for key in ("finished", "succeeded", "failed", "canceled"):
            totals[key] += row[key]
    return dict(totals)


def expected_totals(builds: list[SimulatedBuild]) -> dict[str, int]:
    counts = Counter(b.final_status for b in builds)
    return {
        "finished": len(builds),
        "succeeded": counts[BuildStatus.SUCCEEDED],
        "failed": counts[BuildStatus.FAILED],
        "canceled": counts[BuildStatus.CANCELED],
    }


def test_n_build_events_in_are_the_same_n_in_api_and_clickhouse(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory()
    builds = recent_builds(40, seed=11)
    producer = producer_for(worker)
    for build in builds:
        for event in build.events:
            producer.send(event)
    producer.flush()
    total_events = sum(len(b.events) for b in builds)

    wait_for_finished(worker, builds)
    wait_until(lambda: stats_total(worker) == expected_totals(builds), 60, "stats to count every finished build")
    sample = builds[3]
    status, history = http_json(f"{worker.api}/builds/{sample.build_id}/history")
    assert status == 200
    assert [e["seq"] for e in history["events"]] == [e.seq for e in sample.events]
    state = api_state(worker, sample.build_id)
    assert state is not None and state["duration_ms"] == in_order_state(sample).duration_ms

    try:
        wait_until(lambda: sink_rows_written(worker) >= total_events, 60, "the sink to write every accepted event")
    except AssertionError:
        print(http_json_text(f"{worker.api}/metrics")[1])
        raise
    assert worker.stop() == 0
    rows = query_embedded_clickhouse(
        worker.clickhouse_path,
        "SELECT (SELECT count() FROM cipulse.build_events FINAL), (SELECT count() FROM cipulse.build_results FINAL),"
        " (SELECT countIf(is_final = 1) FROM cipulse.build_results FINAL)",
    )
    assert rows == [[total_events, len(builds), len(builds)]]


def test_garbage_bytes_schema_violations_and_illegal_transitions_go_to_dead_letter_with_reasons(
    worker_factory: Any,
) -> None:
    worker: WorkerProcess = worker_factory()
    producer = producer_for(worker)
    now = datetime.now(UTC)

    def event(seq: int, status: BuildStatus) -> BuildEvent:
        return BuildEvent(event_id=f"dl-{seq}", build_id="dl-build", project="p", pipeline="ci", seq=seq,
                          event_time=now + timedelta(seconds=seq), scope=BuildScope.BUILD, status=status)

    producer.send_raw(b"garbage", b"\x00\x01not avro at all")
    producer.send_raw(b"truncated", encode(event(1, BuildStatus.QUEUED))[:15])
    invalid = encode_dict("io.cipulse.BuildEvent", {
        **event(1, BuildStatus.QUEUED).model_dump(), "build_id": "", "scope": "TASK",
    })
    producer.send_raw(b"invalid", invalid)
    for seq, status in [(1, BuildStatus.RUNNING), (2, BuildStatus.SUCCEEDED), (3, BuildStatus.RUNNING)]:
        producer.send(event(seq, status))
    producer.flush()

    records = consume_records(worker.bootstrap, worker.topic("dead-letter"), minimum=4, timeout=90)
    letters = [decode(r.value(), DeadLetter) for r in records]
    by_kind = Counter(letter.kind for letter in letters)
    assert by_kind == {DeadLetterKind.UNDECODABLE: 2, DeadLetterKind.SCHEMA_VIOLATION: 1, DeadLetterKind.ILLEGAL_TRANSITION: 1}
    for letter in letters:
        assert letter.source_topic == worker.topic("build-events")
        assert letter.source_offset >= 0 and letter.reason and letter.processor == "build-state"
    illegal = next(letter for letter in letters if letter.kind is DeadLetterKind.ILLEGAL_TRANSITION)
    assert "SUCCEEDED is final" in illegal.reason and illegal.key == b"dl-build"
    assert decode(illegal.payload, BuildEvent).seq == 3
    garbage = next(letter for letter in letters if letter.key == b"garbage")
    assert garbage.payload == b"\x00\x01not avro at all"
    violation = next(letter for letter in letters if letter.kind is DeadLetterKind.SCHEMA_VIOLATION)
    assert "build_id" in violation.reason
    state = api_state(worker, "dl-build")
    assert state is not None and state["status"] == "SUCCEEDED" and state["seq"] == 2


@pytest.mark.parametrize("table_store", ["rocksdb", "memory"])
def test_duplicates_and_out_of_order_events_give_the_in_order_final_state_and_metrics(
    worker_factory: Any, table_store: str
) -> None:
    """Same behaviour whichever store backs the build-state table."""
    worker: WorkerProcess = worker_factory(CIPULSE_TABLE_STORE=table_store)
    builds = recent_builds(25, seed=23)
    rng = random.Random(5)
    producer = producer_for(worker)
    for build in builds:
        delivered = list(build.events) + rng.choices(build.events, k=5)
        rng.shuffle(delivered)
        for event in delivered:
            producer.send(event)
    producer.flush()

    wait_for_finished(worker, builds)
    wait_until(lambda: stats_total(worker) == expected_totals(builds), 60, "stats to count every finished build once")
    for build in builds:
        state = api_state(worker, build.build_id)
        expected = in_order_state(build)
        assert state is not None
        assert (state["status"], state["duration_ms"], state["seq"]) == (
            expected.status.value, expected.duration_ms, expected.seq
        ), build.build_id

    # Redeliver everything once more: nothing may change, nothing may count twice.
    before = stats_total(worker)
    ignored_before, accepted_before = outcome_counts(worker)
    redelivered = sum(len(b.events) for b in builds)
    for build in builds:
        for event in build.events:
            producer.send(event)
    producer.flush()
    wait_until(
        lambda: outcome_counts(worker)[0] >= ignored_before + redelivered,
        60,
        "every redelivered event to be recognised as a duplicate",
    )
    assert outcome_counts(worker) == (ignored_before + redelivered, accepted_before)
    assert stats_total(worker) == before == expected_totals(builds)


def outcome_counts(worker: WorkerProcess) -> tuple[float, float]:
    """(duplicate + late, accepted) from the worker's Prometheus metrics."""
    text = http_json_text(f"{worker.api}/metrics")[1]
    ignored = _metric(text, 'cipulse_build_events_total{outcome="duplicate"}') + _metric(
        text, 'cipulse_build_events_total{outcome="late"}'
    )
    return ignored, _metric(text, 'cipulse_build_events_total{outcome="accepted"}')


def sink_rows_written(worker: WorkerProcess) -> float:
    return _metric(http_json_text(f"{worker.api}/metrics")[1], 'cipulse_sink_rows_written_total{table="build_events"}')


def http_json_text(url: str) -> tuple[int, str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def kill_a_quarter_through(worker: WorkerProcess, builds: list[SimulatedBuild]) -> int:
    """Send every event of `builds`, SIGKILL the worker (no graceful shutdown, no final commit) once
    a quarter of them are processed; returns the number of events sent."""
    total_events = sum(len(b.events) for b in builds)
    producer = producer_for(worker)
    for build in builds:
        for event in build.events:
            producer.send(event)
    producer.flush()
    wait_until(lambda: outcome_counts(worker)[1] >= total_events // 4, 60, "a quarter of the events to be processed")
    worker.kill()
    return total_events


def test_worker_killed_mid_stream_and_restarted_counts_every_event_exactly_once(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory()
    builds = recent_builds(120, seed=31)
    total_events = kill_a_quarter_through(worker, builds)

    worker.start()
    wait_for_finished(worker, builds, timeout=180)
    wait_until(lambda: stats_total(worker) == expected_totals(builds), 60, "stats to count every build once")
    # The restarted worker's counters start at 0; replayed events it had already applied show as duplicates.
    wait_until(lambda: sink_rows_written(worker) > 0, 30, "the sink to write after the restart")
    # exactly, not by the safety net: no partition needed the 10 s stuck-partition seek-back
    metrics_text = http_json_text(f"{worker.api}/metrics")[1]
    assert _metric(metrics_text, 'cipulse_consumer_seek_backs_total{cause="stuck"}') == 0, worker.log_tail(60)
    assert worker.stop() == 0
    rows = query_embedded_clickhouse(
        worker.clickhouse_path,
        "SELECT (SELECT count() FROM cipulse.build_events FINAL), (SELECT count() FROM cipulse.build_results FINAL),"
        " (SELECT countIf(status = 'SUCCEEDED') FROM cipulse.build_results FINAL)",
    )
    succeeded = sum(1 for b in builds if b.final_status is BuildStatus.SUCCEEDED)
    assert rows == [[total_events, len(builds), succeeded]]


def test_run_killed_by_node_loss_but_reported_succeeded_ends_failed_everywhere(worker_factory: Any) -> None:
    """Devtron: a workflow pod died with its node and the run was shown as Succeeded."""
    worker: WorkerProcess = worker_factory()
    now = datetime.now(UTC) - timedelta(minutes=5)

    def event(seq: int, scope: BuildScope, status: BuildStatus, **extra: Any) -> BuildEvent:
        return BuildEvent(
            event_id=f"killed-{seq}", build_id="killed-run", project="payments", pipeline="deploy-prod", seq=seq,
            event_time=now + timedelta(seconds=seq * 10), scope=scope, status=status,
            stage_id="deploy" if scope is not BuildScope.BUILD else None,
            task_id="rollout" if scope is BuildScope.TASK else None, **extra,
        )

    producer = producer_for(worker)
    for record in (
        event(1, BuildScope.BUILD, BuildStatus.RUNNING),
        event(2, BuildScope.TASK, BuildStatus.RUNNING),
        event(3, BuildScope.TASK, BuildStatus.SUCCEEDED, termination_reason="NodeLost"),
        event(4, BuildScope.BUILD, BuildStatus.SUCCEEDED),
    ):
        producer.send(record)
    producer.flush()

    state = wait_until(lambda: api_state(worker, "killed-run") if (s := api_state(worker, "killed-run")) and s["seq"] == 4 else None,
                       60, "the killed run's final state")
    assert state["status"] == "FAILED" and state["corrected_from"] == "SUCCEEDED"
    assert "deploy/rollout" in state["error_reason"] and "node was lost" in state["error_reason"]
    task = state["stages"]["deploy"]["tasks"]["rollout"]
    assert (task["status"], task["corrected_from"]) == ("FAILED", "SUCCEEDED")
    wait_until(lambda: stats_total(worker).get("failed") == 1, 60, "ClickHouse to count the run as failed")
    assert _metric(http_json_text(f"{worker.api}/metrics")[1],
                   'cipulse_status_corrections_total{recorded="FAILED",reported="SUCCEEDED"}') == 2
