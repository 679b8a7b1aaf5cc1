"""HTTP ingest, the part without I/O: who may send (a bearer token per project) and what (build
events, validated by the contract model `schemas.BuildEvent`).

`streams.ingest_api` runs the checks in this order and produces to Kafka only what passes all:
401 (no token, or the token of no project) -> 413 (body or batch too large) -> 422 (not JSON,
wrong shape, or any invalid event: every invalid field is listed, with its index in a batch) ->
403 (an event of a project the token is not for) -> 413 (an event too large to be one Kafka record:
over CIPULSE_INGEST_MAX_EVENT_BYTES once encoded). A refused request produces nothing, so a
client fixes it and sends it again whole.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from schemas import BuildEvent
from streams.exceptions import IngestRefused

_MAX_INPUT_SHOWN = 80


class IngestProblem(BaseModel):
    """One invalid field of one event (`index` is its position in a batch, None for a single event)."""

    index: int | None
    field: str
    message: str


class IngestInvalid(IngestRefused):
    """422 with every problem found, so one round trip shows all that must be fixed."""

    def __init__(self, message: str, problems: Sequence[IngestProblem], events: int) -> None:
        super().__init__(422, message)
        self.problems = list(problems)
        self.events = events
        """How many events the request held (valid ones included)."""
        self.invalid_events = len({problem.index for problem in problems})


def authorize(header: str | None, tokens: Mapping[str, SecretStr]) -> frozenset[str]:
    """The projects whose ingest token the `Authorization` header carries (usually one).

    Every configured token is compared (in constant time each), so the answer time does not
    tell which project's token is closest. Raises `IngestRefused(401)`; the token is never
    part of a message.
    """
    if not tokens:
        raise IngestRefused(
            401,
            "HTTP ingest is disabled on this worker: set CIPULSE_INGEST_TOKENS to a JSON object "
            "{\"<project>\": \"<token>\"} and send the project's token as 'Authorization: Bearer <token>'",
        )
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise IngestRefused(401, "missing credentials: send 'Authorization: Bearer <the project's ingest token>'")
    sent = token.encode()
    matches = [project for project, secret in tokens.items() if hmac.compare_digest(sent, secret.get_secret_value().encode())]
    if not matches:
        raise IngestRefused(401, "the bearer token is not the ingest token of any project (CIPULSE_INGEST_TOKENS)")
    return frozenset(matches)


def check_projects(events: Sequence[BuildEvent], allowed: frozenset[str], batch: bool) -> None:
    """Raise `IngestRefused(403)` naming each foreign project (and, in a batch, its events' indices)."""
    foreign: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        if event.project not in allowed:
            foreign.setdefault(event.project, []).append(index)
    if not foreign:
        return
    owner = ", ".join(repr(p) for p in sorted(allowed))
    parts = [
        f"{project!r}" + (f" (events {', '.join(map(str, indices))})" if batch else "")
        for project, indices in sorted(foreign.items())
    ]
    raise IngestRefused(
        403,
        f"this token is the ingest token of project {owner}; it may not send events of project "
        f"{'; '.join(parts)}: use that project's token" + (" (nothing of this batch was produced)" if batch else ""),
    )


def parse_event(body: bytes) -> BuildEvent:
    """One event object, validated; `IngestRefused(422)` otherwise."""
    payload = _load_json(body, "one BuildEvent as a JSON object")
    if isinstance(payload, list):
        raise IngestRefused(422, "expected one event object; POST a JSON array to /ingest/builds/batch")
    return validate_events([payload], batch=False)[0]


def parse_batch(body: bytes, max_events: int) -> list[BuildEvent]:
    """A JSON array of events or `{"events": [...]}`, at most `max_events`, all valid."""
    payload = _load_json(body, 'a JSON array of BuildEvents, or {"events": [...]}')
    if isinstance(payload, dict):
        if set(payload) != {"events"} or not isinstance(payload["events"], list):
            raise IngestRefused(
                422,
                'a batch is a JSON array of events or an object with exactly one key, "events", holding '
                f"that array (got an object with keys {', '.join(sorted(map(str, payload))) or 'none'})",
            )
        payload = payload["events"]
    if not isinstance(payload, list):
        raise IngestRefused(422, f'a batch is a JSON array of events or {{"events": [...]}}, not a {type(payload).__name__}')
    if not payload:
        raise IngestRefused(422, "the batch is empty: send at least one event")
    if len(payload) > max_events:
        raise IngestRefused(
            413,
            f"the batch holds {len(payload)} events; at most {max_events} per request "
            "(CIPULSE_INGEST_MAX_BATCH): split it",
        )
    return validate_events(payload, batch=True)


def validate_events(items: Sequence[Any], batch: bool) -> list[BuildEvent]:
    """Validate every item as a `BuildEvent` with JSON rules; raise `IngestInvalid` listing all problems."""
    events: list[BuildEvent] = []
    problems: list[IngestProblem] = []
    for index, item in enumerate(items):
        try:
            events.append(BuildEvent.model_validate_json(json.dumps(item)))
        except RecursionError:  # json.dumps of an item nested almost as deep as json.loads allows
            problems.append(IngestProblem(
                index=index if batch else None, field="<event>", message="nested too deeply to be a BuildEvent",
            ))
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                field = ".".join(str(part) for part in detail.get("loc", ())) or "<event>"
                shown = repr(detail.get("input"))
                if len(shown) > _MAX_INPUT_SHOWN:
                    shown = shown[:_MAX_INPUT_SHOWN] + "..."
                problems.append(IngestProblem(
                    index=index if batch else None, field=field, message=f"{detail.get('msg')} (got {shown})"
                ))
    if problems:
        listed = "; ".join(f"{_where(p)}: {p.message}" for p in problems)
        invalid = len({p.index for p in problems})
        what = f"{invalid} of {len(items)} events are invalid" if batch else "the event is invalid"
        raise IngestInvalid(f"{what}, nothing was produced: {listed}", problems, len(items))
    return events


def _where(problem: IngestProblem) -> str:
    if problem.index is None:
        return problem.field
    return f"events[{problem.index}]" + ("" if problem.field == "<event>" else f".{problem.field}")


def _load_json(body: bytes, expected: str) -> Any:
    if not body.strip():
        raise IngestRefused(422, f"the body is empty: send {expected}")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestRefused(422, f"the body is not JSON ({exc}): send {expected}") from exc
    except RecursionError as exc:  # e.g. 4 MB of '[': the stack, not the body limit, gives out first
        raise IngestRefused(422, f"the body nests arrays/objects too deeply to be read: send {expected}") from exc


RECORD_OVERHEAD_BYTES = 128
"""Kafka's framing around one record, counted against the limit: the record batch header (61 bytes),
the record's own varints and attributes (at most ~25) and slack for headers."""

_LARGEST_FIELDS_SHOWN = 3


class IngestTooLarge(IngestRefused):
    """413: an event is too large to be one Kafka record; `problems` names each such event."""

    def __init__(self, message: str, problems: Sequence[IngestProblem]) -> None:
        super().__init__(413, message)
        self.problems = list(problems)


def record_size(key: bytes, value: bytes) -> int:
    """What one event weighs against the per-record limit: its key, its encoded value and the framing."""
    return len(key) + len(value) + RECORD_OVERHEAD_BYTES


def check_record_sizes(
    events: Sequence[BuildEvent], records: Sequence[tuple[bytes, bytes]], limit: int, batch: bool
) -> None:
    """Raise `IngestTooLarge` naming every event whose (key, encoded value) record exceeds `limit` bytes.

    Kafka refuses a record over the topic's max.message.bytes (1048588 by default) with an error
    that used to surface as a 503 ("Kafka failed") although the client must shrink the event;
    a body limit cannot catch it, since it is per request, not per event.
    """
    problems: list[IngestProblem] = []
    for index, (event, (key, value)) in enumerate(zip(events, records, strict=True)):
        size = record_size(key, value)
        if size > limit:
            problems.append(IngestProblem(
                index=index if batch else None, field="<event>",
                message=f"the event is {size} bytes as a Kafka record; at most {limit} "
                f"(CIPULSE_INGEST_MAX_EVENT_BYTES): shrink {_largest_fields(event)}",
            ))
    if not problems:
        return
    listed = "; ".join(f"{_where(p)}: {p.message}" for p in problems)
    what = f"{len(problems)} of {len(events)} events are too large" if batch else "the event is too large"
    raise IngestTooLarge(f"{what} to be one Kafka record, nothing was produced: {listed}", problems)


def _largest_fields(event: BuildEvent) -> str:
    sizes = {
        name: len(json.dumps(value, default=str))
        for name, value in event.model_dump(mode="json").items()
        if value not in (None, {}, "")
    }
    largest = sorted(sizes, key=lambda name: sizes[name], reverse=True)[:_LARGEST_FIELDS_SHOWN]
    return "its largest fields: " + ", ".join(f"{name} (~{sizes[name]} bytes)" for name in largest)
