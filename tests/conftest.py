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


@pytest.fixture
def worker_factory(kafka: KafkaBroker, tmp_path: Path) -> Iterator[object]:
    """Start isolated workers (own topics, group, store, ClickHouse path); all stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path / f"w{len(started)}", extra_env=extra_env)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()
    if os.environ.get("CIPULSE_KEEP_LOGS"):
        for worker in started:
            print(worker.log_tail(200))
