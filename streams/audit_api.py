"""REST endpoints of review (audit) tracking; described in `streams.audit_openapi`."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TableT, TopicT
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.serde import encode
from sinks import audit_queries
from sinks.gateway import ClickHouseGateway
from streams.api_responses import admin_problem, answer, error, json_body
from streams.audit_detection import AuditPolicy
from streams.audit_openapi import (
    AuditStatsBody,
    AuditTimelineBody,
    OpenAuditEntry,
    OpenAuditsBody,
    RepairAccepted,
    RepairRequest,
)
from streams.audit_state import RepairRefused, validate_manual_repair
from streams.audit_transitions import AuditStatus
from streams.audits import load_audit
from streams.exceptions import ApiRequestError, RequestBodyRefused
from streams.query_params import parse_limit, parse_name, parse_window, reject_unknown
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)


def register_audit_api(
    app: faust.App,
    *,
    table: TableT[bytes, Any],
    events: TopicT,
    gateway: ClickHouseGateway,
    settings: CipulseSettings,
    policy: AuditPolicy,
) -> None:
    @app.page("/audits", name="list_open_audits")
    class OpenAuditsView(View):
        async def get(self, request: Request) -> Response:
            try:
                reject_unknown(request.query, {"project", "min_age", "stuck", "limit"})
                project = parse_name(request.query, "project")
                raw_min_age = request.query.get("min_age")
                min_age = parse_window(raw_min_age, name="min_age") if raw_min_age else None
                stuck = _parse_bool(request.query.get("stuck"), "stuck")
                limit = parse_limit(request.query.get("limit"))
            except ApiRequestError as exc:
                return error(self, "list_open_audits", 400, str(exc))
            now = datetime.now(UTC)
            try:
                rows = await gateway.call(audit_queries.open_audits, now=now, project=project, min_age=min_age, limit=limit)
            except Exception as exc:
                return error(self, "list_open_audits", 503, f"ClickHouse query failed: {exc}")
            entries = []
            for row in rows:
                threshold = policy.stuck_threshold(row.project).total_seconds()
                in_review = row.status in (AuditStatus.REQUESTED.value, AuditStatus.IN_REVIEW.value)
                is_stuck = in_review and row.age_seconds >= threshold
                if stuck is None or stuck == is_stuck:
                    entries.append(OpenAuditEntry(audit=row, stuck=is_stuck, threshold_seconds=threshold))
            body = OpenAuditsBody(now=now, audits=entries)
            return answer(self, "list_open_audits", 200, body.model_dump(mode="json"))

    @app.page("/audits/{audit_id}", name="audit_state")
    class AuditStateView(View):
        @app.table_route(table=table, match_info="audit_id")  # type: ignore[arg-type]
        async def get(self, request: Request, audit_id: str) -> Response:
            state = load_audit(table.get(audit_id.encode()))
            if state is None:
                return error(self, "audit_state", 404, f"unknown audit {audit_id!r}: no event for it was accepted")
            return answer(self, "audit_state", 200, state.model_dump(mode="json"))

    @app.page("/audits/{audit_id}/timeline", name="audit_timeline")
    class AuditTimelineView(View):
        async def get(self, request: Request, audit_id: str) -> Response:
            try:
                timeline = await gateway.call(audit_queries.audit_timeline, audit_id)
            except Exception as exc:
                return error(self, "audit_timeline", 503, f"ClickHouse query failed: {exc}")
            if timeline is None:
                return error(self, "audit_timeline", 404, f"no history for audit {audit_id!r}")
            return answer(self, "audit_timeline", 200, AuditTimelineBody(timeline=timeline).model_dump(mode="json"))

    @app.page("/audits/{audit_id}/repair", name="repair_audit")
    class RepairView(View):
        @app.table_route(table=table, match_info="audit_id")  # type: ignore[arg-type]
        async def post(self, request: Request, audit_id: str) -> Response:
            refusal = admin_problem(request, settings, "repairs")
            if refusal:
                return error(self, "repair_audit", 401, refusal)
            try:
                payload = await json_body(request, None)
                repair = RepairRequest.model_validate(payload)
            except RequestBodyRefused as exc:
                return error(self, "repair_audit", exc.status, str(exc))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
                return error(self, "repair_audit", 422, f"invalid repair request: {problems}")
            state = load_audit(table.get(audit_id.encode()))
            if state is None:
                return error(self, "repair_audit", 404, f"unknown audit {audit_id!r}: no event for it was accepted")
            outcome = validate_manual_repair(
                state, AuditStatus(repair.target_status), repair.reason, repair.actor,
                now=datetime.now(UTC), repair_id=f"{audit_id}/manual/{uuid.uuid4().hex}",
            )
            if isinstance(outcome, RepairRefused):
                return error(self, "repair_audit", 400, f"repair refused: {outcome.rule}")
            await (await events.send(key=audit_id.encode(), value=encode(outcome)))
            log.warning("audit %s: manual repair to %s by %s: %s", audit_id, repair.target_status, repair.actor, repair.reason)
            body = RepairAccepted(
                audit_id=audit_id, event_id=outcome.event_id, target_status=repair.target_status,
                detail="published to the audit events topic; the audit state shows it once applied",
            )
            return answer(self, "repair_audit", 202, body.model_dump())

    @app.page("/stats/audits", name="audit_stats")
    class AuditStatsView(View):
        async def get(self, request: Request) -> Response:
            try:
                reject_unknown(request.query, {"window", "project"})
                window = parse_window(request.query.get("window"))
                project = parse_name(request.query, "project")
            except ApiRequestError as exc:
                return error(self, "audit_stats", 400, str(exc))
            now = datetime.now(UTC)
            try:
                by_age = await gateway.call(audit_queries.open_audits_by_age_bucket, now=now, project=project)
                review = await gateway.call(audit_queries.time_in_review, window=window, now=now, project=project)
                repairs = await gateway.call(audit_queries.repairs_per_day, window=window, now=now, project=project)
            except Exception as exc:
                return error(self, "audit_stats", 503, f"ClickHouse query failed: {exc}")
            body = AuditStatsBody(
                window_seconds=int(window.total_seconds()), open_by_age=by_age, time_in_review=review,
                repairs_per_day=repairs,
            )
            return answer(self, "audit_stats", 200, body.model_dump(mode="json"))


def _parse_bool(raw: str | None, name: str) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiRequestError(f"{name}={raw!r} must be true or false")
