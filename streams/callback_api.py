"""REST endpoints of callback subscriptions; described in `streams.callback_openapi`.

Subscriptions live in ClickHouse (`callback_subscriptions`, versioned), so any worker can serve
any request. State-changing calls need `Authorization: Bearer $CIPULSE_ADMIN_TOKEN`; after each
one the worker's own dispatcher cache is invalidated, so the change applies to its next batch.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from sinks import callback_queries
from sinks.callback_rows import STATUS_ACTIVE, STATUS_DELETED, CallbackSubscriptionRow
from sinks.callback_writer import write_subscription
from sinks.gateway import ClickHouseGateway
from streams.api_responses import admin_problem, answer, error, json_body
from streams.callback_openapi import CallbackBody, CallbackDeliveriesBody, CallbackListBody
from streams.callback_subscriptions import CallbackCreate, callback_id_for, created, next_version
from streams.callbacks import CallbackRegistry
from streams.exceptions import ApiRequestError, RequestBodyRefused
from streams.query_params import parse_limit, parse_name, reject_unknown
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)


def register_callback_api(
    app: faust.App, *, gateway: ClickHouseGateway, registry: CallbackRegistry, settings: CipulseSettings
) -> None:
    async def body_of(row: CallbackSubscriptionRow) -> CallbackBody:
        summaries = await gateway.call(callback_queries.delivery_summaries, [row.callback_id])
        return CallbackBody.of(row, summaries.get(row.callback_id))

    async def existing(view: View, endpoint: str, callback_id: str) -> CallbackSubscriptionRow | Response:
        try:
            row = await gateway.call(callback_queries.subscription, callback_id)
        except Exception as exc:
            log.error("%s: reading callback %s failed: %s", endpoint, callback_id, exc)
            return error(view, endpoint, 503, f"ClickHouse query failed: {exc}")
        if row is None:
            return error(view, endpoint, 404, f"unknown callback {callback_id!r}: list them with GET /callbacks")
        if row.status == STATUS_DELETED:
            return error(view, endpoint, 404, f"callback {callback_id!r} was deleted at {row.status_changed_at.isoformat()}")
        return row

    async def store(view: View, endpoint: str, row: CallbackSubscriptionRow, status: int) -> Response:
        try:
            await gateway.call(write_subscription, row)
            body = await body_of(row)
        except Exception as exc:
            log.error("%s: storing callback %s failed: %s", endpoint, row.callback_id, exc)
            return error(view, endpoint, 503, f"callback not stored, ClickHouse failed: {exc}")
        registry.invalidate()
        return answer(view, endpoint, status, body.model_dump(mode="json"))

    @app.page("/callbacks", name="callbacks")
    class CallbacksView(View):
        async def get(self, request: Request) -> Response:
            endpoint = "list_callbacks"
            try:
                reject_unknown(request.query, {"project"})
                project = parse_name(request.query, "project")
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            try:
                rows = await gateway.call(callback_queries.current_subscriptions, project=project)
                summaries = await gateway.call(callback_queries.delivery_summaries, [row.callback_id for row in rows])
            except Exception as exc:
                log.error("%s query failed: %s", endpoint, exc)
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            body = CallbackListBody(callbacks=[CallbackBody.of(row, summaries.get(row.callback_id)) for row in rows])
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

        async def post(self, request: Request) -> Response:
            endpoint = "create_callback"
            refusal = admin_problem(request, settings, "callback changes")
            if refusal:
                return error(self, endpoint, 401, refusal)
            try:
                ask = CallbackCreate.model_validate(await json_body(request, {}))
            except RequestBodyRefused as exc:
                return error(self, endpoint, exc.status, str(exc))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
                return error(self, endpoint, 422, f"invalid callback: {problems}")
            callback_id = callback_id_for(request.headers.get("Idempotency-Key"))
            try:
                earlier = await gateway.call(callback_queries.subscription, callback_id)
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            if earlier is not None and earlier.status != STATUS_DELETED:
                return answer(self, endpoint, 201, (await body_of(earlier)).model_dump(mode="json"))
            row = created(callback_id, ask, datetime.now(UTC))
            if earlier is not None:  # re-created after a delete with the same key: above the tombstone
                row = replace(row, version=max(row.version, earlier.version + 1))
            log.info("callback %s created: %s for project %s%s, events %s, %s", callback_id, row.url, row.project,
                     f" pipeline {row.pipeline}" if row.pipeline else "", ",".join(row.events),
                     "signed" if row.secret else "unsigned")
            return await store(self, endpoint, row, 201)

    @app.page("/callbacks/{callback_id}", name="callback")
    class CallbackView(View):
        async def get(self, request: Request, callback_id: str) -> Response:
            endpoint = "get_callback"
            row = await existing(self, endpoint, callback_id)
            if not isinstance(row, CallbackSubscriptionRow):
                return row
            try:
                body = await body_of(row)
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

        async def delete(self, request: Request, callback_id: str) -> Response:
            endpoint = "delete_callback"
            refusal = admin_problem(request, settings, "callback changes")
            if refusal:
                return error(self, endpoint, 401, refusal)
            row = await existing(self, endpoint, callback_id)
            if not isinstance(row, CallbackSubscriptionRow):
                return row
            log.info("callback %s deleted (%s, project %s)", callback_id, row.url, row.project)
            return await store(self, endpoint, next_version(row, STATUS_DELETED, "deleted through the API", datetime.now(UTC)), 200)

    @app.page("/callbacks/{callback_id}/enable", name="enable_callback")
    class EnableView(View):
        async def post(self, request: Request, callback_id: str) -> Response:
            endpoint = "enable_callback"
            refusal = admin_problem(request, settings, "callback changes")
            if refusal:
                return error(self, endpoint, 401, refusal)
            row = await existing(self, endpoint, callback_id)
            if not isinstance(row, CallbackSubscriptionRow):
                return row
            if row.status == STATUS_ACTIVE:
                return answer(self, endpoint, 200, (await body_of(row)).model_dump(mode="json"))
            log.info("callback %s re-enabled (was %s: %s)", callback_id, row.status, row.status_reason)
            return await store(self, endpoint, next_version(row, STATUS_ACTIVE, "re-enabled through the API", datetime.now(UTC)), 200)

    @app.page("/callbacks/{callback_id}/deliveries", name="callback_deliveries")
    class DeliveriesView(View):
        async def get(self, request: Request, callback_id: str) -> Response:
            endpoint = "callback_deliveries"
            try:
                reject_unknown(request.query, {"limit"})
                limit = parse_limit(request.query.get("limit"), default=100, maximum=1000)
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            row = await existing(self, endpoint, callback_id)
            if not isinstance(row, CallbackSubscriptionRow):
                return row
            try:
                attempts = await gateway.call(callback_queries.deliveries_for, callback_id, limit=limit)
            except Exception as exc:
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            body = CallbackDeliveriesBody(callback_id=callback_id, attempts=attempts)
            return answer(self, endpoint, 200, body.model_dump(mode="json"))
