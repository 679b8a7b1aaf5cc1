"""Change sets: the header, the changed build fields and the changed node of every accepted event,
and that a consumer folding them from an empty snapshot ends where the build-state agent ends."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BuildEvent, BuildScope, BuildStatus, BuildStatusChange, NodeChange, TriggerReason, decode, encode
from streams.build_state import NOT_REPORTED, Accepted, BuildState, Ignored, Rejected, apply_event
from streams.change_set import change_set
from streams.demo_feed import simulate_build

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
S = BuildStatus

BOOKKEEPING_FIELDS = frozenset({"stages", "seq", "last_seq", "revision", "updated_at"})
"""BuildState fields that are not build-level facts: the node tree and per-event counters/clocks."""

HEADER_FIELDS = (
    "build_id", "project", "pipeline", "status", "first_seen_at", "queued_at", "started_at",
    "finished_at", "duration_ms", "trigger_reason", "trigger_user", "branch", "error_reason",
    "termination_reason", "commit_sha", "executor", "environment",
)
"""Fields a change set copies from the build state, so a consumer never needs older messages."""

NODE_FIELDS = ("name", "status", "started_at", "finished_at", "duration_ms", "error_reason")


def event(seq: int, status: BuildStatus, scope: BuildScope = BuildScope.BUILD, *, minutes: float = 0,
          stage: str | None = None, task: str | None = None, **extra: Any) -> BuildEvent:
    return BuildEvent(
        event_id=f"e{seq}-{status.value}", build_id="b1", project="payments", pipeline="api-ci", seq=seq,
        event_time=T0 + timedelta(minutes=minutes), scope=scope, stage_id=stage, task_id=task,
        name=task or stage, status=status, **extra,
    )


@dataclass(frozen=True)
class Step:
    event: BuildEvent
    accepted: Accepted
    change: BuildStatusChange


def deliver(events: list[BuildEvent], state: BuildState | None = None) -> tuple[BuildState | None, list[Step]]:
    """Run events through the state machine as the build-state agent does; keep the change sets."""
    steps: list[Step] = []
    for ev in events:
        outcome = apply_event(state, ev)
        assert not isinstance(outcome, Rejected), outcome.reason
        if isinstance(outcome, Accepted):
            steps.append(Step(ev, outcome, change_set(outcome, ev)))
            state = outcome.state
    return state, steps


def build_level_fields(state: BuildState) -> dict[str, Any]:
    return state.model_dump(exclude=set(BOOKKEEPING_FIELDS))


def fresh_build(ev: BuildEvent) -> BuildState:
    """What a build looks like before its first event: the baseline of the first change set."""
    return BuildState(build_id=ev.build_id, project=ev.project, pipeline=ev.pipeline,
                      first_seen_at=ev.event_time, updated_at=ev.event_time)


def find_node(state: BuildState, stage_id: str, task_id: str | None) -> Any:
    stage = state.stages.get(stage_id)
    if stage is None or task_id is None:
        return stage
    return stage.tasks.get(task_id)


LIFECYCLE = [
    event(1, S.QUEUED, minutes=0, trigger_reason=TriggerReason.PUSH, trigger_user="alice", branch="main",
          commit_sha="abc123"),
    event(2, S.PREPARING, minutes=1, executor="runner-3", executor_labels={"arch": "arm64"}),
    event(3, S.RUNNING, minutes=2),
    event(4, S.RUNNING, BuildScope.STAGE, minutes=2, stage="build"),
    event(5, S.RUNNING, BuildScope.TASK, minutes=2, stage="build", task="compile"),
    event(6, S.FAILED, BuildScope.TASK, minutes=5, stage="build", task="compile", error_reason="compile error",
          termination_reason="Error", exit_code=2),
    event(7, S.FAILED, BuildScope.STAGE, minutes=5, stage="build", error_reason="compile failed"),
    event(8, S.SKIPPED, BuildScope.STAGE, minutes=5, stage="deploy"),
    event(9, S.FAILED, minutes=6, error_reason="build/compile: compile error", termination_reason="Error"),
]


def test_every_accepted_event_of_a_lifecycle_yields_a_change_set_with_the_new_header() -> None:
    final, steps = deliver(LIFECYCLE)
    assert len(steps) == len(LIFECYCLE)
    for step in steps:
        state = step.accepted.state
        for name in HEADER_FIELDS:
            assert getattr(step.change, name) == getattr(state, name), name
        assert (step.change.seq, step.change.event_id, step.change.event_time) == (
            step.event.seq, step.event.event_id, step.event.event_time)
    assert final is not None and steps[-1].change.status is S.FAILED
    assert steps[-1].change.finished_at == T0 + timedelta(minutes=6)
    assert steps[-1].change.duration_ms == 4 * 60 * 1000


def test_revision_grows_by_one_per_accepted_change_and_skips_ignored_events() -> None:
    with_noise = LIFECYCLE[:3] + [LIFECYCLE[1], LIFECYCLE[2]] + LIFECYCLE[3:6] + [LIFECYCLE[4]] + LIFECYCLE[6:]
    final, steps = deliver(with_noise)
    assert [step.change.revision for step in steps] == list(range(1, len(LIFECYCLE) + 1))
    assert final is not None and final.revision == len(LIFECYCLE)
    redelivered = apply_event(final, LIFECYCLE[4])
    assert isinstance(redelivered, Ignored)


def test_first_seen_at_is_the_first_event_time_in_every_change_set() -> None:
    _, steps = deliver(LIFECYCLE)
    assert {step.change.first_seen_at for step in steps} == {T0}


def test_previous_status_is_the_build_status_before_the_change_or_none_for_the_first() -> None:
    _, steps = deliver(LIFECYCLE)
    assert [step.change.previous_status for step in steps] == [
        None, S.QUEUED, S.PREPARING, S.RUNNING, S.RUNNING, S.RUNNING, S.RUNNING, S.RUNNING, S.RUNNING]


def test_changed_fields_are_exactly_the_build_level_fields_that_differ() -> None:
    _, steps = deliver(LIFECYCLE)
    for step in steps:
        before = build_level_fields(step.accepted.previous or fresh_build(step.event))
        after = build_level_fields(step.accepted.state)
        expected = {name for name in after if after[name] != before[name]}
        if step.accepted.previous is None or step.accepted.previous.seq < 0:
            expected.add("status")  # a build's first report always names its status
        assert set(step.change.changed_fields) == expected, step.event.seq
        assert len(step.change.changed_fields) == len(expected)


def test_changed_fields_of_the_lifecycle_name_what_each_event_moved() -> None:
    _, steps = deliver(LIFECYCLE)
    changed = [set(step.change.changed_fields) for step in steps]
    assert changed[0] == {"status", "queued_at", "trigger_reason", "trigger_user", "branch", "commit_sha"}
    assert changed[1] == {"status", "executor", "executor_labels"}
    assert changed[2] == {"status", "started_at"}
    assert changed[3:8] == [set()] * 5, "stage/task events change no build-level field"
    assert changed[8] == {"status", "finished_at", "duration_ms", "error_reason", "termination_reason"}


def test_build_events_carry_no_nodes() -> None:
    _, steps = deliver(LIFECYCLE)
    for step in steps:
        if step.event.scope is BuildScope.BUILD:
            assert step.change.nodes == []


def test_stage_and_task_events_carry_exactly_their_node_with_previous_status() -> None:
    _, steps = deliver(LIFECYCLE)
    nodes = {step.event.seq: step.change.nodes for step in steps if step.event.scope is not BuildScope.BUILD}
    assert nodes == {
        4: [NodeChange(scope=BuildScope.STAGE, stage_id="build", name="build", status=S.RUNNING,
                       started_at=T0 + timedelta(minutes=2))],
        5: [NodeChange(scope=BuildScope.TASK, stage_id="build", task_id="compile", name="compile",
                       status=S.RUNNING, started_at=T0 + timedelta(minutes=2))],
        6: [NodeChange(scope=BuildScope.TASK, stage_id="build", task_id="compile", name="compile",
                       status=S.FAILED, previous_status=S.RUNNING, started_at=T0 + timedelta(minutes=2),
                       finished_at=T0 + timedelta(minutes=5), duration_ms=180_000, error_reason="compile error",
                       termination_reason="Error", exit_code=2)],
        7: [NodeChange(scope=BuildScope.STAGE, stage_id="build", name="build", status=S.FAILED,
                       previous_status=S.RUNNING, started_at=T0 + timedelta(minutes=2),
                       finished_at=T0 + timedelta(minutes=5), duration_ms=180_000, error_reason="compile failed")],
        8: [NodeChange(scope=BuildScope.STAGE, stage_id="deploy", name="deploy", status=S.SKIPPED,
                       finished_at=T0 + timedelta(minutes=5))],
    }


def test_task_reporting_before_its_stage_yields_only_the_task_node() -> None:
    _, steps = deliver([event(1, S.RUNNING, BuildScope.TASK, stage="test", task="unit")])
    (step,) = steps
    assert step.accepted.state.stages["test"].seq == NOT_REPORTED
    assert [(n.scope, n.stage_id, n.task_id, n.previous_status) for n in step.change.nodes] == [
        (BuildScope.TASK, "test", "unit", None)]
    assert step.change.previous_status is None and step.change.changed_fields == []


def test_late_build_event_that_fills_gaps_reports_only_the_filled_fields() -> None:
    _, steps = deliver([event(1, S.QUEUED), event(3, S.SUCCEEDED, minutes=10), event(2, S.RUNNING, minutes=4)])
    late = steps[-1].change
    assert (late.status, late.previous_status, late.revision) == (S.SUCCEEDED, S.SUCCEEDED, 3)
    assert set(late.changed_fields) == {"started_at", "duration_ms"}
    assert late.duration_ms == 6 * 60 * 1000


def test_late_task_event_that_fills_gaps_reports_the_node_in_its_final_status() -> None:
    _, steps = deliver([
        event(5, S.SUCCEEDED, BuildScope.TASK, minutes=9, stage="test", task="unit"),
        event(4, S.RUNNING, BuildScope.TASK, minutes=4, stage="test", task="unit"),
    ])
    (node,) = steps[-1].change.nodes
    assert (node.status, node.previous_status) == (S.SUCCEEDED, S.SUCCEEDED)
    assert node.started_at == T0 + timedelta(minutes=4) and node.duration_ms == 5 * 60 * 1000
    assert steps[-1].change.changed_fields == []


def test_change_sets_round_trip_through_the_serde() -> None:
    _, steps = deliver(LIFECYCLE)
    for step in steps:
        assert decode(encode(step.change), BuildStatusChange) == step.change


# -- A consumer's view: applying the change sets to an empty snapshot -------------------------------


def fold_change_sets(changes: list[BuildStatusChange]) -> tuple[dict[str, Any], dict[tuple[str, str | None], dict[str, Any]]]:
    """What a consumer rebuilds from change sets alone: per field and per node, the newest revision wins."""
    header: dict[str, Any] = {}
    header_revision = -1
    nodes: dict[tuple[str, str | None], tuple[int, dict[str, Any]]] = {}
    for change in changes:
        if change.revision > header_revision:
            header_revision = change.revision
            header = {name: getattr(change, name) for name in HEADER_FIELDS}
        for node in change.nodes:
            key = (node.stage_id, node.task_id)
            if key not in nodes or nodes[key][0] < change.revision:
                nodes[key] = (change.revision, {name: getattr(node, name) for name in NODE_FIELDS})
    return header, {key: fields for key, (_, fields) in nodes.items()}


def snapshot_of(state: BuildState) -> tuple[dict[str, Any], dict[tuple[str, str | None], dict[str, Any]]]:
    header = {name: getattr(state, name) for name in HEADER_FIELDS}
    nodes: dict[tuple[str, str | None], dict[str, Any]] = {}
    for stage_id, stage in state.stages.items():
        nodes[(stage_id, None)] = {name: getattr(stage, name) for name in NODE_FIELDS}
        for task_id, task in stage.tasks.items():
            nodes[(stage_id, task_id)] = {name: getattr(task, name) for name in NODE_FIELDS}
    return header, nodes


def redelivered(events: list[BuildEvent], shuffle_seed: int | None, duplicates: int) -> list[BuildEvent]:
    """The events in order, or (with a seed) shuffled with `duplicates` redelivered copies mixed in."""
    delivered = list(events)
    if shuffle_seed is not None:
        shuffler = random.Random(shuffle_seed)
        delivered += [shuffler.choice(events) for _ in range(duplicates)]
        shuffler.shuffle(delivered)
    return delivered


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 100_000), shuffle_seed=st.none() | st.integers(0, 10_000), duplicates=st.integers(0, 10))
def test_folding_the_change_sets_into_an_empty_snapshot_reproduces_the_final_state(
    seed: int, shuffle_seed: int | None, duplicates: int
) -> None:
    build = simulate_build(random.Random(seed), T0)
    final, steps = deliver(redelivered(build.events, shuffle_seed, duplicates))
    assert final is not None and final.status is build.final_status
    changes = [step.change for step in steps]
    assert [c.revision for c in changes] == list(range(1, len(changes) + 1))
    # The sink may see them in any order after a redelivery; revision decides, not arrival.
    random.Random(seed).shuffle(changes)
    assert fold_change_sets(changes) == snapshot_of(final)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_change_sets_of_simulated_builds_round_trip_and_name_one_node_per_child_event(seed: int) -> None:
    build = simulate_build(random.Random(seed), T0)
    _, steps = deliver(list(build.events))
    assert len(steps) == len(build.events), "in-order delivery of a simulated build accepts every event"
    for step in steps:
        assert decode(encode(step.change), BuildStatusChange) == step.change
        expected_keys = [] if step.event.scope is BuildScope.BUILD else [(step.event.stage_id, step.event.task_id)]
        assert [(n.stage_id, n.task_id) for n in step.change.nodes] == expected_keys
        for node in step.change.nodes:
            assert node.status is step.event.status
            before = find_node(step.accepted.previous, node.stage_id, node.task_id) if step.accepted.previous else None
            assert node.previous_status == (before.status if before is not None and before.seq >= 0 else None)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 100_000), shuffle_seed=st.none() | st.integers(0, 10_000),
       duplicates=st.integers(0, 10), reload_every=st.integers(1, 6))
def test_change_sets_are_exactly_what_validating_them_would_build(
    seed: int, shuffle_seed: int | None, duplicates: int, reload_every: int
) -> None:
    """change_set skips validation (its values all come from validated events): hold it to that.

    States are read back from their table JSON now and then, as the agent does per batch, so
    timestamps arrive with pydantic's own UTC tzinfo and must still leave as `datetime.UTC`.
    """
    delivered = redelivered(simulate_build(random.Random(seed), T0).events, shuffle_seed, duplicates)
    state: BuildState | None = None
    checked = 0
    for number, ev in enumerate(delivered):
        if state is not None and number % reload_every == 0:
            state = BuildState.model_validate_json(state.model_dump_json())
        outcome = apply_event(state, ev)
        if not isinstance(outcome, Accepted):
            continue
        change = change_set(outcome, ev)
        validated = BuildStatusChange.model_validate(change.model_dump())
        assert change == validated
        assert repr(change) == repr(validated), "same values, same types (tzinfo included)"
        assert encode(change) == encode(validated)
        state = outcome.state
        checked += 1
    assert checked >= 1


def test_a_change_set_carries_utc_timestamps_after_the_state_went_through_the_table() -> None:
    state, _ = deliver(LIFECYCLE[:2])
    assert state is not None
    reloaded = BuildState.model_validate_json(state.model_dump_json())
    assert reloaded.first_seen_at.tzinfo is not UTC  # the table gives back pydantic's own tzinfo
    _, steps = deliver(LIFECYCLE[2:], reloaded)
    assert steps and all(step.change.first_seen_at.tzinfo is UTC for step in steps)
