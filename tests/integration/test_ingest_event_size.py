"""Ingest with the default limits against a real broker (default message.max.bytes, 1048588):
one event too large to be a Kafka record gets a 413 naming it before anything is produced (it
used to reach the broker and come back as a 503 "Kafka failed"), while a full-size batch of
normal events, up to the 4 MiB body limit, is still accepted."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import KafkaBroker, WorkerProcess, wait_until, http_json
from streams.ingest_openapi import IngestAccepted, IngestTooLargeBody
from streams.settings import CipulseSettings

pytestmark = pytest.mark.integration

TOKEN = "size-ingest-token"


@pytest.fixture(scope="module")
def worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("size-worker"),
        extra_env={"CIPULSE_INGEST_TOKENS": json.dumps({"payments": TOKEN})},  # every limit at its default
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def event(build_id: str, error_reason: str | None = None) -> dict[str, Any]:
    return {"event_id": f"{build_id}-1", "build_id": build_id, "project": "payments", "pipeline": "deploy", "seq": 1,
            "event_time": "2026-11-25T10:00:01Z", "scope": "BUILD", "status": "FAILED", "error_reason": error_reason}


def post(worker: WorkerProcess, path: str, payload: Any) -> tuple[int, Any]:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(worker.api + path, data=data, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_one_event_too_large_for_a_kafka_record_gets_413_alone_or_in_a_batch(worker: WorkerProcess) -> None:
    build_id = f"huge-{uuid.uuid4().hex[:8]}"
    huge = event(build_id, "x" * 1_500_000)  # under the 4 MiB body limit, over Kafka's 1 MB record limit
    status, body = post(worker, "/ingest/builds", huge)
    assert status == 413, body
    refused = IngestTooLargeBody.model_validate(body)
    assert "at most 1000000 (CIPULSE_INGEST_MAX_EVENT_BYTES)" in refused.error and "error_reason" in refused.error
    status, body = post(worker, "/ingest/builds/batch", [event(f"ok-{uuid.uuid4().hex[:8]}"), huge])
    assert status == 413, body
    assert [p.index for p in IngestTooLargeBody.model_validate(body).problems] == [1]
    assert http_json(f"{worker.api}/builds/{build_id}")[0] == 404  # nothing was produced


def test_a_full_batch_of_normal_events_up_to_the_body_limit_is_accepted(worker: WorkerProcess) -> None:
    settings = CipulseSettings()
    prefix = uuid.uuid4().hex[:8]
    batch = [event(f"bulk-{prefix}-{i}", "r" * 3500) for i in range(settings.ingest_max_batch)]
    size = len(json.dumps(batch).encode())
    assert 3 * 1024 * 1024 < size < settings.ingest_max_body_bytes  # several Kafka records' worth in one body
    status, body = post(worker, "/ingest/builds/batch", batch)
    assert status == 202, body
    assert IngestAccepted.model_validate(body).accepted == len(batch)
    wait_until(lambda: http_json(f"{worker.api}/builds/{batch[-1]['build_id']}")[0] == 200, 60,
               "the last event of the batch in the live state")
