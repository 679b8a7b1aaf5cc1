"""Reporter SDK, pure parts: snapshot accumulation, the depth-first diff and its inverse, and the
lifecycle check that keeps the worker from dead-lettering what a runner reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason
from schemas.serde import decode, encode
from streams.build_state import Accepted, BuildState, apply_event
from streams.reporter import BuildSnapshot, SnapshotRejected, StageSnapshot, TaskSnapshot
from streams.reporter.diff import apply, diff, event_id_for
from streams.reporter.lifecycle import check_successor
from streams.reporter.snapshot import carry_forward, snapshot_from_dict, snapshot_to_dict
from streams.transitions import ALLOWED_TRANSITIONS, is_final

S = BuildStatus
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------- strategies

optional_text = st.none() | st.sampled_from(["a", "b", "ünï"])
optional_int = st.none() | st.integers(-3, 255)
optional_duration = st.none() | st.integers(0, 10**7)
small_map = st.dictionaries(st.sampled_from(["K1", "K2", "K3"]), st.sampled_from(["v1", "v2"]), max_size=3)
tasks = st.builds(
    TaskSnapshot, task_id=st.sampled_from(["t0", "t1", "t2", "t3"]), status=st.sampled_from(S),
    name=optional_text, error_reason=optional_text, termination_reason=optional_text,
    exit_code=optional_int, executor=optional_text, duration_ms=optional_duration,
)
stages = st.builds(
    StageSnapshot, stage_id=st.sampled_from(["s0", "s1", "s2", "s3", "s4"]), status=st.sampled_from(S),
    name=optional_text, error_reason=optional_text, duration_ms=optional_duration,
    tasks=st.lists(tasks, unique_by=lambda t: t.task_id, max_size=3).map(tuple),
)
snapshots = st.builds(
    BuildSnapshot, build_id=st.just("b1"), project=st.just("p"), pipeline=st.just("ci"),
    status=st.sampled_from(S), trigger_reason=st.none() | st.sampled_from(TriggerReason),
    trigger_user=optional_text, branch=optional_text, commit_sha=optional_text, environment=small_map,
    executor=optional_text, executor_labels=small_map, error_reason=optional_text,
    termination_reason=optional_text, exit_code=optional_int, duration_ms=optional_duration,
    stages=st.lists(stages, unique_by=lambda s: s.stage_id, max_size=4).map(tuple),
)


def accumulate(reported: list[BuildSnapshot]) -> tuple[list[BuildSnapshot], list[list[BuildEvent]]]:
    """What a reporter does with a series of reports (without the lifecycle check)."""
    known: list[BuildSnapshot] = [reported[0]]
    change_sets: list[list[BuildEvent]] = []
    next_seq = 1
    for snapshot in reported[1:]:
        current = carry_forward(known[-1], snapshot)
        events = diff(known[-1], current, next_seq=next_seq, event_time=T0)
        next_seq += len(events)
        known.append(current)
        change_sets.append(events)
    return known, change_sets


# ---------------------------------------------------------------- diff and apply

@settings(max_examples=400, deadline=None)
@given(st.lists(snapshots, min_size=2, max_size=6))
def test_applying_every_change_set_to_the_first_snapshot_reproduces_the_last(reported: list[BuildSnapshot]) -> None:
    known, change_sets = accumulate(reported)
    all_events = [event for events in change_sets for event in events]
    assert apply(known[0], all_events) == known[-1]
    for before, after, events in zip(known, known[1:], change_sets):
        assert apply(before, events) == after
    assert [e.seq for e in all_events] == list(range(1, len(all_events) + 1))
    assert [e.event_id for e in all_events] == [event_id_for("b1", e.seq) for e in all_events]


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_first_report_is_the_whole_tree_and_round_trips_through_avro(snapshot: BuildSnapshot) -> None:
    events = diff(None, snapshot, next_seq=7, event_time=T0)
    assert len(events) == 1 + len(snapshot.stages) + sum(len(s.tasks) for s in snapshot.stages)
    wire = [decode(encode(event), BuildEvent) for event in events]
    assert wire == events
    assert apply(None, wire) == snapshot


@settings(max_examples=200, deadline=None)
@given(snapshots, snapshots)
def test_reporting_the_known_state_again_changes_nothing(first: BuildSnapshot, second: BuildSnapshot) -> None:
    current = carry_forward(first, second)
    assert carry_forward(current, current) == current
    assert diff(current, current, next_seq=1, event_time=T0) == []


@settings(max_examples=300, deadline=None)
@given(snapshots, snapshots)
def test_change_set_has_one_event_per_changed_node_parents_open_before_and_close_after_children(
    first: BuildSnapshot, second: BuildSnapshot
) -> None:
    current = carry_forward(first, second)
    events = diff(first, current, next_seq=1, event_time=T0)
    nodes = [(e.scope, e.stage_id, e.task_id) for e in events]
    assert len(nodes) == len(set(nodes))
    position = {node: index for index, node in enumerate(nodes)}
    build = position.get((BuildScope.BUILD, None, None))
    for (scope, stage_id, task_id), index in position.items():
        if build is not None and scope is not BuildScope.BUILD:
            assert (index > build) != is_final(current.status)
        if scope is BuildScope.TASK and (stage := position.get((BuildScope.STAGE, stage_id, None))) is not None:
            stage_status = next(s.status for s in current.stages if s.stage_id == stage_id)
            assert (index > stage) != is_final(stage_status)


def test_only_changed_fields_travel_and_maps_send_only_changed_keys() -> None:
    first = BuildSnapshot("b1", "p", "ci", S.RUNNING, commit_sha="abc", environment={"A": "1", "B": "2"},
                          stages=(StageSnapshot("build", S.RUNNING, name="Build"),))
    second = BuildSnapshot("b1", "p", "ci", S.RUNNING, commit_sha="abc", environment={"A": "1", "B": "3"},
                           stages=(StageSnapshot("build", S.RUNNING, name="Build"),))
    [event] = diff(first, carry_forward(first, second), next_seq=5, event_time=T0)
    assert (event.scope, event.seq, event.commit_sha, event.environment) == (BuildScope.BUILD, 5, None, {"B": "3"})


def test_a_stage_left_out_or_a_field_reported_as_none_keeps_its_last_value() -> None:
    first = BuildSnapshot("b1", "p", "ci", S.RUNNING, branch="main", stages=(
        StageSnapshot("build", S.SUCCEEDED, tasks=(TaskSnapshot("compile", S.SUCCEEDED, exit_code=0),)),
        StageSnapshot("test", S.RUNNING, tasks=(TaskSnapshot("unit", S.RUNNING, executor="r1"),)),
    ))
    # the runner now only knows about "test" (and a new stage before it), with less detail
    second = BuildSnapshot("b1", "p", "ci", S.RUNNING, stages=(
        StageSnapshot("lint", S.RUNNING),
        StageSnapshot("test", S.RUNNING, tasks=(TaskSnapshot("unit", S.FAILED),)),
    ))
    current = carry_forward(first, second)
    assert current.branch == "main"
    assert [s.stage_id for s in current.stages] == ["build", "test", "lint"]  # first-reported order
    assert current.stages[0] == first.stages[0]
    assert current.stages[1].tasks[0] == TaskSnapshot("unit", S.FAILED, executor="r1")
    events = diff(first, current, next_seq=1, event_time=T0)
    assert [(e.scope, e.stage_id, e.task_id, e.status) for e in events] == [
        (BuildScope.TASK, "test", "unit", S.FAILED),
        (BuildScope.STAGE, "lint", None, S.RUNNING),
    ]
    assert apply(first, events) == current


def test_snapshot_survives_its_json_form() -> None:
    snapshot = BuildSnapshot("b1", "p", "ci", S.RUNNING, trigger_reason=TriggerReason.PUSH, environment={"A": "1"},
                             stages=(StageSnapshot("s", S.RUNNING, tasks=(TaskSnapshot("t", S.QUEUED, exit_code=3),)),))
    assert snapshot_from_dict(snapshot_to_dict(snapshot)) == snapshot


@pytest.mark.parametrize("bad", [
    lambda: BuildSnapshot("", "p", "ci", S.RUNNING),
    lambda: BuildSnapshot("b", "p", "ci", "BOGUS"),  # type: ignore[arg-type]
    lambda: BuildSnapshot("b", "p", "ci", S.RUNNING, stages=(StageSnapshot("s", S.QUEUED),) * 2),
    lambda: StageSnapshot("s", S.RUNNING, tasks=(TaskSnapshot("t", S.QUEUED), TaskSnapshot("t", S.RUNNING))),
    lambda: TaskSnapshot("t", S.FAILED, exit_code=2**31),
    lambda: TaskSnapshot("t", S.FAILED, duration_ms=-1),
])
def test_snapshots_that_cannot_become_events_fail_at_construction(bad: Any) -> None:
    with pytest.raises(ValueError):
        bad()


# ---------------------------------------------------------------- lifecycle

def header(status: BuildStatus, *stages_: StageSnapshot, **extra: Any) -> BuildSnapshot:
    return BuildSnapshot(**{"build_id": "b1", "project": "p", "pipeline": "ci", "status": status,
                            "stages": stages_, **extra})


@pytest.mark.parametrize(("previous", "current", "fragment"), [
    (header(S.SUCCEEDED), header(S.RUNNING), "SUCCEEDED (final) and can no longer change"),
    (header(S.RUNNING, StageSnapshot("s", S.SUCCEEDED)), header(S.RUNNING, StageSnapshot("s", S.RUNNING)),
     "stage s is SUCCEEDED (final)"),
    (header(S.RUNNING), header(S.RUNNING, project="other"), "belongs to p/ci, not other/ci"),
    (None, header(S.SKIPPED), "SKIPPED applies to stages and tasks only"),
    (header(S.RUNNING), header(S.QUEUED), "RUNNING -> QUEUED is not allowed"),
    (header(S.RUNNING, StageSnapshot("s", S.RUNNING, tasks=(TaskSnapshot("t", S.FAILED),))),
     header(S.RUNNING, StageSnapshot("s", S.RUNNING, tasks=(TaskSnapshot("t", S.FAILED, exit_code=1),))),
     "task s/t is FAILED (final) and can no longer change, but exit_code changed"),
])
def test_successors_the_worker_would_refuse_are_rejected_with_the_rule(
    previous: BuildSnapshot | None, current: BuildSnapshot, fragment: str
) -> None:
    with pytest.raises(SnapshotRejected) as caught:
        check_successor(previous, carry_forward(previous, current))
    assert fragment in str(caught.value)


def test_jumps_with_a_path_and_new_nodes_in_any_status_are_fine() -> None:
    check_successor(None, header(S.QUEUED))
    check_successor(header(S.QUEUED), header(S.SUCCEEDED, StageSnapshot("s", S.SKIPPED)))
    check_successor(header(S.RUNNING, StageSnapshot("s", S.RUNNING)),
                    header(S.RUNNING, StageSnapshot("s", S.RUNNING, tasks=(TaskSnapshot("late", S.SUCCEEDED),))))


# ---------------------------------------------------------------- the worker accepts what is reported

@st.composite
def legal_progressions(draw: st.DrawFn) -> list[BuildSnapshot]:
    """A build moving along the transition table, growing stages and tasks as it goes."""
    def step(status: BuildStatus, build: bool = False) -> BuildStatus:
        options = sorted(ALLOWED_TRANSITIONS[status] - ({S.SKIPPED} if build else set()))
        return draw(st.sampled_from([status, *options])) if options else status

    snapshot = header(draw(st.sampled_from([S.QUEUED, S.PREPARING, S.RUNNING])))
    series = [snapshot]
    for _ in range(draw(st.integers(1, 8))):
        stage_list = []
        for stage in snapshot.stages:
            task_list = [TaskSnapshot(t.task_id, step(t.status), name=t.name) for t in stage.tasks]
            if draw(st.booleans()) and not is_final(stage.status):
                task_list.append(TaskSnapshot(f"t{len(task_list)}", draw(st.sampled_from(S))))
            stage_list.append(StageSnapshot(stage.stage_id, step(stage.status), name=stage.name, tasks=tuple(task_list)))
        if draw(st.booleans()):
            stage_list.append(StageSnapshot(f"s{len(stage_list)}", draw(st.sampled_from(S)), name="stage"))
        status = step(snapshot.status, build=True)
        snapshot = header(status, *stage_list, commit_sha=draw(st.none() | st.just("c0ffee")))
        if is_final(series[-1].status):
            snapshot = series[-1]
        series.append(carry_forward(series[-1], snapshot))
    return series


@settings(max_examples=300, deadline=None)
@given(legal_progressions())
def test_the_worker_accepts_every_event_a_legal_progression_emits_and_ends_in_the_same_tree(
    series: list[BuildSnapshot],
) -> None:
    state: BuildState | None = None
    previous: BuildSnapshot | None = None
    next_seq = 1
    for snapshot in series:
        check_successor(previous, snapshot)
        for event in diff(previous, snapshot, next_seq=next_seq, event_time=T0):
            outcome = apply_event(state, event)
            assert isinstance(outcome, Accepted), (event, outcome)
            state = outcome.state
            next_seq += 1
        previous = snapshot
    assert state is not None and previous is not None
    assert state.status is previous.status
    assert {s.stage_id: (s.status, {t.task_id: t.status for t in s.tasks.values()}) for s in state.stages.values()} == {
        s.stage_id: (s.status, {t.task_id: t.status for t in s.tasks}) for s in previous.stages
    }
