"""CDEvents (CloudEvents binary and structured mode) -> cipulse events, from the CDEvents spec's
published conformance examples (tests/fixtures/cdevents, see its README), plus the bearer-token
check and the idempotency key.

Each fixture maps to the expected events; applying them with the worker's own pure functions
(`apply_event` for builds, `apply_audit_event` for audits) in order, again, and in reverse gives
the expected final state.
"""

from __future__ import annotations

import json
from pathlib import Path
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
)
from streams.adapters.cdevents import (
    ADAPTER,
    KEPT_HEADERS,
    authenticate,
    identify,
    translate,
)
from streams.adapters.contract import BadDelivery, Refused, Translated, Unmappable
from streams.audit_state import AuditAccepted, AuditIgnored, AuditState, apply_audit_event
from streams.audit_transitions import AuditStatus
from streams.build_state import Accepted, Ignored, apply_event

from event_replay import json_fixture
from event_replay import replay_audits as replay_audit
from event_replay import replay_builds as replay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cdevents"
SOURCE = "/event/source/123"
CE_ID = "271069a8-fc18-44f1-b38f-9d70a1695819"
EVENT_ID = "cde-89eaafb2984c83e0aad6"  # digest of (SOURCE, CE_ID): every conformance example shares them
RUN_BUILD = "cde-9473a3dc70fa3091"  # ("pipelineRun", SOURCE, "mySubject123")
BUILD_BUILD = "cde-4db16e9160508827"  # ("build", SOURCE, "mySubject123")
TASK_STAGE = "taskrun-6235c7641f16"  # ("taskRun", SOURCE, "mySubject123")
AUDIT = "cde-change-f873717843d6f36a"  # ("change", SOURCE, "mySubject123")
AT = "2023-03-20 14:27:05.315000+00:00"
ERRORS = "Something went wrong\nWith some more details"


def cdevent(name: str) -> dict[str, Any]:
    return json_fixture("cdevents", name)


def binary(payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """A binary-mode request: the ce-* headers from the CDEvent's context, the CDEvent as body."""
    context = payload["context"]
    headers = {
        "ce-specversion": "1.0", "ce-id": context["id"], "ce-source": context["source"], "ce-type": context["type"],
        "content-type": "application/cdevents+json; charset=utf-8",
    }
    if isinstance(context.get("timestamp"), str):
        headers["ce-time"] = context["timestamp"]
    return headers, json.dumps(payload).encode()


def structured(payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """A structured-mode request: the CloudEvent in the body, the CDEvent as its `data`."""
    context = payload["context"]
    event = {
        "specversion": "1.0", "id": context["id"], "source": context["source"], "type": context["type"],
        "time": context.get("timestamp"), "subject": payload["subject"]["id"],
        "datacontenttype": "application/json", "data": payload,
    }
    return {"content-type": "application/cloudevents+json; charset=utf-8"}, json.dumps(event).encode()


def mapped(name: str) -> list[Translated]:
    return translate(*binary(cdevent(name)))


def builds(*names: str) -> list[BuildEvent]:
    events = [e for name in names for e in mapped(name)]
    assert all(isinstance(e, BuildEvent) for e in events)
    return [e for e in events if isinstance(e, BuildEvent)]


def audits(*names: str) -> list[AuditEvent]:
    events = [e for name in names for e in mapped(name)]
    assert all(isinstance(e, AuditEvent) for e in events)
    return [e for e in events if isinstance(e, AuditEvent)]


def with_content(name: str, **content: Any) -> dict[str, Any]:
    payload = cdevent(name)
    payload["subject"]["content"].update(content)
    return payload


def unmappable(payload: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> str:
    if isinstance(payload, dict):
        default_headers, body = binary(payload)
    else:
        default_headers, body = binary(cdevent("pipelinerun_queued"))[0], payload
    with pytest.raises(Unmappable) as caught:
        translate(headers if headers is not None else default_headers, body)
    return str(caught.value)


# --- pipelineRun -> BUILD ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "seq", "status"),
    [("pipelinerun_queued", 1, BuildStatus.QUEUED), ("pipelinerun_started", 2, BuildStatus.RUNNING),
     ("pipelinerun_finished", 3, BuildStatus.FAILED)],
)
def test_each_pipelinerun_event_is_one_build_event(name: str, seq: int, status: BuildStatus) -> None:
    [event] = builds(name)
    assert (event.build_id, event.scope, event.seq, event.status) == (RUN_BUILD, BuildScope.BUILD, seq, status)
    assert (event.project, event.pipeline, event.name) == (SOURCE, "pipelineRun", "myPipeline")
    assert event.event_id == EVENT_ID and str(event.event_time) == AT and event.executor == "cdevents"
    assert event.stage_id is None and event.task_id is None
    assert event.environment == {
        "cdevents_source": SOURCE, "cdevents_subject_id": "mySubject123",
        "cdevents_url": "https://www.example.com/mySubject123", "cdevents_pipeline_name": "myPipeline",
    }
    assert event.error_reason == (f"CDEvents outcome: failure: {ERRORS}" if seq == 3 else None)


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [("success", BuildStatus.SUCCEEDED, None),
     ("failure", BuildStatus.FAILED, f"CDEvents outcome: failure: {ERRORS}"),
     ("cancel", BuildStatus.CANCELED, f"CDEvents outcome: cancel: {ERRORS}"),
     ("error", BuildStatus.FAILED, f"CDEvents outcome: error: {ERRORS}")],
)
def test_every_outcome_has_a_final_status(outcome: str, status: BuildStatus, reason: str | None) -> None:
    [run] = translate(*binary(with_content("pipelinerun_finished", outcome=outcome)))
    [task] = translate(*binary(with_content("taskrun_finished", outcome=outcome)))
    assert isinstance(run, BuildEvent) and isinstance(task, BuildEvent)
    assert (run.status, run.error_reason) == (status, reason)
    assert (task.status, task.error_reason) == (status, reason)
    state = replay([*builds("pipelinerun_queued", "pipelinerun_started"), run])
    assert state.status is status


def test_an_outcome_without_errors_keeps_only_the_outcome() -> None:
    payload = with_content("pipelinerun_finished", outcome="error")
    del payload["subject"]["content"]["errors"]
    [event] = translate(*binary(payload))
    assert isinstance(event, BuildEvent)
    assert (event.status, event.error_reason) == (BuildStatus.FAILED, "CDEvents outcome: error")


@pytest.mark.parametrize("outcome", ["skipped", "SUCCESS", "", 1])
def test_an_unknown_outcome_is_unmappable(outcome: Any) -> None:
    reason = unmappable(with_content("pipelinerun_finished", outcome=outcome))
    assert "pipelinerun.finished has outcome" in reason and "not mapped" in reason
    assert "success, failure, cancel, error" in reason


def test_a_finished_run_without_outcome_is_unmappable() -> None:
    payload = cdevent("pipelinerun_finished")
    del payload["subject"]["content"]["outcome"]
    assert unmappable(payload).startswith("pipelinerun.finished has no outcome")


# --- taskRun -> STAGE of the pipelineRun's build ------------------------------------------------

def test_a_taskrun_is_a_stage_of_its_pipelineruns_build() -> None:
    started, finished = builds("taskrun_started", "taskrun_finished")
    for event, seq, status in ((started, 2, BuildStatus.RUNNING), (finished, 3, BuildStatus.FAILED)):
        assert (event.build_id, event.scope, event.stage_id, event.task_id) == (RUN_BUILD, BuildScope.STAGE, TASK_STAGE, None)
        assert (event.seq, event.status, event.name) == (seq, status, "myTask")
        assert (event.project, event.pipeline) == (SOURCE, "pipelineRun")  # the same as the run's, or apply_event refuses
    assert finished.error_reason == f"CDEvents outcome: failure: {ERRORS}" and started.error_reason is None


def test_a_taskrun_names_its_pipelinerun_source_when_it_has_one() -> None:
    payload = cdevent("taskrun_started")
    payload["subject"]["content"]["pipelineRun"]["source"] = "/elsewhere/tekton"
    [event] = translate(*binary(payload))
    assert isinstance(event, BuildEvent)
    assert event.project == "/elsewhere/tekton" and event.build_id != RUN_BUILD


@pytest.mark.parametrize("reference", [None, {}, {"id": ""}, "mySubject123"])
def test_a_taskrun_without_its_pipelinerun_is_unmappable(reference: Any) -> None:
    payload = cdevent("taskrun_finished")
    if reference is None:
        del payload["subject"]["content"]["pipelineRun"]
    else:
        payload["subject"]["content"]["pipelineRun"] = reference
    assert unmappable(payload) == (
        "taskRun 'mySubject123' does not reference its pipelineRun (subject.content.pipelineRun.id), "
        "so it cannot be placed in a build"
    )


def test_the_run_and_its_tasks_converge_in_order_again_and_reversed() -> None:
    events = builds("pipelinerun_queued", "pipelinerun_started", "taskrun_started", "taskrun_finished",
                    "pipelinerun_finished")
    for order in (events, [*events, *events], list(reversed(events))):
        state = replay(order)
        assert (state.build_id, state.status, state.seq) == (RUN_BUILD, BuildStatus.FAILED, 3)
        assert state.error_reason == f"CDEvents outcome: failure: {ERRORS}"
        assert state.environment["cdevents_pipeline_name"] == "myPipeline"
        stage = state.stages[TASK_STAGE]
        assert (stage.status, stage.seq, stage.name) == (BuildStatus.FAILED, 3, "myTask")
        assert str(stage.started_at) == AT and str(stage.finished_at) == AT
    state = replay(events)
    for again in events:
        assert isinstance(apply_event(state, again), Ignored)


def test_a_late_started_after_finished_is_ignored() -> None:
    state = replay(builds("pipelinerun_queued", "pipelinerun_finished"))
    [late] = builds("pipelinerun_started")
    outcome = apply_event(state, late)
    assert isinstance(outcome, Accepted)  # it only fills the start time the run never got
    assert (outcome.state.status, outcome.state.seq, str(outcome.state.started_at)) == (BuildStatus.FAILED, 3, AT)
    assert isinstance(apply_event(outcome.state, late), Ignored)


# --- build -> BUILD ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "seq", "status"),
    [("build_queued", 1, BuildStatus.QUEUED), ("build_queued.v0.4", 1, BuildStatus.QUEUED),
     ("build_started", 2, BuildStatus.RUNNING), ("build_finished", 3, BuildStatus.SUCCEEDED)],
)
def test_each_build_event_is_one_build_event(name: str, seq: int, status: BuildStatus) -> None:
    [event] = builds(name)
    assert (event.build_id, event.scope, event.seq, event.status) == (BUILD_BUILD, BuildScope.BUILD, seq, status)
    assert (event.project, event.pipeline, event.error_reason) == (SOURCE, "build", None)
    assert event.event_id == EVENT_ID and str(event.event_time) == AT
    expected = {"cdevents_source": SOURCE, "cdevents_subject_id": "mySubject123"}
    if seq == 3:
        expected["cdevents_artifact_id"] = (
            "pkg:oci/myapp@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
        )
    assert event.environment == expected


def test_the_build_sequence_succeeds_in_any_order() -> None:
    events = builds("build_queued", "build_started", "build_finished")
    for order in (events, [*events, *events], list(reversed(events))):
        state = replay(order)
        assert (state.status, state.pipeline, state.seq) == (BuildStatus.SUCCEEDED, "build", 3)
        assert "cdevents_artifact_id" in state.environment


def test_a_cdevents_04_build_maps_like_its_05_version() -> None:
    assert builds("build_queued.v0.4") == builds("build_queued")


def test_a_finished_build_with_an_outcome_uses_it() -> None:
    [event] = translate(*binary(with_content("build_finished", outcome="failure", errors="compile error")))
    assert isinstance(event, BuildEvent)
    assert (event.status, event.error_reason) == (BuildStatus.FAILED, "CDEvents outcome: failure: compile error")


def test_a_finished_build_without_outcome_or_artifact_is_unmappable() -> None:
    payload = cdevent("build_finished")
    payload["subject"]["content"] = {}
    assert unmappable(payload) == (
        "build.finished has neither an outcome nor an artifactId, so whether the build succeeded is unknown"
    )


def test_pipeline_runs_builds_and_task_runs_with_one_id_are_different_nodes() -> None:
    assert RUN_BUILD != BUILD_BUILD
    [task] = builds("taskrun_started")
    assert task.stage_id == TASK_STAGE and task.build_id == RUN_BUILD


# --- change -> audit ---------------------------------------------------------------------------

def test_a_reviewed_change_opens_an_audit_in_review() -> None:
    requested, started = audits("change_reviewed")
    for event, seq, kind in ((requested, 1, AuditEventKind.REQUESTED), (started, 2, AuditEventKind.REVIEW_STARTED)):
        assert (event.audit_id, event.seq, event.kind) == (AUDIT, seq, kind)
        assert (event.subject_kind, event.subject_id) == (AuditSubjectKind.BUILD, "mySubject123")
        assert (event.project, event.pipeline, event.decision, event.decision_id) == ("TestRepo/TestOrg", None, None, None)
        assert str(event.event_time) == AT
    assert (requested.event_id, started.event_id) == (f"{EVENT_ID}/requested", f"{EVENT_ID}/review_started")
    state = replay_audit([requested, started])
    assert (state.status, str(state.requested_at), str(state.review_started_at)) == (AuditStatus.IN_REVIEW, AT, AT)


def test_a_merged_change_is_an_approved_decision_synced_to_its_record() -> None:
    decided, synced = audits("change_merged")
    assert (decided.kind, decided.seq, decided.decision, decided.decision_id) == (
        AuditEventKind.DECIDED, 3, AuditDecision.APPROVED, f"{AUDIT}/merged")
    assert (synced.kind, synced.seq, synced.decision, synced.decision_id) == (
        AuditEventKind.RECORD_SYNCED, 4, AuditDecision.APPROVED, f"{AUDIT}/merged")
    assert {decided.audit_id, synced.audit_id} == {AUDIT} and decided.event_id != synced.event_id
    assert audits("change_merged.v0.4") == [decided, synced]


def test_review_then_merge_is_accepted_in_order_again_and_reversed() -> None:
    events = audits("change_reviewed", "change_merged")
    for order in (events, [*events, *events], list(reversed(events))):
        state = replay_audit(order)
        assert (state.status, state.decision, state.decision_id) == (
            AuditStatus.SYNCED, AuditDecision.APPROVED, f"{AUDIT}/merged")
        assert str(state.requested_at) == AT and state.record_decision_id == f"{AUDIT}/merged"
        assert [m.kind for m in state.lifecycle] == [
            AuditEventKind.REQUESTED, AuditEventKind.REVIEW_STARTED, AuditEventKind.DECIDED]
    state = replay_audit(events)
    for again in events:
        assert isinstance(apply_audit_event(state, again), AuditIgnored)


def test_every_event_is_accepted_one_by_one_in_order() -> None:
    state: AuditState | None = None
    for event in audits("change_reviewed", "change_merged"):
        outcome = apply_audit_event(state, event)
        assert isinstance(outcome, AuditAccepted), outcome
        state = outcome.state
    assert state is not None and state.status is AuditStatus.SYNCED


def test_a_merge_never_reviewed_is_decided_and_synced_at_once() -> None:
    state = replay_audit(audits("change_merged"))
    assert (state.status, state.requested_at) == (AuditStatus.SYNCED, None)


def test_a_second_review_of_the_change_changes_nothing() -> None:
    first = audits("change_reviewed")
    payload = cdevent("change_reviewed")
    payload["context"]["id"] = "another-review"
    second = [e for e in translate(*binary(payload)) if isinstance(e, AuditEvent)]
    assert [e.audit_id for e in second] == [AUDIT, AUDIT] and second[0].event_id != first[0].event_id
    state = replay_audit(first)
    assert all(isinstance(apply_audit_event(state, e), AuditIgnored) for e in second)


def test_an_abandoned_change_cancels_its_review() -> None:
    [canceled] = audits("change_abandoned.v0.4")
    assert (canceled.audit_id, canceled.kind, canceled.seq) == (AUDIT, AuditEventKind.CANCELED, 3)
    state = replay_audit([*audits("change_reviewed"), canceled])
    assert state.status is AuditStatus.CANCELED


def test_a_change_without_repository_belongs_to_its_source() -> None:
    payload = cdevent("change_reviewed")
    payload["subject"]["content"] = {}
    assert {e.project for e in translate(*binary(payload)) if isinstance(e, AuditEvent)} == {SOURCE}


# --- binary and structured mode ----------------------------------------------------------------

FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_binary_and_structured_mode_give_the_same_events(name: str) -> None:
    payload = cdevent(name)
    from_binary = translate(*binary(payload))
    assert from_binary and from_binary == translate(*structured(payload))
    assert translate(*binary(payload)) == from_binary  # deterministic: a re-sent event maps identically


@pytest.mark.parametrize("mode", [binary, structured])
def test_identify_reads_source_id_and_type_in_both_modes(mode: Any) -> None:
    delivery = identify(*mode(cdevent("pipelinerun_started")))
    assert delivery.key == f"{SOURCE}#{CE_ID}"
    assert delivery.event_type == "dev.cdevents.pipelinerun.started.0.3.0"


def test_a_new_cloudevent_id_is_a_new_event_of_the_same_build() -> None:
    payload = cdevent("pipelinerun_started")
    payload["context"]["id"] = "another-id"
    [event] = translate(*binary(payload))
    [original] = builds("pipelinerun_started")
    assert isinstance(event, BuildEvent)
    assert event.event_id != original.event_id and event.model_copy(update={"event_id": original.event_id}) == original


@pytest.mark.parametrize(
    ("drop", "message"),
    [(("ce-id",), "the CloudEvent header ce-id is missing"),
     (("ce-source", "ce-type"), "the CloudEvent headers ce-source, ce-type are missing"),
     (("ce-id", "ce-source", "ce-type"), "the CloudEvent headers ce-id, ce-source, ce-type are missing")],
)
def test_identify_refuses_a_binary_event_without_its_attributes(drop: tuple[str, ...], message: str) -> None:
    headers, body = binary(cdevent("pipelinerun_started"))
    for name in drop:
        del headers[name]
    with pytest.raises(BadDelivery) as caught:
        identify(headers, body)
    assert str(caught.value).startswith(message)
    assert "application/cloudevents+json" in str(caught.value)  # points at structured mode too


@pytest.mark.parametrize("field", ["id", "source", "type"])
def test_identify_refuses_a_structured_event_without_its_attributes(field: str) -> None:
    headers, body = structured(cdevent("pipelinerun_started"))
    event = json.loads(body)
    event[field] = "  " if field == "type" else None
    with pytest.raises(BadDelivery, match=f"^the CloudEvent field {field} is missing$"):
        identify(headers, json.dumps(event).encode())


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff"])
def test_identify_refuses_a_structured_body_that_is_not_an_object(body: bytes) -> None:
    with pytest.raises(BadDelivery, match="must be a JSON object with id, source and type"):
        identify({"content-type": "application/cloudevents+json"}, body)


def test_batch_mode_is_refused() -> None:
    headers = {"content-type": "application/cloudevents-batch+json"}
    with pytest.raises(BadDelivery, match="batch mode is not supported"):
        identify(headers, b"[]")
    with pytest.raises(Unmappable, match="batch mode is not supported"):
        translate(headers, b"[]")


# --- authenticate ------------------------------------------------------------------------------

TOKEN = "s3cr3t-token-value"
SECRETS = {"tekton": SecretStr(TOKEN)}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused(secrets: dict[str, SecretStr], source: str | None, headers: dict[str, str]) -> str:
    with pytest.raises(Refused) as caught:
        authenticate(secrets, source, headers, b"{}")
    message = str(caught.value)
    assert TOKEN not in message and "wrong-token" not in message
    return message


def test_a_valid_bearer_token_authenticates_its_source() -> None:
    assert authenticate(SECRETS, "tekton", bearer(TOKEN), b"{}") == "tekton"
    assert authenticate(SECRETS, None, bearer(TOKEN), b"{}") == "tekton"  # the only configured source
    assert authenticate(SECRETS, None, {"authorization": f"bearer   {TOKEN}  "}, b"{}") == "tekton"
    several = {**SECRETS, "jenkins": SecretStr("other")}
    assert authenticate(several, "jenkins", bearer("other"), b"{}") == "jenkins"


@pytest.mark.parametrize("headers", [{}, {"authorization": ""}, {"authorization": "Bearer "},
                                     {"authorization": f"Basic {TOKEN}"}, {"authorization": TOKEN}])
def test_a_missing_bearer_token_is_refused(headers: dict[str, str]) -> None:
    assert refused(SECRETS, "tekton", headers).startswith("missing bearer token")


def test_a_wrong_token_is_refused_without_naming_either_token() -> None:
    assert refused(SECRETS, "tekton", bearer("wrong-token")) == "the bearer token is not the token of source 'tekton'"
    other = {**SECRETS, "jenkins": SecretStr("jenkins-token")}
    assert "not the token" in refused(other, "jenkins", bearer(TOKEN))  # another source's token is no good


def test_an_unknown_source_is_refused() -> None:
    assert refused(SECRETS, "gitlab", bearer(TOKEN)) == (
        "no CDEvents token is configured for source 'gitlab' (CIPULSE_CDEVENTS_TOKENS)")


def test_several_sources_need_the_source_parameter() -> None:
    several = {**SECRETS, "jenkins": SecretStr("other")}
    assert "add ?source=<name>" in refused(several, None, bearer(TOKEN))


def test_no_configured_tokens_disables_the_adapter() -> None:
    message = refused({}, None, bearer(TOKEN))
    assert "set CIPULSE_CDEVENTS_TOKENS to a JSON object {\"<source>\": \"<token>\"}" in message


# --- unmappable --------------------------------------------------------------------------------

def test_an_unmapped_cdevents_type_is_unmappable() -> None:
    payload = cdevent("build_started")
    payload["context"]["type"] = "dev.cdevents.artifact.published.0.3.0"
    reason = unmappable(payload)
    assert reason.startswith("CDEvents type artifact.published is not mapped (mapped: pipelinerun.queued")


def test_a_type_that_is_not_cdevents_is_unmappable() -> None:
    payload = cdevent("build_started")
    payload["context"]["type"] = "com.example.build.started"
    assert "is not a CDEvents type" in unmappable(payload)


@pytest.mark.parametrize("version", ["0.1.0", "0.4.0", "1.0.0"])
def test_an_unsupported_event_version_is_unmappable(version: str) -> None:
    payload = cdevent("build_started")
    payload["context"]["type"] = f"dev.cdevents.build.started.{version}"
    assert unmappable(payload) == (
        f"build.started event version {version} is not supported "
        "(supported: 0.3.x (CDEvents 0.5) and 0.2.x (CDEvents 0.4))")


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "the body is not JSON"), (b"\xff\xfe", "the body is not UTF-8"),
     (b"[1, 2]", "the CDEvent is not a JSON object"), (b'"text"', "the CDEvent is not a JSON object"),
     (b"{}", "the CDEvent has no context object"), (b'{"context": {}}', "the CDEvent has no subject object")],
)
def test_a_body_that_is_not_a_cdevent_is_unmappable(body: bytes, reason: str) -> None:
    assert unmappable(body).startswith(reason)


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [("yesterday", "context.timestamp is not an RFC 3339 time: 'yesterday'"),
     ("2023-03-20T14:27:05", "context.timestamp has no UTC offset: '2023-03-20T14:27:05'"),
     (12345, "context.timestamp is missing")],
)
def test_an_invalid_timestamp_is_unmappable(timestamp: Any, reason: str) -> None:
    payload = cdevent("pipelinerun_started")
    payload["context"]["timestamp"] = timestamp
    assert unmappable(payload) == reason


def test_a_missing_timestamp_falls_back_to_the_cloudevent_time() -> None:
    payload = cdevent("pipelinerun_started")
    del payload["context"]["timestamp"]
    headers, body = binary(payload)
    headers["ce-time"] = "2024-01-02T03:04:05+02:00"
    [event] = translate(headers, body)
    assert str(event.event_time) == "2024-01-02 01:04:05+00:00"
    del headers["ce-time"]
    assert unmappable(body, headers) == "context.timestamp is missing"


def test_nanosecond_timestamps_of_go_producers_are_read() -> None:
    payload = cdevent("pipelinerun_started")
    payload["context"]["timestamp"] = "2023-03-20T14:27:05.315384123Z"
    [event] = translate(*binary(payload))
    assert str(event.event_time) == AT


def test_a_subject_without_id_is_unmappable() -> None:
    payload = cdevent("pipelinerun_started")
    del payload["subject"]["id"]
    assert unmappable(payload) == "subject.id is missing"


def test_cloudevent_attributes_that_contradict_the_cdevent_are_unmappable() -> None:
    headers, body = binary(cdevent("pipelinerun_started"))
    headers["ce-id"] = "other-id"
    assert unmappable(body, headers).startswith(
        f"the CloudEvent id 'other-id' differs from the CDEvent's context.id '{CE_ID}'")
    headers, body = binary(cdevent("pipelinerun_started"))
    headers["ce-type"] = "dev.cdevents.pipelinerun.finished.0.3.0"
    assert "differs from the CDEvent's context.type" in unmappable(body, headers)


def test_a_structured_event_without_json_data_is_unmappable() -> None:
    headers, body = structured(cdevent("pipelinerun_started"))
    event = json.loads(body)
    del event["data"]
    assert unmappable(json.dumps(event).encode(), headers) == "the structured CloudEvent has no data"
    event["data_base64"] = "e30="
    assert "data_base64 is not read" in unmappable(json.dumps(event).encode(), headers)
    event = {**json.loads(body), "data": "not an object"}
    assert unmappable(json.dumps(event).encode(), headers).startswith("the CDEvent is not a JSON object")


def test_an_unsupported_cloudevents_specversion_is_unmappable() -> None:
    headers, body = binary(cdevent("pipelinerun_started"))
    headers["ce-specversion"] = "0.3"
    assert unmappable(body, headers) == "CloudEvents specversion '0.3' is not supported (only 1.0)"


def test_translate_without_attributes_is_unmappable_not_an_error() -> None:
    headers, body = binary(cdevent("pipelinerun_started"))
    del headers["ce-source"]
    assert unmappable(body, headers) == "the binary CloudEvent (ce-* headers) has no source"


# --- the adapter -------------------------------------------------------------------------------

def test_the_adapter_is_complete_and_keeps_no_secret_header() -> None:
    assert (ADAPTER.name, ADAPTER.secrets_setting) == ("cdevents", "CIPULSE_CDEVENTS_TOKENS")
    assert ADAPTER.authenticate is authenticate and ADAPTER.identify is identify and ADAPTER.translate is translate
    assert ADAPTER.kept_headers == KEPT_HEADERS
    assert "authorization" not in KEPT_HEADERS and all(h == h.lower() for h in KEPT_HEADERS)
    assert {"content-type", "ce-id", "ce-source", "ce-type", "ce-specversion", "ce-time"} == set(KEPT_HEADERS)


def test_kept_headers_are_enough_to_translate_again() -> None:
    headers, body = binary(cdevent("taskrun_finished"))
    headers["authorization"] = f"Bearer {TOKEN}"
    kept = {name: value for name, value in headers.items() if name in KEPT_HEADERS}
    assert translate(kept, body) == translate(headers, body)
