"""Evaluate a quality gate's rules over its state; decide whether the decision changed.

Pure functions, no clock and no Kafka: the same state always gives the same evaluation, which
is what makes a replayed input publish nothing new. Vocabulary follows BK-CI's gate results:
PASS, FAIL (every failing rule listed with its measured value), and PENDING for BK-CI's WAIT
(fewer final builds than `min_builds`, or no build in the window has a duration yet).
A stuck audit, or a failure notification no receiver acknowledged, fails the gate even while
builds are still missing: FAIL outranks PENDING.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas import BuildStatus, GateDecision, GateResult, GateRuleFailure
from streams.gate_config import BuildWindow, Gate, span
from streams.gate_state import FinalBuild, GateState

RULE_MIN_BUILDS = "min_builds"
RULE_LATEST = "latest_build_succeeded"
RULE_SUCCESS_RATE = "success_rate"
RULE_P95 = "p95_duration"
RULE_STUCK_AUDIT = "no_open_stuck_audit"
RULE_UNACKNOWLEDGED = "no_unacknowledged_failure_notification"
LISTED_NOTIFICATIONS = 5


@dataclass(frozen=True)
class Evaluation:
    result: GateResult
    failing: tuple[GateRuleFailure, ...]
    """FAIL: the failing rules; PENDING: what the gate still waits for; PASS: empty."""
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def failing_rules(self) -> tuple[str, ...]:
        return tuple(sorted(f.rule for f in self.failing))


def percentile(values: Sequence[float], q: float) -> float:
    """Inclusive linear interpolation (ClickHouse's quantileExactInclusive, numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def success_rate(builds: Sequence[FinalBuild]) -> float:
    """SUCCEEDED / all final builds; CANCELED counts as not-success, as in the stats API."""
    if not builds:
        raise ValueError("success rate of no builds")
    return sum(1 for b in builds if b.status is BuildStatus.SUCCEEDED) / len(builds)


def window_builds(builds: Sequence[FinalBuild], window: BuildWindow) -> list[FinalBuild]:
    """The builds a rule measures: within `within` of the newest build, then the last `last_builds`."""
    chosen = list(builds)
    if window.within is not None and chosen:
        newest = chosen[-1].finished_at
        chosen = [b for b in chosen if newest - b.finished_at <= window.within]
    if window.last_builds is not None:
        chosen = chosen[-window.last_builds:]
    return chosen


def evaluate(gate: Gate, state: GateState) -> Evaluation:
    rules = gate.rules
    failing: list[GateRuleFailure] = []
    pending: list[GateRuleFailure] = []
    inputs: dict[str, str] = {"input_revision": str(state.input_revision), "builds_in_window": str(len(state.builds))}
    latest = state.latest_build
    if latest is not None:
        inputs |= {
            "latest_build_id": latest.build_id, "latest_status": latest.status.value,
            "latest_finished_at": latest.finished_at.isoformat(),
        }
    if rules.uses_builds and len(state.builds) < rules.min_builds:
        pending.append(GateRuleFailure(
            rule=RULE_MIN_BUILDS, measured=str(len(state.builds)), threshold=f">= {rules.min_builds}",
            message=f"waiting for builds: {len(state.builds)} of {rules.min_builds} final builds seen",
        ))
    elif rules.uses_builds:
        if rules.latest_build_succeeded and latest is not None and latest.status is not BuildStatus.SUCCEEDED:
            failing.append(GateRuleFailure(
                rule=RULE_LATEST, measured=latest.status.value, threshold=BuildStatus.SUCCEEDED.value,
                message=f"latest build {latest.build_id} ({latest.pipeline}@{latest.branch or '-'}) is {latest.status.value}",
            ))
        if rules.success_rate is not None:
            measured = window_builds(state.builds, rules.success_rate)
            rate = success_rate(measured)
            inputs["success_rate"] = f"{rate:.4g}"
            inputs["success_rate_builds"] = str(len(measured))
            if rate < rules.success_rate.at_least:
                succeeded = sum(1 for b in measured if b.status is BuildStatus.SUCCEEDED)
                failing.append(GateRuleFailure(
                    rule=RULE_SUCCESS_RATE, measured=f"{rate:.4g}", threshold=f">= {rules.success_rate.at_least:g}",
                    message=f"{succeeded} of {len(measured)} builds succeeded ({rate:.1%}), "
                    f"below {rules.success_rate.at_least:.1%}",
                ))
        if rules.p95_duration is not None:
            timed = [b.duration_ms for b in window_builds(state.builds, rules.p95_duration) if b.duration_ms is not None]
            limit = rules.p95_duration.at_most.total_seconds()
            if not timed:
                pending.append(GateRuleFailure(
                    rule=RULE_P95, measured="n/a", threshold=f"<= {span(rules.p95_duration.at_most)}",
                    message="waiting for builds: no build in the window reported a duration",
                ))
            else:
                p95 = percentile([float(d) for d in timed], 0.95) / 1000.0
                inputs["p95_duration_s"] = f"{p95:.3f}"
                if p95 > limit:
                    failing.append(GateRuleFailure(
                        rule=RULE_P95, measured=f"{p95:.1f}s", threshold=f"<= {span(rules.p95_duration.at_most)}",
                        message=f"p95 build duration {p95:.1f}s over {len(timed)} builds exceeds {limit:g}s",
                    ))
    if rules.no_open_stuck_audit:
        inputs["open_stuck_audits"] = str(len(state.stuck_audits))
        if state.stuck_audits:
            ids = sorted(state.stuck_audits)
            failing.append(GateRuleFailure(
                rule=RULE_STUCK_AUDIT, measured=str(len(ids)), threshold="0",
                message=f"{len(ids)} audit(s) stuck in review: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}",
            ))
    if rules.no_unacknowledged_failure_notification:
        unacknowledged = unacknowledged_failure(state)
        if unacknowledged is not None:
            failing.append(unacknowledged)
        inputs["unacknowledged_failure_notifications"] = str(len(state.open_notifications))
        if state.forgotten_notifications:
            inputs["forgotten_failure_notifications"] = str(state.forgotten_notifications)
    if failing:
        return Evaluation(GateResult.FAIL, tuple(failing), inputs)
    if pending:
        return Evaluation(GateResult.PENDING, tuple(pending), inputs)
    return Evaluation(GateResult.PASS, (), inputs)


def unacknowledged_failure(state: GateState) -> GateRuleFailure | None:
    """The failing `no_unacknowledged_failure_notification` rule, or None when every one was delivered.

    Open means requested and not acknowledged with a 2xx: pending, in flight (retrying) or given up
    (dead-lettered). Only a DELIVERED receipt closes one; a later RECOVERED or SUCCEEDED build of the
    same pipeline does not, because whoever should have heard of the failure still has not.
    """
    if not state.open_notifications:
        return None
    oldest_first = sorted(state.open_notifications.values(), key=lambda n: (n.requested_at, n.notification_id))
    gave_up = sum(1 for n in oldest_first if n.gave_up)
    listed = ", ".join(
        f"build {n.subject_id} ({n.pipeline or '-'}@{n.branch or '-'}) to {n.subscription_id}"
        f"{' (given up)' if n.gave_up else ''}"
        for n in oldest_first[:LISTED_NOTIFICATIONS]
    )
    more = f" and {len(oldest_first) - LISTED_NOTIFICATIONS} more" if len(oldest_first) > LISTED_NOTIFICATIONS else ""
    return GateRuleFailure(
        rule=RULE_UNACKNOWLEDGED, measured=str(len(oldest_first)), threshold="0",
        message=f"{len(oldest_first)} failure notification(s) not acknowledged by their receiver "
        f"({len(oldest_first) - gave_up} pending or in flight, {gave_up} given up): {listed}{more}; "
        "only a delivery closes one, a later recovery does not",
    )


def decision_changed(state: GateState, evaluation: Evaluation) -> bool:
    """A decision is new when its result or its set of failing rules differs from the last one published.

    A measured value that moves while the same rules fail (a success rate from 0.5 to 0.6) is
    not a new decision; the next decision carries the values of its time.
    """
    return state.last_result is not evaluation.result or state.last_failing != evaluation.failing_rules


def decision_id(gate_id: str, result: GateResult, failing_rules: Sequence[str], input_revision: int) -> str:
    """sha256 of (gate, result, failing rules, input revision): a replayed input repeats the id."""
    canonical = json.dumps(
        ["cipulse.gate.v1", gate_id, result.value, sorted(failing_rules), input_revision], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def decide(gate: Gate, state: GateState, now: datetime) -> tuple[GateState, GateDecision | None]:
    """Evaluate `state`; a changed decision is returned with the state that remembers it."""
    evaluation = evaluate(gate, state)
    if not decision_changed(state, evaluation):
        return state, None
    decision = GateDecision(
        decision_id=decision_id(gate.id, evaluation.result, evaluation.failing_rules, state.input_revision),
        gate=gate.id, project=gate.project, pipeline=gate.pipeline, branch=gate.branch,
        result=evaluation.result,
        previous_result=state.last_result.value if state.last_result is not None else None,
        failing=list(evaluation.failing), input_revision=state.input_revision, inputs=evaluation.inputs,
        decided_at=now,
    )
    remembered = state.model_copy(update={
        "last_result": evaluation.result, "last_failing": evaluation.failing_rules,
        "last_decision_id": decision.decision_id,
    })
    return remembered, decision
