"""The notification delivery log endpoints against a real worker (real broker, embedded
ClickHouse): a fresh log answers with empty figures, bad requests get a 4xx that says what to
fix, and the served OpenAPI document describes every notification path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from harness import KafkaBroker, WorkerProcess, http_json
from streams import api_models as m
from streams.notify_openapi import NOTIFY_ENDPOINTS, NotificationHealthBody, NotificationsPerHourBody

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fresh_worker(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the module: every check here only reads, and nothing is ever delivered."""
    worker = WorkerProcess(bootstrap=kafka.bootstrap, work_dir=tmp_path_factory.mktemp("notify-api-worker"))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_health_of_a_fresh_log_is_an_empty_list_over_the_default_window(fresh_worker: WorkerProcess) -> None:
    status, raw = http_json(f"{fresh_worker.api}/notifications/health")
    assert status == 200, raw
    body = NotificationHealthBody.model_validate(raw)
    assert body.subscriptions == []
    assert body.window_seconds == 24 * 3600
    assert body.until - body.since == timedelta(hours=24)


def test_per_hour_of_a_fresh_log_is_an_empty_list_for_a_window_and_project(fresh_worker: WorkerProcess) -> None:
    status, raw = http_json(f"{fresh_worker.api}/notifications/per-hour?window=7d&project=payments")
    assert status == 200, raw
    body = NotificationsPerHourBody.model_validate(raw)
    assert body.hours == []
    assert body.window_seconds == 7 * 24 * 3600
    assert isinstance(body.since, datetime) and body.since.tzinfo is not None


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/notifications/health?window=abc", 400, "window='abc' is not a duration"),
        ("/notifications/per-hour?window=0h", 400, "window='0h' must be greater than 0"),
        ("/notifications/per-hour?window=401d", 400, "at most 400d"),
        ("/notifications/health?windw=1h", 400, "unknown query parameter(s) windw; allowed: project, window"),
        ("/notifications/per-hour?channel=slack", 400, "unknown query parameter(s) channel"),
        ("/notifications/health?project=a%20b", 400, "project='a b' is not a valid name"),
        ("/notifications/n-1/deliveries?limit=5", 400, "unknown query parameter(s) limit; allowed: none"),
        ("/notifications/no-such-notification/deliveries", 404,
         "no delivery attempt is logged for notification 'no-such-notification'"),
    ],
)
def test_malformed_or_unknown_requests_get_a_4xx_that_says_what_to_fix(
    fresh_worker: WorkerProcess, path: str, status: int, message: str
) -> None:
    got, body = http_json(fresh_worker.api + path)
    assert got == status, body
    assert message in m.ErrorBody.model_validate(body).error


def test_every_notification_endpoint_answers_a_documented_status_with_its_model(fresh_worker: WorkerProcess) -> None:
    for endpoint in NOTIFY_ENDPOINTS:
        path = endpoint.path.replace("{notification_id}", "never-sent")
        status, body = http_json(fresh_worker.api + path)
        assert status in endpoint.responses, (endpoint.path, status, body)
        model = endpoint.responses[status][1]
        assert model is not None, endpoint.path
        model.model_validate(body)


def test_served_openapi_document_describes_the_notification_paths(fresh_worker: WorkerProcess) -> None:
    status, document = http_json(f"{fresh_worker.api}/openapi.json")
    assert status == 200
    paths = document["paths"]
    for path in ("/notifications/health", "/notifications/per-hour", "/notifications/{notification_id}/deliveries"):
        assert set(paths[path]) == {"get"}, path
    deliveries = paths["/notifications/{notification_id}/deliveries"]["get"]
    assert set(deliveries["responses"]) >= {"200", "404"}
    health_params = {p["name"] for p in paths["/notifications/health"]["get"]["parameters"]}
    assert health_params == {"window", "project"}
