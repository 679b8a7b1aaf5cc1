"""The minimal change set between two snapshots of a build, as numbered `BuildEvent`s, and the
inverse (`apply`) that the property tests use to prove nothing is lost.

One event per node whose reported facts changed (a new node counts as changed), carrying its
status and only the fields that changed. The order is depth first, shaped by what the worker
needs: a node that is not finished is announced *before* its children (the stage is RUNNING
before its task is), and a node that is finished comes *after* its children (a stage
SUCCEEDED after its last task; the build's final status after every stage and task, so the
worker's check of a SUCCEEDED build against killed tasks sees those tasks first).

`diff` expects `new` to be `snapshot.carry_forward(old, reported)`: it never expresses a
removed node or a field going back to None, since the wire format cannot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import BuildEvent, BuildScope, BuildStatus
from streams.reporter.snapshot import (
    BUILD_FIELDS,
    BUILD_MAPS,
    STAGE_FIELDS,
    TASK_FIELDS,
    BuildSnapshot,
    StageSnapshot,
    TaskSnapshot,
)
from streams.transitions import is_final

EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c2a-5b8e-4a7f-9c0d-2e4b6a8c0f13")
"""uuid5 namespace of reporter event ids (fixed forever: ids must stay stable across versions)."""


def event_id_for(build_id: str, seq: int) -> str:
    """Deterministic id of the event `seq` of a build, so a re-send is recognisable as one."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{build_id}\x00{seq}").hex


@dataclass(frozen=True)
class _Change:
    scope: BuildScope
    status: BuildStatus
    stage_id: str | None = None
    task_id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


def _changed_values(old: object | None, new: object, names: Iterable[str]) -> dict[str, Any]:
    values = {}
    for name in names:
        value = getattr(new, name)
        if value is not None and (old is None or getattr(old, name) != value):
            values[name] = value
    return values


def _changed_maps(old: BuildSnapshot | None, new: BuildSnapshot) -> dict[str, Any]:
    values = {}
    for name in BUILD_MAPS:
        before: Mapping[str, str] = getattr(old, name) if old is not None else {}
        delta = {k: v for k, v in getattr(new, name).items() if before.get(k) != v}
        if delta:
            values[name] = delta
    return values


def _node_change(scope: BuildScope, old: Any, new: Any, names: tuple[str, ...], **ids: str) -> _Change | None:
    values = _changed_values(old, new, names)
    if scope is BuildScope.BUILD:
        values.update(_changed_maps(old, new))
    if old is not None and old.status == new.status and not values:
        return None
    return _Change(scope, new.status, values=values, **ids)


def _around(node: _Change | None, children: list[_Change]) -> list[_Change]:
    """Open before the children, close after them."""
    if node is None:
        return children
    return children + [node] if is_final(node.status) else [node] + children


def changes(old: BuildSnapshot | None, new: BuildSnapshot) -> list[_Change]:
    """What changed from `old` to `new`, in the order the worker should see it."""
    body: list[_Change] = []
    for stage in new.stages:
        old_stage = old.stage(stage.stage_id) if old is not None else None
        old_tasks = {t.task_id: t for t in old_stage.tasks} if old_stage is not None else {}
        task_changes = [
            change
            for task in stage.tasks
            if (change := _node_change(BuildScope.TASK, old_tasks.get(task.task_id), task, TASK_FIELDS,
                                       stage_id=stage.stage_id, task_id=task.task_id)) is not None
        ]
        stage_change = _node_change(BuildScope.STAGE, old_stage, stage, STAGE_FIELDS, stage_id=stage.stage_id)
        body.extend(_around(stage_change, task_changes))
    return _around(_node_change(BuildScope.BUILD, old, new, BUILD_FIELDS), body)


def diff(old: BuildSnapshot | None, new: BuildSnapshot, *, next_seq: int, event_time: datetime) -> list[BuildEvent]:
    """The change set from `old` to `new` as events numbered `next_seq`, `next_seq + 1`, ..."""
    return [
        BuildEvent(
            event_id=event_id_for(new.build_id, seq),
            build_id=new.build_id,
            project=new.project,
            pipeline=new.pipeline,
            seq=seq,
            event_time=event_time,
            scope=change.scope,
            stage_id=change.stage_id,
            task_id=change.task_id,
            status=change.status,
            **change.values,
        )
        for seq, change in enumerate(changes(old, new), start=next_seq)
    ]


# ---------------------------------------------------------------- the inverse, for proofs

def _set_values(node: dict[str, Any], event: BuildEvent, names: tuple[str, ...]) -> None:
    node["status"] = event.status
    for name in names:
        value = getattr(event, name)
        if value is not None:
            node[name] = value


def apply(snapshot: BuildSnapshot | None, events: Sequence[BuildEvent]) -> BuildSnapshot:
    """Replay events onto a snapshot the way the tree is rebuilt from them (pure).

    New nodes are appended in the order their first event arrives, which is first-reported
    order because `diff` walks the new snapshot in order.
    """
    if snapshot is None and not events:
        raise ValueError("nothing to apply to: no snapshot and no events")
    first = events[0] if events else None
    header: dict[str, Any] = {
        name: getattr(snapshot, name) if snapshot is not None else None for name in ("status", *BUILD_FIELDS)
    }
    header.update({name: dict(getattr(snapshot, name)) if snapshot else {} for name in BUILD_MAPS})
    ident = (snapshot.build_id, snapshot.project, snapshot.pipeline) if snapshot else (
        first.build_id, first.project, first.pipeline)  # type: ignore[union-attr]
    stages: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
    for stage in snapshot.stages if snapshot else ():
        stages[stage.stage_id] = (
            {name: getattr(stage, name) for name in ("status", *STAGE_FIELDS)},
            {t.task_id: {name: getattr(t, name) for name in ("status", *TASK_FIELDS)} for t in stage.tasks},
        )
    for event in events:
        if event.build_id != ident[0]:
            raise ValueError(f"event {event.event_id} is about build {event.build_id}, not {ident[0]}")
        if event.scope is BuildScope.BUILD:
            _set_values(header, event, BUILD_FIELDS)
            for name in BUILD_MAPS:
                header[name] = {**header[name], **getattr(event, name)}
            continue
        stage_values, tasks = stages.setdefault(event.stage_id or "", ({"status": None}, {}))
        if event.scope is BuildScope.STAGE:
            _set_values(stage_values, event, STAGE_FIELDS)
        else:
            _set_values(tasks.setdefault(event.task_id or "", {}), event, TASK_FIELDS)
    if header["status"] is None:
        raise ValueError(f"build {ident[0]} has no status: the events never reported the build itself")
    return BuildSnapshot(
        build_id=ident[0],
        project=ident[1],
        pipeline=ident[2],
        **header,
        stages=tuple(
            StageSnapshot(
                stage_id=stage_id,
                **_reported(stage_values, f"stage {stage_id}"),
                tasks=tuple(TaskSnapshot(task_id=task_id, **values) for task_id, values in tasks.items()),
            )
            for stage_id, (stage_values, tasks) in stages.items()
        ),
    )


def _reported(values: dict[str, Any], label: str) -> dict[str, Any]:
    if values.get("status") is None:
        raise ValueError(f"{label} has tasks but the events never reported the {label} itself")
    return values
