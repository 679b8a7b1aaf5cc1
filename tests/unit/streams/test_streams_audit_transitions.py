"""The audit transition table: its shape, its closure, and the rules it states when it forbids."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import AuditEventKind
from streams.audit_transitions import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    KIND_OF_STATUS,
    MANUAL_REPAIR_TARGETS,
    OPEN_STATUSES,
    RECORD_STATUSES,
    STATUS_OF_KIND,
    AuditStatus,
    is_final,
    manual_repair_rule,
    reachable_from,
    transition_rule,
)

S = AuditStatus
statuses = st.sampled_from(list(AuditStatus))


def reachable_by_bfs(start: AuditStatus) -> frozenset[AuditStatus]:
    """Statuses reachable in one or more steps, computed independently of the module."""
    seen: set[AuditStatus] = set()
    queue = deque(ALLOWED_TRANSITIONS[start])
    while queue:
        status = queue.popleft()
        if status not in seen:
            seen.add(status)
            queue.extend(ALLOWED_TRANSITIONS[status])
    return frozenset(seen)


def test_every_status_has_an_entry_and_targets_are_statuses() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(AuditStatus)
    for targets in ALLOWED_TRANSITIONS.values():
        assert targets <= set(AuditStatus)


def test_synced_repaired_and_canceled_are_the_final_statuses() -> None:
    without_edges = {status for status, targets in ALLOWED_TRANSITIONS.items() if not targets}
    assert FINAL_STATUSES == without_edges == {S.SYNCED, S.REPAIRED, S.CANCELED}


@pytest.mark.parametrize("status", list(AuditStatus))
def test_is_final_agrees_with_final_statuses(status: AuditStatus) -> None:
    assert is_final(status) is (status in FINAL_STATUSES)


def test_no_status_moves_to_itself_in_one_step() -> None:
    assert all(status not in targets for status, targets in ALLOWED_TRANSITIONS.items())


def test_only_a_decided_audit_reaches_the_record_statuses_in_one_step() -> None:
    sources = {s for s, targets in ALLOWED_TRANSITIONS.items() if targets & RECORD_STATUSES}
    assert sources == {S.DECIDED}
    assert ALLOWED_TRANSITIONS[S.DECIDED] == RECORD_STATUSES


def test_a_decision_is_never_taken_back() -> None:
    assert reachable_from(S.DECIDED) == {S.SYNCED, S.REPAIRED}
    rule = transition_rule(S.DECIDED, S.IN_REVIEW, allow_jumps=True)
    assert rule is not None and "never taken back" in rule


def test_timed_out_lets_a_late_decision_land_and_can_be_reopened() -> None:
    assert transition_rule(S.TIMED_OUT, S.DECIDED) is None
    assert transition_rule(S.TIMED_OUT, S.REQUESTED) is None
    assert not is_final(S.TIMED_OUT)


def test_open_statuses_are_requested_and_in_review() -> None:
    assert OPEN_STATUSES == {S.REQUESTED, S.IN_REVIEW}


def test_every_non_final_status_can_reach_a_final_status() -> None:
    for status in set(AuditStatus) - FINAL_STATUSES:
        assert reachable_from(status) & FINAL_STATUSES


def test_every_event_kind_moves_to_exactly_one_status_and_back() -> None:
    assert set(STATUS_OF_KIND) == set(AuditEventKind)
    assert set(STATUS_OF_KIND.values()) == set(AuditStatus)
    assert all(KIND_OF_STATUS[STATUS_OF_KIND[kind]] is kind for kind in AuditEventKind)


@given(status=statuses)
def test_reachable_from_is_the_transitive_closure_of_the_table(status: AuditStatus) -> None:
    assert reachable_from(status) == reachable_by_bfs(status)


@given(current=statuses, target=statuses)
def test_one_step_rule_allows_exactly_the_table_edges(current: AuditStatus, target: AuditStatus) -> None:
    rule = transition_rule(current, target)
    assert (rule is None) is (target in ALLOWED_TRANSITIONS[current])
    if rule is not None:
        assert current.value in rule


@given(current=statuses, target=statuses)
def test_jump_rule_allows_exactly_the_reachable_statuses(current: AuditStatus, target: AuditStatus) -> None:
    assert (transition_rule(current, target, allow_jumps=True) is None) is (target in reachable_from(current))


@given(current=st.sampled_from(sorted(FINAL_STATUSES)), target=statuses)
def test_leaving_a_final_status_is_refused_as_final(current: AuditStatus, target: AuditStatus) -> None:
    rule = transition_rule(current, target, allow_jumps=True)
    assert rule is not None and rule.startswith(f"{current.value} is final")


@given(current=statuses, target=statuses)
def test_manual_repair_allows_only_repair_targets_one_step_away(current: AuditStatus, target: AuditStatus) -> None:
    rule = manual_repair_rule(current, target)
    allowed = target in MANUAL_REPAIR_TARGETS and target in ALLOWED_TRANSITIONS[current]
    assert (rule is None) is allowed


@pytest.mark.parametrize(("target", "words"), [
    (S.IN_REVIEW, "review system"), (S.DECIDED, "never decides"), (S.SYNCED, "repair the audit to REPAIRED"),
])
def test_statuses_with_their_own_source_are_no_manual_target(target: AuditStatus, words: str) -> None:
    rule = manual_repair_rule(S.REQUESTED, target)
    assert rule is not None and words in rule
