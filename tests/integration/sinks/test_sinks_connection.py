"""`open_client` against the real engine, and the chDB ownership rules the deployment relies on:
one process per data path, one location per process, released by close() or process exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from sinks.connection import embedded_path_owner, open_client
from sinks.exceptions import ClickHouseUnavailableError
from sinks.migrations import apply_migrations
from sinks.queries import count_build_events
from sinks_testkit import EngineHolder

OWNER_SCRIPT = Path(__file__).with_name("chdb_path_owner.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
DATABASE = "cipulse"


class PathOwner:
    """A subprocess holding a chDB path until `stop()`."""

    def __init__(self, dsn: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(OWNER_SCRIPT), "hold", dsn, DATABASE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert line[:1] == ["ready"], f"owner did not start: {line} {self._stderr()}"
        self.pid = int(line[1])

    def stop(self, sig: signal.Signals | None = None) -> int:
        if sig is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
        else:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def _stderr(self) -> str:
        self.process.kill()
        _, err = self.process.communicate(timeout=60)
        return err


def probe(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, str(OWNER_SCRIPT), "probe", dsn, DATABASE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def data_path(tmp_path: Path) -> str:
    return str(tmp_path / "chdb")


@pytest.fixture
def without_shared_engine(engine: EngineHolder) -> Iterator[None]:
    """Release the session's in-memory engine so this process may open a path."""
    engine.close()
    yield
    engine.close()


def test_open_client_creates_the_database_and_makes_it_the_default(ch_client: Client) -> None:
    name = f"cipulse_conn_{uuid.uuid4().hex[:8]}"
    client = open_client("chdb://memory", name)
    try:
        assert client.command("SELECT currentDatabase()") == name
        assert client.command(
            "SELECT count() FROM system.databases WHERE name = {n:String}", parameters={"n": name}
        ) == 1
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
        client.close()


def test_second_process_on_an_owned_path_is_told_who_owns_it_and_what_to_do(
    data_path: str,
) -> None:
    owner = PathOwner(f"chdb://{data_path}")
    try:
        assert embedded_path_owner(data_path) == owner.pid
        outcome = probe(f"chdb://{data_path}")
    finally:
        owner.stop()

    assert outcome.returncode == 3, outcome.stderr
    assert f"locked by process {owner.pid}" in outcome.stdout
    assert "exactly one cipulse process may own the data path" in outcome.stdout
    assert "ClickHouse server DSN" in outcome.stdout


@pytest.mark.parametrize(
    "stop_signal",
    [None, signal.SIGTERM, signal.SIGKILL],
    ids=["stdin-eof", "sigterm", "sigkill"],
)
def test_path_is_readable_from_this_process_after_its_owner_exits(
    data_path: str, without_shared_engine: None, stop_signal: signal.Signals | None
) -> None:
    owner = PathOwner(f"chdb://{data_path}")
    owner.stop(stop_signal)

    assert embedded_path_owner(data_path) is None
    client = open_client(f"chdb://{data_path}", DATABASE)
    try:
        assert count_build_events(client, DATABASE) == 1
    finally:
        client.close()


def test_close_releases_the_path_for_another_process(
    data_path: str, without_shared_engine: None
) -> None:
    client = open_client(f"chdb://{data_path}", DATABASE)
    apply_migrations(client, DATABASE)
    client.close()

    outcome = probe(f"chdb://{data_path}")

    assert outcome.stdout.strip() == "events 0", outcome.stderr


def test_embedded_memory_cap_and_purge_threshold_reach_the_engine(
    data_path: str, without_shared_engine: None
) -> None:
    client = open_client(f"chdb://{data_path}", DATABASE, embedded_memory_bytes=512 * 2**20)
    try:
        rows = client.query(
            "SELECT name, value FROM system.server_settings WHERE name IN "
            "('max_server_memory_usage', 'memory_worker_purge_dirty_pages_threshold_ratio')"
        ).result_rows
    finally:
        client.close()

    assert dict(rows) == {
        "max_server_memory_usage": str(512 * 2**20),
        "memory_worker_purge_dirty_pages_threshold_ratio": "0.05",
    }


def test_one_process_holds_one_location_at_a_time_and_can_switch_after_close(
    tmp_path: Path, engine: EngineHolder
) -> None:
    first, second = f"chdb://{tmp_path / 'first'}", f"chdb://{tmp_path / 'second'}"
    engine.client  # the in-memory engine is open in this process

    with pytest.raises(ClickHouseUnavailableError, match="one location per process"):
        open_client(first, DATABASE)

    engine.close()
    client = open_client(first, DATABASE)
    apply_migrations(client, DATABASE)
    client.command(
        f"INSERT INTO {DATABASE}.build_events (build_id, seq, event_time, project, pipeline) "
        "VALUES ('kept', 1, now64(3), 'p', 'q')"
    )
    client.close()
    other = open_client(second, DATABASE)
    assert other.command("SELECT count() FROM system.tables WHERE database = 'cipulse'") == 0
    other.close()
    reopened = open_client(first, DATABASE)
    try:
        assert count_build_events(reopened, DATABASE) == 1
    finally:
        reopened.close()


def test_unreachable_server_raises_unavailable_without_leaking_the_password() -> None:
    with pytest.raises(ClickHouseUnavailableError, match="cannot reach the ClickHouse") as raised:
        open_client("http://cipulse:s3cret-pw@127.0.0.1:1", DATABASE)

    assert "s3cret-pw" not in str(raised.value)
    assert "cipulse:***@127.0.0.1:1" in str(raised.value)
