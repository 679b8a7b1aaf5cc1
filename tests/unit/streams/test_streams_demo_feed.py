"""The demo feed: deterministic per seed, well-formed builds, and the variety the demos rely on."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BuildEvent, BuildScope, BuildStatus, decode, encode
from streams.demo_feed import PROJECTS, STAGES, SimulatedBuild, simulate_build, simulate_builds
from streams.transitions import is_final

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
S = BuildStatus


@pytest.fixture(scope="module")
def five_hundred_builds() -> list[SimulatedBuild]:
    return simulate_builds(seed=2026, count=500, start=T0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_simulate_build_is_deterministic_per_seed(seed: int) -> None:
    assert simulate_build(random.Random(seed), T0) == simulate_build(random.Random(seed), T0)


def test_different_seeds_give_different_builds() -> None:
    ids = {simulate_build(random.Random(seed), T0).build_id for seed in range(50)}
    assert len(ids) == 50


def test_simulate_builds_is_deterministic_and_spaces_build_starts() -> None:
    first, again = simulate_builds(1, 20, T0, spacing_seconds=5), simulate_builds(1, 20, T0, spacing_seconds=5)
    assert first == again
    assert [b.events[0].event_time for b in first] == [T0 + timedelta(seconds=5 * i) for i in range(20)]


def test_an_explicit_build_id_is_used_for_every_event() -> None:
    build = simulate_build(random.Random(5), T0, build_id="my-build")
    assert build.build_id == "my-build"
    assert {e.build_id for e in build.events} == {"my-build"}


def test_every_build_numbers_its_events_1_to_n(five_hundred_builds: list[SimulatedBuild]) -> None:
    for build in five_hundred_builds:
        assert [e.seq for e in build.events] == list(range(1, len(build.events) + 1)), build.build_id


def test_event_times_never_go_backwards_within_a_build(five_hundred_builds: list[SimulatedBuild]) -> None:
    for build in five_hundred_builds:
        times = [e.event_time for e in build.events]
        assert times == sorted(times), build.build_id


def test_every_event_belongs_to_its_build_and_a_known_project_pipeline(five_hundred_builds: list[SimulatedBuild]) -> None:
    for build in five_hundred_builds:
        assert build.pipeline in PROJECTS[build.project]
        assert {(e.build_id, e.project, e.pipeline) for e in build.events} == {
            (build.build_id, build.project, build.pipeline)}
        assert len({e.event_id for e in build.events}) == len(build.events)


def test_builds_start_queued_and_end_with_a_final_build_event_matching_final_status(
    five_hundred_builds: list[SimulatedBuild],
) -> None:
    for build in five_hundred_builds:
        build_events = [e for e in build.events if e.scope is BuildScope.BUILD]
        assert build_events[0].status is S.QUEUED
        assert build.events[-1] is build_events[-1]
        assert build_events[-1].status is build.final_status
        assert is_final(build.final_status) and build.final_status is not S.SKIPPED


def test_500_builds_include_every_outcome_and_skipped_stages_and_tasks(five_hundred_builds: list[SimulatedBuild]) -> None:
    outcomes = Counter(build.final_status for build in five_hundred_builds)
    assert {S.SUCCEEDED, S.FAILED, S.CANCELED} <= set(outcomes)
    assert set(outcomes) <= {S.SUCCEEDED, S.FAILED, S.CANCELED}
    skipped = Counter(e.scope for b in five_hundred_builds for e in b.events if e.status is S.SKIPPED)
    assert skipped[BuildScope.STAGE] > 0 and skipped[BuildScope.TASK] > 0
    assert skipped[BuildScope.BUILD] == 0


def test_failed_builds_carry_a_reason_and_some_name_a_killed_runner(five_hundred_builds: list[SimulatedBuild]) -> None:
    failed = [b for b in five_hundred_builds if b.final_status is S.FAILED]
    assert all(b.events[-1].error_reason for b in failed)
    terminations = {b.events[-1].termination_reason for b in failed}
    assert "OOMKilled" in terminations


def test_succeeded_builds_ran_every_stage_and_task_to_success(five_hundred_builds: list[SimulatedBuild]) -> None:
    expected_nodes = {(stage, None) for stage, _ in STAGES} | {(stage, t) for stage, tasks in STAGES for t in tasks}
    for build in (b for b in five_hundred_builds if b.final_status is S.SUCCEEDED):
        finals = {(e.stage_id, e.task_id): e.status for e in build.events if e.scope is not BuildScope.BUILD}
        assert set(finals) == expected_nodes
        assert set(finals.values()) == {S.SUCCEEDED}


def test_every_event_is_a_valid_build_event_and_round_trips_through_the_serde(
    five_hundred_builds: list[SimulatedBuild],
) -> None:
    for build in five_hundred_builds:
        for event in build.events:
            assert isinstance(event, BuildEvent)
            assert BuildEvent.model_validate(event.model_dump()) == event
            assert decode(encode(event), BuildEvent) == event
