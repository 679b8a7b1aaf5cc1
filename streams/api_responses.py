"""What every REST view answers with: JSON bodies counted per endpoint and status, errors as
`ErrorBody`, and the bearer-token check of state-changing calls."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from faust.web import Request, Response, View
from pydantic import BaseModel

from sinks.gateway import ClickHouseGateway

from streams import api_models as m
from streams import metrics
from streams.exceptions import ApiRequestError, RequestBodyRefused
from streams.query_params import parse_name, parse_window, reject_unknown
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

WindowQuery = Callable[..., Sequence[Any]]
"""`fn(client, database, *, window, now, project)`: a `sinks` query over a look-back window."""

_WINDOW_PARAMETERS = {"window", "project"}


def answer(view: View, endpoint: str, status: int, body: Any) -> Response:
    """A JSON response, counted in `cipulse_api_requests_total`."""
    metrics.API_REQUESTS.labels(endpoint, str(status)).inc()
    return view.json(body, status=status)


def error(view: View, endpoint: str, status: int, message: str) -> Response:
    """An `ErrorBody` response whose message says what to fix."""
    return answer(view, endpoint, status, m.ErrorBody(error=message).model_dump())


def admin_problem(request: Request, settings: CipulseSettings, what: str) -> str | None:
    """None when the bearer token matches CIPULSE_ADMIN_TOKEN; else what is wrong (never the token).

    `what` names the disabled feature in the message ("repairs", "retries").
    """
    if settings.admin_token is None:
        return f"{what} are disabled: set CIPULSE_ADMIN_TOKEN on the worker and send it as a bearer token"
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "missing credentials: send 'Authorization: Bearer <CIPULSE_ADMIN_TOKEN>'"
    if not hmac.compare_digest(token.encode(), settings.admin_token.get_secret_value().encode()):
        return "wrong bearer token"
    return None


async def json_body(request: Request, empty: Any) -> Any:
    """The request's JSON body (`empty` when there is none); `RequestBodyRefused` otherwise.

    Every way a client's body can be unreadable is the client's mistake and gets a JSON error:
    over aiohttp's 1 MiB limit (413; aiohttp's own answer would be plain text), not UTF-8, not
    JSON, or nested deeper than the parser's stack (422; these used to escape as a 500).
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestBodyRefused(413, f"the body is too large for this endpoint: {exc.text}") from exc
    if not raw:
        return empty
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestBodyRefused(422, f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise RequestBodyRefused(422, "body is not JSON this API can read: arrays/objects nest too deeply") from exc


def window_view(
    gateway: ClickHouseGateway, endpoint: str, query: WindowQuery, body_type: type[BaseModel], field: str
) -> type[View]:
    """A GET view over `query` for `?window=&project=`, answering `body_type` with rows in `field`."""

    class WindowView(View):
        async def get(self, request: Request) -> Response:
            try:
                reject_unknown(request.query, _WINDOW_PARAMETERS)
                window = parse_window(request.query.get("window"))
                project = parse_name(request.query, "project")
            except ApiRequestError as exc:
                return error(self, endpoint, 400, str(exc))
            until = datetime.now(UTC)
            try:
                rows = await gateway.call(query, window=window, now=until, project=project)
            except Exception as exc:
                log.error("%s query failed: %s", endpoint, exc)
                return error(self, endpoint, 503, f"ClickHouse query failed: {exc}")
            body = body_type.model_validate(
                {"window_seconds": int(window.total_seconds()), "since": until - window, "until": until, field: rows}
            )
            return answer(self, endpoint, 200, body.model_dump(mode="json"))

    return WindowView
