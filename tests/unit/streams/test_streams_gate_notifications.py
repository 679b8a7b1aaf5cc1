"""The rule "no unacknowledged failure notification", pure: a FAILED notification of the gate's scope
opens when requested and closes only on a DELIVERED receipt; a GAVE_UP receipt keeps it open; a later
recovery does not close it; receipts and requests may arrive in either order; memory is bounded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    NotificationChannel,
    NotificationRequest,
    NotificationTransition,
    NotifierSignal,
    NotifierSignalKind,
    decode,
    encode,
)
from streams import gate_state
from streams.gate_config import Gate
from streams.gate_rules import RULE_UNACKNOWLEDGED, decide, evaluate
from streams.gate_state import GateState, dump_gate_state, empty_state, load_gate_state
from streams.gates import apply_input, gates_for, watches_notifications

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def gate(**scope: Any) -> Gate:
    fields: dict[str, Any] = {"id": "g", "project": "payments", "pipeline": "deploy", "branch": "main"}
    fields.update(scope)
    return Gate.model_validate({**fields, "rules": {"no_unacknowledged_failure_notification": True}})


def request(
    n: int, transition: NotificationTransition = NotificationTransition.FAILED, **over: Any
) -> NotificationRequest:
    fields: dict[str, Any] = dict(
        notification_id=f"n-{n}", subscription_id="oncall", subject_kind="BUILD", subject_id=f"b-{n}",
        project="payments", pipeline="deploy", branch="main", transition=transition, status="FAILED", version=3,
        channel=NotificationChannel.WEBHOOK, title="t", body="", created_at=T0 + timedelta(seconds=n),
    )
    fields.update(over)
    return NotificationRequest(**fields)


def receipt(kind: NotifierSignalKind, *ids: int, projects: tuple[str, ...] = ("payments",), at: int = 0) -> NotifierSignal:
    return NotifierSignal(
        kind=kind, group_key='oncall{project="payments"}', flush_id="f", signalled_at=T0 + timedelta(minutes=at),
        notification_ids=[f"n-{i}" for i in ids], projects=list(projects),
    )


DELIVERED = NotifierSignalKind.DELIVERED
GAVE_UP = NotifierSignalKind.GAVE_UP


def run(g: Gate, inputs: list[Any], state: GateState | None = None) -> tuple[GateState, list[tuple[str, list[str]]]]:
    state = state or empty_state(g)
    decisions: list[tuple[str, list[str]]] = []
    for record in inputs:
        if g not in gates_for(record, [g]):  # what the router would not send
            continue
        updated = apply_input(state, g, record)
        if updated is None:
            continue
        state, decision = decide(g, updated, T0)
        if decision is not None:
            decisions.append((decision.result.value, [f.rule for f in decision.failing]))
    return state, decisions


def test_a_failure_notification_fails_the_gate_until_it_is_delivered() -> None:
    g = gate()
    state, decisions = run(g, [request(1)])
    assert decisions == [("FAIL", [RULE_UNACKNOWLEDGED])]
    failure = evaluate(g, state).failing[0]
    assert failure.measured == "1" and failure.threshold == "0"
    assert "1 failure notification(s) not acknowledged" in failure.message
    assert "(1 pending or in flight, 0 given up): build b-1 (deploy@main) to oncall" in failure.message
    assert "a later recovery does not" in failure.message
    state, decisions = run(g, [receipt(DELIVERED, 1)], state)
    assert decisions == [("PASS", [])] and state.open_notifications == {}


def test_given_up_stays_failing_and_a_later_recovery_does_not_close_it() -> None:
    g = gate()
    state, decisions = run(g, [
        request(1), receipt(GAVE_UP, 1),
        request(2, NotificationTransition.RECOVERED), receipt(DELIVERED, 2),
    ])
    assert decisions == [("FAIL", [RULE_UNACKNOWLEDGED])]
    assert state.open_notifications["n-1"].gave_up
    assert "(0 pending or in flight, 1 given up)" in evaluate(g, state).failing[0].message
    # The notification is re-sent (its request replayed) and this time acknowledged.
    state, decisions = run(g, [request(1), receipt(DELIVERED, 1, at=5)], state)
    assert decisions == [("PASS", [])]


def test_a_receipt_before_its_request_is_remembered() -> None:
    g = gate()
    state, decisions = run(g, [receipt(DELIVERED, 1), request(1)])
    assert decisions == [("PASS", [])] and state.open_notifications == {}  # the gate's first decision
    state, decisions = run(g, [receipt(GAVE_UP, 2), request(2)], state)
    assert decisions == [("FAIL", [RULE_UNACKNOWLEDGED])] and state.open_notifications["n-2"].gave_up


def test_delivered_is_final_and_replays_change_nothing() -> None:
    g = gate()
    state, _ = run(g, [request(1), receipt(DELIVERED, 1)])
    for again in (request(1), receipt(DELIVERED, 1), receipt(GAVE_UP, 1)):
        assert apply_input(state, g, again) is None


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (request(1, branch="feature"), "another branch"),
        (request(1, branch=None), "a v1 request names no branch"),
        (request(1, pipeline="other"), "another pipeline"),
        (request(1, project="web"), "another project"),
        (request(1, NotificationTransition.AUDIT_STUCK), "audits have their own rule"),
        (request(1, NotificationTransition.RECOVERED), "not a failure"),
        (request(1, NotificationTransition.CANCELED), "not a failure"),
        (request(1, NotificationTransition.GATE_FAILED), "a gate's own alarm"),
        (receipt(DELIVERED, 1, projects=("web",)), "a receipt of another project"),
        (receipt(NotifierSignalKind.FLUSH_DUE), "a tick"),
        (NotifierSignal(kind=DELIVERED, group_key="k", flush_id="f", signalled_at=T0), "a v1 receipt"),
    ],
)
def test_what_the_rule_ignores(record: Any, why: str) -> None:
    g = gate()
    assert gates_for(record, [g]) == [], why
    assert apply_input(empty_state(g), g, record) is None, why


def test_a_project_wide_gate_counts_every_pipeline_and_branch() -> None:
    g = gate(pipeline=None, branch=None)
    state, decisions = run(g, [request(1, pipeline="other", branch=None), request(2, branch="feature")])
    assert decisions == [("FAIL", [RULE_UNACKNOWLEDGED])] and sorted(state.open_notifications) == ["n-1", "n-2"]


def test_only_gates_with_the_rule_read_notifications() -> None:
    plain = Gate.model_validate({"id": "p", "project": "payments", "rules": {"latest_build_succeeded": True}})
    assert not watches_notifications([plain]) and watches_notifications([plain, gate()])
    assert gates_for(request(1), [plain]) == [] and gates_for(receipt(DELIVERED, 1), [plain]) == []


def test_the_rule_fails_a_gate_that_is_still_pending_for_builds() -> None:
    g = Gate.model_validate({"id": "g", "project": "payments", "rules": {
        "min_builds": 3, "latest_build_succeeded": True, "no_unacknowledged_failure_notification": True,
    }})
    _, decisions = run(g, [request(1)])
    assert decisions == [("FAIL", [RULE_UNACKNOWLEDGED])]


def test_open_and_settled_memory_is_bounded_oldest_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gate_state, "MAX_OPEN_NOTIFICATIONS", 3)
    monkeypatch.setattr(gate_state, "MAX_SETTLED_NOTIFICATIONS", 4)
    g = gate()
    with caplog.at_level(logging.WARNING, logger="streams.gate_state"):
        state, _ = run(g, [request(n) for n in range(1, 6)])
    assert sorted(state.open_notifications) == ["n-3", "n-4", "n-5"] and state.forgotten_notifications == 2
    assert "forgetting the oldest n-1" in caplog.text and "forgetting the oldest n-2" in caplog.text
    assert evaluate(g, state).inputs["forgotten_failure_notifications"] == "2"
    state, _ = run(g, [receipt(DELIVERED, n, at=n) for n in range(10, 16)], state)
    assert sorted(state.settled_notifications) == ["n-12", "n-13", "n-14", "n-15"]


def test_the_state_and_the_receipt_survive_their_encodings() -> None:
    g = gate()
    state, _ = run(g, [request(1), receipt(GAVE_UP, 1), receipt(DELIVERED, 7)])
    assert load_gate_state(dump_gate_state(state)) == state
    signal = receipt(DELIVERED, 1, 2)
    assert decode(encode(signal), NotifierSignal) == signal
    # A state written before the rule existed (no notification fields) still loads.
    old = state.model_dump(mode="json", exclude={"open_notifications", "settled_notifications", "forgotten_notifications"})
    assert load_gate_state(GateState.model_validate(old).model_dump_json().encode()) is not None


inputs_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(1, 6)),
        st.tuples(st.sampled_from(["delivered", "gave_up"]), st.integers(1, 6)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(inputs_strategy)
def test_open_means_requested_and_never_delivered_in_any_order(steps: list[tuple[str, int]]) -> None:
    g = gate()
    records = [
        request(n) if kind == "request" else receipt(DELIVERED if kind == "delivered" else GAVE_UP, n, at=i)
        for i, (kind, n) in enumerate(steps)
    ]
    state, decisions = run(g, records)
    requested = {n for kind, n in steps if kind == "request"}
    delivered = {n for kind, n in steps if kind == "delivered"}
    gave_up = {n for kind, n in steps if kind == "gave_up"}
    assert sorted(state.open_notifications) == sorted(f"n-{n}" for n in requested - delivered)
    assert {k for k, v in state.open_notifications.items() if v.gave_up} == {f"n-{n}" for n in (requested & gave_up) - delivered}
    assert evaluate(g, state).result.value == ("FAIL" if requested - delivered else "PASS")
    # Consecutive decisions always differ, and replaying every input again decides nothing.
    assert all(a != b for a, b in zip(decisions, decisions[1:]))
    replayed, again = run(g, records, state)
    assert again == [] and replayed.input_revision == state.input_revision
