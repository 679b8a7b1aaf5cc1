"""GitLab CI webhooks -> cipulse events, from GitLab's documented example payloads
(tests/fixtures/gitlab, see its README), plus the X-Gitlab-Token check and delivery identity.

Each fixture maps to the expected events, and applying them in order (and again, and in the
reverse order) with the worker's own `apply_event` gives the expected final statuses.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason, decode, encode
from streams.adapters.contract import BadDelivery, Refused, Translated, Unmappable
from streams.adapters.gitlab import ADAPTER, KEPT_HEADERS, authenticate, identify, translate
from streams.build_state import Ignored, apply_event

from event_replay import json_fixture
from event_replay import replay_builds as replay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gitlab"
PIPELINE_BUILD = "gl-1-31"
PIPELINE_NAME = "Pipeline for branch: master"
JOB_BUILD = "gl-380-2366"
JOB_STAGE = "job-1977"
HOOKS = {"pipeline": "Pipeline Hook", "job": "Job Hook"}


def fixture(name: str) -> dict[str, Any]:
    return json_fixture("gitlab", name)


def send(event_type: str, payload: Any, **headers: str) -> list[BuildEvent]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    events = translate({"x-gitlab-event": event_type, **headers}, body)
    assert all(isinstance(event, BuildEvent) for event in events)
    return [event for event in events if isinstance(event, BuildEvent)]


def mapped(name: str) -> list[BuildEvent]:
    body = (FIXTURES / f"{name}.json").read_bytes()  # the bytes as stored, like the intake passes them
    return send(HOOKS[name.split(".")[0]], body)


def by_stage(events: list[BuildEvent]) -> dict[str | None, BuildEvent]:
    """The last (latest in the lifecycle) event of each stage; the build's under None."""
    return {event.stage_id: event for event in events}


def of_stage(events: list[BuildEvent], stage_id: str | None) -> list[BuildEvent]:
    return [event for event in events if event.stage_id == stage_id]


# --- Pipeline Hook ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "seq", "status", "time"),
    [("pipeline.pending", 1, BuildStatus.QUEUED, "2016-08-12 15:23:28+00:00"),
     ("pipeline.running", 2, BuildStatus.RUNNING, "2016-08-12 15:24:56+00:00"),  # earliest job start
     ("pipeline.success", 3, BuildStatus.SUCCEEDED, "2016-08-12 15:26:29+00:00"),
     ("pipeline.failed", 3, BuildStatus.FAILED, "2016-08-12 15:26:29+00:00")],
)
def test_each_pipeline_status_is_one_build_event(name: str, seq: int, status: BuildStatus, time: str) -> None:
    builds = of_stage(mapped(name), None)
    build = builds[-1]
    # a finished pipeline also reports the start its jobs imply (the running hook's event, unchanged)
    assert [b.seq for b in builds] == ([2, 3] if seq == 3 else [seq])
    if seq == 3:
        assert builds[0] == of_stage(mapped("pipeline.running"), None)[0]
    assert (build.build_id, build.scope, build.seq, build.status) == (PIPELINE_BUILD, BuildScope.BUILD, seq, status)
    assert build.event_id == f"{PIPELINE_BUILD}/build/{seq}" and str(build.event_time) == time
    assert (build.project, build.pipeline, build.name) == ("gitlab-org/gitlab-test", PIPELINE_NAME, PIPELINE_NAME)
    assert build.branch == "test"  # the merge request's source branch (ref is master)
    assert build.commit_sha == "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
    assert build.trigger_reason is TriggerReason.PULL_REQUEST  # source: merge_request_event
    assert (build.trigger_user, build.executor) == ("root", "gitlab-ci")
    assert build.environment == {"gitlab_source": "merge_request_event", "gitlab_ref": "master",
                                 "gitlab_url": "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"}
    assert build.duration_ms == (63_000 if seq == 3 else None)
    assert build.error_reason == ("test-build: script_failure" if status is BuildStatus.FAILED else None)


def test_the_published_pipeline_maps_every_job_to_a_stage_in_its_own_status() -> None:
    events = mapped("pipeline.success")
    build = by_stage(events)[None]
    stages = [event for event in events if event.scope is BuildScope.STAGE]
    assert [(s.stage_id, s.name, s.seq, s.status) for s in stages] == [
        ("job-376", "build: build-image", 2, BuildStatus.RUNNING),  # implied by started_at
        ("job-376", "build: build-image", 3, BuildStatus.SUCCEEDED),
        ("job-377", "test: test-image", 2, BuildStatus.RUNNING),
        ("job-377", "test: test-image", 3, BuildStatus.SUCCEEDED),
        ("job-378", "test: test-build", 2, BuildStatus.RUNNING),
        ("job-378", "test: test-build", 3, BuildStatus.FAILED),
        ("job-379", "deploy: staging", 1, BuildStatus.QUEUED),  # created
        ("job-380", "deploy: production", 3, BuildStatus.SKIPPED),  # a skipped manual job: never started
    ]
    assert str(stages[0].event_time) == "2016-08-12 15:24:56+00:00" and stages[0].duration_ms is None
    assert all(s.scope is BuildScope.STAGE and s.build_id == PIPELINE_BUILD and s.task_id is None for s in stages)
    assert all((s.project, s.pipeline) == (build.project, build.pipeline) for s in stages)
    assert [s.event_id for s in stages] == [f"{PIPELINE_BUILD}/{s.stage_id}/{s.seq}" for s in stages]
    assert len({e.event_id for e in events}) == len(events) == 10
    failed = by_stage(stages)["job-378"]
    assert (failed.error_reason, failed.duration_ms, failed.executor) == (
        "script_failure", 17_000, "shared-runners-manager-6.gitlab.com")
    assert str(failed.event_time) == "2016-08-12 15:26:29+00:00"
    queued = by_stage(stages)["job-379"]
    assert (queued.error_reason, queued.duration_ms, queued.executor) == (None, None, None)
    assert all(decode(encode(e), BuildEvent) == e for e in events)


def test_the_running_pipeline_reports_finished_running_and_waiting_jobs() -> None:
    stages = by_stage(mapped("pipeline.running"))
    del stages[None]
    assert {stage_id: (s.seq, s.status) for stage_id, s in stages.items()} == {
        "job-376": (3, BuildStatus.SUCCEEDED), "job-377": (2, BuildStatus.RUNNING), "job-378": (2, BuildStatus.RUNNING),
        "job-379": (1, BuildStatus.QUEUED), "job-380": (1, BuildStatus.QUEUED),
    }
    assert str(stages["job-377"].event_time) == "2016-08-12 15:26:12+00:00"


@pytest.mark.parametrize(
    ("last", "build_status", "stage_statuses"),
    [("pipeline.success", BuildStatus.SUCCEEDED,
      {"job-376": BuildStatus.SUCCEEDED, "job-377": BuildStatus.SUCCEEDED, "job-378": BuildStatus.FAILED,
       "job-379": BuildStatus.QUEUED, "job-380": BuildStatus.SKIPPED}),
     ("pipeline.failed", BuildStatus.FAILED,
      {"job-376": BuildStatus.SUCCEEDED, "job-377": BuildStatus.SUCCEEDED, "job-378": BuildStatus.FAILED,
       "job-379": BuildStatus.SKIPPED, "job-380": BuildStatus.SKIPPED})],
)
def test_the_pipeline_sequence_gives_the_final_tree_in_order_again_and_reversed(
    last: str, build_status: BuildStatus, stage_statuses: dict[str, BuildStatus]
) -> None:
    hooks = [mapped(name) for name in ("pipeline.pending", "pipeline.running", last)]
    in_order = [event for hook in hooks for event in hook]
    reversed_hooks = [event for hook in reversed(hooks) for event in hook]
    for events in (in_order, in_order + in_order, reversed_hooks, list(reversed(in_order))):
        state = replay(events)
        assert state.status is build_status and state.seq == 3
        assert {stage_id: stage.status for stage_id, stage in state.stages.items()} == stage_statuses
        assert str(state.queued_at) == "2016-08-12 15:23:28+00:00"
        assert str(state.started_at) == "2016-08-12 15:24:56+00:00"
        assert str(state.finished_at) == "2016-08-12 15:26:29+00:00" and state.duration_ms == 63_000
        assert state.stages["job-376"].started_at is not None and state.stages["job-376"].duration_ms == 17_000
    final = replay(in_order)
    for event in in_order:  # a redelivered or replayed hook changes nothing
        assert isinstance(apply_event(final, event), Ignored)


@pytest.mark.parametrize(
    ("status", "seq", "build_status", "reason"),
    [("created", 1, BuildStatus.QUEUED, None), ("waiting_for_resource", 1, BuildStatus.QUEUED, None),
     ("preparing", 1, BuildStatus.PREPARING, None), ("pending", 1, BuildStatus.QUEUED, None),
     ("scheduled", 1, BuildStatus.QUEUED, None), ("manual", 1, BuildStatus.QUEUED, None),
     ("running", 2, BuildStatus.RUNNING, None), ("waiting_for_callback", 2, BuildStatus.RUNNING, None),
     ("success", 3, BuildStatus.SUCCEEDED, None), ("failed", 3, BuildStatus.FAILED, "test-build: script_failure"),
     ("canceled", 3, BuildStatus.CANCELED, "GitLab status: canceled"),
     ("canceling", 3, BuildStatus.CANCELED, "GitLab status: canceled"),
     ("skipped", 3, BuildStatus.CANCELED, "GitLab status: skipped")],  # builds cannot be SKIPPED
)
def test_every_pipeline_status_has_a_build_status(status: str, seq: int, build_status: BuildStatus, reason: str | None) -> None:
    payload = fixture("pipeline.success")
    payload["object_attributes"]["status"] = status
    build = by_stage(send("Pipeline Hook", payload))[None]
    assert (build.seq, build.status, build.error_reason) == (seq, build_status, reason)
    state = replay([mapped("pipeline.pending")[0], build])  # after the queued pipeline: seq 1 is a duplicate
    assert state.status is (BuildStatus.QUEUED if seq == 1 else build_status)


@pytest.mark.parametrize(
    ("status", "seq", "stage_status"),
    [("created", 1, BuildStatus.QUEUED), ("waiting_for_resource", 1, BuildStatus.QUEUED),
     ("preparing", 1, BuildStatus.PREPARING), ("pending", 1, BuildStatus.QUEUED), ("scheduled", 1, BuildStatus.QUEUED),
     ("manual", 1, BuildStatus.QUEUED), ("running", 2, BuildStatus.RUNNING),
     ("waiting_for_callback", 2, BuildStatus.RUNNING), ("success", 3, BuildStatus.SUCCEEDED),
     ("failed", 3, BuildStatus.FAILED), ("canceled", 3, BuildStatus.CANCELED), ("canceling", 3, BuildStatus.CANCELED),
     ("skipped", 3, BuildStatus.SKIPPED)],
)
def test_every_job_status_has_a_stage_status(status: str, seq: int, stage_status: BuildStatus) -> None:
    payload = fixture("job.failed")
    payload["build_status"] = status
    events = send("Job Hook", payload)
    stage = events[-1]
    assert [e.seq for e in events] == ([2, 3] if seq == 3 else [seq])  # the fixture has a start time
    assert (stage.seq, stage.status) == (seq, stage_status)
    assert stage.error_reason == ("script_failure" if status == "failed" else None)
    assert stage.duration_ms == (120_000 if seq == 3 else None)


def test_a_pipeline_waiting_for_a_manual_job_stays_queued_or_running_until_it_finishes() -> None:
    def hook(status: str) -> BuildEvent:
        payload = fixture("pipeline.pending")
        payload["object_attributes"]["status"] = status
        payload["builds"] = []
        return by_stage(send("Pipeline Hook", payload))[None]

    blocked_first = replay([hook("created"), hook("manual")])
    assert blocked_first.status is BuildStatus.QUEUED
    blocked_later = replay([hook("created"), hook("running"), hook("manual")])
    assert blocked_later.status is BuildStatus.RUNNING
    played = replay([hook("running"), hook("success")], blocked_later)
    assert played.status is BuildStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("source", "trigger"),
    [("push", TriggerReason.PUSH), ("merge_request_event", TriggerReason.PULL_REQUEST),
     ("external_pull_request_event", TriggerReason.PULL_REQUEST), ("schedule", TriggerReason.SCHEDULE),
     ("web", TriggerReason.MANUAL), ("chat", TriggerReason.MANUAL), ("api", TriggerReason.API),
     ("trigger", TriggerReason.API), ("pipeline", TriggerReason.UPSTREAM), ("parent_pipeline", TriggerReason.UPSTREAM),
     ("ondemand_dast_scan", TriggerReason.OTHER)],
)
def test_the_pipeline_source_is_the_trigger_reason(source: str, trigger: TriggerReason) -> None:
    payload = fixture("pipeline.success")
    payload["object_attributes"]["source"] = source
    assert send("Pipeline Hook", payload)[0].trigger_reason is trigger


def test_branch_is_the_ref_without_a_merge_request_and_none_for_a_tag() -> None:
    payload = fixture("pipeline.success")
    del payload["merge_request"]
    assert send("Pipeline Hook", payload)[0].branch == "master"
    payload["object_attributes"].update(ref="v1.0.0", tag=True)
    build = send("Pipeline Hook", payload)[0]
    assert build.branch is None and build.environment["gitlab_ref"] == "v1.0.0"


def test_the_instance_header_is_kept_in_the_build_environment() -> None:
    build = send("Pipeline Hook", fixture("pipeline.success"), **{"x-gitlab-instance": "https://gitlab.example.com"})[0]
    assert build.environment["gitlab_instance"] == "https://gitlab.example.com"


def test_an_unnamed_pipeline_is_the_projects_gitlab_ci_pipeline_in_both_hooks() -> None:
    pipeline = fixture("pipeline.success")
    del pipeline["object_attributes"]["name"]
    job = fixture("job.running")
    job["commit"]["name"] = None
    assert {e.pipeline for e in send("Pipeline Hook", pipeline)} == {"gitlab-ci"}
    assert send("Job Hook", job)[0].pipeline == "gitlab-ci"
    assert send("Pipeline Hook", pipeline)[0].name == "gitlab-ci"


def test_a_finished_pipeline_stays_final_when_gitlab_reopens_it_for_a_retried_job() -> None:
    failed = mapped("pipeline.failed")
    rerun = fixture("pipeline.success")
    for job in rerun["builds"]:
        if job["id"] == 378:  # the retried job is a new job
            job.update(id=381, status="success", failure_reason=None)
    state = replay([*mapped("pipeline.pending"), *mapped("pipeline.running"), *failed, *send("Pipeline Hook", rerun)])
    assert state.status is BuildStatus.FAILED  # a final status is final
    assert state.stages["job-378"].status is BuildStatus.FAILED and state.stages["job-381"].status is BuildStatus.SUCCEEDED


# --- Job Hook -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "seq", "status", "time"),
    [("job.created", 1, BuildStatus.QUEUED, "2021-02-23 02:41:37+00:00"),
     ("job.pending", 1, BuildStatus.QUEUED, "2021-02-23 02:41:37+00:00"),
     ("job.running", 2, BuildStatus.RUNNING, "2021-02-23 03:00:53+00:00"),
     ("job.failed", 3, BuildStatus.FAILED, "2021-02-23 03:02:53+00:00")],
)
def test_each_job_status_is_one_stage_event(name: str, seq: int, status: BuildStatus, time: str) -> None:
    events = mapped(name)
    stage = events[-1]
    if seq == 3:  # the finished job also reports the start it implies: the running hook's event
        assert events[:-1] == mapped("job.running")
    else:
        assert len(events) == 1
    assert (stage.build_id, stage.scope, stage.stage_id, stage.seq, stage.status) == (
        JOB_BUILD, BuildScope.STAGE, JOB_STAGE, seq, status)
    assert stage.event_id == f"{JOB_BUILD}/{JOB_STAGE}/{seq}" and str(stage.event_time) == time
    assert (stage.project, stage.pipeline, stage.name) == ("gitlab-org/gitlab-test", "Build pipeline", "test: test")
    # the published created example carries failure_reason script_failure: only a failed job reports it
    assert stage.error_reason == ("script_failure" if status is BuildStatus.FAILED else None)
    assert stage.executor == (None if seq == 1 else "shared-runners-manager-6.gitlab.com")
    assert stage.duration_ms == (120_000 if seq == 3 else None)
    assert decode(encode(stage), BuildEvent) == stage


def test_the_job_sequence_gives_the_final_stage_in_order_again_and_reversed() -> None:
    names = ("job.created", "job.pending", "job.running", "job.failed")
    in_order = [event for name in names for event in mapped(name)]
    assert mapped("job.created") == mapped("job.pending")  # both "waiting": the same lifecycle fact
    for events in (in_order, in_order + in_order, list(reversed(in_order))):
        state = replay(events)
        stage = state.stages[JOB_STAGE]
        assert (stage.status, stage.seq, stage.error_reason) == (BuildStatus.FAILED, 3, "script_failure")
        assert str(stage.queued_at) == "2021-02-23 02:41:37+00:00" and str(stage.started_at) == "2021-02-23 03:00:53+00:00"
        assert str(stage.finished_at) == "2021-02-23 03:02:53+00:00" and stage.duration_ms == 120_000
        assert state.status is BuildStatus.QUEUED and state.seq == -1  # only Pipeline Hooks report the build
    final = replay(in_order)
    for event in in_order:
        assert isinstance(apply_event(final, event), Ignored)


def test_job_and_pipeline_hooks_of_one_pipeline_are_one_build_with_the_same_job_events() -> None:
    job = fixture("job.failed")  # job 378 of the published pipeline, as its Job Hook reports it
    job.update(build_id=378, build_name="test-build", build_stage="test", pipeline_id=31, project_id=1,
               build_started_at_iso="2016-08-12T15:26:12Z", build_finished_at_iso="2016-08-12T15:26:29Z",
               build_created_at_iso="2016-08-12T15:23:28Z", build_duration=17.0)
    job["project"].update(id=1)
    job["commit"].update(id=31, name=PIPELINE_NAME)
    from_job_hook = send("Job Hook", job)
    from_pipeline_hook = of_stage(mapped("pipeline.failed"), "job-378")
    assert from_job_hook == from_pipeline_hook  # same facts, same events: applying both changes nothing twice
    running = copy.deepcopy(job)
    running.update(build_status="running")
    events = [*mapped("pipeline.pending"), *send("Job Hook", running), *mapped("pipeline.running"),
              *from_job_hook, *mapped("pipeline.failed")]
    for order in (events, list(reversed(events))):
        state = replay(order)
        assert (state.build_id, state.status) == (PIPELINE_BUILD, BuildStatus.FAILED)
        assert state.stages["job-378"].status is BuildStatus.FAILED


def test_a_retried_job_is_a_new_stage_of_the_same_build() -> None:
    retry = fixture("job.running")
    retry["build_id"] = 1978
    state = replay([*mapped("job.failed"), *send("Job Hook", retry)])
    assert state.stages[JOB_STAGE].status is BuildStatus.FAILED
    assert state.stages["job-1978"].status is BuildStatus.RUNNING


def test_the_same_request_always_maps_to_the_same_events() -> None:
    for name in ("pipeline.running", "job.failed"):
        assert mapped(name) == mapped(name)


# --- unmappable ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("event_type", "fixture_name", "change", "reason"),
    [
        ("Push Hook", "pipeline.success", {}, "unsupported GitLab event type 'Push Hook'"),
        ("", "pipeline.success", {}, "unsupported GitLab event type ''"),
        ("Pipeline Hook", "job.created", {}, "Pipeline Hook with object_kind 'build'"),
        ("Job Hook", "pipeline.success", {}, "Job Hook with object_kind 'pipeline'"),
        ("Pipeline Hook", "pipeline.success", {"project": None}, "no project object"),
        ("Pipeline Hook", "pipeline.success", {"object_attributes": "x"}, "no object_attributes object"),
        ("Pipeline Hook", "pipeline.success", {"builds": {"id": 1}}, "builds is not a list of objects"),
        ("Job Hook", "job.created", {"build_status": "exploded"}, "job 1977 status 'exploded' is not mapped"),
        ("Job Hook", "job.created", {"build_id": None}, "Job Hook.build_id is missing"),
        ("Job Hook", "job.created", {"pipeline_id": None, "commit": {}}, "pipeline_id is missing"),
        ("Job Hook", "job.created", {"build_created_at_iso": None, "build_created_at": None},
         "job 1977 created_at is missing"),
        ("Job Hook", "job.created", {"build_created_at_iso": "yesterday"}, "job 1977 created_at is not a time"),
    ],
)
def test_unmappable_webhooks_say_why(event_type: str, fixture_name: str, change: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        send(event_type, {**fixture(fixture_name), **change})


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda p: p["object_attributes"].update(status="blocked"), "pipeline status 'blocked' is not mapped"),
        (lambda p: p["object_attributes"].pop("id"), "object_attributes.id is missing"),
        (lambda p: p["object_attributes"].update(created_at=None), "object_attributes.created_at is missing"),
        (lambda p: p["project"].pop("path_with_namespace"), "project.path_with_namespace is missing"),
        (lambda p: p["project"].pop("id"), "project.id is missing"),
        (lambda p: p["builds"][0].update(status="bogus"), "job 380 status 'bogus' is not mapped"),
    ],
)
def test_unmappable_pipeline_fields_say_why(edit: Any, reason: str) -> None:
    payload = fixture("pipeline.success")
    edit(payload)
    with pytest.raises(Unmappable, match=reason):
        send("Pipeline Hook", payload)


@pytest.mark.parametrize(("body", "reason"), [(b"[1, 2]", "not a JSON object"), (b"<xml/>", "not JSON"),
                                              (b"\xff\xfe", "not UTF-8"), (b"null", "not a JSON object")])
def test_a_body_that_is_not_a_json_object_is_unmappable(body: bytes, reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        send("Pipeline Hook", body)


def test_translate_without_an_event_header_is_unmappable() -> None:
    with pytest.raises(Unmappable, match="unsupported GitLab event type ''"):
        translate({}, (FIXTURES / "pipeline.success.json").read_bytes())


# --- identify -----------------------------------------------------------------------------------

BODY = (FIXTURES / "pipeline.success.json").read_bytes()
UUID = "13792a34-cac6-4fda-95a8-c58e00a3954e"
KEY = "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"


def test_the_idempotency_key_is_the_delivery_key_when_gitlab_sends_it() -> None:
    delivery = identify({"x-gitlab-event": "Pipeline Hook", "x-gitlab-event-uuid": UUID, "idempotency-key": KEY}, BODY)
    assert (delivery.key, delivery.event_type) == (KEY, "Pipeline Hook")
    assert identify({"x-gitlab-event": "Job Hook", "idempotency-key": KEY}, b"{}").key == KEY


def test_without_idempotency_key_the_event_uuid_and_body_make_the_key() -> None:
    headers = {"x-gitlab-event": "Pipeline Hook", "x-gitlab-event-uuid": UUID}
    first, again = identify(headers, BODY), identify(dict(headers), BODY)
    assert first == again and first.key.startswith(f"{UUID}-") and len(first.key) == len(UUID) + 17
    # recursive webhooks share the event UUID: a different payload is a different delivery
    assert identify(headers, (FIXTURES / "pipeline.failed.json").read_bytes()).key != first.key


@pytest.mark.parametrize(
    ("headers", "missing"),
    [({"x-gitlab-event-uuid": UUID}, "missing X-Gitlab-Event:"),
     ({"x-gitlab-event": " ", "idempotency-key": KEY}, "missing X-Gitlab-Event:"),
     ({"x-gitlab-event": "Pipeline Hook"}, r"missing X-Gitlab-Event-UUID \(or Idempotency-Key\)"),
     ({"x-gitlab-event": "Pipeline Hook", "x-gitlab-event-uuid": "", "idempotency-key": ""}, "X-Gitlab-Event-UUID"),
     ({}, r"missing X-Gitlab-Event and X-Gitlab-Event-UUID \(or Idempotency-Key\)")],
)
def test_a_delivery_without_gitlabs_headers_is_bad(headers: dict[str, str], missing: str) -> None:
    with pytest.raises(BadDelivery, match=missing):
        identify(headers, BODY)


# --- authenticate -------------------------------------------------------------------------------

TOKEN = "glwt-s3cret-t0ken"
SECRETS = {"acme": SecretStr(TOKEN)}


def test_the_right_token_authenticates_the_source() -> None:
    assert authenticate(SECRETS, "acme", {"x-gitlab-token": TOKEN}, BODY) == "acme"
    assert authenticate(SECRETS, None, {"x-gitlab-token": TOKEN}, BODY) == "acme"  # the only configured one
    several = {"acme": SecretStr("other-token"), "beta": SecretStr(TOKEN)}
    assert authenticate(several, "beta", {"x-gitlab-token": TOKEN}, BODY) == "beta"


@pytest.mark.parametrize(
    ("secrets", "source", "headers", "reason"),
    [
        ({}, None, {"x-gitlab-token": TOKEN},
         r'disabled on this worker: set CIPULSE_GITLAB_WEBHOOK_SECRETS to a JSON object \{"<source>": "<secret token>"\}'),
        ({}, "acme", {"x-gitlab-token": TOKEN}, "CIPULSE_GITLAB_WEBHOOK_SECRETS"),
        (SECRETS, None, {}, "missing X-Gitlab-Token"),
        (SECRETS, None, {"x-gitlab-token": "  "}, "missing X-Gitlab-Token"),
        (SECRETS, None, {"x-gitlab-token": "wrong-token"}, "does not match the token configured for source 'acme'"),
        (SECRETS, None, {"x-gitlab-token": TOKEN + "x"}, "does not match"),
        (SECRETS, "nope", {"x-gitlab-token": TOKEN}, "no GitLab secret token is configured for source 'nope'"),
        ({"acme": SecretStr(TOKEN), "beta": SecretStr("t2")}, None, {"x-gitlab-token": TOKEN}, r"add \?source=<name>"),
    ],
)
def test_a_request_without_the_sources_token_is_refused_without_naming_a_token(
    secrets: dict[str, SecretStr], source: str | None, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Refused, match=reason) as caught:
        authenticate(secrets, source, headers, BODY)
    message = str(caught.value)
    assert TOKEN not in message and "wrong-token" not in message and "t2" not in message


def test_the_adapter_offers_the_contract_and_keeps_no_token_header() -> None:
    assert (ADAPTER.name, ADAPTER.secrets_setting) == ("gitlab", "CIPULSE_GITLAB_WEBHOOK_SECRETS")
    assert (ADAPTER.authenticate, ADAPTER.identify, ADAPTER.translate) == (authenticate, identify, translate)
    assert ADAPTER.kept_headers == KEPT_HEADERS
    assert set(KEPT_HEADERS) == {"x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key", "x-gitlab-instance"}
    assert all(h == h.lower() for h in KEPT_HEADERS) and "x-gitlab-token" not in KEPT_HEADERS


def test_translate_reads_only_kept_headers() -> None:
    headers = {"x-gitlab-event": "Pipeline Hook", "x-gitlab-instance": "https://gitlab.example.com",
               "x-gitlab-token": TOKEN, "user-agent": "GitLab/17.4.0"}
    kept = {name: value for name, value in headers.items() if name in KEPT_HEADERS}
    everything: list[Translated] = translate(headers, BODY)
    assert everything == translate(kept, BODY)


def test_a_pipeline_start_comes_from_queued_duration_or_is_not_invented() -> None:
    payload = fixture("pipeline.success")
    payload["object_attributes"]["queued_duration"] = 12
    running, final = of_stage(send("Pipeline Hook", payload), None)
    assert (running.status, str(running.event_time)) == (BuildStatus.RUNNING, "2016-08-12 15:23:40+00:00")
    canceled = fixture("pipeline.pending")  # canceled before any job started: no start to report
    canceled["object_attributes"].update(status="canceled", finished_at=None)
    [build] = of_stage(send("Pipeline Hook", canceled), None)
    assert (build.seq, build.status, str(build.event_time)) == (3, BuildStatus.CANCELED, "2016-08-12 15:23:28+00:00")
    assert replay(send("Pipeline Hook", canceled)).status is BuildStatus.CANCELED
