"""Current state of one build (with its stage/task tree) and the pure function that
applies a `BuildEvent` to it.

This is the only place that decides whether an event changes a build. Agents call
`apply_event` and act on the typed outcome; they hold no lifecycle logic themselves.
Idempotence rests on sequence numbers kept per node: an event whose `seq` is not
newer than the node's last applied `seq` is a duplicate or a late arrival and never
moves a node backwards, so Kafka redelivery cannot double count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason
from streams.termination import TerminationVerdict, judge, termination_status
from streams.transitions import is_final, transition_rule

NOT_REPORTED = -1
"""`seq` of a node that exists only because a child reported first."""


class NodeTimes(BaseModel):
    """Lifecycle timestamps shared by builds, stages and tasks."""

    model_config = ConfigDict(extra="forbid")

    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    corrected_from: BuildStatus | None = None
    """The status a runner reported that its own termination facts contradicted (kept for audit)."""
    correction_reason: str | None = None


class TaskState(NodeTimes):
    task_id: str
    name: str | None = None
    status: BuildStatus = BuildStatus.QUEUED
    seq: int = NOT_REPORTED
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    executor: str | None = None


class StageState(NodeTimes):
    stage_id: str
    name: str | None = None
    status: BuildStatus = BuildStatus.QUEUED
    seq: int = NOT_REPORTED
    error_reason: str | None = None
    tasks: dict[str, TaskState] = {}


class BuildState(NodeTimes):
    """What the build-state table holds per build id."""

    build_id: str
    project: str
    pipeline: str
    status: BuildStatus = BuildStatus.QUEUED
    seq: int = NOT_REPORTED
    last_seq: int = NOT_REPORTED
    revision: int = 0
    first_seen_at: datetime
    updated_at: datetime
    trigger_reason: TriggerReason | None = None
    trigger_user: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    environment: dict[str, str] = {}
    executor: str | None = None
    executor_labels: dict[str, str] = {}
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    stages: dict[str, StageState] = {}

    @property
    def queue_ms(self) -> int | None:
        if self.queued_at is None or self.started_at is None:
            return None
        return max(0, _millis_between(self.queued_at, self.started_at))


@dataclass(frozen=True)
class Accepted:
    """The event changed the build; `changed_fields` names build-level fields that moved."""

    state: BuildState
    previous: BuildState | None
    changed_fields: tuple[str, ...]
    node_key: tuple[str, str | None] | None
    """(stage_id, task_id) of the stage/task the event was about, None for build events."""


@dataclass(frozen=True)
class Ignored:
    """A duplicate or late event: nothing changed, and nothing must be emitted."""

    kind: Literal["duplicate", "late"]
    reason: str


@dataclass(frozen=True)
class Rejected:
    """The event contradicts the build's lifecycle; it belongs in the dead-letter topic."""

    reason: str


Outcome = Accepted | Ignored | Rejected

_BUILD_CONTEXT_FIELDS = (
    "trigger_reason",
    "trigger_user",
    "branch",
    "commit_sha",
    "executor",
    "error_reason",
    "termination_reason",
    "exit_code",
)
_HEADER_FIELDS = tuple(
    name for name in BuildState.model_fields if name not in {"stages", "seq", "last_seq", "revision", "updated_at"}
)
"""Build-level fields whose change is reported in a change set's `changed_fields`."""

_STAGE_CONTEXT_FIELDS = ("name", "error_reason")
_TASK_CONTEXT_FIELDS = ("name", "error_reason", "termination_reason", "exit_code", "executor")


def apply_event(state: BuildState | None, event: BuildEvent) -> Outcome:
    """Apply one event to a build's state; pure, so replaying it is always safe."""
    if state is None:
        state = BuildState(
            build_id=event.build_id,
            project=event.project,
            pipeline=event.pipeline,
            first_seen_at=event.event_time,
            updated_at=event.event_time,
        )
        previous: BuildState | None = None
    else:
        previous = state
        mismatch = _ownership_mismatch(state, event)
        if mismatch:
            return Rejected(mismatch)
        # Copy on write: the build's scalars here, the touched stage/task in _apply_to_child;
        # the caller's state is never mutated (a deep copy cost most of the agent's CPU).
        state = state.model_copy()

    if event.scope is BuildScope.BUILD:
        outcome = _apply_to_build(state, event)
        node_key: tuple[str, str | None] | None = None
    else:
        outcome = _apply_to_child(state, event)
        node_key = (event.stage_id or "", event.task_id)
    if not isinstance(outcome, tuple):
        return outcome

    state.last_seq = max(state.last_seq, event.seq)
    state.revision += 1
    state.updated_at = max(state.updated_at, event.event_time)
    return Accepted(state=state, previous=previous, changed_fields=outcome, node_key=node_key)


def _ownership_mismatch(state: BuildState, event: BuildEvent) -> str | None:
    if (state.project, state.pipeline) != (event.project, event.pipeline):
        return (
            f"build {event.build_id} belongs to {state.project}/{state.pipeline}, "
            f"but event seq {event.seq} says {event.project}/{event.pipeline}"
        )
    return None


def _apply_to_build(state: BuildState, event: BuildEvent) -> tuple[str, ...] | Ignored | Rejected:
    before = {name: getattr(state, name) for name in _HEADER_FIELDS}
    before_seq = state.seq
    verdict = _verdict(event, state.termination_reason, state.exit_code)
    if verdict.status is BuildStatus.SUCCEEDED:
        verdict = _killed_task_verdict(state) or verdict
    if event.seq <= state.seq or _repeats_final(state.status, verdict.status):
        if not _fill_gaps(state, event, _BUILD_CONTEXT_FIELDS):
            return _stale(state.seq, event, "build")
    else:
        rule = transition_rule(BuildScope.BUILD, state.status, verdict.status)
        if rule:
            return Rejected(f"build {event.build_id} seq {event.seq}: {rule}")
        state.seq = event.seq
        state.status = verdict.status
        _record_time(state, event)
        _record_verdict(state, event, verdict)
        for name in _BUILD_CONTEXT_FIELDS:
            value = getattr(event, name)
            if value is not None:
                setattr(state, name, value)
        if event.environment:
            state.environment = {**state.environment, **event.environment}
        if event.executor_labels:
            state.executor_labels = {**state.executor_labels, **event.executor_labels}
    after = {name: getattr(state, name) for name in _HEADER_FIELDS}
    first_report = before_seq == NOT_REPORTED and state.seq != NOT_REPORTED
    changed = tuple(name for name in after if after[name] != before[name] or (first_report and name == "status"))
    return changed if changed else Ignored("duplicate", f"build {event.build_id} seq {event.seq} changes nothing")


def _apply_to_child(state: BuildState, event: BuildEvent) -> tuple[str, ...] | Ignored | Rejected:
    stage_id = event.stage_id or ""
    state.stages = dict(state.stages)
    existing_stage = state.stages.get(stage_id)
    stage = existing_stage.model_copy() if existing_stage else StageState(stage_id=stage_id)
    state.stages[stage_id] = stage
    node: StageState | TaskState = stage
    if event.scope is BuildScope.TASK:
        task_id = event.task_id or ""
        stage.tasks = dict(stage.tasks)
        existing_task = stage.tasks.get(task_id)
        task = existing_task.model_copy() if existing_task else TaskState(task_id=task_id)
        stage.tasks[task_id] = task
        node = task
    label = f"{event.scope.value.lower()} {stage_id}" + (
        f"/{event.task_id}" if event.scope is BuildScope.TASK else ""
    )
    fields = _TASK_CONTEXT_FIELDS if isinstance(node, TaskState) else _STAGE_CONTEXT_FIELDS
    if isinstance(node, TaskState):
        verdict = _verdict(event, node.termination_reason, node.exit_code)
    else:
        verdict = _verdict(event, None, None)
    if event.seq <= node.seq or _repeats_final(node.status, verdict.status):
        if _fill_gaps(node, event, fields):
            return ()
        return _stale(node.seq, event, label)
    rule = transition_rule(event.scope, node.status, verdict.status)
    if rule and node.seq != NOT_REPORTED:
        return Rejected(f"build {event.build_id} seq {event.seq}, {label}: {rule}")
    node.seq = event.seq
    node.status = verdict.status
    for name in fields:
        value = getattr(event, name)
        if value is not None:
            setattr(node, name, value)
    _record_time(node, event)
    _record_verdict(node, event, verdict)
    return ()


def _repeats_final(status: BuildStatus, reported: BuildStatus) -> bool:
    """A finished node reported finished again (a re-sent pod event): it only may fill gaps."""
    return is_final(status) and reported == status


def _verdict(event: BuildEvent, recorded_reason: str | None, recorded_exit: int | None) -> TerminationVerdict:
    """The status the event really means, given its own and the node's recorded termination facts."""
    reason = event.termination_reason if event.termination_reason is not None else recorded_reason
    exit_code = event.exit_code if event.exit_code is not None else recorded_exit
    return judge(event.status, reason, exit_code)


def _killed_task_verdict(state: BuildState) -> TerminationVerdict | None:
    """A build reported SUCCEEDED although one of its tasks was killed (node lost, OOM, ...)."""
    for stage in state.stages.values():
        for task in stage.tasks.values():
            demanded = termination_status(task.termination_reason, None) if task.termination_reason else None
            if demanded is not None and task.status is not BuildStatus.SUCCEEDED:
                status, meaning = demanded
                return TerminationVerdict(
                    status, f"reported SUCCEEDED but task {stage.stage_id}/{task.task_id} {meaning}", corrected=True
                )
    return None


def _record_verdict(node: NodeTimes, event: BuildEvent, verdict: TerminationVerdict) -> None:
    """Keep a correction (and the meaning of a failure) where people look for them."""
    if verdict.corrected:
        node.corrected_from = event.status
        node.correction_reason = verdict.reason
    if verdict.reason and getattr(node, "error_reason", "unset") is None:
        setattr(node, "error_reason", verdict.reason)


def _stale(node_seq: int, event: BuildEvent, label: str) -> Ignored:
    kind: Literal["duplicate", "late"] = "duplicate" if event.seq >= node_seq else "late"
    return Ignored(kind, f"{label} of build {event.build_id}: seq {event.seq} is not newer than {node_seq}")


def _record_time(node: NodeTimes, event: BuildEvent) -> None:
    """Stamp the node's lifecycle time for the status the event reports."""
    status = event.status
    if status is BuildStatus.QUEUED and node.queued_at is None:
        node.queued_at = event.event_time
    elif status is BuildStatus.RUNNING and node.started_at is None:
        node.started_at = event.event_time
    elif is_final(status):
        node.finished_at = event.event_time
    if event.duration_ms is not None:
        node.duration_ms = event.duration_ms
    elif node.finished_at is not None and node.started_at is not None:
        node.duration_ms = max(0, _millis_between(node.started_at, node.finished_at))


def _fill_gaps(node: NodeTimes, event: BuildEvent, fields: tuple[str, ...]) -> bool:
    """Let a late event supply what its node never got, without touching its status.

    Out-of-order delivery must converge to the state in-order delivery gives: a late
    RUNNING still stamps `started_at` if the final event came first, and a late event's
    context (executor, reasons) fills fields that are still empty. Nothing set is ever
    overwritten, so a replay fills nothing. Returns True when something was filled.
    """
    filled = False
    status = event.status
    if status is BuildStatus.QUEUED and node.queued_at is None:
        node.queued_at = event.event_time
        filled = True
    elif status is BuildStatus.RUNNING and node.started_at is None:
        node.started_at = event.event_time
        if node.finished_at is not None and node.duration_ms is None:
            node.duration_ms = max(0, _millis_between(node.started_at, node.finished_at))
        filled = True
    for name in fields:
        value = getattr(event, name)
        if value is not None and getattr(node, name) is None:
            setattr(node, name, value)
            filled = True
    return filled


def _millis_between(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() * 1000)
