"""Killed runs are never SUCCEEDED: termination facts map to FAILED/CANCELED by one table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import BuildEvent, BuildScope, BuildStatus
from streams.build_state import Accepted, BuildState, Ignored, apply_event
from streams.termination import TERMINATION_TABLE, judge

S = BuildStatus
T0 = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reason", "exit_code", "status", "words"),
    [
        ("OOMKilled", 137, S.FAILED, "out of memory"),
        ("Evicted", None, S.FAILED, "evicted"),
        ("NodeLost", None, S.FAILED, "node was lost"),
        ("pod-deleted", None, S.FAILED, "pod was deleted"),
        ("DeadlineExceeded", None, S.FAILED, "deadline"),
        ("User_Canceled", None, S.CANCELED, "canceled by a user"),
        ("SomethingNew", None, S.FAILED, "not a clean completion"),
        (None, 137, S.FAILED, "SIGKILL"),
        (None, 143, S.FAILED, "SIGTERM"),
        (None, 2, S.FAILED, "exited with code 2"),
    ],
)
def test_a_succeeded_report_with_termination_facts_is_corrected(
    reason: str | None, exit_code: int | None, status: BuildStatus, words: str
) -> None:
    verdict = judge(S.SUCCEEDED, reason, exit_code)
    assert verdict.status is status and verdict.corrected
    assert verdict.reason is not None and words in verdict.reason and "reported SUCCEEDED" in verdict.reason


@pytest.mark.parametrize(("reason", "exit_code"), [(None, None), ("Completed", 0), (None, 0), ("succeeded", None)])
def test_clean_completion_keeps_success(reason: str | None, exit_code: int | None) -> None:
    verdict = judge(S.SUCCEEDED, reason, exit_code)
    assert verdict.status is S.SUCCEEDED and not verdict.corrected


@given(
    reported=st.sampled_from(list(BuildStatus)),
    reason=st.none() | st.sampled_from(sorted(TERMINATION_TABLE)) | st.text(max_size=12),
    exit_code=st.none() | st.integers(-5, 300),
)
def test_no_termination_fact_ever_yields_succeeded_unless_clean(
    reported: BuildStatus, reason: str | None, exit_code: int | None
) -> None:
    verdict = judge(reported, reason, exit_code)
    clean_reason = reason is None or not reason.strip() or reason.lower() in {"completed", "succeeded", "success"}
    if verdict.status is S.SUCCEEDED:
        assert reported is S.SUCCEEDED and clean_reason and exit_code in (None, 0)
    if reported is not S.SUCCEEDED:
        assert verdict.status is reported and not verdict.corrected


def task(seq: int, status: BuildStatus, minutes: int, **extra: object) -> BuildEvent:
    return BuildEvent(
        event_id=f"e{seq}", build_id="b", project="p", pipeline="deploy", seq=seq, event_time=T0 + timedelta(minutes=minutes),
        scope=BuildScope.TASK, stage_id="deploy", task_id="rollout", status=status, **extra,  # type: ignore[arg-type]
    )


def test_a_pod_killed_by_node_loss_reported_succeeded_ends_failed_with_the_reason_and_the_correction_kept() -> None:
    """Devtron: the workflow pod died with its node, and the run was shown as Succeeded."""
    running = apply_event(None, task(1, S.RUNNING, 0))
    assert isinstance(running, Accepted)
    killed = apply_event(running.state, task(2, S.SUCCEEDED, 3, termination_reason="NodeLost"))
    assert isinstance(killed, Accepted)
    node = killed.state.stages["deploy"].tasks["rollout"]
    assert node.status is S.FAILED
    assert node.corrected_from is S.SUCCEEDED
    assert node.correction_reason is not None and "node was lost" in node.correction_reason
    assert node.error_reason == node.correction_reason


def test_a_recorded_termination_overrules_a_later_succeeded_report() -> None:
    state: BuildState | None = None
    for event in (task(1, S.RUNNING, 0, termination_reason="OOMKilled", exit_code=137), task(2, S.SUCCEEDED, 2)):
        outcome = apply_event(state, event)
        assert isinstance(outcome, Accepted)
        state = outcome.state
    assert state is not None and state.stages["deploy"].tasks["rollout"].status is S.FAILED


def test_redelivered_succeeded_reports_after_a_correction_change_nothing() -> None:
    first = apply_event(None, task(1, S.SUCCEEDED, 1, termination_reason="Evicted"))
    assert isinstance(first, Accepted)
    again = apply_event(first.state, task(5, S.SUCCEEDED, 9, termination_reason="Evicted"))
    assert isinstance(again, Ignored)


def test_a_build_reported_succeeded_with_a_kill_exit_code_ends_failed() -> None:
    event = BuildEvent(
        event_id="e1", build_id="b", project="p", pipeline="deploy", seq=1, event_time=T0,
        scope=BuildScope.BUILD, status=S.SUCCEEDED, exit_code=137,
    )
    outcome = apply_event(None, event)
    assert isinstance(outcome, Accepted)
    assert outcome.state.status is S.FAILED and outcome.state.corrected_from is S.SUCCEEDED
    assert "corrected_from" in outcome.changed_fields


def test_a_build_reported_succeeded_after_its_task_was_killed_ends_failed_naming_the_task() -> None:
    state: BuildState | None = None
    build_done = BuildEvent(
        event_id="e9", build_id="b", project="p", pipeline="deploy", seq=9, event_time=T0 + timedelta(minutes=9),
        scope=BuildScope.BUILD, status=S.SUCCEEDED,
    )
    for event in (task(1, S.RUNNING, 0), task(2, S.SUCCEEDED, 3, termination_reason="NodeLost"), build_done):
        outcome = apply_event(state, event)
        assert isinstance(outcome, Accepted)
        state = outcome.state
    assert state is not None and state.status is S.FAILED
    assert state.correction_reason is not None and "deploy/rollout" in state.correction_reason
    assert state.error_reason == state.correction_reason
