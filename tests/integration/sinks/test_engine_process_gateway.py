"""The worker's ClickHouse engine in a child process (sinks.engine_gateway), on a real chDB path.

What the worker relies on: calls run in the child and return their results, errors come back
with their type and message, a child that dies is replaced on the next call, close() and a
SIGKILL of the worker both end the child and free the embedded path for the next owner.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine_calls
from sinks import queries
from sinks.bound_writes import writer_call
from sinks.connection import embedded_path_owner
from sinks.engine_gateway import EngineProcessGateway
from sinks.engine_launch import launch_engine_process
from sinks.engine_process import EngineConfig
from sinks.exceptions import ClickHouseUnavailableError, SinkError, SinkWriteError
from sinks.migrations import apply_migrations
from sinks.writer import BuildSinkWriter
from sinks_testkit import event_row, result_row

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent


def engine_config(path: Path, lock_wait_seconds: float = 5.0) -> EngineConfig:
    return EngineConfig(dsn=f"chdb://{path}", database="cipulse", embedded_memory_bytes=256 * 2**20,
                        log_level=30, lock_wait_seconds=lock_wait_seconds)


@pytest.fixture
def child_imports_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def gateway(tmp_path: Path, child_imports_tests: None) -> Iterator[EngineProcessGateway]:
    engine = EngineProcessGateway(engine_config(tmp_path / "ch"))
    engine.call_sync(apply_migrations, raw_retention_days=30, results_retention_days=400,
                     context_retention_days=28, cluster=None)
    yield engine
    engine.close()


def wait_until_gone(pid: int, seconds: float) -> bool:
    """True once `pid` has exited (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_calls_run_in_the_engine_process_and_return_their_rows(gateway: EngineProcessGateway) -> None:
    child = gateway.call_sync(engine_calls.engine_pid)
    assert child != os.getpid() and child == gateway.engine.pid

    gateway.call_sync(writer_call(BuildSinkWriter, "write", [event_row("b-1", 1), event_row("b-1", 2)],
                                  [result_row("b-1", version=2)]))
    assert gateway.call_sync(queries.count_build_events) == 2
    history = gateway.call_sync(queries.build_history, "b-1", limit=10)
    assert [row.seq for row in history] == [1, 2]


def test_async_calls_go_through_the_same_engine(gateway: EngineProcessGateway) -> None:
    async def both() -> tuple[int, int]:
        return await gateway.call(engine_calls.engine_pid), await gateway.call(queries.count_build_events)

    assert asyncio.run(both()) == (gateway.engine.pid, 0)


def test_errors_come_back_with_type_and_message_and_the_engine_keeps_serving(
    gateway: EngineProcessGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SinkWriteError, match="insert into build_events refused") as raised:
        gateway.call_sync(engine_calls.refuse, "build_events")
    assert raised.value.table == "build_events"

    with pytest.raises(SinkError, match="cannot be returned"):
        gateway.call_sync(engine_calls.unshippable_result)

    (tmp_path / "only_in_the_worker.py").write_text("def count(client, database):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not in the engine process
    only_in_the_worker = importlib.import_module("only_in_the_worker")
    with pytest.raises(SinkError, match="cannot load this call"):
        gateway.call_sync(only_in_the_worker.count)
    with pytest.raises(TypeError, match="cannot run in the ClickHouse engine process"):
        gateway.call_sync(lambda client, database: 1)
    assert gateway.engine.starts == 1
    assert gateway.call_sync(queries.count_build_events) == 0


def test_a_crash_mid_call_fails_that_call_and_the_next_call_gets_a_new_engine(gateway: EngineProcessGateway) -> None:
    gateway.call_sync(writer_call(BuildSinkWriter, "write", [event_row("b-2", 1)], []))
    first = gateway.engine.pid
    with pytest.raises(ClickHouseUnavailableError, match="exit code 7"):
        gateway.call_sync(engine_calls.crash, 7)
    assert gateway.call_sync(queries.count_build_events) == 1  # the data is still there
    assert gateway.engine.pid not in (None, first) and gateway.engine.starts == 2

    second = gateway.call_sync(engine_calls.engine_pid)
    os.kill(second, signal.SIGKILL)  # killed between calls: the next call notices and starts a new engine
    deadline = time.monotonic() + 10
    while gateway.engine.pid is not None and time.monotonic() < deadline:  # reaped once all its threads ended
        time.sleep(0.05)
    assert gateway.engine.pid is None
    assert gateway.call_sync(queries.count_build_events) == 1
    assert gateway.engine.starts >= 3


def test_close_ends_the_engine_and_frees_the_path(tmp_path: Path, child_imports_tests: None) -> None:
    path = tmp_path / "ch"
    engine = EngineProcessGateway(engine_config(path))
    child = engine.call_sync(engine_calls.engine_pid)
    assert embedded_path_owner(str(path)) == child
    engine.close()
    assert embedded_path_owner(str(path)) is None
    assert wait_until_gone(child, 5)


def test_a_killed_worker_takes_its_engine_along_and_frees_the_path(tmp_path: Path, child_imports_tests: None) -> None:
    path = tmp_path / "ch"
    worker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            import engine_calls
            from sinks.engine_gateway import EngineProcessGateway
            from sinks.engine_process import EngineConfig
            gateway = EngineProcessGateway(EngineConfig(dsn="chdb://{path}", database="cipulse",
                embedded_memory_bytes=256 * 2**20, log_level=30, lock_wait_seconds=5.0))
            print(gateway.call_sync(engine_calls.engine_pid), flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        assert embedded_path_owner(str(path)) == child
        worker.kill()
        worker.wait(timeout=10)
        deadline = time.monotonic() + 15
        while embedded_path_owner(str(path)) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert embedded_path_owner(str(path)) is None, "the orphaned engine still holds the path"
    finally:
        worker.kill()
        worker.wait()

    # The next owner (a restarted worker) opens the same path and finds nothing missing.
    engine = EngineProcessGateway(engine_config(path))
    try:
        assert engine.call_sync(queries.ping) is None
    finally:
        engine.close()


def test_a_new_engine_waits_for_the_previous_owner_of_the_path(tmp_path: Path, child_imports_tests: None) -> None:
    path = tmp_path / "ch"
    first = EngineProcessGateway(engine_config(path))
    first.call_sync(queries.ping)
    second = EngineProcessGateway(engine_config(path, lock_wait_seconds=1.5))
    try:
        started = time.monotonic()
        with pytest.raises(ClickHouseUnavailableError, match="locked by process"):
            second.call_sync(queries.ping)
        assert time.monotonic() - started >= 1.5  # it waited lock_wait_seconds before giving up
    finally:
        first.close()
    assert second.call_sync(queries.ping) is None  # the path is free now: it opens at once
    second.close()


def test_a_process_launched_ahead_serves_the_first_start_and_later_starts_launch_their_own(
    tmp_path: Path, child_imports_tests: None
) -> None:
    launched = launch_engine_process()  # what `cipulse worker` does before importing Faust
    gateway = EngineProcessGateway(engine_config(tmp_path / "ch"), launched=launched)
    try:
        assert gateway.call_sync(engine_calls.engine_pid) == launched.pid
        assert gateway.engine.starts == 1
        with pytest.raises(ClickHouseUnavailableError):
            gateway.call_sync(engine_calls.crash, 3)
        assert gateway.call_sync(engine_calls.engine_pid) not in (None, launched.pid)
        assert gateway.engine.starts == 2
    finally:
        gateway.close()


def test_a_launched_process_the_gateway_never_started_exits_when_it_closes(tmp_path: Path) -> None:
    launched = launch_engine_process()
    EngineProcessGateway(engine_config(tmp_path / "ch"), launched=launched).close()
    assert launched.returncode == 0  # it saw the closed pipe before any configuration: nothing opened
    assert embedded_path_owner(str(tmp_path / "ch")) is None


def test_launching_ahead_imports_nothing_but_the_standard_library() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, sinks.engine_launch; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('clickhouse_connect', 'chdb', 'faust', 'pydantic')))"],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "[]"
