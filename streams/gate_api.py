"""REST endpoints of quality gates; described in `streams.gate_openapi`.

Decisions are read from ClickHouse `gate_decisions` (written by the decision sink from the
gate-decisions topic), so any worker answers for every gate, a moment after the decision was
published. Only gates of the current gates file are listed; 404 names the known ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
from faust.web import Request, Response, View

from sinks.gate_rows import GateDecisionRow, decision_history, latest_decisions
from sinks.gateway import ClickHouseGateway
from streams.api_responses import answer, error
from streams.exceptions import ApiRequestError
from streams.gate_config import Gate
from streams.gate_openapi import GateDecisionBody, GateHistoryBody, GatesBody
from streams.query_params import parse_limit, reject_unknown

log = logging.getLogger(__name__)


def not_decided(gate: Gate) -> GateDecisionBody:
    """What a configured gate shows before its first decision."""
    return GateDecisionBody(
        gate=gate.id, project=gate.project, pipeline=gate.pipeline, branch=gate.branch, result="PENDING",
        failing=[], decided_at=None, decision_id=None, inputs={},
    )


def decision_body(row: GateDecisionRow) -> GateDecisionBody:
    return GateDecisionBody.model_validate(row.as_json())


def register_gate_api(app: faust.App, *, gates: Sequence[Gate], gateway: ClickHouseGateway) -> None:
    by_id = {g.id: g for g in gates}

    def unknown(view: View, endpoint: str, gate_id: str) -> Response:
        known = ", ".join(sorted(by_id)) or "none (set CIPULSE_GATES_FILE)"
        return error(view, endpoint, 404, f"unknown gate {gate_id!r}; gates in the gates file: {known}")

    async def current(endpoint: str, view: View) -> dict[str, GateDecisionBody] | Response:
        try:
            rows = await gateway.call(latest_decisions)
        except Exception as exc:
            return error(view, endpoint, 503, f"ClickHouse query failed: {exc}")
        return {row.gate: decision_body(row) for row in rows if row.gate in by_id}

    @app.page("/gates", name="gates")
    class GatesView(View):
        async def get(self, request: Request) -> Response:
            endpoint = "gates"
            try:
                reject_unknown(request.query, set())
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            decided = await current(endpoint, self)
            if isinstance(decided, Response):
                return decided
            body = GatesBody(gates=[decided.get(g.id) or not_decided(g) for g in sorted(gates, key=lambda g: g.id)])
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

    @app.page("/gates/{gate}", name="gate")
    class GateView(View):
        async def get(self, request: Request, gate: str) -> Response:
            endpoint = "gate"
            try:
                reject_unknown(request.query, set())
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            if gate not in by_id:
                return unknown(self, endpoint, gate)
            decided = await current(endpoint, self)
            if isinstance(decided, Response):
                return decided
            body = decided.get(gate) or not_decided(by_id[gate])
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

    @app.page("/gates/{gate}/history", name="gate_history")
    class GateHistoryView(View):
        async def get(self, request: Request, gate: str) -> Response:
            endpoint = "gate_history"
            try:
                reject_unknown(request.query, {"limit"})
                limit = parse_limit(request.query.get("limit"), default=100, maximum=1000)
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            if gate not in by_id:
                return unknown(self, endpoint, gate)
            try:
                rows = await gateway.call(decision_history, gate, limit=limit)
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            body = GateHistoryBody(gate=gate, decisions=[decision_body(r) for r in rows])
            return answer(self, endpoint, 200, body.model_dump(mode="json"))
