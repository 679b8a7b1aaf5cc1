"""Which successor snapshots the worker would accept, checked before anything is accepted.

The worker dead-letters an event that breaks the lifecycle table (`streams.transitions`), so
the reporter refuses such a snapshot at the door, where the runner can still see why, instead
of sending events that would only end up in `cipulse.dead-letter`. The rules, per node:

- a status change must be allowed by the transition table (jumps over intermediate statuses
  are fine when a path exists, as in the worker); SKIPPED is for stages and tasks only;
- a finished node (SUCCEEDED, FAILED, CANCELED, SKIPPED) is frozen: the worker ignores any
  later fact about it, so a change to its fields is refused rather than silently lost;
- a build keeps its project and pipeline (the worker refuses events under another owner).

A stage or task reported for the first time may start in any status, as in the worker.
"""

from __future__ import annotations

from schemas import BuildScope, BuildStatus
from streams.reporter.exceptions import SnapshotRejected
from streams.reporter.snapshot import (
    BUILD_FIELDS,
    BUILD_MAPS,
    STAGE_FIELDS,
    TASK_FIELDS,
    BuildSnapshot,
)
from streams.transitions import is_final, transition_rule


def _node_problem(label: str, scope: BuildScope, old: object | None, new: object, names: tuple[str, ...]) -> str | None:
    new_status: BuildStatus = getattr(new, "status")
    if old is None:
        if scope is BuildScope.BUILD:
            rule = transition_rule(scope, BuildStatus.QUEUED, new_status)
            return f"{label}: {rule}" if rule else None
        return None
    old_status: BuildStatus = getattr(old, "status")
    if is_final(old_status):
        moved = [name for name in ("status", *names) if getattr(old, name) != getattr(new, name)]
        if moved:
            return (
                f"{label} is {old_status.value} (final) and can no longer change, but "
                f"{', '.join(moved)} changed; report final facts together with the final status"
            )
        return None
    rule = transition_rule(scope, old_status, new_status)
    return f"{label}: {rule}" if rule else None


def successor_problems(previous: BuildSnapshot | None, current: BuildSnapshot) -> list[str]:
    """Every rule `current` (already carried forward from `previous`) breaks; empty if none."""
    problems: list[str] = []
    if previous is not None and (previous.project, previous.pipeline) != (current.project, current.pipeline):
        problems.append(
            f"build {current.build_id} belongs to {previous.project}/{previous.pipeline}, "
            f"not {current.project}/{current.pipeline}"
        )
    problem = _node_problem(f"build {current.build_id}", BuildScope.BUILD, previous, current,
                            (*BUILD_FIELDS, *BUILD_MAPS))
    if problem:
        problems.append(problem)
    for stage in current.stages:
        old_stage = previous.stage(stage.stage_id) if previous is not None else None
        problem = _node_problem(f"stage {stage.stage_id}", BuildScope.STAGE, old_stage, stage, STAGE_FIELDS)
        if problem:
            problems.append(problem)
        old_tasks = {t.task_id: t for t in old_stage.tasks} if old_stage is not None else {}
        for task in stage.tasks:
            problem = _node_problem(f"task {stage.stage_id}/{task.task_id}", BuildScope.TASK,
                                    old_tasks.get(task.task_id), task, TASK_FIELDS)
            if problem:
                problems.append(problem)
    return problems


def check_successor(previous: BuildSnapshot | None, current: BuildSnapshot) -> None:
    """Raise `SnapshotRejected` with every problem if the worker would not accept `current`."""
    problems = successor_problems(previous, current)
    if problems:
        raise SnapshotRejected(current.build_id, problems)
