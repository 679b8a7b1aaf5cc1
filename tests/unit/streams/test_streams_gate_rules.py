"""Gate rules and change detection, pure: windows, success rate, p95, stuck audits, PENDING, and
that only changes are decisions (a replay decides nothing, ids are stable)."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AuditAlert,
    AuditAlertKind,
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    BuildStatus,
    BuildStatusChange,
    GateDecision,
    GateResult,
)
from streams.gate_config import Gate
from streams.gate_rules import decide, decision_id, evaluate, percentile
from streams.gate_state import GateState, apply_audit_alert, apply_audit_event, apply_final_build, empty_state
from streams.gates import apply_input, gates_for

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def gate(**rules: Any) -> Gate:
    return Gate.model_validate({"id": "g", "project": "payments", "pipeline": "deploy", "branch": "main", "rules": rules})


def final(n: int, status: BuildStatus = BuildStatus.SUCCEEDED, duration_s: float | None = 60.0, **over: Any) -> BuildStatusChange:
    fields: dict[str, Any] = dict(
        build_id=f"b-{n}", project="payments", pipeline="deploy", seq=3, revision=3, event_id=f"e-{n}",
        event_time=T0 + timedelta(minutes=n), status=status, first_seen_at=T0 + timedelta(minutes=n) - timedelta(hours=1),
        finished_at=T0 + timedelta(minutes=n), duration_ms=None if duration_s is None else int(duration_s * 1000),
        branch="main",
    )
    fields.update(over)
    return BuildStatusChange(**fields)


def stuck(audit_id: str, episode: int = 1, pipeline: str | None = "deploy") -> AuditAlert:
    return AuditAlert(
        alert_id=f"{audit_id}/stuck/{episode}", audit_id=audit_id, kind=AuditAlertKind.STUCK, project="payments",
        pipeline=pipeline, subject_kind="BUILD", subject_id="b-1", status="IN_REVIEW", episode=episode,
        age_seconds=7200.0, threshold_seconds=3600.0, reason="in review for 2h", raised_at=T0,
    )


def audit_event(audit_id: str, kind: AuditEventKind, minutes: int = 5) -> AuditEvent:
    return AuditEvent(
        event_id=f"{audit_id}-{kind}-{minutes}", audit_id=audit_id, subject_kind=AuditSubjectKind.BUILD, subject_id="b-1",
        project="payments", pipeline="deploy", kind=kind, seq=minutes, event_time=T0 + timedelta(minutes=minutes),
    )


def run(g: Gate, inputs: list[Any], state: GateState | None = None) -> tuple[GateState, list[GateDecision]]:
    """What the gate agent does per input: apply, and publish a decision when it changed."""
    state = state or empty_state(g)
    decisions: list[GateDecision] = []
    for record in inputs:
        updated = apply_input(state, g, record)
        if updated is None:
            continue
        state, decision = decide(g, updated, T0)
        if decision is not None:
            decisions.append(decision)
    return state, decisions


def test_pass_fail_pass_publishes_only_changes() -> None:
    g = gate(latest_build_succeeded=True, success_rate={"at_least": 0.5, "last_builds": 4})
    state, decisions = run(g, [final(1), final(2), final(3, BuildStatus.FAILED), final(4, BuildStatus.FAILED),
                               final(5, BuildStatus.FAILED), final(6), final(7)])
    assert [(d.result, [f.rule for f in d.failing]) for d in decisions] == [
        (GateResult.PASS, []),
        (GateResult.FAIL, ["latest_build_succeeded"]),
        (GateResult.FAIL, ["latest_build_succeeded", "success_rate"]),
        (GateResult.FAIL, ["success_rate"]),  # b-6 succeeded, but 1 of the last 4 is below 0.5
        (GateResult.PASS, []),
    ]
    failing = decisions[2].failing
    assert failing[1].measured == "0.25" and failing[1].threshold == ">= 0.5"
    assert failing[0].measured == "FAILED" and "b-5" in failing[0].message
    assert decisions[2].previous_result == "FAIL" and decisions[0].previous_result is None
    assert state.last_decision_id == decisions[-1].decision_id
    assert len({d.decision_id for d in decisions}) == len(decisions)


def test_fewer_builds_than_min_builds_is_pending_and_a_stuck_audit_still_fails() -> None:
    g = gate(min_builds=3, latest_build_succeeded=True, no_open_stuck_audit=True)
    state, decisions = run(g, [final(1), final(2)])
    assert [d.result for d in decisions] == [GateResult.PENDING]
    assert decisions[0].failing[0].rule == "min_builds" and decisions[0].failing[0].measured == "1"
    state, more = run(g, [stuck("a-1")], state)
    assert [(d.result, [f.rule for f in d.failing]) for d in more] == [(GateResult.FAIL, ["no_open_stuck_audit"])]
    state, more = run(g, [audit_event("a-1", AuditEventKind.DECIDED), final(3)], state)
    assert [d.result for d in more] == [GateResult.PENDING, GateResult.PASS]


def test_p95_duration_over_the_window() -> None:
    g = gate(p95_duration={"at_most": "100s", "last_builds": 20})
    _, decisions = run(g, [final(n, duration_s=60) for n in range(19)] + [final(19, duration_s=400), final(20, duration_s=400)])
    assert [d.result for d in decisions] == [GateResult.PASS, GateResult.FAIL]
    assert decisions[1].failing[0].rule == "p95_duration" and decisions[1].failing[0].threshold == "<= 1m40s"
    assert decisions[1].inputs["p95_duration_s"] == "400.000"
    only_untimed = run(g, [final(1, duration_s=None)])[1]
    assert only_untimed[0].result is GateResult.PENDING and only_untimed[0].failing[0].measured == "n/a"


def test_within_window_is_measured_back_from_the_newest_build() -> None:
    g = gate(success_rate={"at_least": 0.5, "within": "30m"})
    state, _ = run(g, [final(0, BuildStatus.FAILED), final(1, BuildStatus.FAILED), final(40), final(45)])
    assert [b.build_id for b in state.builds] == ["b-40", "b-45"]
    assert evaluate(g, state).result is GateResult.PASS


def test_builds_the_gate_does_not_cover_are_neither_routed_nor_applied() -> None:
    g = gate(latest_build_succeeded=True)
    other_branch = final(1, branch="feature")
    other_pipeline = final(2, pipeline="lint")
    running = final(3, BuildStatus.RUNNING)
    assert gates_for(other_branch, [g]) == [] and gates_for(other_pipeline, [g]) == []
    assert all(apply_final_build(empty_state(g), g, c) is None for c in (other_branch, other_pipeline, running))
    no_audit_rule = gate(latest_build_succeeded=True)
    assert gates_for(stuck("a-1"), [no_audit_rule]) == []
    project_gate = Gate.model_validate({"id": "p", "project": "payments", "rules": {"no_open_stuck_audit": True}})
    assert gates_for(stuck("a-1", pipeline=None), [project_gate]) == [project_gate]
    assert gates_for(final(1), [project_gate]) == []  # no build rule: builds are not routed


def test_a_decision_that_arrives_before_its_stuck_alert_keeps_the_audit_closed() -> None:
    g = gate(no_open_stuck_audit=True)
    state = apply_audit_event(empty_state(g), g, audit_event("a-1", AuditEventKind.DECIDED))
    assert state is not None and state.input_revision == 0
    assert apply_audit_alert(state, g, stuck("a-1")) is None
    reopened = apply_audit_event(state, g, audit_event("a-1", AuditEventKind.REQUESTED, minutes=30))
    assert reopened is not None
    assert apply_audit_alert(reopened, g, stuck("a-1", episode=2)) is not None
    assert apply_audit_alert(state, g, stuck("a-1").model_copy(update={"kind": AuditAlertKind.INCONSISTENT})) is None


def test_decision_id_depends_on_gate_result_rules_and_revision_only() -> None:
    base = decision_id("g", GateResult.FAIL, ["b", "a"], 7)
    assert base == decision_id("g", GateResult.FAIL, ["a", "b"], 7)
    assert len({base, decision_id("h", GateResult.FAIL, ["a", "b"], 7), decision_id("g", GateResult.PASS, [], 7),
                decision_id("g", GateResult.FAIL, ["a"], 7), decision_id("g", GateResult.FAIL, ["a", "b"], 8)}) == 5


@given(st.lists(st.floats(min_value=0, max_value=1e7, allow_nan=False), min_size=2, max_size=60))
def test_percentile_is_clickhouse_inclusive_interpolation(values: list[float]) -> None:
    p95 = percentile(values, 0.95)
    assert min(values) <= p95 <= max(values)
    expected = statistics.quantiles(values, n=100, method="inclusive")[94]
    assert abs(p95 - expected) <= 1e-6 * max(1.0, abs(expected))


build_inputs = st.lists(
    st.tuples(st.integers(min_value=0, max_value=40), st.sampled_from(list((BuildStatus.SUCCEEDED, BuildStatus.FAILED,
                                                                          BuildStatus.CANCELED))),
              st.integers(min_value=1, max_value=600)),
    max_size=40, unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(build_inputs, st.integers(min_value=1, max_value=8), st.randoms(use_true_random=False))
def test_only_changes_are_published_and_a_replay_publishes_nothing(
    builds: list[tuple[int, BuildStatus, int]], last: int, rnd: Any
) -> None:
    g = gate(min_builds=2, latest_build_succeeded=True, success_rate={"at_least": 0.6, "last_builds": last},
             p95_duration={"at_most": "5m", "last_builds": last})
    changes = [final(n, status, duration_s=d) for n, status, d in builds]
    state, decisions = run(g, changes)
    for before, after in zip(decisions, decisions[1:]):
        assert (before.result, sorted(f.rule for f in before.failing)) != (after.result, sorted(f.rule for f in after.failing))
    assert len({d.decision_id for d in decisions}) == len(decisions)
    replay = list(changes)
    rnd.shuffle(replay)
    replayed_state, republished = run(g, replay, state)
    assert republished == [] and replayed_state == state
    # Any delivery order keeps the same window: the last `kept_builds` by finish time.
    shuffled_state, _ = run(g, replay)
    assert shuffled_state.builds == state.builds
    assert [b.build_id for b in state.builds] == [c.build_id for c in sorted(changes, key=lambda c: c.finished_at)][-g.kept_builds:]
    if decisions:
        assert decisions[-1].result is evaluate(g, state).result
