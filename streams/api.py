"""REST API served by the worker's Faust web server.

Build state comes from the build-state table (requests are forwarded to the worker
that owns the key); history and analytics come from ClickHouse through the gateway.
Every route here is described in `streams.openapi.ENDPOINTS`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.types import TableT
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from sinks import queries
from sinks.gateway import ClickHouseGateway
from streams import api_models as m
from streams import metrics
from streams.api_responses import answer, error
from streams.builds import load_state
from streams.exceptions import ApiRequestError
from streams.broker_probe import BrokerProbe, producer_metadata
from streams.key_routing import route_to_owner
from streams.openapi import openapi_document
from streams.query_params import parse_limit, parse_name, parse_window, reject_unknown
from streams.sink_agent import SinkHealth

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus' text format; aiohttp adds the charset itself and refuses one given here."""


def register_api(
    app: faust.App, *, table: TableT[bytes, Any], gateway: ClickHouseGateway, health: SinkHealth, public_url: str
) -> None:
    """Add the cipulse endpoints to `app`'s web server."""

    def ok(view: View, endpoint: str, body: Any, status: int = 200) -> Response:
        return answer(view, endpoint, status, body)

    @app.page("/builds/{build_id}", name="build_state")
    class BuildStateView(View):
        async def get(self, request: Request, build_id: str) -> Response:
            # not app.table_route: it 404s while a table restores and 500s on a departed owner
            async def local() -> Response:
                state = load_state(table.get(build_id.encode()))
                if state is None:
                    return error(self, "build_state", 404, f"unknown build {build_id!r}: no event for it was accepted")
                return ok(self, "build_state", state.model_dump(mode="json"))

            return await route_to_owner(app, table, build_id, self, request, "build_state", local)

    @app.page("/builds/{build_id}/history", name="build_history")
    class BuildHistoryView(View):
        async def get(self, request: Request, build_id: str) -> Response:
            try:
                reject_unknown(request.query, {"limit"})
                limit = parse_limit(request.query.get("limit"))
            except ApiRequestError as exc:
                return error(self, "build_history", 400, str(exc))
            try:
                rows = await gateway.call(queries.build_history, build_id, limit=limit)
            except Exception as exc:
                log.error("history query for %s failed: %s", build_id, exc)
                return error(self, "build_history", 503, f"ClickHouse query failed: {exc}")
            if not rows:
                return error(self, "build_history", 404, f"no history for build {build_id!r}")
            body = m.BuildHistoryBody(build_id=build_id, events=rows)
            return ok(self, "build_history", body.model_dump(mode="json"))

    def stats_view(endpoint: str, per_pipeline: bool) -> type[View]:
        allowed = {"window", "project", "pipeline"} if per_pipeline else {"window", "project"}

        class StatsView(View):
            async def get(self, request: Request) -> Response:
                try:
                    reject_unknown(request.query, allowed)
                    window = parse_window(request.query.get("window"))
                    project = parse_name(request.query, "project")
                    pipeline = parse_name(request.query, "pipeline") if per_pipeline else None
                except ApiRequestError as exc:
                    return error(self, endpoint, 400, str(exc))
                until = datetime.now(UTC)
                rows: Sequence[queries.PipelineStats | queries.ProjectStats]
                try:
                    if per_pipeline:
                        rows = await gateway.call(
                            queries.pipeline_stats, window=window, now=until, project=project, pipeline=pipeline
                        )
                    else:
                        rows = await gateway.call(queries.project_stats, window=window, now=until, project=project)
                except Exception as exc:
                    log.error("%s query failed: %s", endpoint, exc)
                    return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
                body_type = m.PipelineStatsBody if per_pipeline else m.ProjectStatsBody
                body = body_type.model_validate(
                    {"window_seconds": int(window.total_seconds()), "since": until - window, "until": until, "rows": rows}
                )
                return ok(self, endpoint, body.model_dump(mode="json"))

        return StatsView

    app.page("/stats/pipelines", name="pipeline_stats")(stats_view("pipeline_stats", per_pipeline=True))
    app.page("/stats/projects", name="project_stats")(stats_view("project_stats", per_pipeline=False))

    @app.page("/health", name="health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return ok(self, "health", m.HealthBody(status="ok").model_dump())

    broker = BrokerProbe(producer_metadata(app))

    @app.page("/ready", name="ready")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            problems: list[str] = []
            broker_problem = broker.problem()  # the last probe's answer; never waits for the broker
            if broker_problem is not None:
                problems.append(broker_problem)
            try:
                await gateway.call(queries.ping)
                clickhouse_ok = True
            except Exception as exc:
                clickhouse_ok = False
                problems.append(f"ClickHouse unreachable: {exc}")
            if not health.healthy:
                problems.append(f"sink failing since {health.failing_since}: {health.last_error}")
            assigned = bool(app.consumer.assignment()) if app.consumer is not None else False
            if not assigned:
                problems.append("no Kafka partitions assigned yet (consumer group still joining)")
            recovery = cast(TableManager, app.tables).recovery
            recovered = assigned and not app.rebalancing and not recovery.in_recovery
            if assigned and not recovered:
                problems.append(
                    f"restoring table state from changelogs ({recovery.active_remaining_total()} records to go)"
                )
            checks = {
                "clickhouse": clickhouse_ok,
                "sink": health.healthy,
                "partitions_assigned": assigned,
                "state_recovered": recovered,
                "kafka_broker": broker_problem is None,
            }
            body = m.ReadinessBody(ready=not problems, checks=checks, problems=problems)
            return ok(self, "ready", body.model_dump(), status=200 if body.ready else 503)

    @app.page("/metrics", name="metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            metrics.API_REQUESTS.labels("metrics", "200").inc()
            return self.bytes(generate_latest(), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/openapi.json", name="openapi")
    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return ok(self, "openapi", openapi_document(public_url))
