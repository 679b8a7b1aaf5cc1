"""Bad input against a real worker and broker: fuzzed Kafka records, fuzzed HTTP ingest,
unauthenticated state changes, and secrets that must never leak.

- Every fuzzed record on build-events (random bytes, truncated or bit-flipped BuildEvents, wrong
  and unknown fingerprints, out-of-range enum indices and timestamps, model-rule violations,
  illegal transitions) ends on the dead-letter topic with a reason, exactly once, while every
  valid build reaches the API, /ready stays 200 and the consumer catches up to the end.
- Every fuzzed ingest request answers 202 or a 4xx with a JSON error (never 5xx, never a hang);
  bodies over CIPULSE_INGEST_MAX_BODY_BYTES get 413.
- Every non-GET route of the served /openapi.json refuses a request without credentials with
  401 and changes nothing.
- No configured secret (admin token, ingest tokens, webhook HMAC secret, callback secret)
  appears in the worker log, in any HTTP response, or in /metrics.

The number of inputs tried is printed at the end of the module (and kept in
`test-artifacts/bad-input-counts.json`).
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import REPO, KafkaBroker, WorkerProcess, free_port, http_json, wait_until
from schemas import (
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    BuildEvent,
    BuildScope,
    BuildStatus,
    DeadLetter,
    DeadLetterKind,
    SerdeError,
    decode,
    encode,
    encode_dict,
)
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

PROJECT = "fuzzproj"
ADMIN_TOKEN = f"adm-{secrets.token_hex(16)}"
INGEST_TOKEN = f"ing-{secrets.token_hex(16)}"
OTHER_INGEST_TOKEN = f"ing2-{secrets.token_hex(16)}"
WEBHOOK_SECRET = f"whs-{secrets.token_hex(16)}"
CALLBACK_SECRET = f"cbs-{secrets.token_hex(16)}"
SECRETS = {
    "admin token": ADMIN_TOKEN, "ingest token": INGEST_TOKEN, "other ingest token": OTHER_INGEST_TOKEN,
    "webhook HMAC secret": WEBHOOK_SECRET, "callback secret": CALLBACK_SECRET,
}
MAX_BODY = 65536
MAX_BATCH = 50
ARTIFACT = REPO / "test-artifacts" / "bad-input-counts.json"

COUNTS: Counter[str] = Counter()
RESPONSE_BODIES: list[bytes] = []
"""Every HTTP response body this module received: none may hold a secret (checked last)."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def worker(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, request: pytest.FixtureRequest
) -> Iterator[WorkerProcess]:
    work_dir = tmp_path_factory.mktemp("bad-input")
    subscriptions = work_dir / "subscriptions.json"
    subscriptions.write_text(json.dumps({"subscriptions": [{
        "id": "fuzz-signed",
        "match": {"projects": [PROJECT]},
        "transitions": ["failed", "succeeded"],
        "channel": {"type": "webhook", "url": receiver.url, "hmac_secret": WEBHOOK_SECRET},
        "grouping": {"group_wait": "0s", "group_interval": "1s"},
    }]}))
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=work_dir,
        extra_env={
            "CIPULSE_ADMIN_TOKEN": ADMIN_TOKEN,
            "CIPULSE_INGEST_TOKENS": json.dumps({PROJECT: INGEST_TOKEN, "other": OTHER_INGEST_TOKEN}),
            "CIPULSE_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
            "CIPULSE_INGEST_MAX_BATCH": str(MAX_BATCH),
            "CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE": str(subscriptions),
            "CIPULSE_CALLBACK_CACHE_SECONDS": "0.5",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        total = sum(COUNTS.values())
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.write_text(json.dumps({"total": total, "per_kind": dict(sorted(COUNTS.items()))}, indent=2) + "\n")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"bad input: {total} inputs tried {dict(sorted(COUNTS.items()))}")


# --- HTTP -------------------------------------------------------------------------------------


def call(
    worker: WorkerProcess, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
    token: str | None = None, headers: dict[str, str] | None = None, timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One request on its own connection; an iterable body goes out chunked (no Content-Length).

    A server may answer (413) before it read the whole body and close; the answer still counts.
    """
    connection = http.client.HTTPConnection("127.0.0.1", worker.web_port, timeout=timeout)
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent_headers["Authorization"] = f"Bearer {token}"
    try:
        try:
            chunked = body is not None and not isinstance(body, bytes)
            connection.request(method, path, body=body, headers=sent_headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = connection.getresponse()
        payload = response.read()
        RESPONSE_BODIES.append(payload)
        return response.status, payload
    finally:
        connection.close()


def json_error(status: int, payload: bytes) -> str:
    """The `error` message of a JSON error body (fails the test if there is none)."""
    body = json.loads(payload)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (status, payload[:300])
    return str(body["error"])


# --- Kafka ------------------------------------------------------------------------------------


def high_watermarks(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex[:8]}"})
    try:
        marks = {}
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                marks[(topic, partition)] = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        return marks
    finally:
        consumer.close()


def worker_topics(worker: WorkerProcess) -> list[str]:
    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": f"ls-{uuid.uuid4().hex[:8]}"})
    try:
        return sorted(t for t in consumer.list_topics(timeout=10).topics if t.startswith(worker.name))
    finally:
        consumer.close()


def committed_lag(worker: WorkerProcess, topic: str) -> int:
    """Records on `topic` the worker's consumer group has not committed yet."""
    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": worker.name})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            high = consumer.get_watermark_offsets(tp, timeout=10)[1]
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, until: Any, timeout: float) -> list[Any]:
    """Read `topic` from the start until `until(records)` holds (or the timeout)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            for message in consumer.consume(1000, 0.5):
                if not message.error():
                    records.append(message)
    finally:
        consumer.close()
    return records


# --- (c) authentication, first, while nothing else runs -------------------------------------


def test_every_state_changing_route_refuses_requests_without_valid_credentials(worker: WorkerProcess) -> None:
    status, document = http_json(f"{worker.api}/openapi.json")
    assert status == 200
    routes = [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method.lower() != "get"
    ]
    assert len(routes) >= 7, routes
    for _, _, operation in routes:
        assert operation.get("security"), f"{operation['operationId']} changes state but declares no security"
    topics = worker_topics(worker)
    callbacks_before = http_json(f"{worker.api}/callbacks")
    marks_before = high_watermarks(worker.bootstrap, topics)
    event = json.dumps({
        "event_id": "auth-1", "build_id": "auth-build", "project": PROJECT, "pipeline": "ci", "seq": 1,
        "event_time": "2026-11-25T10:00:00Z", "scope": "BUILD", "status": "QUEUED",
    }).encode()
    bodies = {
        "/ingest/builds": event, "/ingest/builds/batch": b"[" + event + b"]",
        "/callbacks": json.dumps({"url": "http://127.0.0.1:9/x", "project": PROJECT, "events": ["build_finished"]}).encode(),
    }
    for method, template, operation in routes:
        path = template.replace("{", "").replace("}", "")  # /audits/audit_id/repair
        body = bodies.get(template, b'{"target_status": "REPAIRED", "reason": "x", "actor": "x", "requested_by": "x"}')
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic YWRtaW46YWRtaW4="},
                        {"Authorization": f"Bearer {ADMIN_TOKEN}x"}, {"Authorization": "Bearer "}):
            COUNTS["auth probes"] += 1
            status, payload = call(worker, method, path, body, headers=headers)
            assert status in (401, 403), (method, path, headers, status, payload[:200])
            assert json_error(status, payload)
        if operation["security"] == [{"ingestToken": []}]:  # an ingest token is not an admin token, and vice versa
            status, payload = call(worker, method, path, body, token=ADMIN_TOKEN)
        else:
            status, payload = call(worker, method, path, body, token=INGEST_TOKEN)
        COUNTS["auth probes"] += 1
        assert status in (401, 403), (method, path, "cross token", status, payload[:200])
    assert http_json(f"{worker.api}/callbacks") == callbacks_before
    assert high_watermarks(worker.bootstrap, topics) == marks_before, "an unauthenticated request produced records"
    assert http_json(f"{worker.api}/builds/auth-build")[0] == 404


# --- (a) fuzzed records on build-events --------------------------------------------------------


def zigzag(value: int) -> bytes:
    encoded = value * 2 if value >= 0 else -value * 2 - 1
    out = bytearray()
    while True:
        byte, encoded = encoded & 0x7F, encoded >> 7
        out.append(byte | 0x80 if encoded else byte)
        if not encoded:
            return bytes(out)


def hand_built_event(build_id: str, seq: int, event_time_ms: int, scope_index: int, status_index: int) -> bytes:
    """A BuildEvent v2 body written byte by byte, so indices and timestamps can be out of range."""
    def text(value: str) -> bytes:
        return zigzag(len(value.encode())) + value.encode()

    header = encode(valid_event(build_id, 1, BuildStatus.QUEUED))[:10]
    return (header + text(f"{build_id}-{seq}") + text(build_id) + text(PROJECT) + text("ci") + zigzag(seq)
            + zigzag(event_time_ms) + zigzag(scope_index) + b"\x00" * 3 + zigzag(status_index)
            + b"\x00" * 4 + b"\x00" + b"\x00" * 5 + b"\x00")


T0 = datetime.now(UTC) - timedelta(minutes=10)


def valid_event(build_id: str, seq: int, status: BuildStatus, project: str = PROJECT) -> BuildEvent:
    return BuildEvent(event_id=f"{build_id}-{seq}", build_id=build_id, project=project, pipeline="ci", seq=seq,
                      event_time=T0 + timedelta(seconds=seq), scope=BuildScope.BUILD, status=status, branch="main")


def fuzzed_records(rng: random.Random, count: int) -> list[tuple[str, bytes | None, bytes, DeadLetterKind]]:
    """(kind, key, value, expected dead-letter kind) for records no agent may accept."""
    sample = encode(valid_event("sample", 3, BuildStatus.RUNNING))
    audit = encode(AuditEvent(event_id="a", audit_id="au", subject_kind=AuditSubjectKind.BUILD, subject_id="b",
                              project=PROJECT, kind=AuditEventKind.REQUESTED, seq=0, event_time=T0))
    records: list[tuple[str, bytes | None, bytes, DeadLetterKind]] = []
    while len(records) < count:
        key = rng.choice([None, b"", rng.randbytes(rng.randint(1, 40)), f"fz-{len(records)}".encode()])
        kind = rng.choice(["random", "truncated", "bit-flip", "unknown-fingerprint", "other-record", "enum-index",
                           "timestamp", "model-rule", "union-index"])
        if kind == "random":
            value = rng.randbytes(rng.randint(0, 300))
        elif kind == "truncated":
            value = sample[: rng.randint(0, len(sample) - 1)]
        elif kind == "bit-flip":
            flipped = bytearray(sample)
            for _ in range(rng.randint(1, 4)):
                bit = rng.randrange(len(flipped) * 8)
                flipped[bit // 8] ^= 1 << (bit % 8)
            value = bytes(flipped)
        elif kind == "unknown-fingerprint":
            value = b"\xc3\x01" + rng.randbytes(8) + sample[10:]
        elif kind == "other-record":
            value = audit
        elif kind == "enum-index":
            value = hand_built_event(f"fz-{len(records)}", 1, 1_700_000_000_000, rng.choice([3, 50, -1, 2**31 - 1]),
                                     rng.choice([7, 8, 1000, -5]))
        elif kind == "union-index":
            value = hand_built_event(f"fz-{len(records)}", 1, 1_700_000_000_000, 0, 0)
            value = value[:-11] + zigzag(rng.choice([2, 3, 99, -1])) + value[-10:]  # trigger_reason's branch
        elif kind == "timestamp":
            value = hand_built_event(f"fz-{len(records)}", 1, rng.choice([2**63 - 1, -(2**63), 253_402_300_800_000,
                                                                         -62_135_596_800_001]), 0, 0)
        else:
            fields = {**valid_event(f"fz-{len(records)}", 1, BuildStatus.QUEUED).model_dump(),
                      **rng.choice([{"build_id": ""}, {"seq": -1}, {"scope": "TASK"}, {"duration_ms": -5},
                                    {"event_id": " "}, {"exit_code": None, "scope": "STAGE"}])}
            value = encode_dict("io.cipulse.BuildEvent", fields)
        try:
            decode(value, BuildEvent)
            continue  # a mutation that still reads as a valid event is not bad input
        except SerdeError as exc:
            expected = DeadLetterKind.UNDECODABLE if type(exc).__name__ == "UndecodableError" else DeadLetterKind.SCHEMA_VIOLATION
        records.append((kind, key, value, expected))
    return records


def illegal_transitions(builds: int) -> list[tuple[str, bytes, bytes, DeadLetterKind]]:
    """Per build: QUEUED, SUCCEEDED, then RUNNING after the end (illegal), and a SKIPPED build."""
    records: list[tuple[str, bytes, bytes, DeadLetterKind]] = []
    for index in range(builds):
        build_id = f"illegal-{index}"
        for seq, status in ((1, BuildStatus.QUEUED), (2, BuildStatus.SUCCEEDED)):
            records.append(("legal-prefix", build_id.encode(), encode(valid_event(build_id, seq, status)), DeadLetterKind.ILLEGAL_TRANSITION))
        records.append(("illegal-transition", build_id.encode(), encode(valid_event(build_id, 3, BuildStatus.RUNNING)),
                        DeadLetterKind.ILLEGAL_TRANSITION))
        skipped = f"skipped-{index}"
        records.append(("illegal-transition", skipped.encode(), encode(valid_event(skipped, 1, BuildStatus.SKIPPED)),
                        DeadLetterKind.ILLEGAL_TRANSITION))
    return records


def test_fuzzed_kafka_records_all_end_in_the_dead_letter_topic_and_valid_builds_in_the_api(worker: WorkerProcess) -> None:
    rng = random.Random(8)
    fuzz = fuzzed_records(rng, 3000)
    illegal = illegal_transitions(100)
    valid_builds = [f"valid-{i}" for i in range(150)]
    valid = [
        ("valid", b.encode(), encode(valid_event(b, seq, status)), None)
        for b in valid_builds for seq, status in ((1, BuildStatus.QUEUED), (2, BuildStatus.RUNNING), (3, BuildStatus.FAILED))
    ]
    # Interleave fuzz and valid records, keeping each build's own events in order.
    queues: list[list[Any]] = [list(fuzz), list(illegal), list(valid)]
    ordered: list[Any] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        ordered.append(queue.pop(0))

    topic = worker.topic("build-events")
    producer = Producer({"bootstrap.servers": worker.bootstrap, "partitioner": "murmur2_random", "acks": "all",
                         "linger.ms": 5, "enable.idempotence": True})
    offsets: dict[tuple[int, int], tuple[str, DeadLetterKind | None]] = {}
    failures: list[str] = []

    def delivered(kind: str, expected: DeadLetterKind | None) -> Any:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                offsets[(msg.partition(), msg.offset())] = (kind, expected)
        return report

    ready_failures: list[int] = []
    stop_probe = threading.Event()

    def probe_ready() -> None:
        while not stop_probe.is_set():
            status, _ = http_json(f"{worker.api}/ready", timeout=5)
            if status != 200:
                ready_failures.append(status)
            stop_probe.wait(0.5)

    prober = threading.Thread(target=probe_ready, daemon=True)
    prober.start()
    try:
        for kind, key, value, expected in ordered:
            producer.produce(topic, key=key, value=value, on_delivery=delivered(kind, expected))
            producer.poll(0)
        assert producer.flush(30) == 0 and not failures, failures
        COUNTS.update(f"kafka {kind}" for kind, *_ in ordered)
        bad = {position: kind for position, (kind, expected) in offsets.items() if kind not in ("valid", "legal-prefix")}
        assert len(bad) == len(fuzz) + 2 * len(illegal) // 4

        records = read_all(
            worker.bootstrap, worker.topic("dead-letter"),
            lambda got: sum(1 for r in got if decode(r.value(), DeadLetter).processor == "build-state") >= len(bad),
            timeout=90,
        )
        letters = [letter for letter in (decode(r.value(), DeadLetter) for r in records) if letter.processor == "build-state"]
        by_position = Counter((letter.source_partition, letter.source_offset) for letter in letters)
        assert len(letters) == len(bad), f"{len(letters)} dead letters for {len(bad)} bad records"
        assert set(by_position) == set(bad) and max(by_position.values()) == 1
        for letter in letters:
            kind, expected = offsets[(letter.source_partition, letter.source_offset)]
            assert letter.source_topic == topic and letter.reason.strip(), letter
            assert letter.kind is expected, (kind, letter.kind, letter.reason)

        wait_until(lambda: all(
            (answer := http_json(f"{worker.api}/builds/{b}"))[0] == 200 and answer[1]["status"] == "FAILED"
            for b in valid_builds
        ), 60, f"{len(valid_builds)} valid builds in the API")
        wait_until(lambda: committed_lag(worker, topic) == 0, 60, "the worker to commit to the end of build-events")
    finally:
        stop_probe.set()
        prober.join(10)
    assert worker.process is not None and worker.process.poll() is None, "the worker exited"
    assert http_json(f"{worker.api}/ready")[0] == 200
    assert not ready_failures, f"/ready answered {Counter(ready_failures)} during the fuzz"
    for index in range(5):
        assert http_json(f"{worker.api}/builds/illegal-{index}")[1]["status"] == "SUCCEEDED"
        assert http_json(f"{worker.api}/builds/skipped-{index}")[0] == 404


# --- (b) fuzzed HTTP ingest --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
BAD_TIMESTAMPS = ["2026-13-45T00:00:00Z", "99999-01-01T00:00:00Z", 1e20, -1e20, "0001-01-01T00:00:00+05:30",
                  "2026-01-01T00:00:00", "9999-12-31T23:59:59.999-05:00", "", "now", 2**64, True]
BAD_SYMBOLS = ["RUNNNING", "running", "", "SKIPPED ", 7, None, "SUCCESS", "\u0000"]


@st.composite
def event_objects(draw: st.DrawFn) -> Any:
    base = {
        "event_id": f"h-{uuid.uuid4().hex[:12]}", "build_id": f"http-{uuid.uuid4().hex[:12]}", "project": PROJECT,
        "pipeline": "ci", "seq": 1, "event_time": "2026-11-25T10:00:00Z", "scope": "BUILD", "status": "QUEUED",
    }
    how = draw(st.sampled_from(["valid", "field", "drop", "extra", "timestamp", "symbol", "huge", "shape"]))
    if how == "field":
        base[draw(st.sampled_from(sorted(base)))] = draw(json_values)
    elif how == "drop":
        del base[draw(st.sampled_from(sorted(base)))]
    elif how == "extra":
        base[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif how == "timestamp":
        base["event_time"] = draw(st.sampled_from(BAD_TIMESTAMPS))
    elif how == "symbol":
        base[draw(st.sampled_from(["scope", "status", "trigger_reason"]))] = draw(st.sampled_from(BAD_SYMBOLS))
    elif how == "huge":
        base[draw(st.sampled_from(["event_id", "pipeline", "branch", "error_reason"]))] = "x" * draw(st.integers(1000, 40_000))
    elif how == "shape":
        return draw(json_values)
    return base


INGEST_FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def assert_ingest_answer(status: int, payload: bytes) -> None:
    assert status == 202 or 400 <= status < 500, (status, payload[:300])
    if status != 202:
        json_error(status, payload)


@INGEST_FUZZ
@given(st.lists(event_objects(), min_size=1, max_size=5), st.booleans())
def test_fuzzed_ingest_requests_answer_202_or_a_4xx_with_a_reason(
    worker: WorkerProcess, events: list[Any], wrap: bool
) -> None:
    COUNTS["http ingest requests"] += 2
    status, payload = call(worker, "POST", "/ingest/builds", json.dumps(events[0]).encode(), token=INGEST_TOKEN)
    assert_ingest_answer(status, payload)
    batch = {"events": events} if wrap else events
    status, payload = call(worker, "POST", "/ingest/builds/batch", json.dumps(batch).encode(), token=INGEST_TOKEN)
    assert_ingest_answer(status, payload)


@INGEST_FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_to_ingest_answer_a_4xx_with_a_reason(worker: WorkerProcess, body: bytes) -> None:
    COUNTS["http ingest requests"] += 2
    for path in ("/ingest/builds", "/ingest/builds/batch"):
        status, payload = call(worker, "POST", path, body, token=INGEST_TOKEN)
        assert 400 <= status < 500, (status, payload[:300])
        json_error(status, payload)


def deep(depth: int, opener: bytes, closer: bytes, leaf: bytes = b"1") -> bytes:
    return opener * depth + leaf + closer * depth


@pytest.mark.parametrize("path", ["/ingest/builds", "/ingest/builds/batch"])
def test_deep_nesting_oversized_and_chunked_bodies_are_refused_with_a_reason(worker: WorkerProcess, path: str) -> None:
    event = {"event_id": "d-1", "build_id": "deep-1", "project": PROJECT, "pipeline": "ci", "seq": 1,
             "event_time": "2026-11-25T10:00:00Z", "scope": "BUILD", "status": "QUEUED"}
    nested = [
        deep(30_000, b"[", b"]"), deep(10_000, b'{"a":', b"}"), deep(990, b"[", b"]"),
        json.dumps({**event, "environment": "@"}).encode().replace(b'"@"', deep(3000, b'{"k":', b"}", b'"v"')),
    ]
    for body in nested:
        COUNTS["http ingest requests"] += 1
        status, payload = call(worker, "POST", path, body, token=INGEST_TOKEN)
        assert status == 422, (status, payload[:300])
        json_error(status, payload)
    huge = json.dumps({**event, "branch": "b" * (MAX_BODY + 1)}).encode()
    oversized: list[tuple[bytes | Iterator[bytes], str]] = [
        (huge, "declared length"),
        (iter([huge[i:i + 8192] for i in range(0, len(huge), 8192)]), "chunked"),
        (b" " * (MAX_BODY + 1), "blank padding"),
        (b"[" + b",".join([json.dumps(event).encode()] * 600) + b"]", "many events"),
        (b"x" * (4 * 1024 * 1024), "4 MiB"),
    ]
    for oversized_body, what in oversized:
        COUNTS["http ingest requests"] += 1
        status, payload = call(worker, "POST", path, oversized_body, token=INGEST_TOKEN)
        assert status == 413, (what, status, payload[:300])
        assert "CIPULSE_INGEST_MAX_BODY_BYTES" in json_error(status, payload)
    if path.endswith("batch"):  # under the byte limit, over the event limit
        COUNTS["http ingest requests"] += 1
        small = {k: v for k, v in event.items()}
        status, payload = call(worker, "POST", path, json.dumps([small] * (MAX_BATCH + 1)).encode(), token=INGEST_TOKEN)
        assert status == 413 and "CIPULSE_INGEST_MAX_BATCH" in json_error(status, payload), (status, payload[:300])
    assert http_json(f"{worker.api}/ready")[0] == 200


# --- (d) secrets ------------------------------------------------------------------------------


def test_secrets_never_appear_in_logs_responses_or_metrics(worker: WorkerProcess, receiver: Receiver) -> None:
    status, payload = call(worker, "POST", "/callbacks", json.dumps({
        "url": receiver.url, "project": PROJECT, "events": ["build_finished"], "secret": CALLBACK_SECRET,
    }).encode(), token=ADMIN_TOKEN)
    assert status == 201, payload
    callback_id = json.loads(payload)["callback_id"]
    for token in ("wrong", ADMIN_TOKEN[:-1], INGEST_TOKEN, f"{ADMIN_TOKEN} {ADMIN_TOKEN}"):
        assert call(worker, "DELETE", f"/callbacks/{callback_id}", token=token)[0] == 401
        assert call(worker, "POST", "/ingest/builds", b"{}", token=token[::-1])[0] == 401
    assert call(worker, "GET", f"/callbacks/{callback_id}")[0] == 200
    assert call(worker, "GET", "/callbacks")[0] == 200
    time.sleep(1)  # the dispatcher re-reads subscriptions every 0.5 s; nothing else to wait on
    build_id = f"secret-{uuid.uuid4().hex[:8]}"
    events = [{"event_id": f"{build_id}-{seq}", "build_id": build_id, "project": PROJECT, "pipeline": "ci", "seq": seq,
               "event_time": f"2026-11-25T10:00:0{seq}Z", "scope": "BUILD", "status": status}
              for seq, status in ((1, "QUEUED"), (2, "RUNNING"), (3, "FAILED"))]
    assert call(worker, "POST", "/ingest/builds/batch", json.dumps(events).encode(), token=INGEST_TOKEN)[0] == 202
    assert call(worker, "POST", "/ingest/builds", json.dumps({**events[0], "project": "other"}).encode(),
                token=INGEST_TOKEN)[0] == 403
    def headers(request: Any) -> dict[str, str]:
        return {name.lower(): value for name, value in request.headers.items()}

    wait_until(lambda: any(headers(r).get("x-cipulse-callback-id") == callback_id
                           and "x-cipulse-signature-256" in headers(r) for r in receiver.requests), 60,
               "the signed callback delivery")
    wait_until(lambda: any("x-cipulse-callback-id" not in headers(r) and "x-cipulse-signature-256" in headers(r)
                           for r in receiver.requests), 60, "the signed notification delivery")
    for path in ("/metrics", "/openapi.json", "/ready", "/notifications/health", f"/callbacks/{callback_id}/deliveries"):
        call(worker, "GET", path)
    log = worker.log_path.read_bytes()
    assert log, "the worker wrote no log"
    responses = b"\n".join(RESPONSE_BODIES)
    COUNTS["responses checked for secrets"] += len(RESPONSE_BODIES)
    for what, secret in SECRETS.items():
        assert secret.encode() not in log, f"the {what} is in the worker log {worker.log_path}"
        assert secret.encode() not in responses, f"the {what} is in an HTTP response"
        for request in receiver.requests:  # signatures, not secrets, travel
            assert secret.encode() not in request.body and all(secret not in v for v in request.headers.values())


def test_clickhouse_server_password_never_appears_in_the_log_of_a_worker_that_cannot_reach_it(
    kafka: KafkaBroker, tmp_path: Path,
) -> None:
    password = f"chpw-{secrets.token_hex(12)}"
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=tmp_path,
        extra_env={"CIPULSE_CLICKHOUSE_DSN": f"http://cipulse:{password}@127.0.0.1:{free_port()}",
                   "CIPULSE_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    try:
        process.start(ready_timeout=20)
    except AssertionError:
        pass  # not reachable: it must not become ready, and must say so without the password
    finally:
        process.stop(timeout=10)
    log = process.log_path.read_bytes()
    assert b"127.0.0.1" in log, log[-2000:]
    assert password.encode() not in log
    assert ADMIN_TOKEN.encode() not in log


def test_admin_endpoints_answer_malformed_bodies_with_a_4xx_and_a_reason(worker: WorkerProcess) -> None:
    """With the right token, a body that is not JSON, nests too deeply or is too large is the
    client's mistake (4xx with a message), not the worker's (5xx)."""
    bodies = {
        "not UTF-8": b"\xff\xfe{", "deep arrays": deep(30_000, b"[", b"]"), "deep objects": deep(10_000, b'{"a":', b"}"),
        "2 MiB": b'{"url": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    }
    for path in ("/callbacks", "/audits/no-such-audit/repair", "/builds/no-such-build/retry"):
        for what, body in bodies.items():
            COUNTS["admin bad bodies"] += 1
            status, payload = call(worker, "POST", path, body, token=ADMIN_TOKEN)
            assert 400 <= status < 500, (path, what, status, payload[:300])
            json_error(status, payload)
