"""How fast, and how exactly once, does a final build status reach a webhook?

Runs a private broker, one `cipulse worker` with a subscription file, and a local HTTP receiver in
this process, then measures the whole notification path: build-events -> build-state agent ->
build-finals -> requester -> notify-requests -> grouping agent (+ the 0.25 s flush timer and
notify-signals) -> sender -> POST.

1. latency  - `--builds` builds at `--rate` builds/s, each RUNNING and, `--build-seconds` later,
              FAILED or SUCCEEDED. Subscription `latency-per-build`: group_by project+subject_id,
              group_wait 0s, group_interval 1s, so every build is its own group and message.
              A build's latency runs from the produce() call of its final event to the arrival
              of the first POST whose `notifications` list carries its subject_id.
2. exactly once - messages per subject_id at the receiver, counted until `--settle` s after the
              last one arrived: duplicates and missing must both be 0 (also for the burst).
              The script exits 1 if not, or if the worker crashed, and keeps its temporary
              directory with the worker log; timings never fail it (the machine is shared).
3. burst    - `--burst` builds fail at once (RUNNING + FAILED produced as fast as possible) in one
              project. Subscription `burst-per-project`: group_by project+transition, at most
              `--burst-max-per-message` per message, `--burst-max-pending` held. Reports how
              many POSTs carried them and when the first and the last arrived.

A group's `notify-groups` value can exceed Kafka's default 1 MB record limit (a 2,000 burst
holds ~1,800 pending at its peak). The worker then needs its producer's request limit raised to
`streams.notify_groups_table.GROUP_RECORD_LIMIT_BYTES`; until `streams/app.py` sets
`producer_max_request_size`, run with that value in `PRODUCER_MAX_REQUEST_SIZE` (Faust reads
it, the worker inherits it). The figures record whether it was set.

Progress goes to stderr, the figures to stdout and benchmarks/results/notification_latency.json.
The broker and the worker are stopped in `finally`, also on Ctrl-C or SIGTERM.

    .venv/bin/python benchmarks/notification_latency.py [--builds 500] [--rate 50] [--burst 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
from harness import KafkaBroker, WorkerProcess, free_port_pair, http_json  # noqa: E402
from pipeline_throughput import (  # noqa: E402
    Probe,
    ProbeProducer,
    git_commit,
    kafka_version,
    library_versions,
    log,
    percentile,
)

from schemas import (  # noqa: E402
    BuildEvent,
    BuildScope,
    BuildStatus,
    BuildStatusChange,
    NotificationRequest,
    NotifierSignal,
    NotifierSignalKind,
)
from schemas.serde import decode, encode  # noqa: E402
from streams.notify_grouping import group_key  # noqa: E402
from streams.settings import CipulseSettings  # noqa: E402

RESULTS_FILE = REPO / "benchmarks" / "results" / "notification_latency.json"
LATENCY_SUBSCRIPTION = "latency-per-build"
BURST_SUBSCRIPTION = "burst-per-project"
LATENCY_PROJECT = "bench-latency"
BURST_PROJECT = "bench-burst"
PIPELINES = 10
FAIL_EVERY = 3
"""Every third build of the latency phase fails; the others succeed (or recover)."""
CHECK_SECONDS = 0.1
WALL_MINUS_PERF = time.time() - time.perf_counter()
"""Turns Kafka record timestamps (wall clock) into this process's perf_counter() time."""


# ---------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class ReceivedPost:
    received_at: float
    """time.perf_counter() when the body was read, the clock the producer side uses too."""
    subscription_id: str
    idempotency_key: str
    is_repeat: bool
    members: tuple[tuple[str, str], ...]
    """(subject_id, transition) of every notification the POST carried."""


class NotificationReceiver:
    """A webhook on a free local port that records every POST and answers 200 (keep-alive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[ReceivedPost] = []
        self.malformed: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the worker's aiohttp session expects

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received_at = time.perf_counter()
                receiver._record(received_at, self.headers.get("Idempotency-Key", ""), body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    def _record(self, received_at: float, key: str, body: bytes) -> None:
        try:
            document = json.loads(body)
            post = ReceivedPost(
                received_at, document["subscription_id"], key, bool(document.get("is_repeat")),
                tuple((n["subject_id"], n["transition"]) for n in document["notifications"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                self.malformed.append(f"{exc!r}: {body[:200]!r}")
            return
        with self._lock:
            self._posts.append(post)

    def posts(self, subscription_id: str) -> list[ReceivedPost]:
        with self._lock:
            return [p for p in self._posts if p.subscription_id == subscription_id]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Tally:
    """What the receiver got for one subscription, per subject."""

    posts: list[ReceivedPost]
    first_seen: dict[str, float] = field(default_factory=dict)
    transitions: dict[str, str] = field(default_factory=dict)
    copies: Counter[str] = field(default_factory=Counter)
    keys_per_subject: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, posts: list[ReceivedPost]) -> Tally:
        tally = cls(sorted(posts, key=lambda p: p.received_at))
        for post in tally.posts:
            for subject, transition in post.members:
                tally.first_seen.setdefault(subject, post.received_at)
                tally.transitions.setdefault(subject, transition)
                tally.copies[subject] += 1
                tally.keys_per_subject.setdefault(subject, set()).add(post.idempotency_key)
        return tally

    def check(self, expected: set[str]) -> dict[str, Any]:
        duplicated = {s: n for s, n in self.copies.items() if n > 1}
        resent = sum(1 for s in duplicated if len(self.keys_per_subject[s]) == 1)
        missing = sorted(expected - set(self.first_seen))
        unexpected = sorted(set(self.first_seen) - expected)
        return {
            "expected": len(expected),
            "notified": len(expected & set(self.first_seen)),
            "posts": len(self.posts),
            "duplicates": sum(n - 1 for n in duplicated.values()),
            "duplicated_subjects": len(duplicated),
            "duplicates_same_idempotency_key": resent,
            "missing": len(missing),
            "unexpected_subjects": len(unexpected),
            "repeat_posts": sum(1 for p in self.posts if p.is_repeat),
            "examples": {"duplicated": sorted(duplicated)[:5], "missing": missing[:5], "unexpected": unexpected[:5]},
        }


def worker_trouble(worker: WorkerProcess) -> str | None:
    """Why the worker can no longer deliver: it exited, or a Faust service crashed (the process
    may live on and keep answering HTTP after that)."""
    assert worker.process is not None
    log_path: Path = worker.log_path
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    crash = next((line[:400] for line in text.splitlines() if "Crashed reason=" in line), None)
    if worker.process.poll() is not None:
        return f"worker exited with {worker.process.returncode}" + (f"; first crash: {crash}" if crash else "")
    return crash


def wait_for_subjects(receiver: NotificationReceiver, worker: WorkerProcess, subscription_id: str,
                      expected: set[str], timeout: float, settle: float, label: str) -> Tally:
    """Until every expected subject arrived (or `timeout`, or the worker crashed), then `settle`
    s more, so a late duplicate or re-send would still be counted."""
    deadline = time.perf_counter() + timeout
    last_report = time.perf_counter()
    while time.perf_counter() < deadline:
        seen = {s for post in receiver.posts(subscription_id) for s, _ in post.members} & expected
        if len(seen) == len(expected):
            break
        if time.perf_counter() - last_report >= 5.0:
            last_report = time.perf_counter()
            log(f"{label}: waiting, {len(seen)}/{len(expected)} builds notified")
            trouble = worker_trouble(worker)
            if trouble is not None:
                log(f"{label}: stopped waiting, the worker cannot deliver any more: {trouble}")
                break
        time.sleep(CHECK_SECONDS)
    else:
        log(f"{label}: gave up waiting after {timeout:.0f}s")
    log(f"{label}: watching {settle:g}s more for duplicates")
    time.sleep(settle)
    return Tally.of(receiver.posts(subscription_id))


# ---------------------------------------------------------------- events, subscriptions


def build_event(build_id: str, project: str, pipeline: str, seq: int, status: BuildStatus) -> BuildEvent:
    return BuildEvent(
        event_id=f"{build_id}-{seq}", build_id=build_id, project=project, pipeline=pipeline, seq=seq,
        event_time=datetime.now(UTC), scope=BuildScope.BUILD, status=status, branch="main",
    )


def subscriptions_document(receiver_url: str, args: argparse.Namespace) -> dict[str, Any]:
    delivery = {"max_attempts": 5, "initial_backoff": "100ms", "max_backoff": "2s", "timeout": "5s"}
    return {"subscriptions": [
        {
            "id": LATENCY_SUBSCRIPTION,
            "match": {"projects": [LATENCY_PROJECT]},
            "transitions": ["failed", "succeeded", "recovered"],
            "channel": {"type": "webhook", "url": f"{receiver_url}/latency"},
            "grouping": {"group_by": ["project", "subject_id"], "group_wait": "0s", "group_interval": "1s"},
            "delivery": delivery,
        },
        {
            "id": BURST_SUBSCRIPTION,
            "match": {"projects": [BURST_PROJECT]},
            "transitions": ["failed"],
            "channel": {"type": "webhook", "url": f"{receiver_url}/burst"},
            "grouping": {"group_by": ["project", "transition"], "group_wait": args.burst_group_wait,
                         "group_interval": args.burst_group_interval,
                         "max_per_message": args.burst_max_per_message, "max_pending": args.burst_max_pending},
            "delivery": delivery,
        },
    ]}


# ---------------------------------------------------------------- 1. latency


@dataclass
class LatencyBuild:
    build_id: str
    running: BuildEvent
    final: Probe
    final_status: BuildStatus


def latency_builds(count: int, run_id: str) -> list[LatencyBuild]:
    builds: list[LatencyBuild] = []
    for number in range(count):
        build_id = f"lat-{run_id}-{number}"
        pipeline = f"svc-{number % PIPELINES}"
        status = BuildStatus.FAILED if number % FAIL_EVERY == 0 else BuildStatus.SUCCEEDED
        builds.append(LatencyBuild(
            build_id,
            build_event(build_id, LATENCY_PROJECT, pipeline, 1, BuildStatus.RUNNING),
            Probe(build_event(build_id, LATENCY_PROJECT, pipeline, 2, status)),
            status,
        ))
    return builds


def produce_at_rate(producer: ProbeProducer, builds: list[LatencyBuild], rate: float, build_seconds: float,
                    receiver: NotificationReceiver) -> float:
    """RUNNING of build i at i/rate, its final event `build_seconds` later; returns the seconds taken."""
    schedule = sorted(
        [(number / rate, 0, number) for number in range(len(builds))]
        + [(number / rate + build_seconds, 1, number) for number in range(len(builds))]
    )
    started = last_report = time.perf_counter()
    finals_sent = 0
    for offset, is_final, number in schedule:
        due = started + offset
        while (now := time.perf_counter()) < due:
            producer.serve_callbacks(min(0.001, due - now))
        build = builds[number]
        if is_final:
            producer.send_probe(build.final)
            finals_sent += 1
        else:
            running = build.running.model_copy(update={"event_time": datetime.now(UTC)})
            producer.send_raw(build.build_id.encode(), encode(running))
        if now - last_report >= 2.0:
            last_report = now
            notified = len({s for p in receiver.posts(LATENCY_SUBSCRIPTION) for s, _ in p.members})
            log(f"latency: {finals_sent}/{len(builds)} builds finished, {notified} notified")
    deadline = time.perf_counter() + 30
    while producer.in_flight and time.perf_counter() < deadline:
        producer.serve_callbacks(0.001)
    producer.flush()
    return time.perf_counter() - started


def wall_clock(perf_counter: float) -> str:
    """A perf_counter() reading as local wall-clock time, to find the moment in the worker log."""
    return datetime.fromtimestamp(perf_counter + WALL_MINUS_PERF).isoformat(sep=" ", timespec="milliseconds")


def summary_ms(values_s: list[float]) -> dict[str, Any]:
    if not values_s:
        return {"count": 0}
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "min_ms": round(min(ms), 1),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
    }


def run_latency(producer: ProbeProducer, receiver: NotificationReceiver, worker: WorkerProcess,
                args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    builds = latency_builds(args.builds, run_id)
    log(f"latency: {len(builds)} builds at {args.rate:g}/s, each final {args.build_seconds:g}s after RUNNING")
    seconds = produce_at_rate(producer, builds, args.rate, args.build_seconds, receiver)
    log(f"latency: all {len(builds)} builds produced in {seconds:.1f}s; waiting for their notifications")
    expected = {b.build_id for b in builds}
    tally = wait_for_subjects(receiver, worker, LATENCY_SUBSCRIPTION, expected, args.timeout, args.settle, "latency")

    produce_to_post: list[float] = []
    ack_to_post: list[float] = []
    slowest: list[tuple[float, LatencyBuild]] = []
    wrong_transition: list[str] = []
    t0 = min(b.final.produced_at for b in builds)
    for build in builds:
        arrived = tally.first_seen.get(build.build_id)
        if arrived is None:
            continue
        produce_to_post.append(arrived - build.final.produced_at)
        slowest.append((arrived - build.final.produced_at, build))
        if build.final.acked_at is not None:
            ack_to_post.append(arrived - build.final.acked_at)
        allowed = {"FAILED"} if build.final_status is BuildStatus.FAILED else {"SUCCEEDED", "RECOVERED"}
        if tally.transitions[build.build_id] not in allowed:
            wrong_transition.append(f"{build.build_id}: {build.final_status.value} notified as "
                                    f"{tally.transitions[build.build_id]}")
    slowest.sort(key=lambda item: item[0], reverse=True)
    produce_to_ack = [b.final.acked_at - b.final.produced_at for b in builds if b.final.acked_at is not None]
    check = tally.check(expected)
    check["wrong_transition"] = len(wrong_transition)
    check["examples"]["wrong_transition"] = wrong_transition[:5]
    return {
        "builds": len(builds),
        "produce_seconds": round(seconds, 2),
        "produce_to_post": summary_ms(produce_to_post),
        "ack_to_post": summary_ms(ack_to_post),
        "produce_to_ack": summary_ms(produce_to_ack),
        "over_1s": sum(1 for v in produce_to_post if v > 1.0),
        **stage_breakdown(worker.bootstrap, worker, builds, tally),
        "slowest": [
            {"build_id": b.build_id, "ms": round(v * 1000, 1),
             "final_produced_at_s": round(b.final.produced_at - t0, 3),
             "posted_at": wall_clock(tally.first_seen[b.build_id])}
            for v, b in slowest[:5]
        ],
        "check": check,
    }


# ---------------------------------------------------------------- where the time goes


def topic_records(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record of `topic`, read from the beginning to the end of each partition."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"nbench-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        records: list[Message] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    records.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                else:
                    raise RuntimeError(f"reading {topic}: {error}")
        return records
    finally:
        consumer.close()


def stamp(message: Message) -> float:
    """A record's Kafka timestamp (set by the worker's producer at send) as perf_counter() time."""
    return message.timestamp()[1] / 1000 - WALL_MINUS_PERF


STAGES = (
    ("state agent: final event -> build-finals", "produced", "change_set"),
    ("requester: build-finals -> notify-requests", "change_set", "request"),
    ("grouping + 0.25 s timer: request -> FLUSH_DUE", "request", "flush_due"),
    ("flush + send: FLUSH_DUE -> POST received", "flush_due", "post"),
    ("receipt: POST received -> DELIVERED signal", "post", "receipt"),
)


def stage_breakdown(bootstrap: str, worker: WorkerProcess, builds: list[LatencyBuild],
                    tally: Tally) -> dict[str, Any]:
    """Per build, when each hop's record was written (Kafka timestamps, 1 ms resolution)."""
    marks: dict[str, dict[str, float]] = {
        b.build_id: {"produced": b.final.produced_at} for b in builds
    }
    by_group = {group_key(LATENCY_SUBSCRIPTION, {"project": LATENCY_PROJECT, "subject_id": b}): b for b in marks}
    for message in topic_records(bootstrap, worker.topic("build-finals")):
        change = decode(message.value() or b"", BuildStatusChange)
        if change.build_id in marks:
            marks[change.build_id].setdefault("change_set", stamp(message))
    for message in topic_records(bootstrap, worker.topic("notify-requests")):
        request = decode(message.value() or b"", NotificationRequest)
        if request.subscription_id == LATENCY_SUBSCRIPTION and request.subject_id in marks:
            marks[request.subject_id].setdefault("request", stamp(message))
    flush_dues: Counter[str] = Counter()
    for message in topic_records(bootstrap, worker.topic("notify-signals")):
        notice = decode(message.value() or b"", NotifierSignal)
        build_id = by_group.get(notice.group_key)
        if build_id is None:
            continue
        if notice.kind is NotifierSignalKind.FLUSH_DUE:
            marks[build_id].setdefault("flush_due", stamp(message))
            flush_dues[build_id] += 1
        elif notice.kind is NotifierSignalKind.DELIVERED:
            marks[build_id].setdefault("receipt", stamp(message))
    for build_id, arrived in tally.first_seen.items():
        if build_id in marks:
            marks[build_id]["post"] = arrived
    stages = {
        label: summary_ms([m[end] - m[start] for m in marks.values() if start in m and end in m])
        for label, start, end in STAGES
    }
    return {"stages": stages, "flush_due_signals_per_group": dict(sorted(Counter(flush_dues.values()).items()))}


def changelog_size(bootstrap: str, topic: str) -> dict[str, Any]:
    """Records and bytes of a table's changelog (a group's value is rewritten whole on every
    batch), and the topic's record limit."""
    sizes = [len(m.value() or b"") for m in topic_records(bootstrap, topic)]
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it referenced until the answer arrives
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    return {"topic": topic, "records": len(sizes), "total_mib": round(sum(sizes) / 2**20, 2),
            "largest_value_bytes": max(sizes, default=0),
            "max_message_bytes": int(config["max.message.bytes"].value)}


# ---------------------------------------------------------------- 3. burst


def run_burst(producer: ProbeProducer, receiver: NotificationReceiver, worker: WorkerProcess,
              args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    events: list[tuple[bytes, bytes]] = []
    expected: set[str] = set()
    for number in range(args.burst):
        build_id = f"burst-{run_id}-{number}"
        pipeline = f"svc-{number % PIPELINES}"
        expected.add(build_id)
        events.append((build_id.encode(), encode(build_event(build_id, BURST_PROJECT, pipeline, 1, BuildStatus.RUNNING))))
        events.append((build_id.encode(), encode(build_event(build_id, BURST_PROJECT, pipeline, 2, BuildStatus.FAILED))))
    log(f"burst: {args.burst} builds fail at once ({len(events)} events; grouping by project+transition, "
        f"group_wait {args.burst_group_wait}, group_interval {args.burst_group_interval})")
    started = time.perf_counter()
    for key, value in events:
        producer.send_raw(key, value)
    producer.flush()
    produced = time.perf_counter() - started
    log(f"burst: produced and acknowledged in {produced:.2f}s")
    tally = wait_for_subjects(receiver, worker, BURST_SUBSCRIPTION, expected, args.timeout, args.settle, "burst")
    sizes = [len(p.members) for p in tally.posts]
    arrivals = [p.received_at - started for p in tally.posts]
    last_new = max(tally.first_seen.values(), default=started) - started
    return {
        "builds": args.burst,
        "produce_seconds": round(produced, 2),
        "posts": len(tally.posts),
        "notifications_per_post": sizes,
        "first_post_s": round(arrivals[0], 2) if arrivals else None,
        "last_build_notified_s": round(last_new, 2),
        "post_arrivals_s": [round(a, 2) for a in arrivals],
        "check": tally.check(expected),
    }


# ---------------------------------------------------------------- worker evidence


_SAMPLE = re.compile(r'^(?P<name>cipulse_notif\w*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')


def worker_answer(worker: WorkerProcess, path: str) -> tuple[int | None, Any]:
    """`GET path` on the worker; (None, the error) when it does not answer (it may have died)."""
    try:
        status, body = http_json(f"{worker.api}{path}", timeout=5)
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return status, body


def notifier_metrics(api: str) -> dict[str, float]:
    """The worker's cipulse_notification* samples (`_created` timestamps left out); {} when it
    does not answer."""
    try:
        with urllib.request.urlopen(f"{api}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"].endswith("_created"):
            continue
        samples[f"{match['name']}{{{match['labels'] or ''}}}"] = float(match["value"])
    return samples


def log_findings(path: Path, since: datetime) -> dict[str, Any]:
    """Warnings and errors in the worker log from `since` (local time; start-up noise such as
    the group coordinator not being available yet is left out), and the notifier's own signs
    of trouble."""
    text = path.read_text(errors="replace") if path.exists() else ""
    cutoff = since.strftime("%Y-%m-%d %H:%M:%S,%f")[:23]
    lines = [line for line in text.splitlines() if line[:23] >= cutoff]
    troubles = [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line)]
    patterns = {
        "re_sent_after_restart": "earlier run left it unacknowledged",
        "already_delivered": "already delivered; not sent again",
        "retries": "backoff",
        "given_up": "given up",
        "rate_limited": "held back by the rate limit",
    }
    return {
        "lines": len(lines),
        "warnings_or_errors": len(troubles),
        "first_warnings_or_errors": [line[:300] for line in troubles[:8]],
        **{name: sum(1 for line in lines if needle in line) for name, needle in patterns.items()},
    }


def working_tree_changes() -> list[str]:
    """Uncommitted changes to the code the worker runs (the benchmark measures the tree, not HEAD)."""
    result = subprocess.run(["git", "status", "--porcelain", "--", "streams", "sinks", "schemas"],
                            cwd=REPO, capture_output=True, text=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=500, help="builds of the latency phase (default 500)")
    parser.add_argument("--rate", type=float, default=50.0, help="builds started per second (default 50)")
    parser.add_argument("--build-seconds", type=float, default=1.0,
                        help="seconds from a build's RUNNING to its final event (default 1)")
    parser.add_argument("--burst", type=int, default=2000, help="builds failing at once in the burst phase (0: skip; default 2000)")
    parser.add_argument("--burst-group-wait", default="0s", help="group_wait of the burst subscription (default 0s)")
    parser.add_argument("--burst-group-interval", default="1s", help="group_interval of the burst subscription (default 1s)")
    parser.add_argument("--burst-max-per-message", type=int, default=100,
                        help="max_per_message of the burst subscription (default 100, the policy default)")
    parser.add_argument("--burst-max-pending", type=int, default=5000,
                        help="max_pending of the burst subscription (default 5000, the policy default); below "
                        "--burst the rest is dead-lettered and counts as missing")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the cipulse topics (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="longest wait for a phase's notifications after its last event (default 120 s)")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds to keep counting after the last expected notification; above the notifier's "
                        "5 s re-check and re-send delays (default 8)")
    parser.add_argument("--log-level", default="info", help="worker log level: crit|error|warn|info|debug (default info)")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE,
                        help=f"JSON output (default {RESULTS_FILE.relative_to(REPO)})")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary broker/worker directories and log")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="cipulse-notify-bench-"))
    broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
    receiver = NotificationReceiver()
    worker: WorkerProcess | None = None
    producer: ProbeProducer | None = None
    try:
        log(f"starting a private Kafka broker on {broker.bootstrap} ({broker.data_dir})")
        broker.start()
        receiver.start()
        subscriptions = work_dir / "subscriptions.json"
        subscriptions.write_text(json.dumps(subscriptions_document(receiver.url, args), indent=2))
        name = f"nbench{uuid.uuid4().hex[:8]}"
        defaults = CipulseSettings.model_fields
        worker = WorkerProcess(
            bootstrap=broker.bootstrap, work_dir=work_dir / "worker", name=name,
            extra_env={
                "CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE": str(subscriptions),
                "CIPULSE_TOPIC_PARTITIONS": str(args.partitions),
                "CIPULSE_LOG_LEVEL": args.log_level,
                "CIPULSE_SINK_FLUSH_SECONDS": str(defaults["sink_flush_seconds"].default),
            },
        )
        producer = ProbeProducer(broker.bootstrap, worker.topic("build-events"))  # producer id before timing
        log(f"starting the worker ({worker.api}, receiver {receiver.url}, log {worker.log_path})")
        t_spawn = time.perf_counter()
        worker.start(ready_timeout=120)
        ready_at = datetime.now()
        log(f"worker ready after {time.perf_counter() - t_spawn:.1f}s")
        run_id = uuid.uuid4().hex[:6]
        latency = run_latency(producer, receiver, worker, args, run_id)
        burst = run_burst(producer, receiver, worker, args, run_id) if args.burst > 0 else None
        trouble = worker_trouble(worker)
        ready_status, ready_body = worker_answer(worker, "/ready")
        metrics = notifier_metrics(worker.api)
        _, health = worker_answer(worker, "/notifications/health?window=1h")
        groups_changelog = changelog_size(broker.bootstrap, f"{worker.name}-notify-groups-changelog")
        log("stopping the worker")
        stop_started = time.perf_counter()
        exit_code = worker.stop()
        stop_seconds = time.perf_counter() - stop_started
        figures = {
            "run": {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": git_commit(),
                "uncommitted_changes": working_tree_changes(),
                "cpu_count": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "kafka": kafka_version(broker.bootstrap, broker),
                "libraries": library_versions(),
            },
            "settings": {
                "builds": args.builds, "rate_builds_per_s": args.rate, "build_seconds": args.build_seconds,
                "burst": args.burst, "partitions": args.partitions, "settle_s": args.settle,
                "worker_log_level": args.log_level,
                "worker_producer_max_request_size": os.environ.get("PRODUCER_MAX_REQUEST_SIZE"),
                "subscriptions": subscriptions_document("http://receiver", args)["subscriptions"],
            },
            "latency": latency,
            "burst": burst,
            "worker": {
                "trouble": trouble,
                "ready_at_end": {"status": ready_status, "body": ready_body},
                "exit_code": exit_code,
                "stop_seconds": round(stop_seconds, 1),
                "notifier_metrics": metrics,
                "notify_groups_changelog": groups_changelog,
                "notifications_health": health.get("subscriptions") if isinstance(health, dict) else health,
                "log": log_findings(worker.log_path, ready_at),
            },
            "receiver_malformed_posts": len(receiver.malformed),
        }
        print(render(figures))
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.results}")
        failures = correctness_failures(figures)
        for failure in failures:
            log(f"CORRECTNESS FAILURE: {failure}")
        if failures:
            args.keep_data = True
        return 1 if failures else 0
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        return 130
    finally:
        if worker is not None:
            worker.stop()
        producer = None  # librdkafka would keep reconnecting to the stopped broker
        log("stopping the private broker")
        broker.stop()
        receiver.stop()
        if args.keep_data:
            log(f"kept {work_dir} (worker log: {work_dir / 'worker' / 'worker.log'})")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def correctness_failures(figures: dict[str, Any]) -> list[str]:
    failures: list[str] = []
    for phase in ("latency", "burst"):
        if figures[phase] is None:
            continue
        check = figures[phase]["check"]
        for what in ("duplicates", "missing", "unexpected_subjects", "wrong_transition"):
            if check.get(what):
                failures.append(f"{phase}: {check[what]} {what.replace('_', ' ')} (examples: {check['examples']})")
    if figures["worker"]["trouble"]:
        failures.append(f"the worker could not deliver any more: {figures['worker']['trouble']}")
    if figures["receiver_malformed_posts"]:
        failures.append(f"{figures['receiver_malformed_posts']} POST bodies the receiver could not read")
    return failures


def render(f: dict[str, Any]) -> str:
    r, s, lat, burst, w = f["run"], f["settings"], f["latency"], f["burst"], f["worker"]

    def lat_line(label: str, summary: dict[str, Any]) -> str:
        if not summary.get("count"):
            return f"  {label:50} (no samples)"
        return (f"  {label:50} p50 {summary['p50_ms']:>7.1f}  p95 {summary['p95_ms']:>7.1f}  "
                f"p99 {summary['p99_ms']:>7.1f}  max {summary['max_ms']:>7.1f} ms  (n={summary['count']})")

    def check_line(check: dict[str, Any]) -> str:
        return (f"  {'exactly once':50} {check['notified']}/{check['expected']} notified, "
                f"duplicates {check['duplicates']}, missing {check['missing']}"
                + (f", wrong transition {check['wrong_transition']}" if "wrong_transition" in check else "")
                + f"  ({check['posts']} POSTs)")

    dirty = f"  (uncommitted: {', '.join(r['uncommitted_changes'])})" if r["uncommitted_changes"] else ""
    lines = [
        f"cipulse notification latency  {r['at']}  commit {r['commit']}{dirty}",
        f"  machine: {r['cpu_count']} CPUs (load average at end {r['load_average_at_end']}), Kafka {r['kafka']}, "
        f"{s['partitions']} partitions, worker log level {s['worker_log_level']}",
        "",
        f"  latency: {lat['builds']} builds at {s['rate_builds_per_s']:g}/s, one message per build "
        f"(group_by project+subject_id, group_wait 0s, group_interval 1s)",
        lat_line("final event produce() -> POST received", lat["produce_to_post"]),
        lat_line("broker ack -> POST received", lat["ack_to_post"]),
        lat_line("produce() -> broker ack", lat["produce_to_ack"]),
        f"  {'builds over 1 s':50} {lat['over_1s']}",
        "  where the time goes (Kafka record timestamps of each hop):",
        *(lat_line("  " + label, summary) for label, summary in lat["stages"].items()),
        check_line(lat["check"]),
    ]
    if burst is not None:
        lines += [
            "",
            f"  burst: {burst['builds']} builds fail at once (group_by project+transition, group_wait "
            f"{s['subscriptions'][1]['grouping']['group_wait']}, group_interval "
            f"{s['subscriptions'][1]['grouping']['group_interval']}, max_per_message "
            f"{s['subscriptions'][1]['grouping']['max_per_message']}, max_pending "
            f"{s['subscriptions'][1]['grouping']['max_pending']})",
            f"  {'POSTs carrying them':50} {burst['posts']}  (notifications per POST: "
            f"{', '.join(str(n) for n in burst['notifications_per_post'][:12])}"
            f"{', ...' if len(burst['notifications_per_post']) > 12 else ''})",
            f"  {'first POST after the first produce':50} {burst['first_post_s']} s",
            f"  {'last build notified after':50} {burst['last_build_notified_s']} s  "
            f"(all produced in {burst['produce_seconds']} s)",
            check_line(burst["check"]),
        ]
    log_info = w["log"]
    killed = " (SIGKILL: it did not stop on SIGTERM)" if w["exit_code"] == -9 else ""
    lines += [
        "",
        f"  worker: /ready {w['ready_at_end']['status'] or 'unreachable'} at the end, exit code {w['exit_code']}{killed} after "
        f"{w['stop_seconds']} s, log {log_info['lines']} lines since ready, {log_info['warnings_or_errors']} "
        f"warnings/errors, re-sent after restart {log_info['re_sent_after_restart']}, retries {log_info['retries']}, "
        f"given up {log_info['given_up']}",
    ]
    changelog = w["notify_groups_changelog"]
    lines.append(f"  notify-groups changelog: {changelog['records']:,} records, {changelog['total_mib']} MiB, "
                 f"largest value {changelog['largest_value_bytes']:,} bytes, max.message.bytes "
                 f"{changelog['max_message_bytes']:,}; worker producer limit "
                 f"{s['worker_producer_max_request_size'] or 'Faust default (1,000,000)'}")
    if w["trouble"]:
        lines.append(f"  WORKER CRASHED: {w['trouble']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
