"""What every REST view answers with: JSON bodies counted per endpoint and status, errors as
`ErrorBody`, and the bearer-token check of state-changing calls."""

from __future__ import annotations

import hmac
from typing import Any

from faust.web import Request, Response, View

from streams import api_models as m
from streams import metrics
from streams.settings import CipulseSettings


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
