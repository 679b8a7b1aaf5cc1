"""The build state machine: transitions, idempotence, out-of-order convergence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BuildEvent, BuildScope, BuildStatus
from streams.build_state import Accepted, BuildState, Ignored, Rejected, apply_event
from streams.demo_feed import simulate_build

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
S = BuildStatus


def build_event(seq: int, status: BuildStatus, scope: BuildScope = BuildScope.BUILD, *, minutes: float = 0,
                stage: str | None = None, task: str | None = None, **extra: object) -> BuildEvent:
    return BuildEvent(
        event_id=f"e{seq}", build_id="b1", project="p", pipeline="ci", seq=seq,
        event_time=T0 + timedelta(minutes=minutes), scope=scope, stage_id=stage, task_id=task,
        status=status, **extra,  # type: ignore[arg-type]
    )


def replay(events: list[BuildEvent], state: BuildState | None = None) -> tuple[BuildState | None, list[object]]:
    outcomes = []
    for event in events:
        outcome = apply_event(state, event)
        if isinstance(outcome, Accepted):
            state = outcome.state
        outcomes.append(outcome)
    return state, outcomes


def test_in_order_lifecycle_records_times_and_duration() -> None:
    state, outcomes = replay([
        build_event(1, S.QUEUED, minutes=0),
        build_event(2, S.PREPARING, minutes=1, executor="runner-1"),
        build_event(3, S.RUNNING, minutes=2),
        build_event(4, S.SUCCEEDED, minutes=7),
    ])
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert state is not None
    assert state.status is S.SUCCEEDED
    assert state.queued_at == T0 and state.started_at == T0 + timedelta(minutes=2)
    assert state.duration_ms == 5 * 60 * 1000
    assert state.queue_ms == 2 * 60 * 1000
    assert state.executor == "runner-1"
    assert state.revision == 4


def test_repeated_event_is_ignored_as_duplicate() -> None:
    first = build_event(1, S.QUEUED)
    state, _ = replay([first])
    outcome = apply_event(state, first)
    assert isinstance(outcome, Ignored) and outcome.kind == "duplicate"


def test_late_event_never_moves_a_finished_build_backwards() -> None:
    state, _ = replay([build_event(1, S.QUEUED), build_event(3, S.RUNNING, minutes=1), build_event(4, S.FAILED, minutes=2)])
    outcome = apply_event(state, build_event(2, S.PREPARING, minutes=0.5))
    assert isinstance(outcome, Ignored) and outcome.kind == "late"
    assert state is not None and state.status is S.FAILED


def test_newer_event_moving_a_final_build_is_rejected_with_the_rule() -> None:
    state, _ = replay([build_event(1, S.RUNNING), build_event(2, S.SUCCEEDED, minutes=1)])
    outcome = apply_event(state, build_event(3, S.RUNNING, minutes=2))
    assert isinstance(outcome, Rejected)
    assert "SUCCEEDED is final" in outcome.reason and "seq 3" in outcome.reason


def test_backward_transition_is_rejected_with_allowed_targets() -> None:
    state, _ = replay([build_event(1, S.RUNNING)])
    outcome = apply_event(state, build_event(2, S.QUEUED))
    assert isinstance(outcome, Rejected)
    assert "RUNNING -> QUEUED is not allowed" in outcome.reason
    assert "CANCELED, FAILED, SUCCEEDED" in outcome.reason


def test_preparing_may_fall_back_to_queued() -> None:
    state, outcomes = replay([build_event(1, S.QUEUED), build_event(2, S.PREPARING), build_event(3, S.QUEUED),
                              build_event(4, S.PREPARING), build_event(5, S.RUNNING)])
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert state is not None and state.status is S.RUNNING


def test_skipped_is_for_stages_and_tasks_only() -> None:
    outcome = apply_event(None, build_event(1, S.SKIPPED))
    assert isinstance(outcome, Rejected) and "stages and tasks only" in outcome.reason
    stage = apply_event(None, build_event(1, S.SKIPPED, BuildScope.STAGE, stage="deploy"))
    assert isinstance(stage, Accepted) and stage.state.stages["deploy"].status is S.SKIPPED


def test_event_for_another_project_is_rejected() -> None:
    state, _ = replay([build_event(1, S.QUEUED)])
    foreign = build_event(2, S.RUNNING).model_copy(update={"project": "other"})
    outcome = apply_event(state, foreign)
    assert isinstance(outcome, Rejected) and "belongs to p/ci" in outcome.reason


def test_task_tree_is_built_from_task_events_before_their_stage_reports() -> None:
    state, _ = replay([
        build_event(1, S.RUNNING, BuildScope.TASK, stage="test", task="unit", minutes=1),
        build_event(2, S.FAILED, BuildScope.TASK, stage="test", task="unit", minutes=3,
                    error_reason="3 tests failed", exit_code=1, termination_reason="Error"),
    ])
    assert state is not None
    task = state.stages["test"].tasks["unit"]
    assert task.status is S.FAILED and task.duration_ms == 120_000
    assert (task.error_reason, task.exit_code) == ("3 tests failed", 1)


def test_final_event_first_then_late_running_fills_start_and_duration() -> None:
    state, outcomes = replay([build_event(1, S.QUEUED), build_event(3, S.SUCCEEDED, minutes=10),
                              build_event(2, S.RUNNING, minutes=4)])
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert state is not None and state.status is S.SUCCEEDED
    assert state.duration_ms == 6 * 60 * 1000
    again = apply_event(state, build_event(2, S.RUNNING, minutes=4))
    assert isinstance(again, Ignored)


def _comparable(state: BuildState | None) -> dict[str, object]:
    """Everything but bookkeeping: `revision` counts accepted changes, and `first_seen_at` is
    the time of the first event to *arrive* (fixed so a build's ClickHouse partition never moves)."""
    assert state is not None
    return state.model_dump(exclude={"revision", "first_seen_at"})


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000), dup_count=st.integers(0, 20))
def test_any_delivery_order_with_duplicates_converges_to_in_order_state(seed: int, shuffle_seed: int, dup_count: int) -> None:
    build = simulate_build(random.Random(seed), T0)
    in_order, outcomes = replay(list(build.events))
    assert not any(isinstance(o, Rejected) for o in outcomes)
    shuffler = random.Random(shuffle_seed)
    delivered = list(build.events) + [shuffler.choice(build.events) for _ in range(dup_count)]
    shuffler.shuffle(delivered)
    scrambled, outcomes = replay(delivered)
    assert not any(isinstance(o, Rejected) for o in outcomes)
    assert _comparable(scrambled) == _comparable(in_order)
    assert scrambled is not None and scrambled.status is build.final_status
    # A full redelivery afterwards changes nothing at all.
    _, replayed = replay(list(build.events), scrambled)
    assert all(isinstance(o, Ignored) for o in replayed)


@pytest.mark.parametrize("status", [S.SUCCEEDED, S.FAILED, S.CANCELED])
def test_repeated_final_status_with_newer_seq_is_not_a_change(status: BuildStatus) -> None:
    """Devtron's duplicate 'success' came from re-seeing a finished run: it must not count as a change."""
    state, _ = replay([build_event(1, S.RUNNING), build_event(2, status, minutes=1)])
    outcome = apply_event(state, build_event(3, status, minutes=5))
    assert isinstance(outcome, Ignored)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_apply_event_never_mutates_the_state_it_is_given(seed: int) -> None:
    """Copy-on-write must leave every earlier state intact (change sets diff against them)."""
    build = simulate_build(random.Random(seed), T0)
    state: BuildState | None = None
    for event in build.events:
        snapshot = state.model_dump() if state is not None else None
        outcome = apply_event(state, event)
        if state is not None:
            assert state.model_dump() == snapshot
        if isinstance(outcome, Accepted):
            state = outcome.state
