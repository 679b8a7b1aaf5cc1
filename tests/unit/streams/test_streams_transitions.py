"""The transition table: its shape, its closure, and the rules it states when it forbids."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import BuildScope, BuildStatus
from streams.transitions import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    STATUSES_NOT_FOR_BUILDS,
    is_final,
    reachable_from,
    transition_rule,
)

S = BuildStatus
statuses = st.sampled_from(list(BuildStatus))


def reachable_by_bfs(start: BuildStatus) -> frozenset[BuildStatus]:
    """Statuses reachable in one or more steps, computed independently of the module."""
    seen: set[BuildStatus] = set()
    queue = deque(ALLOWED_TRANSITIONS[start])
    while queue:
        status = queue.popleft()
        if status in seen:
            continue
        seen.add(status)
        queue.extend(ALLOWED_TRANSITIONS[status])
    return frozenset(seen)


def test_every_status_has_an_entry_and_targets_are_statuses() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(BuildStatus)
    for targets in ALLOWED_TRANSITIONS.values():
        assert targets <= set(BuildStatus)


def test_final_statuses_are_exactly_those_without_outgoing_edges() -> None:
    without_edges = {status for status, targets in ALLOWED_TRANSITIONS.items() if not targets}
    assert FINAL_STATUSES == without_edges == {S.SUCCEEDED, S.FAILED, S.CANCELED, S.SKIPPED}


@pytest.mark.parametrize("status", list(BuildStatus))
def test_is_final_agrees_with_final_statuses(status: BuildStatus) -> None:
    assert is_final(status) is (status in FINAL_STATUSES)


def test_no_status_moves_to_itself_in_one_step() -> None:
    assert all(status not in targets for status, targets in ALLOWED_TRANSITIONS.items())


def test_preparing_may_fall_back_to_queued() -> None:
    assert S.QUEUED in ALLOWED_TRANSITIONS[S.PREPARING]
    assert transition_rule(BuildScope.BUILD, S.PREPARING, S.QUEUED) is None


def test_running_cannot_go_back_to_queued_or_preparing() -> None:
    assert reachable_from(S.RUNNING) == {S.SUCCEEDED, S.FAILED, S.CANCELED}


def test_every_non_final_status_can_reach_a_final_status() -> None:
    for status in set(BuildStatus) - FINAL_STATUSES:
        assert reachable_from(status) & FINAL_STATUSES


def test_skipped_is_reserved_for_stages_and_tasks() -> None:
    assert STATUSES_NOT_FOR_BUILDS == {S.SKIPPED}


@given(status=statuses)
def test_reachable_from_is_the_transitive_closure_of_the_table(status: BuildStatus) -> None:
    assert reachable_from(status) == reachable_by_bfs(status)


@given(status=statuses)
def test_reachable_from_is_closed_under_one_more_step(status: BuildStatus) -> None:
    reachable = reachable_from(status)
    assert ALLOWED_TRANSITIONS[status] <= reachable
    for middle in reachable:
        assert ALLOWED_TRANSITIONS[middle] <= reachable


def test_final_statuses_reach_nothing() -> None:
    for status in FINAL_STATUSES:
        assert reachable_from(status) == frozenset()


def test_queued_and_preparing_reach_each_other_through_the_fallback_cycle() -> None:
    assert S.QUEUED in reachable_from(S.QUEUED)
    assert S.PREPARING in reachable_from(S.PREPARING)


@pytest.mark.parametrize(
    ("scope", "current", "target"), list(itertools.product(BuildScope, BuildStatus, BuildStatus))
)
def test_transition_rule_allows_exactly_the_reachable_targets_and_names_the_deciding_status(
    scope: BuildScope, current: BuildStatus, target: BuildStatus
) -> None:
    rule = transition_rule(scope, current, target)
    not_for_scope = scope is BuildScope.BUILD and target in STATUSES_NOT_FOR_BUILDS
    expected_allowed = not not_for_scope and (target == current or target in reachable_by_bfs(current))
    assert (rule is None) is expected_allowed
    if rule is None:
        return
    if not_for_scope:
        assert rule.startswith(f"{target.value} applies to stages and tasks only")
    elif current in FINAL_STATUSES:
        assert rule.startswith(f"{current.value} is final")
    else:
        assert rule.startswith(f"{current.value} -> {target.value} is not allowed")


def test_rule_for_skipping_a_whole_build_says_skipped_is_for_stages_and_tasks() -> None:
    rule = transition_rule(BuildScope.BUILD, S.QUEUED, S.SKIPPED)
    assert rule == "SKIPPED applies to stages and tasks only, not to a whole build"


@pytest.mark.parametrize("scope", [BuildScope.STAGE, BuildScope.TASK])
def test_stages_and_tasks_may_be_skipped_from_queued_and_preparing(scope: BuildScope) -> None:
    assert transition_rule(scope, S.QUEUED, S.SKIPPED) is None
    assert transition_rule(scope, S.PREPARING, S.SKIPPED) is None


@pytest.mark.parametrize(("scope", "noun"), [(BuildScope.BUILD, "build"), (BuildScope.STAGE, "stage"), (BuildScope.TASK, "task")])
def test_rule_for_leaving_a_final_status_names_the_status_and_the_scope(scope: BuildScope, noun: str) -> None:
    rule = transition_rule(scope, S.FAILED, S.RUNNING)
    assert rule == f"FAILED is final: a finished {noun} never changes status"


def test_rule_for_a_backward_move_lists_the_allowed_targets_sorted() -> None:
    rule = transition_rule(BuildScope.TASK, S.RUNNING, S.PREPARING)
    assert rule == "RUNNING -> PREPARING is not allowed (from RUNNING: CANCELED, FAILED, SUCCEEDED)"


@pytest.mark.parametrize("scope", list(BuildScope))
def test_staying_in_the_same_status_is_not_a_forbidden_transition(scope: BuildScope) -> None:
    """`apply_event` decides duplicates by seq; the table itself never forbids a self-move."""
    for status in set(BuildStatus) - (STATUSES_NOT_FOR_BUILDS if scope is BuildScope.BUILD else set()):
        assert transition_rule(scope, status, status) is None
