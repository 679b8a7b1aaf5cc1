"""GitHub webhooks -> cipulse events, from GitHub's published example payloads
(tests/fixtures/github, see its README), the X-Hub-Signature-256 check, and the adapter contract
(`authenticate`, `identify`, `translate`, `ADAPTER`).

Each fixture maps to the expected events, and applying them in order (and again, and in the
reverse order) with the worker's own `apply_event` / `apply_audit_event` gives the expected
final statuses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from schemas import (
    AuditDecision,
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    BuildEvent,
    BuildScope,
    BuildStatus,
    TriggerReason,
)
from schemas.enums import AuditEventOrigin
from streams.adapters.contract import BadDelivery, Delivery, Refused
from streams.adapters.github import (
    ADAPTER,
    KEPT_HEADERS,
    SUPPORTED_EVENTS,
    SignatureRefused,
    Unmappable,
    authenticate,
    choose_secret,
    identify,
    map_webhook,
    sign,
    translate,
    verify_signature,
)
from streams.audit_state import AuditAccepted, AuditIgnored, AuditState, apply_audit_event
from streams.audit_transitions import AuditStatus
from streams.build_state import Ignored, apply_event

from event_replay import json_fixture
from event_replay import FIXTURES as ALL_FIXTURES
from event_replay import replay_builds as replay

FIXTURES = ALL_FIXTURES / "github"

RUN_BUILD = "gh-300029405-289782451-1"
JOB_BUILD = "gh-445650657-5373506832-1"
JOB_STAGE = "job-14541957942"


def fixture(name: str) -> dict[str, Any]:
    return json_fixture("github", name)


def mapped(name: str) -> list[BuildEvent]:
    events = map_webhook(name.split(".")[0], fixture(name))
    assert all(isinstance(e, BuildEvent) for e in events)
    return [e for e in events if isinstance(e, BuildEvent)]


def audit_mapped(name: str) -> list[AuditEvent]:
    events = map_webhook(name.split(".")[0], fixture(name))
    assert all(isinstance(e, AuditEvent) for e in events)
    return [e for e in events if isinstance(e, AuditEvent)]


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
                                    (one, "nope", "no GitHub webhook secret is configured for source 'nope'")):
        with pytest.raises(SignatureRefused, match=reason):
            choose_secret(secrets, source)


# --- deployment_status -------------------------------------------------------------------------

DEPLOY_BUILD = "gh-deploy-186853002-145988746"
DEPLOY_SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def test_a_queued_deployment_status_is_the_queued_build_of_its_environments_pipeline() -> None:
    [queued] = mapped("deployment_status.queued")
    assert (queued.build_id, queued.scope, queued.seq, queued.status) == (DEPLOY_BUILD, BuildScope.BUILD, 1, BuildStatus.QUEUED)
    assert queued.event_id == f"{DEPLOY_BUILD}/build/1"
    assert (queued.project, queued.pipeline, queued.name) == ("Codertocat/Hello-World", "deploy:production", "deploy master to production")
    assert (queued.branch, queued.commit_sha) == ("master", DEPLOY_SHA)
    assert (queued.trigger_reason, queued.trigger_user, queued.executor) == (TriggerReason.API, "Codertocat", "github-deployments")
    assert str(queued.event_time) == "2019-05-15 15:20:53+00:00"  # deployment.created_at
    assert queued.environment == {"github_environment": "production", "github_task": "deploy",
                                  "github_deployment_id": "145988746"}
    assert queued.error_reason is None


@pytest.mark.parametrize(
    ("name", "seq", "status", "at"),
    [("deployment_status.in_progress", 2, BuildStatus.RUNNING, "2019-05-15 15:20:54+00:00"),
     ("deployment_status.success", 3, BuildStatus.SUCCEEDED, "2019-05-15 15:20:55+00:00")],
)
def test_every_later_deployment_status_also_carries_the_queued_event(name: str, seq: int, status: BuildStatus, at: str) -> None:
    queued, event = mapped(name)
    assert queued == mapped("deployment_status.queued")[0]  # same event id, seq and content from every status
    assert (event.build_id, event.seq, event.status, str(event.event_time)) == (DEPLOY_BUILD, seq, status, at)
    assert event.event_id == f"{DEPLOY_BUILD}/build/{seq}"
    assert (event.pipeline, event.branch, event.commit_sha, event.error_reason) == ("deploy:production", "master", DEPLOY_SHA, None)


def test_the_deployment_sequence_ends_succeeded_in_any_order_and_on_redelivery() -> None:
    names = ("deployment_status.queued", "deployment_status.in_progress", "deployment_status.success")
    in_order = [e for n in names for e in mapped(n)]
    for order in (in_order, list(reversed(in_order)), in_order + in_order):
        state = replay(order)
        assert (state.build_id, state.project, state.pipeline) == (DEPLOY_BUILD, "Codertocat/Hello-World", "deploy:production")
        assert state.status is BuildStatus.SUCCEEDED and state.seq == 3
        assert str(state.queued_at) == "2019-05-15 15:20:53+00:00" and str(state.started_at) == "2019-05-15 15:20:54+00:00"
        assert str(state.finished_at) == "2019-05-15 15:20:55+00:00" and state.duration_ms == 1000
        assert state.queue_ms == 1000 and state.commit_sha == DEPLOY_SHA
    state = replay(in_order)
    for again in in_order:
        assert isinstance(apply_event(state, again), Ignored)


@pytest.mark.parametrize(
    ("state", "events", "status", "reason"),
    [("pending", 1, BuildStatus.QUEUED, None), ("waiting", 1, BuildStatus.QUEUED, None),
     ("queued", 1, BuildStatus.QUEUED, None), ("in_progress", 2, BuildStatus.RUNNING, None),
     ("success", 2, BuildStatus.SUCCEEDED, None),
     ("failure", 2, BuildStatus.FAILED, "GitHub deployment state: failure"),
     ("error", 2, BuildStatus.FAILED, "GitHub deployment state: error: the deploy script crashed")],
)
def test_every_deployment_state_has_a_build_status(state: str, events: int, status: BuildStatus, reason: str | None) -> None:
    payload = fixture("deployment_status.success")
    payload["deployment_status"]["state"] = state
    if state == "error":
        payload["deployment_status"]["description"] = "the deploy script crashed"
    mapped_events = map_webhook("deployment_status", payload)
    assert len(mapped_events) == events
    last = mapped_events[-1]
    assert isinstance(last, BuildEvent) and last.status is status and last.error_reason == reason
    started = mapped("deployment_status.in_progress") if status in (BuildStatus.SUCCEEDED, BuildStatus.FAILED) else []
    final = replay([*started, *(e for e in mapped_events if isinstance(e, BuildEvent))])
    assert final.status is status and final.error_reason == reason


def test_a_pages_deployment_made_by_a_workflow_run_is_triggered_upstream() -> None:
    queued, running = mapped("deployment_status.in_progress.pages")
    assert (running.build_id, running.pipeline, running.seq, running.status) == (
        DEPLOY_BUILD, "deploy:github-pages", 2, BuildStatus.RUNNING)
    assert (running.trigger_reason, running.trigger_user) == (TriggerReason.UPSTREAM, "github-pages[bot]")
    assert str(queued.event_time) == "2022-01-03 01:28:30+00:00" and str(running.event_time) == "2022-01-03 01:28:40+00:00"
    assert running.environment == {
        "github_environment": "github-pages", "github_task": "deploy", "github_deployment_id": "145988746",
        "github_workflow_run_id": "289782451",
        "github_url": "https://github.com/CorsixTH/CorsixTH/runs/4687056418?check_suite_focus=true",
    }
    assert replay([queued, running]).status is BuildStatus.RUNNING


def test_a_status_that_moves_the_deployment_to_another_environment_stays_in_its_pipeline() -> None:
    payload = fixture("deployment_status.success")
    payload["deployment"]["environment"] = payload["deployment_status"]["environment"] = "production-eu"
    _, event = map_webhook("deployment_status", payload)
    assert isinstance(event, BuildEvent)
    assert event.pipeline == "deploy:production" and event.environment["github_environment"] == "production-eu"
    assert replay([*mapped("deployment_status.in_progress"), event]).status is BuildStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"state": "inactive"}, "deployment_status inactive is not mapped: GitHub deactivates"),
     ({"state": "exploded"}, "deployment_status state 'exploded' is not mapped")],
)
def test_unmappable_deployment_states_say_why(change: dict[str, Any], reason: str) -> None:
    payload = fixture("deployment_status.success")
    payload["deployment_status"].update(change)
    with pytest.raises(Unmappable, match=reason):
        map_webhook("deployment_status", payload)


def test_a_deployment_without_environment_or_other_action_is_unmappable() -> None:
    payload = fixture("deployment_status.success")
    payload["deployment"]["original_environment"] = payload["deployment"]["environment"] = ""
    with pytest.raises(Unmappable, match="no environment"):
        map_webhook("deployment_status", payload)
    with pytest.raises(Unmappable, match="deployment_status action 'deleted' is not mapped"):
        map_webhook("deployment_status", {**fixture("deployment_status.success"), "action": "deleted"})


# --- pull_request_review -----------------------------------------------------------------------

REVIEW_AUDIT = "gh-review-186853002-2-237895671"
REVIEWED_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest.mark.parametrize(
    ("name", "decision"),
    [("pull_request_review.submitted.approved", AuditDecision.APPROVED),
     ("pull_request_review.submitted.changes_requested", AuditDecision.REJECTED)],
)
def test_a_review_decision_is_one_audit_requested_decided_and_synced(name: str, decision: AuditDecision) -> None:
    requested, decided, synced = audit_mapped(name)
    for seq, event in enumerate((requested, decided, synced), start=1):
        assert (event.audit_id, event.seq, event.event_id) == (REVIEW_AUDIT, seq, f"{REVIEW_AUDIT}/{seq}")
        assert (event.subject_kind, event.subject_id) == (AuditSubjectKind.BUILD, REVIEWED_SHA)
        assert (event.project, event.pipeline, event.origin) == ("Codertocat/Hello-World", None, AuditEventOrigin.SOURCE)
        assert str(event.event_time) == "2019-05-15 15:20:38+00:00"  # review.submitted_at
    assert [e.kind for e in (requested, decided, synced)] == [
        AuditEventKind.REQUESTED, AuditEventKind.DECIDED, AuditEventKind.RECORD_SYNCED]
    assert requested.reviewers == ["Codertocat"] and requested.decision is None
    assert (decided.decision, decided.decision_id, decided.actor) == (decision, f"{REVIEW_AUDIT}/decision", "Codertocat")
    assert (synced.decision, synced.decision_id, synced.actor) == (decision, f"{REVIEW_AUDIT}/decision", "github")

    state: AuditState | None = None
    for event in (requested, decided, synced):
        outcome = apply_audit_event(state, event)
        assert isinstance(outcome, AuditAccepted), outcome
        state = outcome.state
    assert state is not None
    assert (state.status, state.decision, state.decided_by) == (AuditStatus.SYNCED, decision, "Codertocat")
    assert state.record_decision_id == state.decision_id == f"{REVIEW_AUDIT}/decision"
    for again in audit_mapped(name):  # a redelivered or edited review changes nothing
        assert isinstance(apply_audit_event(state, again), AuditIgnored)


def test_review_events_converge_to_synced_in_any_order() -> None:
    events = audit_mapped("pull_request_review.submitted.approved")
    for order in (events[::-1], [events[1], events[0], events[2]], [events[2], events[0], events[1]]):
        state: AuditState | None = None
        for event in order:
            outcome = apply_audit_event(state, event)
            assert isinstance(outcome, AuditAccepted), outcome
            state = outcome.state
        assert state is not None and state.status is AuditStatus.SYNCED and state.decision is AuditDecision.APPROVED


def test_an_edited_review_maps_to_the_same_events_as_when_it_was_submitted() -> None:
    payload = fixture("pull_request_review.submitted.approved")
    payload["action"] = "edited"
    payload["review"]["state"] = "APPROVED"  # the REST API's spelling is accepted too
    assert map_webhook("pull_request_review", payload) == audit_mapped("pull_request_review.submitted.approved")


def test_a_review_without_commit_id_is_about_the_pull_requests_head() -> None:
    payload = fixture("pull_request_review.submitted.approved")
    del payload["review"]["commit_id"]
    payload["pull_request"]["head"]["sha"] = "0" * 40
    assert {e.subject_id for e in map_webhook("pull_request_review", payload) if isinstance(e, AuditEvent)} == {"0" * 40}


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [("pull_request_review.submitted.commented", {}, "state 'commented' is not mapped \\(a comment is not a decision\\)"),
     ("pull_request_review.dismissed", {}, "dismissed is not mapped: dismissing takes a decision back"),
     ("pull_request_review.submitted.approved", {"action": "created"}, "pull_request_review action 'created' is not mapped"),
     ("pull_request_review.submitted.approved", {"pull_request": None}, "no pull_request object")],
)
def test_unmappable_reviews_say_why(name: str, change: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        map_webhook("pull_request_review", {**fixture(name), **change})


# --- the adapter contract ----------------------------------------------------------------------

def headers(event: str = "workflow_run", delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958", **more: str) -> dict[str, str]:
    return {"x-github-event": event, "x-github-delivery": delivery, "x-github-hook-id": "292430182", **more}


def test_the_adapter_collects_the_contract_functions_and_keeps_no_secret_header() -> None:
    assert (ADAPTER.name, ADAPTER.secrets_setting) == ("github", "CIPULSE_GITHUB_WEBHOOK_SECRETS")
    assert (ADAPTER.authenticate, ADAPTER.identify, ADAPTER.translate) == (authenticate, identify, translate)
    assert ADAPTER.kept_headers == KEPT_HEADERS
    assert {"x-github-event", "x-github-delivery", "x-github-hook-id"} <= set(KEPT_HEADERS)
    assert all(h == h.lower() and "signature" not in h for h in KEPT_HEADERS)
    assert set(SUPPORTED_EVENTS) == {"workflow_run", "workflow_job", "deployment_status", "pull_request_review"}


def test_authenticate_returns_the_source_whose_secret_signed_the_body() -> None:
    body = json.dumps(fixture("workflow_run.completed")).encode()
    signed = headers(**{"x-hub-signature-256": sign(SECRET.get_secret_value(), body)})
    assert authenticate({"acme": SECRET}, None, signed, body) == "acme"
    assert authenticate({"acme": SecretStr("other"), "ci": SECRET}, "ci", signed, body) == "ci"


@pytest.mark.parametrize(
    ("secrets", "source", "signature", "reason"),
    [({"acme": SECRET}, None, None, "missing signature"),
     ({"acme": SECRET}, None, sign("wrong secret", b"{}"), "does not match"),
     ({"acme": SECRET, "ci": SecretStr("second secret")}, "ci", sign(SECRET.get_secret_value(), b"{}"), "does not match"),
     ({"acme": SECRET}, "nope", sign(SECRET.get_secret_value(), b"{}"), "no GitHub webhook secret is configured for source 'nope'"),
     ({}, None, sign(SECRET.get_secret_value(), b"{}"), "disabled")],
)
def test_authenticate_refuses_without_naming_a_secret(
    secrets: dict[str, SecretStr], source: str | None, signature: str | None, reason: str
) -> None:
    extra = {"x-hub-signature-256": signature} if signature else {}
    with pytest.raises(Refused, match=reason) as caught:
        authenticate(secrets, source, headers(**extra), b"{}")
    for secret in secrets.values():
        assert secret.get_secret_value() not in str(caught.value)
    assert SECRET.get_secret_value() not in str(caught.value)


def test_identify_reads_the_delivery_and_event_headers() -> None:
    assert identify(headers("deployment_status", " abc-1 "), b"") == Delivery(key="abc-1", event_type="deployment_status")
    with pytest.raises(BadDelivery, match="the X-GitHub-Delivery header is missing"):
        identify({"x-github-event": "workflow_run"}, b"{}")
    with pytest.raises(BadDelivery, match="the X-GitHub-Event header is missing"):
        identify({"x-github-delivery": "abc-1", "x-github-event": " "}, b"{}")
    with pytest.raises(BadDelivery, match="X-GitHub-Event and X-GitHub-Delivery headers are missing"):
        identify({}, b"{}")


def test_translate_maps_the_raw_body_like_map_webhook_and_deterministically() -> None:
    for name in ("workflow_run.completed", "workflow_job.in_progress", "deployment_status.success",
                 "pull_request_review.submitted.approved"):
        body = (FIXTURES / f"{name}.json").read_bytes()
        events = translate(headers(name.split(".")[0]), body)
        assert events == map_webhook(name.split(".")[0], fixture(name)) == translate(headers(name.split(".")[0]), body)


@pytest.mark.parametrize(
    ("event", "body", "reason"),
    [("workflow_run", b"<html>hi</html>", "the body is not JSON \\(Expecting value at position 0\\)"),
     ("workflow_run", b'{"action": "completed"', "the body is not JSON"),
     ("workflow_run", b'{"action": "\xff"}', "the body is not UTF-8 \\(invalid byte at position 12\\)"),
     ("workflow_run", b"[1, 2]", "the body is not a JSON object"),
     ("ping", b'{"zen": "Keep it logically awesome."}', "ping carries no CI events"),
     ("", b"{}", "X-GitHub-Event header is missing"),
     ("push", b"{}", "unsupported GitHub event type 'push'")],
)
def test_translate_says_why_a_body_is_unmappable(event: str, body: bytes, reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        translate(headers(event), body)
