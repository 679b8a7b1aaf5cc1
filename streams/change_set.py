"""Turn an accepted state change into the minimal change set consumers receive.

A change set carries the build's header (so a consumer never needs earlier
messages to know where a build stands) plus only the build-level fields and the
stage/task node that changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import BuildEvent, BuildScope, BuildStatusChange, NodeChange
from streams.build_state import Accepted, BuildState, StageState, TaskState


def change_set(accepted: Accepted, event: BuildEvent) -> BuildStatusChange:
    """Describe `accepted` for the build-status topic; `event` is what caused it."""
    state = accepted.state
    previous = accepted.previous
    nodes: list[NodeChange] = []
    if accepted.node_key is not None:
        nodes.append(_node_change(state, previous, accepted.node_key))
    # Every value below comes from validated events (the state holds nothing else), so the
    # change set is not validated again; test_streams_change_set proves it equals the validated one.
    return BuildStatusChange.from_checked_values({
        "build_id": state.build_id,
        "project": state.project,
        "pipeline": state.pipeline,
        "seq": event.seq,
        "revision": state.revision,
        "event_id": event.event_id,
        "event_time": event.event_time,
        "status": state.status,
        "previous_status": previous.status if previous is not None and previous.seq >= 0 else None,
        "first_seen_at": _utc(state.first_seen_at),
        "queued_at": _utc(state.queued_at),
        "started_at": _utc(state.started_at),
        "finished_at": _utc(state.finished_at),
        "duration_ms": state.duration_ms,
        "trigger_reason": state.trigger_reason,
        "trigger_user": state.trigger_user,
        "branch": state.branch,
        "error_reason": state.error_reason,
        "termination_reason": state.termination_reason,
        "changed_fields": list(accepted.changed_fields),
        "nodes": nodes,
        "commit_sha": state.commit_sha,
        "executor": state.executor,
        "environment": dict(state.environment),
    })


def _node_change(
    state: BuildState, previous: BuildState | None, node_key: tuple[str, str | None]
) -> NodeChange:
    stage_id, task_id = node_key
    node = _find(state, stage_id, task_id)
    before = _find(previous, stage_id, task_id) if previous is not None else None
    if node is None:  # pragma: no cover - apply_event always creates the node it reports
        raise LookupError(f"node {stage_id}/{task_id} missing from build {state.build_id}")
    return NodeChange.from_checked_values({
        "scope": BuildScope.TASK if task_id is not None else BuildScope.STAGE,
        "stage_id": stage_id,
        "task_id": task_id,
        "name": node.name,
        "status": node.status,
        "previous_status": before.status if before is not None and before.seq >= 0 else None,
        "started_at": _utc(node.started_at),
        "finished_at": _utc(node.finished_at),
        "duration_ms": node.duration_ms,
        "error_reason": node.error_reason,
        "termination_reason": node.termination_reason if isinstance(node, TaskState) else None,
        "exit_code": node.exit_code if isinstance(node, TaskState) else None,
    })


def _utc(value: datetime | None) -> datetime | None:
    """The same instant with `datetime.UTC`, as validation gives it (states read back from the
    table carry pydantic's own UTC tzinfo)."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def _find(state: BuildState | None, stage_id: str, task_id: str | None) -> StageState | TaskState | None:
    if state is None:
        return None
    stage = state.stages.get(stage_id)
    if stage is None or task_id is None:
        return stage
    return stage.tasks.get(task_id)
