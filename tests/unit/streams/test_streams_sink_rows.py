"""Change set -> ClickHouse rows: every column filled from the right place, absent values as ''."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import BuildEvent, BuildScope, BuildStatus, BuildStatusChange, NodeChange, TriggerReason
from sinks.rows import EVENT_INSERT_COLUMNS, RESULT_COLUMNS, BuildEventRow, BuildResultRow
from streams.build_state import Accepted, BuildState, apply_event
from streams.change_set import change_set
from streams.demo_feed import simulate_build
from sinks.context_rows import BuildContextRow
from streams.sink_rows import context_row, event_row, latest_per_build, result_row
from streams.transitions import FINAL_STATUSES

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
S = BuildStatus


def change(**overrides: Any) -> BuildStatusChange:
    fields: dict[str, Any] = dict(
        build_id="b7", project="web", pipeline="frontend-ci", seq=12, revision=9, event_id="ev-12",
        event_time=T0 + timedelta(minutes=8), status=S.RUNNING, previous_status=S.PREPARING,
        first_seen_at=T0, queued_at=T0 + timedelta(seconds=5), started_at=T0 + timedelta(seconds=65),
        finished_at=None, duration_ms=None, trigger_reason=TriggerReason.PULL_REQUEST, trigger_user="carol",
        branch="feature/login", error_reason="build-level reason", termination_reason="OOMKilled",
        changed_fields=["status"], nodes=[],
    )
    fields.update(overrides)
    return BuildStatusChange(**fields)


def test_build_event_row_has_scope_build_and_empty_node_ids() -> None:
    row = event_row(change())
    assert row == BuildEventRow(
        build_id="b7", seq=12, event_id="ev-12", event_time=T0 + timedelta(minutes=8), project="web",
        pipeline="frontend-ci", scope="BUILD", stage_id="", task_id="", node_status="RUNNING",
        build_status="RUNNING", previous_build_status="PREPARING", trigger_reason="PULL_REQUEST",
        trigger_user="carol", branch="feature/login", error_reason="build-level reason",
        termination_reason="OOMKilled",
    )
    assert row.ingested_at is None, "ingested_at is stamped by the server"


def test_task_event_row_carries_the_task_ids_status_and_its_own_error() -> None:
    node = NodeChange(scope=BuildScope.TASK, stage_id="test", task_id="unit", status=S.FAILED,
                      previous_status=S.RUNNING, error_reason="3 of 412 failed")
    row = event_row(change(nodes=[node]))
    assert (row.scope, row.stage_id, row.task_id) == ("TASK", "test", "unit")
    assert (row.node_status, row.build_status) == ("FAILED", "RUNNING")
    assert row.error_reason == "3 of 412 failed"


def test_stage_event_row_has_the_stage_id_and_an_empty_task_id() -> None:
    node = NodeChange(scope=BuildScope.STAGE, stage_id="deploy", status=S.SKIPPED)
    row = event_row(change(nodes=[node], error_reason=None))
    assert (row.scope, row.stage_id, row.task_id, row.node_status) == ("STAGE", "deploy", "", "SKIPPED")
    assert row.error_reason == ""


def test_absent_optional_values_become_empty_strings_in_the_event_row() -> None:
    row = event_row(change(previous_status=None, trigger_reason=None, trigger_user=None, branch=None,
                           error_reason=None, termination_reason=None))
    assert (row.previous_build_status, row.trigger_reason, row.trigger_user, row.branch,
            row.error_reason, row.termination_reason) == ("", "", "", "", "", "")


def test_event_row_fills_every_insert_column() -> None:
    row = event_row(change())
    assert [f.name for f in dataclasses.fields(row) if f.name != "ingested_at"] == list(EVENT_INSERT_COLUMNS)


def test_result_row_maps_every_column() -> None:
    finished = change(status=S.FAILED, finished_at=T0 + timedelta(minutes=9), duration_ms=476_000)
    row = result_row(finished, now=NOW)
    assert row == BuildResultRow(
        build_id="b7", project="web", pipeline="frontend-ci", status="FAILED", version=9, is_final=True,
        first_seen_at=T0, queued_at=T0 + timedelta(seconds=5), started_at=T0 + timedelta(seconds=65),
        finished_at=T0 + timedelta(minutes=9), duration_ms=476_000, queue_ms=60_000,
        trigger_reason="PULL_REQUEST", trigger_user="carol", branch="feature/login",
        error_reason="build-level reason", termination_reason="OOMKilled", updated_at=NOW,
    )
    assert tuple(f.name for f in dataclasses.fields(row)) == RESULT_COLUMNS


def test_result_row_version_is_the_change_set_revision() -> None:
    assert result_row(change(revision=41), now=NOW).version == 41


@pytest.mark.parametrize("status", list(BuildStatus))
def test_result_row_is_final_only_for_final_statuses(status: BuildStatus) -> None:
    row = result_row(change(status=status), now=NOW)
    assert row.is_final is (status in {S.SUCCEEDED, S.FAILED, S.CANCELED, S.SKIPPED})
    assert row.is_final is (status in FINAL_STATUSES)


@pytest.mark.parametrize(
    ("queued", "started", "queue_ms"),
    [
        (T0, T0 + timedelta(seconds=1.5), 1500),
        (None, T0, None),
        (T0, None, None),
        (T0 + timedelta(seconds=3), T0, 0),  # clock skew between reporters never gives a negative wait
    ],
)
def test_result_row_queue_ms_is_the_wait_from_queued_to_started(
    queued: datetime | None, started: datetime | None, queue_ms: int | None
) -> None:
    assert result_row(change(queued_at=queued, started_at=started), now=NOW).queue_ms == queue_ms


def test_result_row_without_now_is_stamped_with_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    row = result_row(change())
    assert before <= row.updated_at <= datetime.now(UTC)
    assert row.updated_at.utcoffset() == timedelta(0)


def test_result_row_keeps_absent_timestamps_null_and_texts_empty() -> None:
    row = result_row(change(queued_at=None, started_at=None, trigger_reason=None, trigger_user=None,
                            branch=None, error_reason=None, termination_reason=None), now=NOW)
    assert (row.queued_at, row.started_at, row.finished_at, row.duration_ms, row.queue_ms) == (None,) * 5
    assert (row.trigger_reason, row.trigger_user, row.branch, row.error_reason, row.termination_reason) == ("",) * 5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_every_change_set_of_a_simulated_build_maps_to_valid_rows(seed: int) -> None:
    build = simulate_build(random.Random(seed), T0)
    state: BuildState | None = None
    for ev in build.events:
        outcome = apply_event(state, ev)
        assert isinstance(outcome, Accepted)
        state = outcome.state
        cs = change_set(outcome, ev)
        ev_row, res_row = event_row(cs), result_row(cs, now=NOW)
        assert (ev_row.build_id, ev_row.seq, ev_row.scope) == (ev.build_id, ev.seq, ev.scope.value)
        assert (ev_row.stage_id, ev_row.task_id) == (ev.stage_id or "", ev.task_id or "")
        assert ev_row.node_status == ev.status.value
        assert res_row.version == state.revision and res_row.status == state.status.value
        assert res_row.queue_ms == state.queue_ms


def test_a_reported_negative_duration_never_reaches_the_sink_as_an_unwritable_row() -> None:
    try:
        ev = BuildEvent(event_id="e1", build_id="b1", project="p", pipeline="ci", seq=1, event_time=T0,
                        scope=BuildScope.BUILD, status=S.SUCCEEDED, duration_ms=-5)
    except ValidationError:
        return  # rejected at the contract: fine
    outcome = apply_event(None, ev)
    if not isinstance(outcome, Accepted):
        return  # rejected by the state machine: fine
    row = result_row(change_set(outcome, ev), now=NOW)
    assert row.duration_ms is None or row.duration_ms >= 0


def test_context_row_keeps_what_a_retry_replays() -> None:
    row = context_row(change(commit_sha="abc123", executor="runner-7", environment={"DEPLOY": "staging"}))
    assert row == BuildContextRow(
        project="web", pipeline="frontend-ci", build_id="b7", first_seen_at=T0, started_at=T0 + timedelta(seconds=65),
        finished_at=None, status="RUNNING", trigger_reason="PULL_REQUEST", trigger_user="carol",
        branch="feature/login", commit_sha="abc123", executor="runner-7", variables={"DEPLOY": "staging"}, revision=9,
    )


def test_context_row_of_a_build_without_trigger_or_commit_uses_empty_strings() -> None:
    row = context_row(change(trigger_reason=None, trigger_user=None, branch=None))
    assert (row.trigger_reason, row.trigger_user, row.branch, row.commit_sha, row.executor) == ("", "", "", "", "")
    assert row.variables == {}


@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3"]), st.integers(min_value=0, max_value=50)), max_size=30))
def test_latest_per_build_keeps_each_builds_highest_revision(pairs: list[tuple[str, int]]) -> None:
    changes = [change(build_id=build, revision=revision, seq=revision) for build, revision in pairs]
    latest = latest_per_build(changes)
    assert sorted(c.build_id for c in latest) == sorted({build for build, _ in pairs})
    for kept in latest:
        assert kept.revision == max(r for b, r in pairs if b == kept.build_id)
