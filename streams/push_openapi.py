"""OpenAPI description of the Server-Sent Events push channel (the stream itself is text, not a model)."""

from __future__ import annotations

from streams import api_models as m
from streams.openapi import Endpoint, Param

PUSH_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "stream_builds",
        "/stream/builds",
        "Server-Sent Events: every build-status change set as it happens (`event: build-status`, `data:` the "
        "BuildStatusChange as JSON, `id:` a resumable position); send `Last-Event-ID` to resume after that event. "
        "Starts at the live end; `: heartbeat` comments keep idle streams open; `event: gap` reports a resumed range "
        "already deleted by retention",
        {
            200: ("text/event-stream, open until the client disconnects or the worker stops", None),
            400: ("A filter or the last event id is invalid; the message says what to fix", m.ErrorBody),
            503: ("This worker serves CIPULSE_SSE_MAX_CLIENTS streams already, or Kafka is unreachable", m.ErrorBody),
        },
        (
            Param("project", "query", "Only change sets of this project"),
            Param("pipeline", "query", "Only change sets of this pipeline"),
            Param("build_id", "query", "Only change sets of this build"),
            Param("last_event_id", "query", "Resume after this event id (the Last-Event-ID header wins when both are sent)"),
        ),
        content_type="text/event-stream",
        tags=("push",),
    ),
)
