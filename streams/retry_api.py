"""REST endpoints of build retries; described in `streams.retry_openapi`.

Both endpoints are routed to the worker that owns the build's state. The eligibility decision
(`streams.retry_eligibility.decide`) combines three inputs: the live state (status, first
seen), the build's context row in ClickHouse, and the context table's retention, read from
ClickHouse through `RetentionCache`; `streams.retry_assessment` gathers them and counts every
decision in Prometheus and `retry_decisions`. A refusal is never silent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from faust.types import TableT, TopicT
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas import BuildStatus, RetryRequest
from schemas.serde import encode
from sinks import context_queries
from sinks.context_rows import BUILD_CONTEXT_TABLE, BuildContextRow
from sinks.gateway import ClickHouseGateway
from streams.api_responses import admin_problem, answer, error, json_body, window_view
from streams.builds import load_state
from streams.exceptions import RequestBodyRefused
from streams.retention_cache import RetentionCache
from streams.retry_assessment import Assessment, RetryAssessor
from streams.retry_eligibility import Eligibility
from streams.retry_openapi import (
    RetentionBody,
    RetryAccepted,
    RetryDecisionsBody,
    RetryEligibilityBody,
    RetryRequestBody,
)
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)


def retry_id_for(build_id: str, idempotency_key: str | None) -> str:
    """Same build and key, same id (a repeated POST is the same retry); no key, a fresh id."""
    if not idempotency_key:
        return uuid.uuid4().hex
    canonical = json.dumps(["cipulse.retry.v1", build_id, idempotency_key], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def register_retry_api(
    app: faust.App,
    *,
    table: TableT[bytes, Any],
    retries: TopicT,
    gateway: ClickHouseGateway,
    settings: CipulseSettings,
) -> None:
    assessor = RetryAssessor(
        gateway, RetentionCache(gateway, settings.retention_cache_seconds),
        timedelta(seconds=settings.retry_safety_margin_seconds),
    )

    @app.page("/builds/{build_id}/retry-eligibility", name="retry_eligibility")
    class EligibilityView(View):
        @app.table_route(table=table, match_info="build_id")  # type: ignore[arg-type]
        async def get(self, request: Request, build_id: str) -> Response:
            endpoint = "retry_eligibility"
            try:
                assessment = await assessor.assess(build_id, load_state(table.get(build_id.encode())))
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            await assessor.record(assessment, "check")
            verdict = assessment.eligibility
            if verdict.http_status == 404:
                return error(self, endpoint, 404, verdict.message)
            return answer(self, endpoint, 200, _eligibility_body(assessment, assessor.margin).model_dump(mode="json"))

    @app.page("/builds/{build_id}/retry", name="retry_build")
    class RetryView(View):
        @app.table_route(table=table, match_info="build_id")  # type: ignore[arg-type]
        async def post(self, request: Request, build_id: str) -> Response:
            endpoint = "retry_build"
            refusal = admin_problem(request, settings, "retries")
            if refusal:
                return error(self, endpoint, 401, refusal)
            try:
                payload = await json_body(request, {})
                ask = RetryRequestBody.model_validate(payload)
            except RequestBodyRefused as exc:
                return error(self, endpoint, exc.status, str(exc))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
                return error(self, endpoint, 422, f"invalid retry request: {problems}")
            try:
                assessment = await assessor.assess(build_id, load_state(table.get(build_id.encode())))
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            verdict = assessment.eligibility
            if not verdict.eligible or assessment.context is None or assessment.status is None:
                await assessor.record(assessment, "retry")
                return error(self, endpoint, verdict.http_status, f"retry refused: {verdict.message}")
            retry_id = retry_id_for(build_id, request.headers.get("Idempotency-Key"))
            retry = _retry_request(retry_id, assessment.context, assessment.status, verdict, ask)
            try:
                await (await retries.send(key=build_id.encode(), value=encode(retry)))
            except Exception as exc:
                return error(self, endpoint, 503, f"retry not published, Kafka failed: {exc}; nothing was retried")
            await assessor.record(assessment, "retry", retry_id)
            log.info("build %s: retry %s requested by %s (%s)", build_id, retry_id, ask.requested_by, ask.reason or "-")
            body = RetryAccepted(
                retry_id=retry_id, build_id=build_id, topic=retries.get_topic_name(), deadline=verdict.deadline,
                detail="published for the CI system to run; the same Idempotency-Key gives the same retry_id",
            )
            return answer(self, endpoint, 202, body.model_dump(mode="json"))

    app.page("/stats/retries", name="retry_decisions")(
        window_view(gateway, "retry_decisions", context_queries.retry_decision_counts, RetryDecisionsBody, "decisions")
    )


def _eligibility_body(assessment: Assessment, margin: timedelta) -> RetryEligibilityBody:
    verdict = assessment.eligibility
    retention = assessment.retention
    return RetryEligibilityBody(
        build_id=verdict.build_id,
        eligible=verdict.eligible,
        reason=verdict.verdict.value,
        message=verdict.message,
        status=assessment.status.value if assessment.status is not None else None,
        first_seen_at=verdict.first_seen_at,
        age_seconds=verdict.age.total_seconds() if verdict.age is not None else None,
        deadline=verdict.deadline,
        context_present=assessment.context is not None,
        retention=RetentionBody(
            table=BUILD_CONTEXT_TABLE,
            ttl_seconds=retention.ttl.total_seconds() if retention.ttl is not None else None,
            ttl_expression=retention.ttl_expression,
            ttl_problem=retention.ttl_problem,
            oldest_partition=retention.oldest_partition,
            oldest_partition_start=retention.oldest_partition_start,
            margin_seconds=margin.total_seconds(),
            read_at=assessment.window.read_at,
        ),
    )


def _retry_request(
    retry_id: str, context: BuildContextRow, status: BuildStatus, verdict: Eligibility, ask: RetryRequestBody
) -> RetryRequest:
    return RetryRequest(
        retry_id=retry_id,
        build_id=context.build_id,
        project=context.project,
        pipeline=context.pipeline,
        original_status=status.value,
        branch=context.branch or None,
        commit_sha=context.commit_sha or None,
        trigger_reason=context.trigger_reason or None,
        trigger_user=context.trigger_user or None,
        variables=dict(context.variables),
        original_first_seen_at=context.first_seen_at,
        context_deadline=verdict.deadline,
        requested_by=ask.requested_by,
        reason=ask.reason,
        requested_at=datetime.now(UTC),
    )
