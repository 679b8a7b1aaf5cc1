"""What the reporter SDK costs a CI runner, and how fast its outbox drains to a live broker.

Phases (progress to stderr, the figures table to stdout and
benchmarks/results/reporter_throughput.json):

1. accept  - broker unreachable (a closed port): report() N one-change snapshots round robin
             over B builds (each report adds one task), timing every call, with SQLite
             `synchronous=FULL` (the default) and again with NORMAL; then first reports of
             whole trees (1 build + 5 stages x 10 tasks = 56 changes each). report() never
             touches Kafka, so this is the runner-visible cost: diff, lifecycle check, Avro
             encoding and one SQLite commit.
2. drain   - a reporter opened on the FULL phase's outbox (a "restarted runner") against a live
             broker (private one on free ports unless --bootstrap): time from open until the
             outbox is empty; then new builds of the same shape reported with the sender live
             (report() latency, and the time until the last change is acknowledged).
3. verify  - every accepted change is on the topic exactly once (watermarks).

Every process started here (the broker) is stopped in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from harness import KafkaBroker, free_port_pair  # noqa: E402

from schemas import BuildStatus  # noqa: E402
from streams.reporter import BuildReporter, BuildSnapshot, ReporterConfig, StageSnapshot, TaskSnapshot  # noqa: E402
from streams.reporter.outbox import Synchronous  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "reporter_throughput.json"
S = BuildStatus


def progress(message: str) -> None:
    print(f"[reporter_throughput] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {"count": len(samples), "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
            "p99_ms": round(percentile(samples, 0.99) * 1000, 3), "max_ms": round(max(samples) * 1000, 3)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def growing(build_id: str, tasks: int) -> BuildSnapshot:
    return BuildSnapshot(build_id, "bench", "ci", S.RUNNING, stages=(
        StageSnapshot("work", S.RUNNING, tasks=tuple(TaskSnapshot(f"t{n}", S.RUNNING) for n in range(tasks))),))


def whole_tree(build_id: str) -> BuildSnapshot:
    return BuildSnapshot(build_id, "bench", "ci", S.RUNNING, commit_sha="c0ffee", stages=tuple(
        StageSnapshot(f"s{s}", S.RUNNING, tasks=tuple(TaskSnapshot(f"t{t}", S.QUEUED) for t in range(10)))
        for s in range(5)))


def timed_reports(reporter: BuildReporter, snapshots: list[BuildSnapshot]) -> tuple[list[float], int, float]:
    latencies, changes = [], 0
    started = time.perf_counter()
    for snapshot in snapshots:
        t0 = time.perf_counter()
        changes += reporter.report(snapshot).changes
        latencies.append(time.perf_counter() - t0)
    return latencies, changes, time.perf_counter() - started


def round_robin(prefix: str, changes: int, builds: int) -> list[BuildSnapshot]:
    """One new task per report (1 change), builds interleaved like concurrent jobs on one host.
    Each build's first report here adds its build and stage too, so reports < changes slightly."""
    return [growing(f"{prefix}-{n % builds}", n // builds) for n in range(changes)]


def accept_phase(path: Path, changes: int, builds: int, synchronous: Synchronous) -> dict[str, Any]:
    config = ReporterConfig(bootstrap=f"127.0.0.1:{closed_port()}", outbox_path=path, synchronous=synchronous,
                            close_timeout_s=0.0)
    with BuildReporter(config) as reporter:
        latencies, accepted, seconds = timed_reports(reporter, round_robin("b", changes, builds))
        pending = reporter.pending()
    progress(f"accept ({synchronous}): {accepted} changes in {seconds:.1f} s")
    return {"synchronous": synchronous, "reports": len(latencies), "changes": accepted, "in_outbox": pending,
            "changes_per_second": round(accepted / seconds), "report_latency": summary_ms(latencies)}


def tree_phase(path: Path, trees: int) -> dict[str, Any]:
    config = ReporterConfig(bootstrap=f"127.0.0.1:{closed_port()}", outbox_path=path, close_timeout_s=0.0)
    with BuildReporter(config) as reporter:
        latencies, accepted, seconds = timed_reports(reporter, [whole_tree(f"tree-{n}") for n in range(trees)])
    progress(f"first reports of whole trees: {accepted} changes in {seconds:.1f} s")
    return {"reports": trees, "changes_per_report": accepted // trees, "changes": accepted,
            "changes_per_second": round(accepted / seconds), "report_latency": summary_ms(latencies)}


def records_on(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        spans = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions]
    finally:
        consumer.close()
    return sum(high - low for low, high in spans)


def drain_phase(path: Path, bootstrap: str, backlog: int, live_changes: int, builds: int) -> dict[str, Any]:
    topic = f"bench-{uuid.uuid4().hex[:8]}.build-events"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(30)
    config = ReporterConfig(bootstrap=bootstrap, outbox_path=path, topic=topic)
    started = time.perf_counter()
    reporter = BuildReporter(config)
    try:
        left = reporter.flush(timeout=600)
        drain_seconds = time.perf_counter() - started
        progress(f"drain: {backlog - left} of {backlog} backlog changes acknowledged in {drain_seconds:.1f} s")
        # then new builds of the same shape as phase 1's are reported while the sender is live
        # (report() cost grows with the tree: same shape keeps the latencies comparable)
        live_started = time.perf_counter()
        latencies, accepted, report_seconds = timed_reports(reporter, round_robin("live", live_changes, builds))
        live_left = reporter.flush(timeout=600)
        live_seconds = time.perf_counter() - live_started
        stats = reporter.stats
    finally:
        reporter.close(timeout=5)
    on_topic = records_on(bootstrap, topic)
    progress(f"live: {accepted} changes reported and acknowledged in {live_seconds:.1f} s; {on_topic} on the topic")
    return {"backlog": backlog, "left_in_outbox": left + live_left, "drain_seconds": round(drain_seconds, 2),
            "drain_changes_per_second": round((backlog - left) / drain_seconds),
            "reported_live": accepted, "live_report_seconds": round(report_seconds, 2),
            "live_until_acknowledged_seconds": round(live_seconds, 2), "on_topic": on_topic,
            "delivered": stats.delivered, "backoffs": stats.backoffs,
            "report_latency_live": summary_ms(latencies)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000, help="one-change reports while Kafka is down (default 10000)")
    parser.add_argument("--builds", type=int, default=50, help="builds reported round robin (default 50)")
    parser.add_argument("--trees", type=int, default=200, help="first reports of 56-node trees (default 200)")
    parser.add_argument("--live-changes", type=int, default=5_000, help="changes reported while draining (default 5000)")
    parser.add_argument("--bootstrap", default=None, help="HOST:PORT of a running broker (default: a private one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # phase 1 runs with Kafka down on purpose: librdkafka's connection errors are expected noise
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("streams.reporter").setLevel(logging.ERROR + 10)
    signal.signal(signal.SIGTERM, _interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="cipulse-reporter-bench-"))
    broker: KafkaBroker | None = None
    try:
        accept_full = accept_phase(work_dir / "full.sqlite", args.changes, args.builds, "FULL")
        accept_normal = accept_phase(work_dir / "normal.sqlite", args.changes, args.builds, "NORMAL")
        trees = tree_phase(work_dir / "trees.sqlite", args.trees)
        if args.bootstrap is None:
            broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
            progress(f"starting a private Kafka broker on {broker.bootstrap}")
            broker.start()
        bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
        drain = drain_phase(work_dir / "full.sqlite", bootstrap, accept_full["in_outbox"], args.live_changes,
                            args.builds)
    except KeyboardInterrupt:
        progress("interrupted: stopping everything this run started")
        return 130
    finally:
        if broker is not None:
            progress("stopping the private broker")
            broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    result = {
        "accept_full": accept_full, "accept_normal": accept_normal, "first_reports_of_trees": trees, "drain": drain,
        "exactly_once_on_topic": drain["on_topic"] == drain["backlog"] + drain["reported_live"],
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
        "broker": "private (infra/kafka.sh, free port)" if args.bootstrap is None else f"external {args.bootstrap}",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'what':44} {'changes/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, row, latency in (
        ("report(), Kafka down, SQLite FULL", accept_full, accept_full["report_latency"]),
        ("report(), Kafka down, SQLite NORMAL", accept_normal, accept_normal["report_latency"]),
        (f"first report of a {trees['changes_per_report']}-node tree (FULL)", trees, trees["report_latency"]),
        ("report() with the sender live (FULL)", None, drain["report_latency_live"]),
    ):
        rate = f"{row['changes_per_second']:>10}" if row else f"{'':>10}"
        print(f"{label:44} {rate} {latency['p50_ms']:8.2f} {latency['p99_ms']:8.2f} {latency['max_ms']:8.2f}")
    print(f"{'outbox backlog -> broker (acknowledged)':44} {drain['drain_changes_per_second']:>10}   "
          f"{drain['backlog']} changes in {drain['drain_seconds']} s")
    print(f"{'live: reported, then all acknowledged':44} {'':>10}   {drain['reported_live']} changes: reported in "
          f"{drain['live_report_seconds']} s, acknowledged after {drain['live_until_acknowledged_seconds']} s")
    print(f"{'on the topic':44} {'':>10}   {drain['on_topic']} (exactly once: {result['exactly_once_on_topic']})")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus; figures in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
