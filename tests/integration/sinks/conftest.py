"""One embedded ClickHouse engine for the sink tests, and a fresh database per test.

chDB hosts one engine location per process, so the engine is opened lazily on the first sink
test and closed as soon as the run leaves this directory: integration tests of other packages
that open their own chDB path in the pytest process are then not blocked by ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from sinks.migrations import apply_migrations
from sinks.writer import BuildSinkWriter
from sinks_testkit import EngineHolder

_HERE = Path(__file__).parent


_holder = EngineHolder()


@pytest.fixture(scope="session")
def engine() -> Iterator[EngineHolder]:
    yield _holder
    _holder.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the fixtures of the last sink test are torn down, release the engine."""
    try:
        yield
    finally:
        if nextitem is None or _HERE not in Path(nextitem.path).parents:
            _holder.close()


@pytest.fixture
def ch_client(engine: EngineHolder) -> Client:
    """The shared client; tests qualify every table with their own database."""
    return engine.client


@pytest.fixture
def database(ch_client: Client) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    name = f"cipulse_test_{uuid.uuid4().hex[:12]}"
    ch_client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        ch_client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def migrated(ch_client: Client, database: str) -> str:
    """`database` with all shipped migrations applied; returns its name."""
    apply_migrations(ch_client, database)
    return database


@pytest.fixture
def writer(ch_client: Client, migrated: str) -> BuildSinkWriter:
    return BuildSinkWriter(ch_client, migrated)

