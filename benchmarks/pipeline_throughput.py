"""Throughput and latency of the whole cipulse pipeline against a real broker, in one run.

Phases (each one's progress goes to stderr, the figures table to stdout and
benchmarks/results/pipeline_throughput.json):

1. produce  - simulate N build events (streams.demo_feed), Avro-encode them, and produce them
              with BuildEventProducer to a fresh topic prefix (producer rate).
2. baseline - a plain confluent-kafka Consumer reads the same topic from the start and decodes
              every record: once with `decode_dict` (fastavro only), once with `decode`
              (fastavro + pydantic model), the floor any consumer in Python pays.
3. drain    - start `python -m streams.cli worker` on the backlog and time it from `/ready`
              to every event accepted by the build-state agent, and to every accepted event
              written to ClickHouse (both read from the worker's /metrics every 0.5 s).
4. latency  - with the backlog drained, produce fresh builds' events at a steady rate and time
              each from the broker's acknowledgement to `GET /builds/{id}` showing it, and
              (every few probes) to `GET /builds/{id}/history` listing it.
5. verify   - stop the worker, then count the rows in its chDB path from a fresh process.

Every process started here (broker, worker) is stopped in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, KafkaError, Message  # noqa: E402
from bench_session import BenchSession, run_session  # noqa: E402
from bench_session import log as log  # noqa: E402  (re-exported: the other benchmarks import it from here)
from harness import KafkaBroker, WorkerProcess, http_json  # noqa: E402

from schemas import BuildEvent  # noqa: E402
from schemas.serde import decode, decode_dict, encode  # noqa: E402
from streams.demo_feed import simulate_build  # noqa: E402
from streams.producer import BuildEventProducer  # noqa: E402
from streams.settings import CipulseSettings  # noqa: E402
from streams.topics import BUILD_EVENTS, ensure_topics, topic_name  # noqa: E402

RESULTS_FILE = REPO / "benchmarks" / "results" / "pipeline_throughput.json"
METRICS_POLL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 20.0
HISTORY_POLL_SECONDS = 0.05

COUNT_ROWS = """
import sys
from sinks.connection import open_client
from sinks.queries import count_build_events
client = open_client("chdb://" + sys.argv[1], "cipulse")
try:
    print(count_build_events(client, "cipulse"))
finally:
    client.close()
"""


# ---------------------------------------------------------------- 1. produce


@dataclass
class Backlog:
    records: list[tuple[bytes, bytes]]
    builds: int
    simulate_seconds: float
    encode_seconds: float


def build_backlog(events_wanted: int, seed: int) -> Backlog:
    """Whole simulated builds until at least `events_wanted` events, encoded as on the wire."""
    rng = random.Random(seed)
    spacing = timedelta(seconds=3)
    # Event times end about an hour ago: well inside the raw tables' 30-day TTL.
    start = datetime.now(UTC) - spacing * (events_wanted // 15) - timedelta(hours=1)
    records: list[tuple[bytes, bytes]] = []
    builds = 0
    simulate_seconds = encode_seconds = 0.0
    while len(records) < events_wanted:
        t0 = time.perf_counter()
        build = simulate_build(rng, start + spacing * builds)
        t1 = time.perf_counter()
        key = build.build_id.encode()
        records.extend((key, encode(event)) for event in build.events)
        encode_seconds += time.perf_counter() - t1
        simulate_seconds += t1 - t0
        builds += 1
    return Backlog(records, builds, simulate_seconds, encode_seconds)


def produce_backlog(bootstrap: str, topic: str, backlog: Backlog) -> float:
    """Send every record and wait for all acks; returns events/s (send + flush)."""
    producer = BuildEventProducer(bootstrap, topic)
    total = len(backlog.records)
    started = last_report = time.perf_counter()
    for number, (key, value) in enumerate(backlog.records, 1):
        producer.send_raw(key, value)
        now = time.perf_counter()
        if now - last_report >= 2.0:
            last_report = now
            log(f"produce: {number:,}/{total:,} sent ({number / (now - started):,.0f} events/s)")
    producer.flush(timeout=120)
    elapsed = time.perf_counter() - started
    if producer.delivered != total:
        raise RuntimeError(f"only {producer.delivered} of {total} events acknowledged")
    return total / elapsed


# ---------------------------------------------------------------- 2. raw baseline


def raw_consume_rate(bootstrap: str, topic: str, expected: int, decoder: Callable[[bytes], object],
                     timeout: float = 300.0) -> float:
    """events/s of a confluent-kafka consumer decoding every record, first to last record."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    count = 0
    first: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw baseline read only {count} of {expected} records in {timeout:.0f}s")
            messages = consumer.consume(1000, 1.0)
            if messages and first is None:
                first = time.perf_counter()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"raw baseline consumer error: {error}")
                decoder(message.value() or b"")
                count += 1
        last = time.perf_counter()
    finally:
        consumer.close()
    assert first is not None
    return count / (last - first)


# ---------------------------------------------------------------- 3. drain


@dataclass
class PipelineCounters:
    outcomes: dict[str, float]
    rows_written: float

    @property
    def seen(self) -> float:
        return sum(self.outcomes.values())

    @property
    def accepted(self) -> float:
        return self.outcomes.get("accepted", 0.0)


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')


def read_counters(api: str) -> PipelineCounters:
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as response:
        text = response.read().decode()
    outcomes: dict[str, float] = {}
    rows = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if match["name"] == "cipulse_build_events_total":
            outcomes[labels["outcome"]] = float(match["value"])
        elif match["name"] == "cipulse_sink_rows_written_total" and labels.get("table") == "build_events":
            rows = float(match["value"])
    return PipelineCounters(outcomes, rows)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process from /proc/<pid>/stat, or of one of its threads."""
    stat = Path(f"/proc/{pid}/stat") if thread is None else Path(f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Live children of a process (the worker's ClickHouse engine process), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return children


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children: the worker's figure includes its engine process."""
    total = cpu_seconds(pid)
    for child in child_pids(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            continue
    return total


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Drain:
    at_ready: PipelineCounters
    final: PipelineCounters
    seconds_to_accepted: float
    seconds_to_clickhouse: float
    worker_cpu_seconds: float
    """The worker and its ClickHouse engine process together."""
    engine_cpu_seconds: float = 0.0
    """Of which its ClickHouse engine process (0 when the engine runs inside the worker)."""
    event_loop_busy: float = 0.0
    """CPU of the worker's main (event-loop) thread over the wall time until every event was
    seen: what is left below 1.0 is the loop waiting (for the broker, a lock, the GIL, a core)."""


def drain_backlog(worker: WorkerProcess, total: int, t_ready: float, timeout: float) -> Drain:
    """Poll /metrics until every event is seen by the state agent and every accepted one is
    counted as written to ClickHouse (a condition checked every 0.5 s, not a fixed wait)."""
    assert worker.process is not None
    pid = worker.process.pid
    cpu_at_ready = tree_cpu_seconds(pid)
    own_cpu_at_ready = cpu_seconds(pid)
    loop_cpu_at_ready = cpu_seconds(pid, pid)
    loop_busy = 0.0
    at_ready = read_counters(worker.api)
    log(f"drain: at ready {at_ready.seen:,.0f} events already seen, {at_ready.rows_written:,.0f} rows written")
    t_accepted: float | None = None
    last_report = 0.0
    while True:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.process.returncode}:\n{worker.log_tail()}")
        counters = read_counters(worker.api)
        now = time.perf_counter()
        if t_accepted is None and counters.seen >= total:
            t_accepted = now
            loop_busy = (cpu_seconds(pid, pid) - loop_cpu_at_ready) / max(1e-9, now - t_ready)
        if t_accepted is not None and counters.rows_written >= counters.accepted:
            tree_cpu = tree_cpu_seconds(pid) - cpu_at_ready
            own_cpu = cpu_seconds(pid) - own_cpu_at_ready
            return Drain(
                at_ready, counters, t_accepted - t_ready, now - t_ready, tree_cpu, max(0.0, tree_cpu - own_cpu), loop_busy
            )
        if now - t_ready > timeout:
            raise RuntimeError(
                f"drain timed out after {timeout:.0f}s: {counters.seen:,.0f}/{total:,} seen, "
                f"{counters.rows_written:,.0f} rows written"
            )
        if now - last_report >= 5.0:
            last_report = now
            elapsed = now - t_ready
            log(f"drain: {elapsed:5.1f}s  {counters.seen:,.0f}/{total:,} seen "
                f"(accepted {counters.accepted:,.0f}), {counters.rows_written:,.0f} rows in ClickHouse, "
                f"{(counters.seen - at_ready.seen) / elapsed:,.0f} events/s")
        time.sleep(METRICS_POLL_SECONDS)


# ---------------------------------------------------------------- 4. latency probes


@dataclass
class Probe:
    event: BuildEvent
    value: bytes = b""
    produced_at: float = 0.0
    acked_at: float | None = None
    api_visible_at: float | None = None
    history_visible_at: float | None = None
    api_requests: int = 0
    acked: threading.Event = field(default_factory=threading.Event)


class ProbeProducer(BuildEventProducer):
    """BuildEventProducer that stamps each probe with the moment the broker acknowledged it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, **{"linger.ms": 0})
        self.in_flight: dict[bytes, Probe] = {}

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        super()._on_delivery(err, msg)
        probe = self.in_flight.pop(msg.value() or b"", None)
        if probe is not None and err is None:
            probe.acked_at = time.perf_counter()
            probe.acked.set()

    def send_probe(self, probe: Probe) -> None:
        # Stamp "now" as the event time and encode, then start the clock at produce().
        probe.value = encode(probe.event.model_copy(update={"event_time": datetime.now(UTC)}))
        self.in_flight[probe.value] = probe
        probe.produced_at = time.perf_counter()
        self.send_raw(probe.event.build_id.encode(), probe.value)

    def serve_callbacks(self, timeout: float) -> None:
        self._producer.poll(timeout)


def probe_events(count: int, seed: int, run_id: str) -> list[Probe]:
    """Events of fresh builds, interleaved round-robin so neighbouring probes hit other builds."""
    rng = random.Random(seed)
    builds: list[tuple[BuildEvent, ...]] = []
    while sum(len(events) for events in builds) < count:
        builds.append(simulate_build(rng, datetime.now(UTC), build_id=f"probe-{run_id}-{len(builds)}").events)
    interleaved = [
        Probe(events[position])
        for position in range(max(len(events) for events in builds))
        for events in builds
        if position < len(events)
    ]
    return interleaved[:count]


class ApiPoller:
    """Polls the worker's REST API over one keep-alive connection per thread."""

    def __init__(self, api: str, interval: float) -> None:
        parsed = urllib.parse.urlsplit(api)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._interval = interval
        self._local = threading.local()

    def _get(self, path: str) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise

    def wait_state(self, probe: Probe) -> None:
        """From the ack until `GET /builds/{id}` shows the probe applied (`last_seq` >= seq)."""
        if not probe.acked.wait(PROBE_TIMEOUT_SECONDS):
            return
        path = f"/builds/{urllib.parse.quote(probe.event.build_id, safe='')}"
        deadline = time.perf_counter() + PROBE_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            status, body = self._get(path)
            probe.api_requests += 1
            if status == 200 and json.loads(body)["last_seq"] >= probe.event.seq:
                probe.api_visible_at = time.perf_counter()
                return
            time.sleep(self._interval)

    def wait_history(self, probe: Probe) -> None:
        """From the ack until `GET /builds/{id}/history` (read from ClickHouse) lists the probe."""
        if not probe.acked.wait(PROBE_TIMEOUT_SECONDS):
            return
        path = f"/builds/{urllib.parse.quote(probe.event.build_id, safe='')}/history"
        deadline = time.perf_counter() + PROBE_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            status, body = self._get(path)
            if status == 200 and any(entry["seq"] == probe.event.seq for entry in json.loads(body)["events"]):
                probe.history_visible_at = time.perf_counter()
                return
            time.sleep(HISTORY_POLL_SECONDS)
        log(f"latency: {probe.event.build_id} seq {probe.event.seq} never showed in /history "
            f"(last answer {status}: {body[:300]!r})")


def run_probes(producer: ProbeProducer, api: str, probes: list[Probe], rate: float,
               poll_interval: float, history_every: int) -> float:
    """Produce the probes at `rate`/s, each watched by its own poller; returns the phase's seconds.

    `producer` should be created well before: an idempotent producer's first ack waits for
    its producer id, which is start-up cost, not latency.
    """
    poller = ApiPoller(api, poll_interval)
    waits: list[Future[None]] = []
    started = time.perf_counter()
    state_pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="probe-state")
    history_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe-history")
    try:
        for number, probe in enumerate(probes):
            due = started + number / rate
            while (now := time.perf_counter()) < due:
                producer.serve_callbacks(min(0.001, due - now))
            producer.send_probe(probe)
            waits.append(state_pool.submit(poller.wait_state, probe))
            if history_every and number % history_every == 0:
                waits.append(history_pool.submit(poller.wait_history, probe))
            if number and number % 50 == 0:
                log(f"latency: {number}/{len(probes)} probes produced")
        deadline = time.perf_counter() + PROBE_TIMEOUT_SECONDS
        while producer.in_flight and time.perf_counter() < deadline:
            producer.serve_callbacks(0.001)
        producer.flush()
        for wait in waits:
            wait.result()
    finally:
        for probe in probes:
            probe.acked.set()  # release pollers still waiting for an ack that never came
        state_pool.shutdown(wait=True)
        history_pool.shutdown(wait=True)
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured probe)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency_summary(values_ms: list[float]) -> dict[str, float | int]:
    if not values_ms:
        return {"count": 0}
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 0.50), 1),
        "p99_ms": round(percentile(values_ms, 0.99), 1),
        "max_ms": round(max(values_ms), 1),
    }


# ---------------------------------------------------------------- 5. verify, environment


def count_rows_in_chdb(path: Path) -> int:
    """Rows in the stopped worker's chDB path, read from a fresh process (one engine each)."""
    result = subprocess.run([sys.executable, "-c", COUNT_ROWS, str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"ClickHouse count failed:\n{result.stderr[-3000:]}")
    return int(result.stdout.strip().splitlines()[-1])


def kafka_version(bootstrap: str, own_broker: KafkaBroker | None) -> str:
    """Read off the broker's classpath (.cache/kafka/<version>/libs) via its command line."""
    port = bootstrap.rsplit(":", 1)[-1]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if " kafka.Kafka " not in cmdline:
            continue
        props = Path(cmdline.split(" kafka.Kafka ", 1)[1].split()[0])
        if own_broker is not None and props.parent != own_broker.data_dir.resolve():
            continue
        try:
            if not re.search(rf"^advertised\.listeners=.*:{port}\s*$", props.read_text(), re.M):
                continue
        except OSError:
            continue
        found = re.search(r"kafka[_-]2\.13-(\d+\.\d+\.\d+)\.jar|/kafka/(\d+\.\d+\.\d+)/libs", cmdline)
        if found:
            return found.group(1) or found.group(2)
    return "unknown"


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove this run's topics (`<prefix>.*`, Faust's `<prefix>-*`) from a broker we do not own."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith((f"{prefix}.", f"{prefix}-"))]
    for name, future in admin.delete_topics(names, operation_timeout=30).items() if names else ():
        try:
            future.result(30)
        except Exception as exc:  # noqa: BLE001 - leftover topics are worth a warning, not a failure
            log(f"could not delete topic {name}: {exc}")
    log(f"deleted {len(names)} topics of this run from {bootstrap}")


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import confluent_kafka

    names = ("faust-streaming", "aiokafka", "confluent-kafka", "fastavro", "pydantic", "chdb", "rocksdict")
    versions = {name: version(name) for name in names}
    versions["librdkafka"] = confluent_kafka.libversion()[0]
    versions["python"] = platform.python_version()
    return versions


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


# ---------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Push N build events through Kafka -> Faust worker -> ClickHouse and report events/s, "
        "a raw-consumer baseline, their ratio, and produce-to-API latency percentiles.",
    )
    parser.add_argument("--events", type=int, default=200_000, help="events to pre-produce (whole builds; default 200000)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the cipulse topics (default 3)")
    parser.add_argument("--latency-probes", type=int, default=200, help="events timed produce->API (default 200)")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe events per second (default 20)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="API poll interval per probe in ms (default 5)")
    parser.add_argument("--history-every", type=int, default=10,
                        help="also time ClickHouse visibility (/history) of every Nth probe (0: never; default 10)")
    parser.add_argument("--bootstrap", default=None,
                        help="HOST:PORT of a running broker (default: start a private one on free ports)")
    parser.add_argument("--state-batch-size", type=int, default=None, help="CIPULSE_STATE_BATCH_SIZE (default: settings default)")
    parser.add_argument("--sink-batch-size", type=int, default=None, help="CIPULSE_SINK_BATCH_SIZE (default: settings default)")
    parser.add_argument("--flush-seconds", type=float, default=None, help="CIPULSE_SINK_FLUSH_SECONDS (default: settings default)")
    parser.add_argument("--drain-timeout", type=float, default=420.0, help="give up draining after this many s (default 420)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the simulated builds (default 7)")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help=f"JSON output (default {RESULTS_FILE.relative_to(REPO)})")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary broker/worker directories")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def measure(session: BenchSession) -> tuple[str, dict[str, Any], Path]:
        figures = run(args, session.bootstrap, session.broker, session.work_dir, session.workers)
        return render(figures), figures, args.results

    return run_session("cipulse-bench-", args.bootstrap, args.keep_data, measure, delete_topics)


def run(args: argparse.Namespace, bootstrap: str, broker: KafkaBroker | None, work_dir: Path,
        workers: list[WorkerProcess]) -> dict[str, Any]:
    """All phases; every worker started is appended to `workers` first, for main's cleanup."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    settings = CipulseSettings(kafka_bootstrap=bootstrap, topic_prefix=name, app_id=name,
                               topic_partitions=args.partitions)
    topic = topic_name(settings, BUILD_EVENTS)
    ensure_topics(settings)

    log(f"simulating and encoding ~{args.events:,} events")
    backlog = build_backlog(args.events, args.seed)
    total = len(backlog.records)
    log(f"producing {total:,} events ({backlog.builds:,} builds) to {topic}")
    producer_rate = produce_backlog(bootstrap, topic, backlog)
    log(f"produce: {producer_rate:,.0f} events/s")
    backlog.records.clear()

    log("raw baseline: confluent-kafka consumer + decode_dict (fastavro)")
    raw_rate = raw_consume_rate(bootstrap, topic, total, decode_dict)
    log(f"raw baseline: {raw_rate:,.0f} events/s")
    log("raw baseline: confluent-kafka consumer + decode (fastavro + pydantic)")
    model_rate = raw_consume_rate(bootstrap, topic, total, lambda value: decode(value, BuildEvent))
    log(f"model baseline: {model_rate:,.0f} events/s")

    # Unset flags mean the production defaults of CipulseSettings (not the test harness' 0.5 s flush).
    defaults = CipulseSettings.model_fields
    worker_env = {"CIPULSE_TOPIC_PARTITIONS": str(args.partitions), "CIPULSE_LOG_LEVEL": "warn"}
    for flag, setting in (("state_batch_size", "state_batch_size"), ("sink_batch_size", "sink_batch_size"),
                          ("flush_seconds", "sink_flush_seconds")):
        value = getattr(args, flag)
        worker_env[f"CIPULSE_{setting.upper()}"] = str(defaults[setting].default if value is None else value)
    worker = WorkerProcess(bootstrap=bootstrap, work_dir=work_dir / "worker", name=name, extra_env=worker_env)
    workers.append(worker)
    worker_settings = CipulseSettings(**{k.removeprefix("CIPULSE_").lower(): v for k, v in worker.env.items()
                                         if k.startswith("CIPULSE_")})
    log(f"starting the worker ({worker.api}, log {worker.log_path})")
    t_spawn = time.perf_counter()
    worker.start(ready_timeout=120)
    t_ready = time.perf_counter()
    assert worker.process is not None
    log(f"worker ready after {t_ready - t_spawn:.1f}s; draining the backlog")
    probe_producer = ProbeProducer(bootstrap, topic)  # gets its producer id while the backlog drains
    drain = drain_backlog(worker, total, t_ready, args.drain_timeout)
    drained_rate = (drain.final.rows_written - drain.at_ready.rows_written) / drain.seconds_to_clickhouse
    accepted_rate = (drain.final.seen - drain.at_ready.seen) / drain.seconds_to_accepted
    log(f"drain: all seen after {drain.seconds_to_accepted:.1f}s, all in ClickHouse after "
        f"{drain.seconds_to_clickhouse:.1f}s ({drained_rate:,.0f} events/s end to end)")

    run_id = uuid.uuid4().hex[:6]
    probes = probe_events(args.latency_probes, args.seed + 1, run_id)
    log(f"latency: {len(probes)} probes at {args.probe_rate:g}/s, polling the API every {args.poll_ms:g} ms")
    probe_seconds = run_probes(probe_producer, worker.api, probes, args.probe_rate, args.poll_ms / 1000,
                               args.history_every)
    rss = peak_rss_mib(worker.process.pid)
    final = read_counters(worker.api)
    status, ready_body = http_json(f"{worker.api}/ready")
    log(f"stopping the worker (ready={status == 200})")
    exit_code = worker.stop()
    log(f"worker exited with {exit_code}; counting rows in {worker.clickhouse_path}")
    stored = count_rows_in_chdb(worker.clickhouse_path)
    log(f"ClickHouse holds {stored:,} build_events rows; the state agent accepted {final.accepted:,.0f}")

    ms = 1000.0
    ack_to_api = [(p.api_visible_at - p.acked_at) * ms for p in probes if p.api_visible_at and p.acked_at]
    produce_to_api = [(p.api_visible_at - p.produced_at) * ms for p in probes if p.api_visible_at]
    produce_to_ack = [(p.acked_at - p.produced_at) * ms for p in probes if p.acked_at]
    ack_to_history = [(p.history_visible_at - p.acked_at) * ms for p in probes if p.history_visible_at and p.acked_at]
    figures: dict[str, Any] = {
        "run": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "kafka": kafka_version(bootstrap, broker),
            "broker": "private (infra/kafka.sh, free port)" if broker else f"external {bootstrap}",
            "libraries": library_versions(),
        },
        "settings": {
            "events": total,
            "builds": backlog.builds,
            "partitions": args.partitions,
            "state_batch_size": worker_settings.state_batch_size,
            "sink_batch_size": worker_settings.sink_batch_size,
            "sink_flush_seconds": worker_settings.sink_flush_seconds,
            "table_store": worker_settings.table_store,
            "latency_probes": len(probes),
            "probe_rate_per_s": args.probe_rate,
            "api_poll_ms": args.poll_ms,
        },
        "produce": {
            "simulate_events_per_s": round(total / backlog.simulate_seconds),
            "encode_events_per_s": round(total / backlog.encode_seconds),
            "producer_events_per_s": round(producer_rate),
        },
        "baseline": {
            "raw_decode_dict_events_per_s": round(raw_rate),
            "raw_decode_model_events_per_s": round(model_rate),
        },
        "pipeline": {
            "worker_ready_s": round(t_ready - t_spawn, 2),
            "seen_at_ready": int(drain.at_ready.seen),
            "rows_at_ready": int(drain.at_ready.rows_written),
            "all_accepted_s": round(drain.seconds_to_accepted, 2),
            "all_in_clickhouse_s": round(drain.seconds_to_clickhouse, 2),
            "accepted_events_per_s": round(accepted_rate),
            "end_to_end_events_per_s": round(drained_rate),
            "ratio_to_raw_decode_dict": round(drained_rate / raw_rate, 4),
            "ratio_to_raw_decode_model": round(drained_rate / model_rate, 4),
            "outcomes": {k: int(v) for k, v in sorted(drain.final.outcomes.items())},
            "worker_cpu_s_during_drain": round(drain.worker_cpu_seconds, 1),
            "worker_cpu_utilisation": round(drain.worker_cpu_seconds / drain.seconds_to_clickhouse, 2),
            "worker_peak_rss_mib": round(rss, 1),
        },
        "latency": {
            "ack_to_api_state": latency_summary(ack_to_api),
            "produce_to_api_state": latency_summary(produce_to_api),
            "produce_to_ack": latency_summary(produce_to_ack),
            "ack_to_clickhouse_history": latency_summary(ack_to_history),
            "probes_not_visible": sum(1 for p in probes if p.api_visible_at is None),
            "api_requests_per_s": round(sum(p.api_requests for p in probes) / probe_seconds),
        },
        "verify": {
            "accepted_total": int(final.accepted),
            "outcomes_total": {k: int(v) for k, v in sorted(final.outcomes.items())},
            "clickhouse_build_events_rows": stored,
            "match": stored == int(final.accepted),
            "worker_exit_code": exit_code,
        },
    }
    return figures


def render(f: dict[str, Any]) -> str:
    r, s, pr, b, p, lat, v = (f[k] for k in ("run", "settings", "produce", "baseline", "pipeline", "latency", "verify"))

    def lat_line(label: str, summary: dict[str, Any]) -> str:
        if not summary.get("count"):
            return f"  {label:44} (no samples)"
        return (f"  {label:44} p50 {summary['p50_ms']:>7.1f}  p99 {summary['p99_ms']:>7.1f}  "
                f"max {summary['max_ms']:>7.1f} ms  (n={summary['count']})")

    lines = [
        f"cipulse pipeline throughput  {r['at']}  commit {r['commit']}",
        f"  machine: {r['cpu_count']} CPUs (load average at end {r['load_average_at_end']}), Kafka {r['kafka']} ({r['broker']}), "
        + ", ".join(f"{k} {val}" for k, val in r["libraries"].items()),
        f"  settings: {s['events']:,} events in {s['builds']:,} builds, {s['partitions']} partitions, "
        f"state batch {s['state_batch_size']}, sink batch {s['sink_batch_size']}, "
        f"flush {s['sink_flush_seconds']} s, store {s['table_store']}",
        "",
        f"  {'simulate (demo_feed.simulate_build)':44} {pr['simulate_events_per_s']:>10,} events/s",
        f"  {'encode (schemas.serde.encode)':44} {pr['encode_events_per_s']:>10,} events/s",
        f"  {'produce (BuildEventProducer, acks=all)':44} {pr['producer_events_per_s']:>10,} events/s",
        f"  {'raw baseline: consumer + decode_dict':44} {b['raw_decode_dict_events_per_s']:>10,} events/s",
        f"  {'raw baseline: consumer + decode (pydantic)':44} {b['raw_decode_model_events_per_s']:>10,} events/s",
        f"  {'worker: all events accepted (state agent)':44} {p['accepted_events_per_s']:>10,} events/s"
        f"  ({p['all_accepted_s']:.1f} s after /ready)",
        f"  {'END TO END: all in ClickHouse':44} {p['end_to_end_events_per_s']:>10,} events/s"
        f"  ({p['all_in_clickhouse_s']:.1f} s after /ready)",
        f"  {'ratio end-to-end / raw decode_dict':44} {p['ratio_to_raw_decode_dict']:>10.3f}",
        f"  {'ratio end-to-end / raw decode (pydantic)':44} {p['ratio_to_raw_decode_model']:>10.3f}",
        f"  {'worker start to /ready':44} {p['worker_ready_s']:>10.1f} s  "
        f"(seen {p['seen_at_ready']:,}, rows {p['rows_at_ready']:,} at ready)",
        f"  {'worker CPU during drain':44} {p['worker_cpu_s_during_drain']:>10.1f} s"
        f"  ({p['worker_cpu_utilisation']:.2f} cores)",
        f"  {'worker peak RSS (VmHWM)':44} {p['worker_peak_rss_mib']:>10.1f} MiB",
        f"  {'state agent outcomes':44} " + ", ".join(f"{k} {val:,}" for k, val in p["outcomes"].items()),
        "",
        f"  latency ({s['latency_probes']} probes at {s['probe_rate_per_s']:g}/s, API polled every "
        f"{s['api_poll_ms']:g} ms, {lat['api_requests_per_s']:,} req/s):",
        lat_line("broker ack -> GET /builds/{id} shows it", lat["ack_to_api_state"]),
        lat_line("produce() -> GET /builds/{id} shows it", lat["produce_to_api_state"]),
        lat_line("produce() -> broker ack", lat["produce_to_ack"]),
        lat_line("broker ack -> GET /builds/{id}/history (CH)", lat["ack_to_clickhouse_history"]),
        f"  {'probes never visible':44} {lat['probes_not_visible']:>10}",
        "",
        f"  verify: ClickHouse build_events rows {v['clickhouse_build_events_rows']:,} vs accepted "
        f"{v['accepted_total']:,}: {'OK' if v['match'] else 'MISMATCH'} (worker exit code {v['worker_exit_code']})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
