"""Static group membership (CIPULSE_STATIC_MEMBERSHIP): a worker killed with SIGKILL and started
again at the same API URL takes its partitions back at once, without waiting for the broker to
expire the dead member's session, and still counts every event exactly once.

The session timeout is set far longer than the whole test needs: with dynamic membership the
restarted worker's group (and its sink's) would wait for the dead member's session to end before
any partition moved, so the builds could not finish inside the deadline below.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from harness import WorkerProcess, free_port, query_embedded_clickhouse, wait_until
from schemas import BuildStatus
from streams.callbacks import PROCESSOR as CALLBACK_PROCESSOR
from streams.sink_consumer import sink_group
from streams.thread_consumer import consumer_group
from test_pipeline_end_to_end import (
    expected_totals,
    kill_a_quarter_through,
    recent_builds,
    stats_total,
    wait_for_finished,
)

pytestmark = pytest.mark.integration

SESSION_SECONDS = 90


def group_instance_ids(bootstrap: str, group: str) -> list[str | None]:
    """The group.instance.id of every member the broker lists for `group` (once it is stable)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if description.state is not ConsumerGroupState.STABLE:
        return []
    return [member.group_instance_id for member in description.members]


def test_a_static_member_killed_and_restarted_takes_its_partitions_back_before_its_session_ends(
    worker_factory: Any,
) -> None:
    worker: WorkerProcess = worker_factory(
        CIPULSE_STATIC_MEMBERSHIP="true", CIPULSE_CONSUMER_SESSION_TIMEOUT=str(SESSION_SECONDS)
    )
    instance_id = f"cipulse-127.0.0.1-{worker.web_port}"
    for group in (worker.name, sink_group(worker.name), consumer_group(worker.name, CALLBACK_PROCESSOR)):
        assert wait_until(lambda g=group: group_instance_ids(worker.bootstrap, g), 30, f"group {group} stable") == [
            instance_id
        ], f"{group} joined without its static id"
    builds = recent_builds(80, seed=41)
    total_events = kill_a_quarter_through(worker, builds)  # no LeaveGroup: the broker keeps the member
    killed_at = time.monotonic()

    worker.start()
    deadline = SESSION_SECONDS * 2 / 3  # dynamic membership cannot move a partition before SESSION_SECONDS
    wait_for_finished(worker, builds, timeout=deadline - (time.monotonic() - killed_at))
    wait_until(lambda: stats_total(worker) == expected_totals(builds), deadline - (time.monotonic() - killed_at),
               "ClickHouse to count every build once, through the restarted sink")
    assert worker.stop() == 0
    succeeded = sum(1 for b in builds if b.final_status is BuildStatus.SUCCEEDED)
    rows = query_embedded_clickhouse(
        worker.clickhouse_path,
        "SELECT (SELECT count() FROM cipulse.build_events FINAL), (SELECT count() FROM cipulse.build_results FINAL),"
        " (SELECT countIf(status = 'SUCCEEDED') FROM cipulse.build_results FINAL)",
    )
    assert rows == [[total_events, len(builds), succeeded]]


def test_a_static_member_restarted_at_another_url_joins_as_a_new_member_and_loses_nothing(worker_factory: Any) -> None:
    """The id follows the URL: at a new port the worker must not be handed the assignment made out
    to its old URL (Faust refuses it and the worker never becomes ready); it joins as a new member
    and gets the partitions once the old member's session ends, as with dynamic membership."""
    worker: WorkerProcess = worker_factory(CIPULSE_STATIC_MEMBERSHIP="true")  # the harness's 10 s session
    builds = recent_builds(40, seed=43)
    kill_a_quarter_through(worker, builds)
    worker.web_port = free_port()

    worker.start()
    wait_for_finished(worker, builds, timeout=120)
    wait_until(lambda: stats_total(worker) == expected_totals(builds), 60, "ClickHouse to count every build once")
    assert wait_until(lambda: group_instance_ids(worker.bootstrap, worker.name), 30, "the group stable") == [
        f"cipulse-127.0.0.1-{worker.web_port}"
    ]
