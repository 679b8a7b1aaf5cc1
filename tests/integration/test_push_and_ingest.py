"""HTTP ingest and the SSE push channel against a real worker and broker.

Events POSTed as JSON are produced to build-events (on the partition librdkafka's murmur2 would
choose) before the 202 and show up in the live state; refusals (401/403/413/422) say what to
fix. SSE clients receive change sets filtered by project/build, resume after their last event
id with exactly the later events (a client resuming behind the live tail catches up privately,
then joins it), and all of a worker's clients share one Kafka consumer that decodes each record once.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from harness import KafkaBroker, WorkerProcess, http_json, wait_until
from schemas import BuildStatusChange
from streams.ingest_openapi import IngestAccepted, IngestInvalidBody

pytestmark = pytest.mark.integration

PAY_TOKEN = "pay-ingest-token"
SEARCH_TOKEN = "search-ingest-token"
MAX_BATCH = 50
MAX_CLIENTS = 6
TAIL_READERS = 'cipulse_sse_kafka_readers{kind="tail"}'
CATCH_UP_READERS = 'cipulse_sse_kafka_readers{kind="catch_up"}'


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("ingest-worker"),
        extra_env={
            "CIPULSE_INGEST_TOKENS": json.dumps({"payments": PAY_TOKEN, "search": SEARCH_TOKEN}),
            "CIPULSE_INGEST_MAX_BATCH": str(MAX_BATCH),
            "CIPULSE_INGEST_MAX_BODY_BYTES": "65536",
            "CIPULSE_SSE_MAX_CLIENTS": str(MAX_CLIENTS),
            "CIPULSE_SSE_HEARTBEAT_SECONDS": "1",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def build_events(build_id: str, project: str = "payments", statuses: tuple[str, ...] = ("QUEUED", "RUNNING", "SUCCEEDED"),
                 first_seq: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{build_id}-{seq}", "build_id": build_id, "project": project, "pipeline": "deploy",
            "seq": seq, "event_time": f"2026-11-25T10:00:{seq:02d}Z", "scope": "BUILD", "status": status,
            "trigger_reason": "API", "branch": "main",
        }
        for seq, status in enumerate(statuses, start=first_seq)
    ]


def new_build(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(worker: WorkerProcess, path: str, payload: Any, token: str | None = PAY_TOKEN) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(worker.api + path, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def build_status(worker: WorkerProcess, build_id: str) -> str | None:
    status, body = http_json(f"{worker.api}/builds/{build_id}")
    return body.get("status") if status == 200 else None


def metric(worker: WorkerProcess, line_prefix: str) -> float:
    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_prefix)]
    return values[0] if values else 0.0


# --- a small Server-Sent Events client (reads the raw stream, as a browser's EventSource does) ---


@dataclass
class SseMessage:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)


class SseClient:
    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.messages: queue.Queue[SseMessage] = queue.Queue()
        self.ended = threading.Event()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        message = SseMessage()
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    self.messages.put(message)
                    message = SseMessage()
                elif line.startswith(":"):
                    message.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(": ")
                    if name in ("id", "event", "data"):
                        setattr(message, name, value)
        except Exception:  # noqa: BLE001 - close() shuts the socket under this reader; any error ends it
            pass
        finally:
            self.ended.set()

    def next(self, timeout: float = 30.0) -> SseMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE message within {timeout:.0f}s") from None

    def connected(self) -> SseMessage:
        """The preamble: the stream is positioned; events produced from now on will arrive."""
        first = self.next()
        assert first.id and first.comments and first.comments[0].startswith("streaming"), first
        return first

    def next_change(self, timeout: float = 30.0) -> tuple[str, BuildStatusChange]:
        while True:
            message = self.next(timeout)
            if message.event == "build-status":
                assert message.id and message.data
                return message.id, BuildStatusChange.model_validate_json(message.data)

    def close(self) -> None:
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connection.close()


def stream(worker: WorkerProcess, last_event_id: str | None = None, **query: str) -> SseClient:
    client = SseClient(f"{worker.api}/stream/builds?{urlencode(query)}", last_event_id)
    assert client.status == 200, client.response.read()
    return client


# --- ingest ---


def test_one_event_is_produced_before_the_202_and_shows_in_the_live_state(worker: WorkerProcess) -> None:
    build_id = new_build("single")
    status, body = post(worker, "/ingest/builds", build_events(build_id)[0])
    assert status == 202, body
    accepted = IngestAccepted.model_validate(body)
    assert accepted.accepted == 1 and accepted.topic == worker.topic("build-events")
    assert [(e.event_id, e.build_id) for e in accepted.events] == [(f"{build_id}-1", build_id)]
    wait_until(lambda: build_status(worker, build_id) == "QUEUED", 30, f"{build_id} in the live state")


def test_a_batch_is_acknowledged_whole_and_keyed_like_librdkafkas_murmur2(
    worker: WorkerProcess, kafka: KafkaBroker
) -> None:
    builds = [new_build("batch") for _ in range(12)]
    events = [event for build_id in builds for event in build_events(build_id)]
    status, body = post(worker, "/ingest/builds/batch", {"events": events[:30]})
    assert status == 202, body
    status, rest = post(worker, "/ingest/builds/batch", events[30:])  # the plain-array form
    assert status == 202, rest
    accepted = IngestAccepted.model_validate(body).events + IngestAccepted.model_validate(rest).events
    assert [e.event_id for e in accepted] == [e["event_id"] for e in events]
    for build_id in builds:
        wait_until(lambda: build_status(worker, build_id) == "SUCCEEDED", 30, f"{build_id} SUCCEEDED")
    # The partition each build landed on is the one librdkafka's murmur2 picks (what streams.producer
    # and Java clients use): produce the same keys to a scratch topic with as many partitions.
    assert librdkafka_partitions(kafka.bootstrap, builds, partitions=3) == {e.build_id: e.partition for e in accepted}


def librdkafka_partitions(bootstrap: str, keys: list[str], partitions: int) -> dict[str, int | None]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    topic = f"partition-check-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    chosen: dict[str, int | None] = {}
    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"x",
                         on_delivery=lambda err, msg: chosen.__setitem__((msg.key() or b"").decode(), msg.partition()))
    assert producer.flush(30) == 0
    return chosen


def test_invalid_events_get_422_listing_every_invalid_field_and_nothing_is_produced(worker: WorkerProcess) -> None:
    refused_before = metric(worker, 'cipulse_ingest_events_total{outcome="refused"}')
    status, body = post(worker, "/ingest/builds", {**build_events(new_build("bad"))[0], "seq": -1, "status": "DONE"})
    assert status == 422
    single = IngestInvalidBody.model_validate(body)
    assert {p.field for p in single.problems} == {"seq", "status"}
    good = build_events(new_build("good"))
    batch = [good[0], {**good[1], "event_time": "yesterday"}, {**good[2], "colour": "red"}, {**good[2], "scope": "STAGE"}]
    status, body = post(worker, "/ingest/builds/batch", batch)
    assert status == 422
    invalid = IngestInvalidBody.model_validate(body)
    assert {(p.index, p.field) for p in invalid.problems} == {(1, "event_time"), (2, "colour"), (3, "<event>")}
    assert invalid.error.startswith("3 of 4 events are invalid, nothing was produced")
    assert "events[1].event_time" in invalid.error and "events[2].colour" in invalid.error
    assert "events[3]: Value error, stage_id is required when scope is STAGE" in invalid.error
    assert metric(worker, 'cipulse_ingest_events_total{outcome="refused"}') == refused_before + 1
    status, body = post(worker, "/ingest/builds", b"{oops")
    assert status == 422 and "not JSON" in body["error"]


def test_missing_wrong_or_foreign_tokens_are_refused(worker: WorkerProcess) -> None:
    event = build_events(new_build("auth"))[0]
    status, body = post(worker, "/ingest/builds", event, token=None)
    assert status == 401 and "missing credentials" in body["error"]
    status, body = post(worker, "/ingest/builds", event, token="guess")
    assert status == 401 and "not the ingest token of any project" in body["error"]
    status, body = post(worker, "/ingest/builds", event, token=SEARCH_TOKEN)
    assert status == 403 and "project 'search'" in body["error"] and "'payments'" in body["error"]
    status, body = post(worker, "/ingest/builds/batch", [event, {**event, "project": "billing"}])
    assert status == 403 and "'billing' (events 1)" in body["error"]


def test_too_large_requests_get_413(worker: WorkerProcess) -> None:
    events = [event for i in range(MAX_BATCH + 1) for event in build_events(f"big-{i}", statuses=("QUEUED",))]
    status, body = post(worker, "/ingest/builds/batch", events)
    assert status == 413 and f"at most {MAX_BATCH} per request" in body["error"]
    status, body = post(worker, "/ingest/builds/batch", b"[" + b" " * 70_000 + b"]")
    assert status == 413 and "CIPULSE_INGEST_MAX_BODY_BYTES" in body["error"]


# --- push ---


def test_sse_clients_receive_change_sets_filtered_by_project_and_build(worker: WorkerProcess) -> None:
    search_build, pay_build = new_build("search"), new_build("pay")
    pushed_before = metric(worker, "cipulse_sse_events_pushed_total")
    by_project = stream(worker, project="search")
    by_build = stream(worker, build_id=pay_build)
    try:
        by_project.connected()
        by_build.connected()
        assert post(worker, "/ingest/builds/batch", build_events(pay_build))[0] == 202
        assert post(worker, "/ingest/builds/batch", build_events(search_build, "search"), token=SEARCH_TOKEN)[0] == 202
        searched = [by_project.next_change()[1] for _ in range(3)]
        assert [(c.build_id, c.status.value, c.revision) for c in searched] == [
            (search_build, "QUEUED", 1), (search_build, "RUNNING", 2), (search_build, "SUCCEEDED", 3)
        ]
        built = [by_build.next_change()[1] for _ in range(3)]
        assert {c.build_id for c in built} == {pay_build} and built[-1].status.value == "SUCCEEDED"
        assert metric(worker, "cipulse_sse_events_pushed_total") == pushed_before + 6
    finally:
        by_project.close()
        by_build.close()


def test_resume_with_last_event_id_delivers_exactly_the_later_events(worker: WorkerProcess) -> None:
    first_build, later_build = new_build("resume"), new_build("resume-later")
    live = stream(worker, pipeline="deploy", project="payments")
    try:
        live.connected()
        assert post(worker, "/ingest/builds/batch", build_events(first_build))[0] == 202
        seen = [live.next_change() for _ in range(3)]
    finally:
        live.close()
    assert [c.build_id for _, c in seen] == [first_build] * 3
    after_first = seen[0][0]
    for resumed in (stream(worker, after_first, project="payments"), stream(worker, project="payments", last_event_id=after_first)):
        try:
            resumed.connected()
            again = [resumed.next_change() for _ in range(2)]
            assert again == seen[1:]  # same ids, same change sets, in order
            assert post(worker, "/ingest/builds", build_events(later_build)[0])[0] == 202
            next_id, next_change = resumed.next_change()
            assert (next_change.build_id, next_change.revision) == (later_build, 1)  # nothing repeated before it
        finally:
            resumed.close()


def test_concurrent_filtered_clients_and_a_resumed_one_share_one_consumer_and_get_exactly_their_events(
    worker: WorkerProcess,
) -> None:
    pay_a, search_a, pay_b, search_b = new_build("fan-pay"), new_build("fan-search"), new_build("fan-pay"), new_build("fan-search")
    log_start = len(worker.log_path.read_text())
    # streams closed by earlier tests are counted until the worker notices the disconnect
    wait_until(lambda: metric(worker, "cipulse_sse_clients") == 0, 10, "the earlier tests' streams to end")
    everything = stream(worker)
    clients: list[SseClient] = [everything]
    try:
        before_first = everything.connected().id
        assert post(worker, "/ingest/builds/batch", build_events(pay_a))[0] == 202
        assert post(worker, "/ingest/builds/batch", build_events(search_a, "search"), token=SEARCH_TOKEN)[0] == 202
        first = [everything.next_change() for _ in range(6)]
        assert {c.build_id for _, c in first} == {pay_a, search_a}  # the shared tail has dispatched them all
        searching, one_build, watching = stream(worker, project="search"), stream(worker, build_id=pay_b), stream(worker)
        resumed = stream(worker, before_first, project="payments")  # behind the tail: catches up, then joins it
        clients += [searching, one_build, watching, resumed]
        for client in clients[1:]:
            client.connected()
        caught_up = [resumed.next_change()[1] for _ in range(3)]
        assert caught_up == [c for _, c in first if c.project == "payments"]  # exactly pay_a's, in order
        wait_until(lambda: metric(worker, CATCH_UP_READERS) == 0, 10, "the resumed client to join the shared tail")
        assert metric(worker, TAIL_READERS) == 1 and metric(worker, "cipulse_sse_clients") == 5
        decoded_before = metric(worker, 'cipulse_sse_records_decoded_total{reader="tail"}')
        assert post(worker, "/ingest/builds/batch", build_events(pay_b))[0] == 202
        assert post(worker, "/ingest/builds/batch", build_events(search_b, "search"), token=SEARCH_TOKEN)[0] == 202

        def builds(client: SseClient, count: int) -> list[tuple[str, int]]:
            return [(c.build_id, c.revision) for _, c in (client.next_change() for _ in range(count))]

        revisions = [1, 2, 3]
        assert sorted(builds(everything, 6)) == sorted([(pay_b, r) for r in revisions] + [(search_b, r) for r in revisions])
        assert sorted(builds(watching, 6)) == sorted([(pay_b, r) for r in revisions] + [(search_b, r) for r in revisions])
        assert builds(searching, 3) == [(search_b, r) for r in revisions]
        assert builds(one_build, 3) == [(pay_b, r) for r in revisions]
        assert builds(resumed, 3) == [(pay_b, r) for r in revisions]
        # nothing more, and nothing twice: within two heartbeats every client only gets heartbeats
        time.sleep(2.5)
        for client in clients:
            extra = [m for m in iter_queue(client) if m.event is not None]
            assert extra == [], extra
        # five clients, six new change sets, each decoded once by the one shared consumer
        assert metric(worker, 'cipulse_sse_records_decoded_total{reader="tail"}') == decoded_before + 6
        assert metric(worker, TAIL_READERS) == 1
    finally:
        for client in clients:
            client.close()
    log = worker.log_path.read_text()[log_start:]
    assert log.count("SSE shared tail started") <= 1  # 0 if an earlier test's tail was still lingering
    assert "catches up privately" in log and "caught up after" in log and "joined the shared tail" in log


def iter_queue(client: SseClient) -> list[SseMessage]:
    messages: list[SseMessage] = []
    while not client.messages.empty():
        messages.append(client.messages.get_nowait())
    return messages


def test_idle_streams_get_heartbeats_and_a_bad_event_id_gets_400(worker: WorkerProcess) -> None:
    idle = stream(worker, build_id="never-built")
    try:
        idle.connected()
        assert "heartbeat" in idle.next(timeout=10).comments
    finally:
        idle.close()
    status, body = http_json(f"{worker.api}/stream/builds?last_event_id=yesterday")
    assert status == 400 and "not a cipulse stream position" in body["error"]
    status, body = http_json(f"{worker.api}/stream/builds?last_event_id=0:999999999")
    assert status == 400 and "past its end" in body["error"]
    status, body = http_json(f"{worker.api}/stream/builds?projects=x")
    assert status == 400 and "unknown query parameter(s) projects" in body["error"]


def test_clients_are_bounded_and_a_disconnect_closes_the_stream_and_its_consumer(worker: WorkerProcess) -> None:
    wait_until(lambda: metric(worker, "cipulse_sse_clients") == 0, 10, "the earlier tests' streams to end")
    clients = [stream(worker) for _ in range(MAX_CLIENTS)]
    try:
        for client in clients:
            client.connected()
        assert metric(worker, "cipulse_sse_clients") == MAX_CLIENTS
        assert metric(worker, TAIL_READERS) == 1  # one Kafka consumer for all of them
        status, body = http_json(f"{worker.api}/stream/builds")
        assert status == 503 and "CIPULSE_SSE_MAX_CLIENTS" in body["error"]
        clients[0].close()
        wait_until(lambda: metric(worker, "cipulse_sse_clients") == MAX_CLIENTS - 1, 10, "the closed stream to end")
        replacement = stream(worker)
        clients.append(replacement)
        replacement.connected()
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: metric(worker, "cipulse_sse_clients") == 0, 10, "every stream to end")
    assert worker.log_path.read_text().count("closed after") >= MAX_CLIENTS + 1
    # the shared tail outlives its last client by a few seconds (a reloading page finds it running), then stops
    wait_until(lambda: metric(worker, TAIL_READERS) == 0, 15, "the shared tail to stop after the last client")
    assert "SSE shared tail stopped (no SSE client" in worker.log_path.read_text()


def test_stopping_the_worker_ends_open_streams_and_closes_their_consumers(worker_factory: Any) -> None:
    own = worker_factory()
    client = stream(own, project="payments")
    try:
        client.connected()
        started = time.monotonic()
        assert own.stop() == 0
        assert time.monotonic() - started < 20, "an open stream held the worker's shutdown"
        assert client.ended.wait(5), "the stream stayed open after the worker stopped"
    finally:
        client.close()
    assert "SSE shared tail stopped (the worker stops), its consumer closed" in own.log_path.read_text()
