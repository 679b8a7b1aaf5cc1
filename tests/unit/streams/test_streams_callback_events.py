"""REST callbacks, pure part: event kinds from change sets, matching, the delivery id, the signed
body, the disable rule and the subscription request's validation."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import BuildEvent, BuildScope, BuildStatus, BuildStatusChange
from sinks.callback_rows import STATUS_ACTIVE, STATUS_DELETED, STATUS_DISABLED
from streams.build_state import Accepted, BuildState, apply_event
from streams.callback_events import (
    CallbackEvent,
    CallbackEventKind,
    CallbackHealth,
    CallbackTarget,
    after_attempt,
    callback_body,
    callback_events,
    delivery_id,
    lifecycle_step,
    should_disable,
    wants,
)
from streams.callback_sender import CallbackDelivery
from streams.callback_subscriptions import CallbackCreate, callback_id_for, created, next_version, target_of
from streams.change_set import change_set
from streams.demo_feed import simulate_build
from streams.notify_delivery import SIGNATURE_HEADER
from streams.transitions import FINAL_STATUSES

S = BuildStatus
K = CallbackEventKind
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def changes_of(events: list[BuildEvent]) -> list[BuildStatusChange]:
    state: BuildState | None = None
    changes = []
    for event in events:
        outcome = apply_event(state, event)
        if isinstance(outcome, Accepted):
            state = outcome.state
            changes.append(change_set(outcome, event))
    return changes


def kinds_per_node(changes: list[BuildStatusChange]) -> Counter[tuple[CallbackEventKind, str, str]]:
    return Counter((e.kind, e.stage_id, e.task_id) for change in changes for e in callback_events(change))


def target(**overrides: object) -> CallbackTarget:
    values: dict[str, object] = {
        "callback_id": "cb-1", "project": "payments", "pipeline": "", "url": "http://127.0.0.1:1/hook",
        "events": frozenset(CallbackEventKind), "secret": "0123456789abcdef", "active": True,
    }
    values.update(overrides)
    return CallbackTarget(**values)  # type: ignore[arg-type]


def event(build_id: str, seq: int, status: BuildStatus, scope: BuildScope = BuildScope.BUILD,
          stage: str | None = None, task: str | None = None) -> BuildEvent:
    return BuildEvent(
        event_id=f"{build_id}-{seq}", build_id=build_id, project="payments", pipeline="deploy", seq=seq,
        event_time=T0 + timedelta(seconds=seq), scope=scope, status=status, stage_id=stage, task_id=task,
    )


@pytest.mark.parametrize(
    ("status", "previous", "expected"),
    [
        (S.RUNNING, None, True), (S.RUNNING, S.QUEUED, True), (S.RUNNING, S.PREPARING, True),
        (S.RUNNING, S.RUNNING, None), (S.PREPARING, S.QUEUED, None), (S.QUEUED, S.PREPARING, None),
        (S.SUCCEEDED, S.RUNNING, False), (S.FAILED, S.QUEUED, False), (S.CANCELED, None, False),
        (S.SKIPPED, S.QUEUED, False), (S.SUCCEEDED, S.SUCCEEDED, None), (S.QUEUED, None, None),
    ],
)
def test_start_is_entering_running_and_finish_is_entering_a_final_status(
    status: BuildStatus, previous: BuildStatus | None, expected: bool | None
) -> None:
    assert lifecycle_step(status, previous) is expected


def test_an_in_order_build_yields_one_start_and_one_finish_per_node_that_ran() -> None:
    build = simulate_build(random.Random(11), T0)
    counts = kinds_per_node(changes_of(list(build.events)))
    assert counts[(K.BUILD_STARTED, "", "")] == 1 and counts[(K.BUILD_FINISHED, "", "")] == 1
    ran = {(e.stage_id or "", e.task_id or "") for e in build.events if e.scope is not BuildScope.BUILD and e.status is S.RUNNING}
    ended = {(e.stage_id or "", e.task_id or "") for e in build.events
             if e.scope is not BuildScope.BUILD and e.status in FINAL_STATUSES}
    starts = {(s, t) for (kind, s, t), n in counts.items() if kind in (K.STAGE_STARTED, K.TASK_STARTED)}
    finishes = {(s, t) for (kind, s, t), n in counts.items() if kind in (K.STAGE_FINISHED, K.TASK_FINISHED)}
    assert starts == ran and finishes == ended
    assert set(counts.values()) == {1}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000), repeats=st.integers(0, 5))
def test_any_order_with_duplicates_never_starts_or_finishes_a_node_twice(seed: int, shuffle_seed: int, repeats: int) -> None:
    """Redelivered and reordered events: at most one start and exactly one finish per finished node."""
    build = simulate_build(random.Random(seed), T0)
    rng = random.Random(shuffle_seed)
    events = list(build.events) + [rng.choice(build.events) for _ in range(repeats)]
    rng.shuffle(events)
    counts = kinds_per_node(changes_of(events))
    assert all(n == 1 for n in counts.values()), counts
    assert counts[(K.BUILD_FINISHED, "", "")] == 1


def test_a_build_jumping_from_queued_to_final_gets_finished_without_started() -> None:
    changes = changes_of([event("b", 1, S.QUEUED), event("b", 3, S.SUCCEEDED), event("b", 2, S.RUNNING)])
    assert [e.kind for c in changes for e in callback_events(c)] == [K.BUILD_FINISHED]


def test_stage_and_task_events_name_their_node() -> None:
    changes = changes_of([
        event("b", 1, S.RUNNING), event("b", 2, S.RUNNING, BuildScope.STAGE, "test"),
        event("b", 3, S.RUNNING, BuildScope.TASK, "test", "unit"), event("b", 4, S.FAILED, BuildScope.TASK, "test", "unit"),
    ])
    found = [(e.kind, e.stage_id, e.task_id) for c in changes for e in callback_events(c)]
    assert found == [
        (K.BUILD_STARTED, "", ""), (K.STAGE_STARTED, "test", ""), (K.TASK_STARTED, "test", "unit"),
        (K.TASK_FINISHED, "test", "unit"),
    ]


def build_finished() -> CallbackEvent:
    change = changes_of([event("b-7", 1, S.RUNNING), event("b-7", 2, S.SUCCEEDED)])[-1]
    [finished] = callback_events(change)
    return finished


def test_wants_matches_project_pipeline_and_event_kind() -> None:
    finished = build_finished()
    assert wants(target(), finished)
    assert wants(target(pipeline="deploy"), finished)
    assert not wants(target(pipeline="other"), finished)
    assert not wants(target(project="web"), finished)
    assert not wants(target(events=frozenset({K.BUILD_STARTED})), finished)


def test_delivery_id_is_stable_and_differs_per_callback_change_and_kind() -> None:
    finished = build_finished()
    again = build_finished()
    assert delivery_id("cb-1", finished) == delivery_id("cb-1", again)
    assert len(delivery_id("cb-1", finished)) == 64
    assert delivery_id("cb-2", finished) != delivery_id("cb-1", finished)
    changes = changes_of([event("b-7", 1, S.RUNNING), event("b-7", 2, S.SUCCEEDED)])
    started = callback_events(changes[0])[0]
    assert delivery_id("cb-1", started) != delivery_id("cb-1", finished)


def test_body_is_canonical_and_signed_so_a_receiver_can_verify_and_deduplicate() -> None:
    finished = build_finished()
    delivery = CallbackDelivery.of(target(), finished, "http://api")
    assert delivery.body == CallbackDelivery.of(target(), build_finished(), "http://api").body
    document = json.loads(delivery.body)
    assert document["event"] == "build_finished" and document["build_id"] == "b-7"
    assert document["build"]["status"] == "SUCCEEDED" and document["build"]["previous_status"] == "RUNNING"
    assert document["delivery_id"] == delivery.delivery_id
    assert delivery.body == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    headers = delivery.headers()
    assert headers["Idempotency-Key"] == delivery.delivery_id
    assert headers["X-Cipulse-Event"] == "build_finished"
    expected = "sha256=" + hmac.new(b"0123456789abcdef", delivery.body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert SIGNATURE_HEADER not in CallbackDelivery.of(target(secret=""), finished, "http://api").headers()


@settings(max_examples=200, deadline=None)
@given(
    attempts=st.lists(st.tuples(st.integers(0, 10_000), st.booleans()), max_size=30),
    disable_after=st.integers(1, 5_000),
    later=st.integers(0, 5_000),
)
def test_disabled_exactly_when_every_attempt_since_the_last_success_failed_long_enough(
    attempts: list[tuple[int, bool]], disable_after: int, later: int
) -> None:
    attempts.sort()
    health = CallbackHealth()
    for second, ok in attempts:
        health = after_attempt(health, T0 + timedelta(seconds=second), None if ok else "HTTP 503")
    now = T0 + timedelta(seconds=(attempts[-1][0] if attempts else 0) + later)
    streak: list[int] = []
    for second, ok in attempts:
        streak = [] if ok else streak + [second]
    expected = bool(streak) and (now - (T0 + timedelta(seconds=streak[0]))) >= timedelta(seconds=disable_after)
    assert should_disable(health, now, timedelta(seconds=disable_after)) is expected


def test_create_request_lists_every_invalid_field() -> None:
    with pytest.raises(ValidationError) as caught:
        CallbackCreate.model_validate(
            {"url": "ftp://x", "project": "a b", "events": ["build_started", "build_started", "nope"], "secret": "short"}
        )
    fields = {str(error["loc"][0]) for error in caught.value.errors()}
    assert fields == {"url", "project", "events", "secret"}
    with pytest.raises(ValidationError):
        CallbackCreate.model_validate({"url": "http://x/h", "project": "p", "events": [], "extra": 1})


def test_versions_always_increase_and_the_target_reflects_the_status() -> None:
    ask = CallbackCreate.model_validate(
        {"url": "https://ci.example/hook", "project": "payments", "events": ["build_finished"], "secret": "0123456789abcdef"}
    )
    row = created(callback_id_for("key-1"), ask, T0)
    assert callback_id_for("key-1") == row.callback_id != callback_id_for("key-2")
    assert callback_id_for(None) != callback_id_for(None)
    disabled = next_version(row, STATUS_DISABLED, "failing", T0 - timedelta(hours=1))  # a clock behind
    deleted = next_version(disabled, STATUS_DELETED, "bye", T0)
    assert row.version < disabled.version < deleted.version
    assert target_of(row).active and not target_of(disabled).active
    assert target_of(row).events == frozenset({K.BUILD_FINISHED}) and target_of(row).pipeline == ""
    assert row.status == STATUS_ACTIVE and row.secret == "0123456789abcdef"
