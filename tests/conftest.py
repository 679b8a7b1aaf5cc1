"""Session-wide fixtures: one real Kafka broker for the whole run, stopped at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import KafkaBroker, WorkerProcess, free_port_pair


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A single-node KRaft broker on a free port with its own data dir (never the dev broker)."""
    broker = KafkaBroker(port=free_port_pair(), data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell that their test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def worker_factory(kafka: KafkaBroker, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """Start isolated workers (own topics, group, store, ClickHouse path); all stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path / f"w{len(started)}", extra_env=extra_env)
        started.append(worker)
        worker.start()
        return worker

    yield start
    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    for worker in started:
        if failed:  # a stalled worker's stacks are the evidence; they go to its log
            worker.dump_tasks()
        worker.stop()
        if failed:
            print(f"--- worker {worker.name} log: {worker.log_path}")
    if os.environ.get("CIPULSE_KEEP_LOGS"):
        for worker in started:
            print(worker.log_tail(200))
