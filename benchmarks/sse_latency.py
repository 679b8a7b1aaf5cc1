"""How soon does an SSE client see a build's change set after the event is produced?

Runs a private broker (or uses `--bootstrap`), one `cipulse worker`, and `--clients` Server-Sent
Events clients on `GET /stream/builds` (unfiltered, each its own connection; the worker reads
for all of them with one shared Kafka consumer), then measures the whole push path: build-events
-> build-state agent (its 0.05 s batch wait included) -> build-status -> the worker's shared SSE
tail -> each client's queue -> HTTP chunk.

1. kafka  - `--events` QUEUED events of fresh builds produced with librdkafka (acks=all,
            linger 0) at `--rate` events/s. Latency runs from the produce() call to the moment
            a client parsed the `data:` line of the change set carrying that event id.
2. ingest - `--ingest-events` events POSTed one by one to `/ingest/builds` at the same rate:
            POST -> 202 (the broker acknowledged) and POST -> SSE receipt.
3. exactly once - every client must receive every event's change set exactly once (no
            missing, no duplicates); the script exits 1 otherwise. Timings never fail it (the
            machine is shared); the target (p99 <= 250 ms) is reported as met or not.
4. shutdown - the worker is stopped with the clients still connected: how long it took and its
            exit code (open streams must not hold the web server's shutdown).

Progress goes to stderr, the figures to stdout and benchmarks/results/sse_latency.json.

    .venv/bin/python benchmarks/sse_latency.py [--events 400] [--rate 50] [--clients 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from confluent_kafka import Producer  # noqa: E402
from harness import KafkaBroker, WorkerProcess, free_port_pair  # noqa: E402
from notification_latency import working_tree_changes  # noqa: E402
from pipeline_throughput import (  # noqa: E402
    git_commit,
    kafka_version,
    latency_summary,
    library_versions,
)
from schemas import BuildEvent, BuildScope, BuildStatus  # noqa: E402
from schemas.serde import encode  # noqa: E402

RESULTS_FILE = REPO / "benchmarks" / "results" / "sse_latency.json"
TARGET_P99_MS = 250.0
TOKEN = "sse-bench-token"
PROJECT = "bench"


def log(message: str) -> None:
    print(f"[sse_latency] {message}", file=sys.stderr, flush=True)


class StreamClient:
    """One SSE connection read in a thread; records when each change set's event id arrived."""

    def __init__(self, api: str) -> None:
        host, port = api.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=300)
        self.connection.request("GET", "/stream/builds", headers={"Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"stream refused: {self.response.status} {self.response.read()!r}")
        self.received: dict[str, list[float]] = {}
        self.positioned = threading.Event()
        self.heartbeats = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                now = time.perf_counter()
                if raw.startswith(b"data: "):
                    event_id = json.loads(raw[6:])["event_id"]
                    self.received.setdefault(event_id, []).append(now)
                elif raw.startswith(b": streaming"):
                    self.positioned.set()
                elif raw.startswith(b": heartbeat"):
                    self.heartbeats += 1
        except Exception:  # noqa: BLE001 - close() shuts the socket under the reader
            pass

    def close(self) -> None:
        if self.connection.sock is not None:
            try:
                self.connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connection.close()


class RawStatusReader:
    """A plain librdkafka consumer on build-status (all partitions, from the live end): when the
    change set itself became readable, so the push channel's own share can be told apart."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sse-bench-{uuid.uuid4().hex[:6]}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        self.received: dict[str, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from schemas import BuildStatusChange
        from schemas.serde import decode

        while not self.stopped.is_set():
            message = self.consumer.poll(0.05)
            if message is None or message.error():
                continue
            self.received.setdefault(decode(message.value() or b"", BuildStatusChange).event_id, time.perf_counter())

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.consumer.close()


def probe_event(run_id: str, index: int, phase: str) -> BuildEvent:
    build_id = f"{phase}-{run_id}-{index:05d}"
    return BuildEvent(
        event_id=f"{build_id}-1", build_id=build_id, project=PROJECT, pipeline=f"pipe-{index % 5}", seq=1,
        event_time=datetime.now(UTC), scope=BuildScope.BUILD, status=BuildStatus.QUEUED,
    )


def paced(count: int, rate: float) -> Any:
    """Yield 0..count-1 at a steady `rate` per second (slots are kept even when one runs late)."""
    start = time.perf_counter()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield index


def run_kafka_phase(bootstrap: str, topic: str, args: argparse.Namespace, run_id: str) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         "partitioner": "murmur2_random", "enable.idempotence": True})
    warm = probe_event(run_id, 0, "warmup")
    producer.produce(topic, key=warm.build_id.encode(), value=encode(warm))
    producer.flush(30)
    sent: dict[str, float] = {}
    for index in paced(args.events, args.rate):
        event = probe_event(run_id, index, "kafka")
        payload = encode(event)
        sent[event.event_id] = time.perf_counter()
        producer.produce(topic, key=event.build_id.encode(), value=payload)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the benchmark's producer could not deliver every probe")
    sent[warm.event_id] = float("nan")
    return sent


def run_ingest_phase(api: str, args: argparse.Namespace, run_id: str) -> tuple[dict[str, float], list[float]]:
    sent: dict[str, float] = {}
    acked_ms: list[float] = []
    for index in paced(args.ingest_events, args.rate):
        event = probe_event(run_id, index, "ingest")
        body = json.dumps(event.model_dump(mode="json")).encode()
        request = urllib.request.Request(f"{api}/ingest/builds", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
        })
        started = time.perf_counter()
        sent[event.event_id] = started
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 202:
                raise RuntimeError(f"ingest answered {response.status}: {response.read()!r}")
        acked_ms.append((time.perf_counter() - started) * 1000)
    return sent, acked_ms


def wait_for_all(clients: list[StreamClient], expected: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(expected <= set(client.received) for client in clients):
            return
        time.sleep(0.1)
    log(f"gave up waiting after {timeout:.0f}s: some change sets never arrived")


def phase_figures(sent: dict[str, float], clients: list[StreamClient], raw: RawStatusReader) -> dict[str, Any]:
    raw_ms = [(raw.received[e] - t) * 1000 for e, t in sent.items() if t == t and e in raw.received]
    push_ms = [
        (client.received[e][0] - raw.received[e]) * 1000
        for client in clients for e, t in sent.items() if t == t and e in raw.received and e in client.received
    ]
    latencies: list[float] = []
    missing = duplicates = 0
    for client in clients:
        for event_id, produced in sent.items():
            arrivals = client.received.get(event_id, [])
            if produced != produced:  # the warm-up event: only counted for exactly-once
                duplicates += max(0, len(arrivals) - 1)
                continue
            if not arrivals:
                missing += 1
                continue
            duplicates += len(arrivals) - 1
            latencies.append((arrivals[0] - produced) * 1000)
    return {
        "latency": latency_summary(latencies),
        "within_target": sum(1 for value in latencies if value <= TARGET_P99_MS),
        "produce_to_plain_consumer": latency_summary(raw_ms),
        "plain_consumer_to_sse": latency_summary(push_ms),
        "missing": missing,
        "duplicates": duplicates,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400, help="events produced to Kafka (default 400)")
    parser.add_argument("--ingest-events", type=int, default=200, help="events POSTed to /ingest/builds (default 200)")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second in both phases (default 50)")
    parser.add_argument("--clients", type=int, default=3, help="SSE clients connected during the run (default 3)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the cipulse topics (default 3)")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a private one")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE,
                        help=f"JSON output (default {RESULTS_FILE.relative_to(REPO)})")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary broker/worker directories")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="cipulse-sse-bench-"))
    broker: KafkaBroker | None = None
    worker: WorkerProcess | None = None
    clients: list[StreamClient] = []
    failed = True
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
            log(f"starting a private Kafka broker on {broker.bootstrap}")
            broker.start()
            bootstrap = broker.bootstrap
        worker = WorkerProcess(
            bootstrap=bootstrap, work_dir=work_dir / "worker", name=f"sbench{uuid.uuid4().hex[:8]}",
            extra_env={
                "CIPULSE_TOPIC_PARTITIONS": str(args.partitions),
                "CIPULSE_INGEST_TOKENS": json.dumps({PROJECT: TOKEN}),
                "CIPULSE_SSE_MAX_CLIENTS": str(max(100, args.clients)),
                "CIPULSE_SINK_FLUSH_SECONDS": "1.0",
            },
        )
        log(f"starting the worker ({worker.api}, log {worker.log_path})")
        worker.start(ready_timeout=120)
        clients = [StreamClient(worker.api) for _ in range(args.clients)]
        for client in clients:
            if not client.positioned.wait(30):
                raise RuntimeError("an SSE client never got its stream's preamble")
        raw = RawStatusReader(bootstrap, worker.topic("build-status"))
        run_id = uuid.uuid4().hex[:6]
        log(f"phase kafka: {args.events} events at {args.rate:g}/s to {args.clients} SSE client(s)")
        kafka_sent = run_kafka_phase(bootstrap, worker.topic("build-events"), args, run_id)
        wait_for_all(clients, set(kafka_sent), 60)
        log(f"phase ingest: {args.ingest_events} events POSTed at {args.rate:g}/s")
        ingest_sent, acked_ms = run_ingest_phase(worker.api, args, run_id)
        wait_for_all(clients, set(ingest_sent), 60)
        time.sleep(2.0)  # late duplicates would arrive within this
        with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
            metrics_text = response.read().decode()
        sse_metrics = [line for line in metrics_text.splitlines() if line.startswith(("cipulse_sse_", "cipulse_ingest_"))]
        raw.close()
        log("stopping the worker with the SSE clients still connected")
        stop_started = time.perf_counter()
        exit_code = worker.stop()
        stop_seconds = time.perf_counter() - stop_started
        kafka = phase_figures(kafka_sent, clients, raw)
        ingest = phase_figures(ingest_sent, clients, raw)
        ingest["post_to_202"] = latency_summary(acked_ms)
        figures = {
            "run": {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": git_commit(),
                "uncommitted_changes": working_tree_changes(),
                "cpu_count": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "kafka": kafka_version(bootstrap, broker),
                "libraries": library_versions(),
            },
            "settings": {
                "events": args.events, "ingest_events": args.ingest_events, "rate_per_s": args.rate,
                "clients": args.clients, "partitions": args.partitions, "target_p99_ms": TARGET_P99_MS,
            },
            "produce_to_sse": kafka,
            "ingest_to_sse": ingest,
            "target_met": kafka["latency"].get("p99_ms", float("inf")) <= TARGET_P99_MS,
            "worker": {"exit_code": exit_code, "stop_seconds_with_open_streams": round(stop_seconds, 1),
                       "metrics": sse_metrics},
        }
        print(json.dumps(figures, indent=2))
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.results}")
        problems = [f"{name}: {phase['missing']} missing, {phase['duplicates']} duplicates"
                    for name, phase in (("kafka", kafka), ("ingest", ingest)) if phase["missing"] or phase["duplicates"]]
        for problem in problems:
            log(f"FAILED {problem}")
        failed = bool(problems)
        return 1 if failed else 0
    finally:
        for client in clients:
            client.close()
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        if args.keep_data or failed:
            log(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
