"""The build lifecycle as one table of allowed status transitions.

Every node of a build (the build itself, a stage, a task) follows the same
lifecycle; only SKIPPED is reserved for stages and tasks. The table is the single
source of truth: `streams.build_state.apply_event` consults it, and nothing else
encodes lifecycle rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from schemas import BuildScope, BuildStatus

S = BuildStatus

ALLOWED_TRANSITIONS: Mapping[BuildStatus, frozenset[BuildStatus]] = {
    S.QUEUED: frozenset({S.PREPARING, S.CANCELED, S.SKIPPED}),
    # Preparing may fall back to the queue (agent lost before the run started).
    S.PREPARING: frozenset({S.QUEUED, S.RUNNING, S.FAILED, S.CANCELED, S.SKIPPED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
    S.SKIPPED: frozenset(),
}

FINAL_STATUSES: frozenset[BuildStatus] = frozenset(
    status for status, targets in ALLOWED_TRANSITIONS.items() if not targets
)

STATUSES_NOT_FOR_BUILDS: frozenset[BuildStatus] = frozenset({S.SKIPPED})


def is_final(status: BuildStatus) -> bool:
    """A final status never changes again: later events for that node are late or illegal."""
    return status in FINAL_STATUSES


@cache
def reachable_from(status: BuildStatus) -> frozenset[BuildStatus]:
    """Every status reachable from `status` through one or more allowed transitions.

    Events can arrive out of order, so an event may jump over statuses whose events
    are still in flight (QUEUED -> RUNNING while PREPARING is late). Such a jump is
    legal when a path through the table exists; the late events then arrive stale.
    """
    seen: set[BuildStatus] = set()
    frontier = list(ALLOWED_TRANSITIONS[status])
    while frontier:
        nxt = frontier.pop()
        if nxt not in seen:
            seen.add(nxt)
            frontier.extend(ALLOWED_TRANSITIONS[nxt])
    return frozenset(seen)


def transition_rule(scope: BuildScope, current: BuildStatus, target: BuildStatus) -> str | None:
    """Return None when `current -> target` is allowed for `scope`, else the rule that forbids it."""
    if scope is BuildScope.BUILD and target in STATUSES_NOT_FOR_BUILDS:
        return f"{target.value} applies to stages and tasks only, not to a whole build"
    if target == current or target in reachable_from(current):
        return None
    if is_final(current):
        return f"{current.value} is final: a finished {scope.value.lower()} never changes status"
    allowed = ", ".join(sorted(s.value for s in reachable_from(current))) or "nothing"
    return f"{current.value} -> {target.value} is not allowed (from {current.value}: {allowed})"
