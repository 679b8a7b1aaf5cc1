"""The REST API against a real worker: responses match the OpenAPI models, bad requests get
4xx messages that say what to fix, and nothing undocumented is served."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from harness import KafkaBroker, WorkerProcess, http_json, wait_until
from streams import api_models as m
from streams.demo_feed import simulate_builds
from streams.openapi import ENDPOINTS
from streams.producer import BuildEventProducer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fed_worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, str]]:
    worker = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("api-worker"))
    worker.start()
    try:
        builds = simulate_builds(3, 12, datetime.now(UTC) - timedelta(minutes=30))
        producer = BuildEventProducer(worker.bootstrap, worker.topic("build-events"))
        for build in builds:
            for event in build.events:
                producer.send(event)
        producer.flush()
        last = builds[-1]
        wait_until(
            lambda: http_json(f"{worker.api}/builds/{last.build_id}")[1].get("status") == last.final_status.value,
            90, "the last demo build to finish",
        )
        wait_until(
            lambda: sum(row["finished"] for row in http_json(f"{worker.api}/stats/pipelines?window=2h")[1]["rows"]) == 12,
            60, "all 12 builds in the ClickHouse stats",
        )
        yield worker, last.build_id
    finally:
        worker.stop()


def example_url(path: str, build_id: str) -> str:
    return path.replace("{build_id}", build_id)


def test_every_documented_endpoint_answers_with_its_documented_model(fed_worker: tuple[WorkerProcess, str]) -> None:
    worker, build_id = fed_worker
    for endpoint in ENDPOINTS:
        url = worker.api + example_url(endpoint.path, build_id)
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read()
        assert status in endpoint.responses, (endpoint.path, status)
        model: type[BaseModel] | None = endpoint.responses[status][1]
        if model is not None:
            model.model_validate_json(body)
        else:
            assert body, endpoint.path


def test_undocumented_faust_debug_pages_are_not_served(fed_worker: tuple[WorkerProcess, str]) -> None:
    worker, _ = fed_worker
    for path in ("/router/", "/table/", "/graph/", "/stats/", "/performance/"):
        status, _ = http_json(worker.api + path)
        assert status == 404, path


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/stats/pipelines?window=abc", 400, "window='abc' is not a duration"),
        ("/stats/pipelines?window=500d", 400, "at most 400d"),
        ("/stats/pipelines?windw=1h", 400, "unknown query parameter(s) windw"),
        ("/stats/projects?pipeline=x", 400, "unknown query parameter(s) pipeline"),
        ("/stats/pipelines?project=a%20b", 400, "project='a b' is not a valid name"),
        ("/builds/BUILD/history?limit=0", 400, "limit='0' must be an integer from 1 to 10000"),
        ("/builds/no-such-build", 404, "unknown build 'no-such-build'"),
        ("/builds/no-such-build/history", 404, "no history for build 'no-such-build'"),
    ],
)
def test_malformed_requests_get_a_4xx_that_says_what_to_fix(
    fed_worker: tuple[WorkerProcess, str], path: str, status: int, message: str
) -> None:
    worker, build_id = fed_worker
    got, body = http_json(worker.api + path.replace("BUILD", build_id))
    assert got == status
    assert message in m.ErrorBody.model_validate(body).error


def test_stats_filters_narrow_to_one_pipeline(fed_worker: tuple[WorkerProcess, str]) -> None:
    worker, _ = fed_worker
    _, everything = http_json(f"{worker.api}/stats/pipelines?window=2h")
    first = everything["rows"][0]
    _, narrowed = http_json(f"{worker.api}/stats/pipelines?window=2h&project={first['project']}&pipeline={first['pipeline']}")
    assert narrowed["rows"] == [first]
    _, projects = http_json(f"{worker.api}/stats/projects?window=2h")
    assert sum(row["finished"] for row in projects["rows"]) == sum(row["finished"] for row in everything["rows"]) == 12


def test_readiness_reports_each_check(fed_worker: tuple[WorkerProcess, str]) -> None:
    worker, _ = fed_worker
    status, body = http_json(f"{worker.api}/ready")
    assert status == 200
    assert m.ReadinessBody.model_validate(body).checks == {
        "clickhouse": True, "sink": True, "partitions_assigned": True, "state_recovered": True, "kafka_broker": True,
    }


def test_prometheus_metrics_count_pipeline_outcomes(fed_worker: tuple[WorkerProcess, str]) -> None:
    worker, _ = fed_worker
    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
        text = response.read().decode()
        content_type: Any = response.headers["Content-Type"]
    assert content_type.startswith("text/plain")
    accepted = [line for line in text.splitlines() if line.startswith('cipulse_build_events_total{outcome="accepted"}')]
    assert accepted and float(accepted[0].split()[-1]) > 0
    assert "cipulse_consumer_lag_messages" in text and "cipulse_sink_healthy 1.0" in text


def test_cli_build_status_prints_the_live_state(fed_worker: tuple[WorkerProcess, str]) -> None:
    import json
    import subprocess
    import sys

    from harness import REPO

    worker, build_id = fed_worker
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "build", "status", build_id, "--api", worker.api],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["build_id"] == build_id
    missing = subprocess.run(
        [sys.executable, "-m", "streams.cli", "build", "status", "no-such-build", "--api", worker.api],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 1 and "unknown build" in missing.stdout
