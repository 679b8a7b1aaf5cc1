"""The OpenAPI 3.1 description of every HTTP endpoint the worker serves.

`ENDPOINTS` is the single list the web views are registered from (see `streams.api`),
so an endpoint cannot exist without its description, and the tests compare this
document with the routes the running server really has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from streams import api_models as m


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    description: str
    required: bool = False
    example: str | None = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    summary: str
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    params: tuple[Param, ...] = ()
    content_type: str = "application/json"
    tags: tuple[str, ...] = field(default=("builds",))
    method: str = "get"
    request_body: type[BaseModel] | None = None
    authenticated: bool = False
    auth_scheme: str = "bearerToken"
    """Which `components.securitySchemes` entry an authenticated endpoint needs."""
    other_content_types: tuple[str, ...] = ()
    """Further types a model-less response may have (a static asset is JavaScript or CSS)."""


WINDOW = Param("window", "query", "Look-back window: number + unit s|m|h|d, at most 400d (default 24h)", example="24h")
PROJECT = Param("project", "query", "Only this project")
PIPELINE = Param("pipeline", "query", "Only this pipeline")
BAD_REQUEST = (400, ("A query parameter is invalid; the message names it and says why", m.ErrorBody))

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "build_state",
        "/builds/{build_id}",
        "Current state of a build with its stage/task tree (served by the worker owning the key)",
        {
            200: ("Current state", m.BuildStateBody),
            404: ("No event for this build id was accepted (only said once the owner's table is ready)", m.ErrorBody),
            503: (
                "The table is being rebalanced/restored, or the worker owning the key is unreachable; "
                "retry after the `Retry-After` header's seconds",
                m.ErrorBody,
            ),
        },
        (Param("build_id", "path", "Build id", required=True),),
    ),
    Endpoint(
        "build_history",
        "/builds/{build_id}/history",
        "Accepted events of a build, oldest first (from ClickHouse)",
        {
            200: ("Accepted events", m.BuildHistoryBody),
            BAD_REQUEST[0]: BAD_REQUEST[1],
            404: ("No history for this build id", m.ErrorBody),
            503: ("ClickHouse unavailable", m.ErrorBody),
        },
        (
            Param("build_id", "path", "Build id", required=True),
            Param("limit", "query", "Most events to return, 1-10000 (default 1000)"),
        ),
    ),
    Endpoint(
        "pipeline_stats",
        "/stats/pipelines",
        "Success rate and duration percentiles per pipeline over a window (from ClickHouse)",
        {200: ("Per-pipeline figures", m.PipelineStatsBody), BAD_REQUEST[0]: BAD_REQUEST[1], 503: ("ClickHouse unavailable", m.ErrorBody)},
        (WINDOW, PROJECT, PIPELINE),
        tags=("analytics",),
    ),
    Endpoint(
        "project_stats",
        "/stats/projects",
        "Success rate and duration percentiles per project over a window (from ClickHouse)",
        {200: ("Per-project figures", m.ProjectStatsBody), BAD_REQUEST[0]: BAD_REQUEST[1], 503: ("ClickHouse unavailable", m.ErrorBody)},
        (WINDOW, PROJECT),
        tags=("analytics",),
    ),
    Endpoint("index", "/", "Faust's status page of the worker", {200: ("Always {\"status\": \"OK\"}", m.HealthBody)}, tags=("operations",)),
    Endpoint("health", "/health", "Liveness: the worker's web server answers", {200: ("Alive", m.HealthBody)}, tags=("operations",)),
    Endpoint(
        "ready",
        "/ready",
        "Readiness: Kafka broker answering, ClickHouse reachable, sink writing, partitions assigned, table state recovered",
        {200: ("Ready", m.ReadinessBody), 503: ("Not ready; `problems` says why", m.ReadinessBody)},
        tags=("operations",),
    ),
    Endpoint(
        "metrics",
        "/metrics",
        "Prometheus metrics of the pipeline (throughput, outcomes, DLQ counts, lag, sink health)",
        {200: ("Prometheus text exposition format", None)},
        content_type="text/plain",
        tags=("operations",),
    ),
    Endpoint(
        "openapi",
        "/openapi.json",
        "This document",
        {200: ("OpenAPI 3.1 description", None)},
        tags=("operations",),
    ),
)


def all_endpoints() -> tuple[Endpoint, ...]:
    from streams.audit_openapi import AUDIT_ENDPOINTS
    from streams.notify_openapi import NOTIFY_ENDPOINTS
    from streams.retry_openapi import RETRY_ENDPOINTS
    from streams.callback_openapi import CALLBACK_ENDPOINTS
    from streams.ingest_openapi import INGEST_ENDPOINTS
    from streams.push_openapi import PUSH_ENDPOINTS
    from streams.gate_openapi import GATE_ENDPOINTS
    from streams.dashboard_openapi import DASHBOARD_ENDPOINTS
    from streams.adapters.intake_openapi import ADAPTER_ENDPOINTS
    from streams.adapters.replay_openapi import REPLAY_ENDPOINTS

    return ENDPOINTS + AUDIT_ENDPOINTS + NOTIFY_ENDPOINTS + RETRY_ENDPOINTS + CALLBACK_ENDPOINTS + INGEST_ENDPOINTS + PUSH_ENDPOINTS + DASHBOARD_ENDPOINTS + GATE_ENDPOINTS + ADAPTER_ENDPOINTS + REPLAY_ENDPOINTS


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    from streams.adapters.intake_openapi import ADAPTER_SECURITY_SCHEMES

    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for endpoint in all_endpoints():
        responses: dict[str, Any] = {}
        for status, (description, model) in endpoint.responses.items():
            body: dict[str, Any] = {"description": description}
            if model is not None:
                body["content"] = {"application/json": {"schema": _ref(model, schemas)}}
            else:
                body["content"] = {
                    content_type: {"schema": {"type": "string"}}
                    for content_type in (endpoint.content_type, *endpoint.other_content_types)
                }
            responses[str(status)] = body
        operation: dict[str, Any] = {
            "operationId": endpoint.name,
            "summary": endpoint.summary,
            "tags": list(endpoint.tags),
            "responses": responses,
        }
        if endpoint.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": {"type": "string"},
                    **({"example": p.example} if p.example else {}),
                }
                for p in endpoint.params
            ]
        if endpoint.request_body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(endpoint.request_body, schemas)}},
            }
        if endpoint.authenticated:
            operation["security"] = [{endpoint.auth_scheme: []}]
        paths.setdefault(endpoint.path, {})[endpoint.method] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "cipulse API",
            "version": "1",
            "description": "Live build state, history and analytics of CI/CD builds.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "CIPULSE_ADMIN_TOKEN"},
                "ingestToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The event's project's token from CIPULSE_INGEST_TOKENS",
                },
                **ADAPTER_SECURITY_SCHEMES,
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
