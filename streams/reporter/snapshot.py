"""A runner's view of one build: the header plus ordered stages, each with ordered tasks.

Reports accumulate: a snapshot says what the runner knows *now*, and what it leaves out keeps
its last reported value (`carry_forward`). A stage or task missing from a later snapshot stays
in the build with its last reported state, a field reported as None keeps its last value, and
keys missing from `environment` / `executor_labels` are kept. This is not leniency for its own
sake: a `BuildEvent` cannot take a fact back (None on the wire means "not reported"), and the
worker never removes a node or clears a field, so a snapshot that dropped something could not
be reproduced downstream. The order of nodes is the order in which they were first reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from schemas import BuildStatus, TriggerReason

_AVRO_INT_MAX = 2**31 - 1

TASK_FIELDS = ("name", "error_reason", "termination_reason", "exit_code", "executor", "duration_ms")
"""Optional task facts a `BuildEvent` of scope TASK carries (and the worker keeps)."""
STAGE_FIELDS = ("name", "error_reason", "duration_ms")
BUILD_FIELDS = (
    "trigger_reason",
    "trigger_user",
    "branch",
    "commit_sha",
    "executor",
    "error_reason",
    "termination_reason",
    "exit_code",
    "duration_ms",
)
BUILD_MAPS = ("environment", "executor_labels")
"""Build-level maps: merged key by key, as the worker merges them."""


def _require_id(kind: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{kind} must be a non-empty string (got {value!r})")


def _check_common(label: str, exit_code: int | None, duration_ms: int | None) -> None:
    if exit_code is not None and not -_AVRO_INT_MAX - 1 <= exit_code <= _AVRO_INT_MAX:
        raise ValueError(f"{label}: exit_code {exit_code} does not fit a 32-bit int")
    if duration_ms is not None and duration_ms < 0:
        raise ValueError(f"{label}: duration_ms must not be negative (got {duration_ms})")


def _unique(kind: str, ids: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            raise ValueError(f"{where} lists {kind} {node_id!r} twice; ids must be unique")
        seen.add(node_id)


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    task_id: str
    status: BuildStatus
    name: str | None = None
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    executor: str | None = None
    duration_ms: int | None = None

    def __post_init__(self) -> None:
        _require_id("task_id", self.task_id)
        object.__setattr__(self, "status", BuildStatus(self.status))
        _check_common(f"task {self.task_id}", self.exit_code, self.duration_ms)


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    stage_id: str
    status: BuildStatus
    name: str | None = None
    error_reason: str | None = None
    duration_ms: int | None = None
    tasks: tuple[TaskSnapshot, ...] = ()

    def __post_init__(self) -> None:
        _require_id("stage_id", self.stage_id)
        object.__setattr__(self, "status", BuildStatus(self.status))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        _check_common(f"stage {self.stage_id}", None, self.duration_ms)
        _unique("task", (t.task_id for t in self.tasks), f"stage {self.stage_id}")


@dataclass(frozen=True, slots=True)
class BuildSnapshot:
    """Everything a runner knows about one build at one moment."""

    build_id: str
    project: str
    pipeline: str
    status: BuildStatus
    trigger_reason: TriggerReason | None = None
    trigger_user: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    executor: str | None = None
    executor_labels: Mapping[str, str] = field(default_factory=dict)
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    stages: tuple[StageSnapshot, ...] = ()

    def __post_init__(self) -> None:
        for kind in ("build_id", "project", "pipeline"):
            _require_id(kind, getattr(self, kind))
        object.__setattr__(self, "status", BuildStatus(self.status))
        if self.trigger_reason is not None:
            object.__setattr__(self, "trigger_reason", TriggerReason(self.trigger_reason))
        object.__setattr__(self, "environment", dict(self.environment))
        object.__setattr__(self, "executor_labels", dict(self.executor_labels))
        object.__setattr__(self, "stages", tuple(self.stages))
        _check_common(f"build {self.build_id}", self.exit_code, self.duration_ms)
        _unique("stage", (s.stage_id for s in self.stages), f"build {self.build_id}")

    def stage(self, stage_id: str) -> StageSnapshot | None:
        return next((s for s in self.stages if s.stage_id == stage_id), None)


N = TypeVar("N", TaskSnapshot, StageSnapshot)


def _merge_fields(previous: N, reported: N, names: tuple[str, ...]) -> N:
    if reported == previous:
        return previous
    kept = {
        name: value
        for name in names
        if getattr(reported, name) is None and (value := getattr(previous, name)) is not None
    }
    return replace(reported, **kept) if kept else reported


def _merge_ordered(previous: tuple[N, ...], reported: tuple[N, ...], key: str, merge: Any) -> tuple[N, ...]:
    """Nodes in first-reported order: known ones where they were (merged), then new ones."""
    by_id = {getattr(node, key): node for node in reported}
    known = {getattr(node, key) for node in previous}
    merged = [merge(node, by_id[getattr(node, key)]) if getattr(node, key) in by_id else node for node in previous]
    merged.extend(node for node in reported if getattr(node, key) not in known)
    return tuple(merged)


def _merge_stage(previous: StageSnapshot, reported: StageSnapshot) -> StageSnapshot:
    stage = _merge_fields(previous, reported, STAGE_FIELDS)
    tasks = _merge_ordered(previous.tasks, reported.tasks, "task_id", lambda p, r: _merge_fields(p, r, TASK_FIELDS))
    return replace(stage, tasks=tasks)


def carry_forward(previous: BuildSnapshot | None, reported: BuildSnapshot) -> BuildSnapshot:
    """The build as known after `reported`: what it omits keeps its value from `previous`.

    Identity (project, pipeline) is taken from `reported`; `lifecycle.check_successor` rejects
    a change of it. Pure: neither argument is modified.
    """
    if previous is None:
        return reported
    if previous.build_id != reported.build_id:
        raise ValueError(f"cannot merge build {reported.build_id} into build {previous.build_id}")
    kept: dict[str, Any] = {name: getattr(previous, name) for name in BUILD_FIELDS if getattr(reported, name) is None}
    for name in BUILD_MAPS:
        kept[name] = {**getattr(previous, name), **getattr(reported, name)}
    kept["stages"] = _merge_ordered(previous.stages, reported.stages, "stage_id", _merge_stage)
    return replace(reported, **kept)


# ---------------------------------------------------------------- persistence (JSON-able dicts)

_TASK_KEYS = ("task_id", "status", *TASK_FIELDS)
_STAGE_KEYS = ("stage_id", "status", *STAGE_FIELDS)
_BUILD_KEYS = ("build_id", "project", "pipeline", "status", *BUILD_FIELDS, *BUILD_MAPS)


def _plain(node: object, keys: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for key in keys:
        value = getattr(node, key)
        if value is None:
            continue  # absent means None: keeps the stored form small
        if isinstance(value, (BuildStatus, TriggerReason)):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        out[key] = value
    return out


def snapshot_to_dict(snapshot: BuildSnapshot) -> dict[str, Any]:
    """Plain JSON-able form, for the outbox's record of the last accepted snapshot."""
    data = _plain(snapshot, _BUILD_KEYS)
    data["stages"] = [
        {**_plain(stage, _STAGE_KEYS), "tasks": [_plain(task, _TASK_KEYS) for task in stage.tasks]}
        for stage in snapshot.stages
    ]
    return data


def snapshot_from_dict(data: Mapping[str, Any]) -> BuildSnapshot:
    stages = tuple(
        StageSnapshot(**{**stage, "tasks": tuple(TaskSnapshot(**task) for task in stage.get("tasks", ()))})
        for stage in data.get("stages", ())
    )
    return BuildSnapshot(**{**data, "stages": stages})
