"""Serve a table lookup on the worker that owns the key, or say 503 + Retry-After why not.

Replaces Faust's `app.table_route` for `GET /builds/{build_id}`. The stock decorator (faust
0.15.3 `App.table_route` -> `Router.route_req`/`_route_req`) has three faults during a
rebalance: the owner runs the handler while its table is still being restored from the
changelog (the key looks absent: a false 404 for seconds), forwarding to a worker that just
left raises the client's connection error (a 500), and the forwarded answer loses its headers.

Here a worker answers from its own table only when `streams.readiness.tables_unavailable` says
the table is usable; forwards at most once (a worker receiving a forwarded request it does not
own answers 503 instead of forwarding again: the two disagree because the assignment is
moving), with a short timeout; and relays the owner's status, body and `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import faust
from faust.types import TableT
from faust.web import Request, Response, View
from yarl import URL

from streams.api_responses import error
from streams.log_throttle import LogThrottle
from streams.readiness import tables_unavailable

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Cipulse-Forwarded-By"
"""Set on a forwarded lookup (to the forwarding worker's URL): the owner never forwards it again."""
FORWARD_TIMEOUT_SECONDS = 2.0
"""Longest a forwarded lookup may take before the owner counts as unreachable."""
RETRY_AFTER_REBALANCE_SECONDS = 2
"""Retry-After while partitions move or a table restores (seconds; a restore takes a few)."""
RETRY_AFTER_UNREACHABLE_SECONDS = 5
"""Retry-After when the owner does not answer: its partitions move once the group notices."""

UNREACHABLE_LOG_INTERVAL_SECONDS = 10.0
"""At most one WARNING per unreachable owner this often (every lookup fails the same way meanwhile)."""
_unreachable_log = LogThrottle(UNREACHABLE_LOG_INTERVAL_SECONDS)

_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", FORWARDED_HEADER.lower()}


def unavailable(view: View, endpoint: str, message: str, retry_after: int) -> Response:
    """503 with an `ErrorBody` saying why, and `Retry-After` saying when to ask again."""
    response = error(view, endpoint, 503, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _ident(url: URL) -> tuple[str, int]:
    """Host and port as Faust's router compares them (`Router._urlident`)."""
    return ((url.host if url.scheme else url.path) or "", int(url.port or 80))


async def route_to_owner(
    app: faust.App,
    table: TableT[Any, Any],
    key: str,
    view: View,
    request: Request,
    endpoint: str,
    serve_locally: Callable[[], Awaitable[Response]],
) -> Response:
    """`serve_locally()` when this worker owns `key` and its table is usable; else forward or 503."""
    try:
        owner = URL(str(app.router.key_store(table.name, key)))
    except KeyError:  # no assignment known for the key's partition yet
        return unavailable(
            view, endpoint,
            "the table is being rebalanced: no worker owns this key's partition yet; retry shortly",
            RETRY_AFTER_REBALANCE_SECONDS,
        )
    if _ident(owner) == _ident(URL(str(app.conf.canonical_url))):
        reason = tables_unavailable(app)
        if reason is not None:
            return unavailable(
                view, endpoint, f"the table is being rebalanced/restored on this worker ({reason}); retry shortly",
                RETRY_AFTER_REBALANCE_SECONDS,
            )
        return await serve_locally()
    if request.headers.get(FORWARDED_HEADER):
        return unavailable(
            view, endpoint,
            f"the table is being rebalanced: {request.headers[FORWARDED_HEADER]} sent this lookup here, but this "
            f"worker sees {owner.host}:{owner.port} as the key's owner; retry shortly",
            RETRY_AFTER_REBALANCE_SECONDS,
        )
    return await _forward(app, owner, view, request, endpoint)


async def _forward(app: faust.App, owner: URL, view: View, request: Request, endpoint: str) -> Response:
    host, port = _ident(owner)
    url = request.url.with_host(host).with_port(port)
    headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_HEADERS}
    headers[FORWARDED_HEADER] = str(app.conf.canonical_url)
    try:
        async with app.http_client.request(
            method=request.method, url=url, headers=headers,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
        ) as response:
            body = await response.read()
            relayed = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else None
            return view.bytes(body, content_type=response.content_type, status=response.status, headers=relayed)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        what = f"no answer within {FORWARD_TIMEOUT_SECONDS:g}s" if isinstance(exc, asyncio.TimeoutError) else repr(exc)
        admitted, suppressed = _unreachable_log.admit(f"{host}:{port}")
        if admitted:
            also = f" ({suppressed} more lookups failed the same way since the last such line)" if suppressed else ""
            log.warning("%s: the owner %s:%s of the key is unreachable: %s%s", endpoint, host, port, what, also)
        return unavailable(
            view, endpoint,
            f"the worker owning this key ({host}:{port}) is unreachable ({what}); it may have just left, and its "
            "partitions move to the other workers once the group rebalances: retry shortly",
            RETRY_AFTER_UNREACHABLE_SECONDS,
        )
