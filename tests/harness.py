"""Real processes for integration tests: a Kafka broker and cipulse workers.

Nothing here is mocked: the broker is infra/kafka.sh's KRaft node and a worker is the
`cipulse worker` command in its own process, owning its own embedded ClickHouse path.
"""

from __future__ import annotations

import json
import os
import signal
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO / "infra" / "kafka.sh"
T = TypeVar("T")


def free_port_pair() -> int:
    """A free port whose successor is free too (broker + controller listeners).

    Taken below the kernel's ephemeral range when there is room: ports from that range can be
    handed to any outgoing connection between our check and the JVM's bind, or while a test's
    broker is stopped (seen as "Address already in use" on this shared machine).
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200 if low > 20_002 else 0):
        port = random.randrange(20_000, low - 1)
        if _pair_is_free(port):
            return port
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
        if port < 65535 and _pair_is_free(port):
            return int(port)
    raise RuntimeError("no free port pair found")


def _pair_is_free(port: int) -> bool:
    try:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", port))
            second.bind(("127.0.0.1", port + 1))
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StopWaiting(AssertionError):
    """Raised by a `wait_until` check when waiting longer cannot help (the process it waits for exited)."""


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except StopWaiting:
            raise
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class KafkaBroker:
    port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA_DIR": str(self.data_dir)}
        return subprocess.run(["bash", str(KAFKA_SCRIPT), action], env=env, capture_output=True, text=True, timeout=600)

    def start(self) -> None:
        result = self._run("start")
        if result.returncode != 0:
            raise RuntimeError(f"broker did not start:\n{result.stdout}\n{result.stderr}")

    def stop(self) -> None:
        self._run("stop")


def http_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


@dataclass
class WorkerProcess:
    """`cipulse worker` in a subprocess with settings isolated from every other test."""

    bootstrap: str
    work_dir: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    web_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def clickhouse_path(self) -> Path:
        return self.work_dir / "clickhouse"

    @property
    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("CIPULSE_")},
            "CIPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "CIPULSE_TOPIC_PREFIX": self.name,
            "CIPULSE_APP_ID": self.name,
            "CIPULSE_TOPIC_PARTITIONS": "3",
            "CIPULSE_CLICKHOUSE_DSN": f"chdb://{self.clickhouse_path}",
            "CIPULSE_CLICKHOUSE_DATABASE": "cipulse",
            "CIPULSE_DATA_DIR": str(self.work_dir / "worker"),
            "CIPULSE_WEB_PORT": str(self.web_port),
            "CIPULSE_SINK_FLUSH_SECONDS": "0.5",
            "CIPULSE_CONSUMER_SESSION_TIMEOUT": "10",
            **self.extra_env,
        }

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "worker.log"

    def topic(self, suffix: str) -> str:
        return f"{self.name}.{suffix}"

    def start(self, ready_timeout: float = 90.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until(self._ready, ready_timeout, f"worker {self.name} to report ready on {self.api}/ready")
        except AssertionError:
            self.stop()
            raise AssertionError(f"worker never became ready; log tail:\n{self.log_tail()}") from None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise StopWaiting(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
        status, _ = http_json(f"{self.api}/ready", timeout=2)
        return status == 200

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(10)
            wait_for_embedded_path_free(self.clickhouse_path)
            return code

    def dump_tasks(self, settle: float = 2.0) -> None:
        """Ask the worker (mode's SIGUSR1) to write every thread's and task's stack to its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(settle)

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no final commit."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        wait_for_embedded_path_free(self.clickhouse_path)  # its engine process goes with it

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def consume_records(bootstrap: str, topic: str, minimum: int, timeout: float = 60.0) -> list[Any]:
    """Read `topic` from the beginning until at least `minimum` records arrived (or fail)."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < minimum and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            records.append(message)
    finally:
        consumer.close()
    if len(records) < minimum:
        raise AssertionError(f"only {len(records)} of {minimum} records arrived on {topic} within {timeout:.0f}s")
    return records


CLICKHOUSE_PROBE = """
import json, sys
from sinks.connection import open_client
client = open_client("chdb://" + sys.argv[1], sys.argv[2])
rows = client.query(sys.argv[3]).result_rows
client.close()
print(json.dumps([list(row) for row in rows], default=str))
"""


def wait_for_embedded_path_free(path: Path, timeout: float = 20.0) -> None:
    """Wait until no process holds the chDB lock on `path`: a killed worker's engine process
    ends a moment after the worker (it has hundreds of threads to tear down)."""
    from sinks.connection import embedded_path_owner

    deadline = time.monotonic() + timeout
    while (owner := embedded_path_owner(str(path))) is not None:
        if time.monotonic() >= deadline:
            raise AssertionError(f"process {owner} still holds {path} {timeout:.0f}s after its worker stopped")
        time.sleep(0.05)


def query_embedded_clickhouse(path: Path, sql: str, database: str = "cipulse") -> list[list[Any]]:
    """Query a stopped worker's chDB path from a fresh process (one engine per process, and
    the pytest process may hold another one)."""
    wait_for_embedded_path_free(path)
    result = subprocess.run(
        [sys.executable, "-c", CLICKHOUSE_PROBE, str(path), database, sql],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"ClickHouse probe failed:\n{result.stderr[-3000:]}")
    rows: list[list[Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows


def records_within(bootstrap: str, topic: str, seconds: float) -> list[Any]:
    """Everything on `topic` from the beginning, read for `seconds` (to prove something did NOT arrive twice)."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                records.append(message)
    finally:
        consumer.close()
    return records
