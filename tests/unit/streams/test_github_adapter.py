"""GitHub Actions webhooks -> cipulse events, from GitHub's published example payloads
(tests/fixtures/github, see its README), and the X-Hub-Signature-256 check.

Each fixture maps to the expected events, and applying them in order (and again, and in the
reverse order) with the worker's own `apply_event` gives the expected final statuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason
from streams.adapters.github import (
    SignatureRefused,
    Unmappable,
    choose_secret,
    map_webhook,
    sign,
    verify_signature,
)
from streams.build_state import Accepted, BuildState, Ignored, apply_event

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github"
RUN_BUILD = "gh-300029405-289782451-1"
JOB_BUILD = "gh-445650657-5373506832-1"
JOB_STAGE = "job-14541957942"


def fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


def mapped(name: str) -> list[BuildEvent]:
    return map_webhook(name.split(".")[0], fixture(name))


def replay(events: list[BuildEvent], state: BuildState | None = None) -> BuildState:
    for event in events:
        outcome = apply_event(state, event)
        assert not hasattr(outcome, "reason") or isinstance(outcome, Ignored), outcome
        if isinstance(outcome, Accepted):
            state = outcome.state
    assert state is not None
    return state


# --- workflow_run ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "seq", "status"),
    [("workflow_run.requested", 1, BuildStatus.QUEUED), ("workflow_run.in_progress", 2, BuildStatus.RUNNING),
     ("workflow_run.completed", 3, BuildStatus.SUCCEEDED)],
)
def test_each_workflow_run_action_is_one_build_event(name: str, seq: int, status: BuildStatus) -> None:
    [event] = mapped(name)
    assert (event.build_id, event.scope, event.seq, event.status) == (RUN_BUILD, BuildScope.BUILD, seq, status)
    assert event.event_id == f"{RUN_BUILD}/build/{seq}"
    assert (event.project, event.pipeline) == ("octo-org/octo-repo", "test")  # workflow_run.name is "" here
    assert event.branch == "master" and event.commit_sha == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert event.trigger_reason is TriggerReason.API  # event: repository_dispatch
    assert event.trigger_user == "Codertocat" and event.executor == "github-actions"


def test_the_run_sequence_ends_succeeded_with_queue_and_run_times() -> None:
    events = [e for n in ("requested", "in_progress", "completed") for e in mapped(f"workflow_run.{n}")]
    state = replay(events)
    assert state.status is BuildStatus.SUCCEEDED
    assert str(state.queued_at) == "2020-10-05 16:33:24+00:00" and str(state.finished_at) == "2020-10-05 16:33:49+00:00"
    assert state.duration_ms == 19_000


@pytest.mark.parametrize(
    ("conclusion", "status"),
    [("success", BuildStatus.SUCCEEDED), ("neutral", BuildStatus.SUCCEEDED), ("failure", BuildStatus.FAILED),
     ("timed_out", BuildStatus.FAILED), ("startup_failure", BuildStatus.FAILED), ("cancelled", BuildStatus.CANCELED),
     ("stale", BuildStatus.CANCELED), ("skipped", BuildStatus.CANCELED), ("action_required", BuildStatus.CANCELED)],
)
def test_every_run_conclusion_has_a_final_build_status(conclusion: str, status: BuildStatus) -> None:
    payload = fixture("workflow_run.completed")
    payload["workflow_run"]["conclusion"] = conclusion
    [event] = map_webhook("workflow_run", payload)
    assert event.status is status
    assert event.error_reason == (None if conclusion == "success" else f"GitHub conclusion: {conclusion}")
    state = replay([*mapped("workflow_run.requested"), *mapped("workflow_run.in_progress"), event])
    assert state.status is status


def test_a_rerun_attempt_is_a_new_build_triggered_by_retry() -> None:
    payload = fixture("workflow_run.requested")
    payload["workflow_run"]["run_attempt"] = 2
    [event] = map_webhook("workflow_run", payload)
    assert event.build_id == "gh-300029405-289782451-2" and event.trigger_reason is TriggerReason.RETRY


def test_redelivery_and_late_delivery_change_nothing() -> None:
    requested, running, completed = (mapped(f"workflow_run.{n}")[0] for n in ("requested", "in_progress", "completed"))
    state = replay([requested, running, completed])
    assert mapped("workflow_run.completed")[0] == completed  # same payload -> same event id and seq
    for again in (requested, running, completed):
        assert isinstance(apply_event(state, again), Ignored)
    out_of_order = replay([completed, running, requested])
    assert out_of_order.status is BuildStatus.SUCCEEDED and out_of_order.seq == 3


# --- workflow_job ------------------------------------------------------------------------------

def test_a_queued_job_is_a_queued_stage_without_tasks() -> None:
    [stage] = mapped("workflow_job.queued")  # status "waiting" (a deployment's environment) and no steps yet
    assert (stage.build_id, stage.scope, stage.stage_id, stage.seq, stage.status) == (
        "gh-591427149-4747967848-1", BuildScope.STAGE, "job-12877621891", 1, BuildStatus.QUEUED)
    assert (stage.project, stage.pipeline, stage.name) == ("lineville/elastic-machines-testing", "Env Test", "test")


def test_an_in_progress_job_is_a_running_stage_and_each_step_a_task_in_its_own_state() -> None:
    stage, *tasks = mapped("workflow_job.in_progress")
    assert (stage.build_id, stage.stage_id, stage.seq, stage.status) == (JOB_BUILD, JOB_STAGE, 2, BuildStatus.RUNNING)
    assert (stage.pipeline, stage.project, stage.executor) == ("Test", "wolfy1339/github-events-schemas", "GitHub Actions 6")
    assert [(t.task_id, t.seq, t.status) for t in tasks] == [
        ("step-1", 3, BuildStatus.SUCCEEDED), ("step-2", 3, BuildStatus.SUCCEEDED), ("step-3", 2, BuildStatus.RUNNING),
        *[(f"step-{n}", 1, BuildStatus.QUEUED) for n in (4, 5, 6, 7, 13, 14)],
    ]
    assert all(t.scope is BuildScope.TASK and t.stage_id == JOB_STAGE for t in tasks)
    assert tasks[0].name == "Set up job" and tasks[0].duration_ms == 1000
    assert len({e.event_id for e in (stage, *tasks)}) == 10


def test_a_completed_job_fails_its_stage_and_finishes_every_step() -> None:
    stage, *tasks = mapped("workflow_job.completed")
    assert (stage.seq, stage.status, stage.error_reason) == (3, BuildStatus.FAILED, "GitHub conclusion: failure")
    assert stage.duration_ms == 20_000
    assert {t.task_id: t.status for t in tasks} == {
        "step-1": BuildStatus.SUCCEEDED, "step-2": BuildStatus.SUCCEEDED, "step-3": BuildStatus.SUCCEEDED,
        "step-4": BuildStatus.SUCCEEDED, "step-5": BuildStatus.FAILED, "step-6": BuildStatus.SKIPPED,
        "step-7": BuildStatus.SKIPPED, "step-13": BuildStatus.SUCCEEDED, "step-14": BuildStatus.SUCCEEDED,
    }


def test_the_job_sequence_gives_the_final_tree_in_any_order_and_on_redelivery() -> None:
    in_progress, completed = mapped("workflow_job.in_progress"), mapped("workflow_job.completed")
    for order in ([*in_progress, *completed], [*completed, *in_progress], [*in_progress, *completed, *in_progress, *completed]):
        state = replay(order)
        stage = state.stages[JOB_STAGE]
        assert stage.status is BuildStatus.FAILED and stage.started_at is not None
        assert stage.tasks["step-5"].status is BuildStatus.FAILED and stage.tasks["step-6"].status is BuildStatus.SKIPPED
        assert len(stage.tasks) == 9
        assert state.status is BuildStatus.QUEUED  # the run's own events decide the build's status


def test_jobs_and_their_run_are_one_build_with_independent_sequences() -> None:
    run = fixture("workflow_run.completed")
    run["repository"].update(id=445650657, full_name="wolfy1339/github-events-schemas")
    run["workflow_run"].update(id=5373506832, name="Test", conclusion="failure")
    [run_done] = map_webhook("workflow_run", run)
    run["action"], run["workflow_run"]["conclusion"] = "requested", None
    [run_requested] = map_webhook("workflow_run", run)  # the run of the job fixtures: same repository, run, attempt, name
    state = replay([run_requested, *mapped("workflow_job.in_progress"), *mapped("workflow_job.completed"), run_done])
    assert state.build_id == JOB_BUILD and state.status is BuildStatus.FAILED
    assert state.stages[JOB_STAGE].status is BuildStatus.FAILED


# --- unmappable --------------------------------------------------------------------------------

def test_a_job_without_workflow_name_is_unmappable() -> None:
    with pytest.raises(Unmappable, match="no workflow_name"):
        mapped("workflow_job.completed.legacy")


@pytest.mark.parametrize(
    ("event_type", "change", "reason"),
    [
        ("workflow_run", {"action": "deleted"}, "workflow_run action 'deleted' is not mapped"),
        ("workflow_job", {"action": "created"}, "workflow_job action 'created' is not mapped"),
        ("push", {}, "unsupported GitHub event type 'push'"),
        ("workflow_run", {"repository": None}, "no repository object"),
    ],
)
def test_unmappable_webhooks_say_why(event_type: str, change: dict[str, Any], reason: str) -> None:
    payload = {**fixture("workflow_run.completed" if event_type != "workflow_job" else "workflow_job.completed"), **change}
    with pytest.raises(Unmappable, match=reason):
        map_webhook(event_type, payload)


def test_an_unknown_conclusion_is_unmappable() -> None:
    payload = fixture("workflow_run.completed")
    payload["workflow_run"]["conclusion"] = "exploded"
    with pytest.raises(Unmappable, match="conclusion 'exploded'"):
        map_webhook("workflow_run", payload)


# --- signatures --------------------------------------------------------------------------------

SECRET = SecretStr("It's a Secret to Everybody")


def test_githubs_documented_signature_example_verifies() -> None:
    """The example from GitHub's "Validating webhook deliveries" page."""
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(SECRET.get_secret_value(), body) == expected
    verify_signature(SECRET, body, expected)


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=0123", "757107ea0eb2509fc211221cce984b8a"])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureRefused, match="missing signature"):
        verify_signature(SECRET, b"Hello, World!", header)


def test_a_signature_with_another_secret_or_of_another_body_is_refused_without_naming_the_secret() -> None:
    for header, body in ((sign("wrong secret", b"Hello, World!"), b"Hello, World!"),
                         (sign(SECRET.get_secret_value(), b"Hello, World!"), b"Hello, World?")):
        with pytest.raises(SignatureRefused, match="does not match") as caught:
            verify_signature(SECRET, body, header)
        assert SECRET.get_secret_value() not in str(caught.value)


def test_the_secret_is_chosen_by_source_or_is_the_only_one() -> None:
    one = {"acme": SECRET}
    assert choose_secret(one, None) == ("acme", SECRET)
    assert choose_secret({"acme": SECRET, "other": SecretStr("x")}, "other")[0] == "other"
    for secrets, source, reason in (({}, None, "disabled"), ({"a": SECRET, "b": SECRET}, None, "add \\?source="),
                                    (one, "nope", "no webhook secret is configured for source 'nope'")):
        with pytest.raises(SignatureRefused, match=reason):
            choose_secret(secrets, source)
