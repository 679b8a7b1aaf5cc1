"""REST callbacks, the pure part: which callback events a change set is, who wants them, what
is sent, under which id, and when a failing callback is disabled.

- **Event kinds.** A node (the build, a stage, a task) *starts* when it enters RUNNING from any
  other status (or is first seen RUNNING), and *finishes* when it enters a final status
  (SUCCEEDED, FAILED, CANCELED; SKIPPED for stages and tasks) from a non-final one. PREPARING
  is not a start: it is the runner getting ready and may fall back to QUEUED. A build that jumps
  from QUEUED straight to a final status (its RUNNING event late or never sent) gets
  `build_finished` without `build_started`; the late RUNNING event changes no status, so it
  never produces a `started` afterwards. A re-sent final status changes nothing, so it never
  produces a second `finished`.
- **Delivery id.** sha256 of (callback, build, revision, event kind, stage, task): a change set
  replayed after a crash, or re-read after a restart, yields the same id, which is sent as
  `Idempotency-Key` so the receiver can de-duplicate. `(build_id, revision)` identifies a change.
- **Body.** Canonical JSON (sorted keys, no spaces), with no send time in it: a redelivery sends
  the same bytes, and the HMAC signature covers exactly those bytes.
- **Disable rule.** A callback is disabled when every attempt since its last acknowledged one
  failed, and the first of those failures is `disable_after` or longer ago.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas import BuildScope, BuildStatus, BuildStatusChange, NodeChange
from streams.transitions import is_final


class CallbackEventKind(StrEnum):
    BUILD_STARTED = "build_started"
    BUILD_FINISHED = "build_finished"
    STAGE_STARTED = "stage_started"
    STAGE_FINISHED = "stage_finished"
    TASK_STARTED = "task_started"
    TASK_FINISHED = "task_finished"


_KINDS = {
    (BuildScope.BUILD, True): CallbackEventKind.BUILD_STARTED,
    (BuildScope.BUILD, False): CallbackEventKind.BUILD_FINISHED,
    (BuildScope.STAGE, True): CallbackEventKind.STAGE_STARTED,
    (BuildScope.STAGE, False): CallbackEventKind.STAGE_FINISHED,
    (BuildScope.TASK, True): CallbackEventKind.TASK_STARTED,
    (BuildScope.TASK, False): CallbackEventKind.TASK_FINISHED,
}


@dataclass(frozen=True)
class CallbackEvent:
    """One start or finish of one node, found in one change set."""

    kind: CallbackEventKind
    change: BuildStatusChange
    node: NodeChange | None
    """The stage or task; None for build-level events."""

    @property
    def stage_id(self) -> str:
        return self.node.stage_id if self.node is not None else ""

    @property
    def task_id(self) -> str:
        return (self.node.task_id or "") if self.node is not None else ""


def lifecycle_step(status: BuildStatus, previous: BuildStatus | None) -> bool | None:
    """True when a node started, False when it finished, None when neither happened."""
    if status is BuildStatus.RUNNING and previous is not BuildStatus.RUNNING:
        return True
    if is_final(status) and (previous is None or not is_final(previous)):
        return False
    return None


def callback_events(change: BuildStatusChange) -> list[CallbackEvent]:
    """The starts and finishes in `change`: the build's first, then its nodes' in order."""
    events: list[CallbackEvent] = []
    started = lifecycle_step(change.status, change.previous_status)
    if started is not None:
        events.append(CallbackEvent(_KINDS[BuildScope.BUILD, started], change, None))
    for node in change.nodes:
        started = lifecycle_step(node.status, node.previous_status)
        if started is not None:
            events.append(CallbackEvent(_KINDS[node.scope, started], change, node))
    return events


@dataclass(frozen=True)
class CallbackTarget:
    """What the dispatcher needs of a subscription (a `sinks.callback_rows` row, minus storage)."""

    callback_id: str
    project: str
    pipeline: str
    """'' means every pipeline of the project."""
    url: str
    events: frozenset[CallbackEventKind]
    secret: str
    """'' means unsigned."""
    active: bool
    version: int = 0
    """The subscription row's version: a new one (re-enabled) starts a fresh health record."""
    active_since: datetime | None = None
    """When the current status began; failures before a re-enable do not count towards disabling."""


def wants(target: CallbackTarget, event: CallbackEvent) -> bool:
    """Does `target` subscribe to `event` (active or not: a disabled one gets a `skipped` row)?"""
    change = event.change
    return (
        target.project == change.project
        and target.pipeline in ("", change.pipeline)
        and event.kind in target.events
    )


def delivery_id(callback_id: str, event: CallbackEvent) -> str:
    """The delivery's stable id, sent as `Idempotency-Key`."""
    change = event.change
    canonical = json.dumps(
        ["cipulse.callback.v1", callback_id, change.build_id, change.revision, event.kind.value,
         event.stage_id, event.task_id],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def callback_payload(callback_id: str, event: CallbackEvent, api_url: str) -> dict[str, Any]:
    """The JSON document a receiver gets for one event."""
    change = event.change
    node = event.node
    body: dict[str, Any] = {
        "delivery_id": delivery_id(callback_id, event),
        "callback_id": callback_id,
        "event": event.kind.value,
        "build_id": change.build_id,
        "project": change.project,
        "pipeline": change.pipeline,
        "revision": change.revision,
        "event_time": change.event_time.isoformat(),
        "build": {
            "status": change.status.value,
            "previous_status": _value(change.previous_status),
            "branch": change.branch,
            "commit_sha": change.commit_sha,
            "trigger_reason": _value(change.trigger_reason),
            "trigger_user": change.trigger_user,
            "queued_at": _time(change.queued_at),
            "started_at": _time(change.started_at),
            "finished_at": _time(change.finished_at),
            "duration_ms": change.duration_ms,
            "error_reason": change.error_reason,
            "termination_reason": change.termination_reason,
        },
        "links": {"build": f"{api_url}/builds/{change.build_id}"},
    }
    if node is not None:
        body["node"] = {
            "scope": node.scope.value,
            "stage_id": node.stage_id,
            "task_id": node.task_id,
            "name": node.name,
            "status": node.status.value,
            "previous_status": _value(node.previous_status),
            "started_at": _time(node.started_at),
            "finished_at": _time(node.finished_at),
            "duration_ms": node.duration_ms,
            "error_reason": node.error_reason,
            "termination_reason": node.termination_reason,
            "exit_code": node.exit_code,
        }
    return body


def callback_body(callback_id: str, event: CallbackEvent, api_url: str) -> bytes:
    """Canonical JSON bytes of `callback_payload`: sign these exact bytes and send them."""
    return json.dumps(
        callback_payload(callback_id, event, api_url), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@dataclass(frozen=True)
class CallbackHealth:
    """A callback's receiver as its attempts show it; `failing_since` starts a failure streak."""

    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


def after_attempt(health: CallbackHealth, at: datetime, error: str | None) -> CallbackHealth:
    """The health after an attempt at `at` that succeeded (`error` None) or failed with `error`."""
    if error is None:
        return replace(health, failing_since=None, last_success_at=at)
    return replace(health, failing_since=health.failing_since or at, last_failure_at=at, last_error=error)


def should_disable(health: CallbackHealth, now: datetime, disable_after: timedelta) -> bool:
    """Every attempt since the last success failed, for `disable_after` or longer."""
    return health.failing_since is not None and now - health.failing_since >= disable_after


def disable_reason(health: CallbackHealth, disable_after: timedelta) -> str:
    since = health.failing_since.isoformat() if health.failing_since else "?"
    return (
        f"every delivery attempt since {since} failed (longer than {disable_after.total_seconds():g}s); "
        f"last error: {health.last_error or 'unknown'}. Fix the receiver, then POST /callbacks/{{id}}/enable"
    )


def _value(enum: Any) -> str | None:
    return None if enum is None else str(enum.value)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
