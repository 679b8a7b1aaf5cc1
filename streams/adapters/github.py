"""GitHub Actions webhooks -> `BuildEvent`s, without I/O (the view is `streams.adapters.github_api`).

Mapping (documented in README.md, "GitHub Actions webhooks"):

- One workflow run attempt is one build: `build_id = gh-<repository.id>-<run_id>-<run_attempt>`
  (a re-run is a new attempt, so a new build), `project = repository.full_name` ("owner/repo"),
  `pipeline` = the workflow's name (`workflow_run.name`, else `workflow.name`; for jobs
  `workflow_job.workflow_name`). A job without `workflow_name` (payloads before 2022) cannot be
  placed in a pipeline and is unmappable.
- `workflow_run` requested / in_progress / completed -> a BUILD event QUEUED / RUNNING / final.
- `workflow_job` queued (or waiting) / in_progress / completed -> a STAGE event for the job
  (`stage_id = job-<job id>`), plus one TASK event per step the payload lists
  (`task_id = step-<number>`), each with the step's own status.
- `seq` comes from the lifecycle position, never from arrival: 1 queued/requested, 2 running,
  3 finished, per node. The worker keeps `seq` per node (build, each stage, each task), so a
  build's and its jobs' events never compete, a redelivered or replayed webhook maps to the same
  seqs and event ids and changes nothing, and a late in_progress after completed is ignored.
- Conclusions: success, neutral -> SUCCEEDED; failure, timed_out, startup_failure -> FAILED;
  cancelled, stale -> CANCELED; skipped -> SKIPPED for jobs and steps, CANCELED for a whole run
  (builds cannot be SKIPPED); action_required -> CANCELED (the run waits for an approval that
  will come as a new attempt). The conclusion is kept in `error_reason` when not success.
- Anything else (other event types, other actions, missing fields, unknown conclusions) raises
  `Unmappable` with a reason; the view dead-letters the payload with it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr, ValidationError

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason
from streams.adapters.contract import Refused as SignatureRefused
from streams.adapters.contract import Unmappable

EXECUTOR = "github-actions"
SUPPORTED_EVENTS = ("workflow_run", "workflow_job")

_RUN_ACTIONS = {"requested": (1, BuildStatus.QUEUED), "in_progress": (2, BuildStatus.RUNNING), "completed": (3, None)}
_JOB_ACTIONS = {"queued": 1, "waiting": 1, "in_progress": 2, "completed": 3}
_STEP_STATUSES = {"queued": 1, "pending": 1, "waiting": 1, "requested": 1, "in_progress": 2, "completed": 3}

_CONCLUSIONS = {
    "success": BuildStatus.SUCCEEDED,
    "neutral": BuildStatus.SUCCEEDED,
    "failure": BuildStatus.FAILED,
    "timed_out": BuildStatus.FAILED,
    "startup_failure": BuildStatus.FAILED,
    "cancelled": BuildStatus.CANCELED,
    "stale": BuildStatus.CANCELED,
    "action_required": BuildStatus.CANCELED,
    "skipped": BuildStatus.SKIPPED,
}

_TRIGGERS = {
    "push": TriggerReason.PUSH,
    "pull_request": TriggerReason.PULL_REQUEST,
    "pull_request_target": TriggerReason.PULL_REQUEST,
    "merge_group": TriggerReason.PULL_REQUEST,
    "schedule": TriggerReason.SCHEDULE,
    "workflow_dispatch": TriggerReason.MANUAL,
    "repository_dispatch": TriggerReason.API,
    "workflow_run": TriggerReason.UPSTREAM,
    "workflow_call": TriggerReason.UPSTREAM,
}


@dataclass(frozen=True)
class _Owner:
    """What every event of one webhook shares."""

    build_id: str
    project: str
    pipeline: str


def choose_secret(secrets: Mapping[str, SecretStr], source: str | None) -> tuple[str, SecretStr]:
    """The (source, secret) a request must be signed with: `?source=`, or the only configured one."""
    if not secrets:
        raise SignatureRefused(
            "the GitHub adapter is disabled on this worker: set CIPULSE_GITHUB_WEBHOOK_SECRETS to a JSON object "
            "{\"<source>\": \"<webhook secret>\"}"
        )
    if source is None:
        if len(secrets) != 1:
            raise SignatureRefused("several webhook sources are configured: add ?source=<name> to the webhook URL")
        return next(iter(secrets.items()))
    if source not in secrets:
        raise SignatureRefused(f"no webhook secret is configured for source {source!r} (CIPULSE_GITHUB_WEBHOOK_SECRETS)")
    return source, secrets[source]


def signature_present(header: str | None) -> str:
    """The hex digest of `X-Hub-Signature-256: sha256=<hex>`; raises SignatureRefused."""
    scheme, _, digest = (header or "").strip().partition("=")
    if scheme != "sha256" or not digest:
        raise SignatureRefused("missing signature: GitHub sends X-Hub-Signature-256: sha256=<hex> when the webhook has a secret")
    return digest.strip()


def verify_signature(secret: SecretStr, body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature-256` = HMAC-SHA256(secret, body) in constant time; raises SignatureRefused."""
    digest = signature_present(header)
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), digest.lower().encode()):
        raise SignatureRefused("the X-Hub-Signature-256 signature does not match this body and the source's secret")


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` header value GitHub sends for `body` (for tests and tools)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def map_webhook(event_type: str, payload: Any) -> list[BuildEvent]:
    """The cipulse events of one GitHub webhook; raises `Unmappable` with the reason."""
    if not isinstance(payload, dict):
        raise Unmappable("the body is not a JSON object")
    try:
        if event_type == "workflow_run":
            return [_map_run(payload)]
        if event_type == "workflow_job":
            return _map_job(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise Unmappable(f"{event_type}: the mapped event is invalid: {problems}") from None
    raise Unmappable(
        f"unsupported GitHub event type {event_type!r} (supported: {', '.join(SUPPORTED_EVENTS)}); "
        "deselect it in the webhook's settings"
    )


def _map_run(payload: dict[str, Any]) -> BuildEvent:
    action = payload.get("action")
    if action not in _RUN_ACTIONS:
        raise Unmappable(f"workflow_run action {action!r} is not mapped (mapped: {', '.join(_RUN_ACTIONS)})")
    run = _obj(payload, "workflow_run")
    repository = _obj(payload, "repository")
    workflow: dict[str, Any] = payload["workflow"] if isinstance(payload.get("workflow"), dict) else {}
    pipeline = _text(run.get("name")) or _text(workflow.get("name")) or _text(run.get("path"))
    if not pipeline:
        raise Unmappable("workflow_run has no workflow name (workflow_run.name, workflow.name)")
    attempt = run.get("run_attempt") or 1
    build_id = _build_id(repository, _field(run, "id", "workflow_run"), attempt)
    seq, status = _RUN_ACTIONS[action]
    error_reason = None
    if status is None:
        conclusion = run.get("conclusion")
        status = _conclusion(conclusion, "workflow_run")
        if status is BuildStatus.SKIPPED:
            status = BuildStatus.CANCELED
        if conclusion != "success":
            error_reason = f"GitHub conclusion: {conclusion}"
        event_time = _time(run.get("updated_at") or run.get("created_at"), "workflow_run.updated_at")
    elif status is BuildStatus.RUNNING:
        event_time = _time(run.get("run_started_at") or run.get("updated_at"), "workflow_run.run_started_at")
    else:
        event_time = _time(run.get("created_at") or run.get("updated_at"), "workflow_run.created_at")
    actor: Any = run.get("triggering_actor") or run.get("actor") or payload.get("sender") or {}
    trigger = TriggerReason.RETRY if attempt > 1 else _TRIGGERS.get(str(run.get("event")), TriggerReason.OTHER)
    return BuildEvent(
        event_id=f"{build_id}/build/{seq}",
        build_id=build_id,
        project=_project(repository),
        pipeline=pipeline,
        seq=seq,
        event_time=event_time,
        scope=BuildScope.BUILD,
        name=_text(run.get("display_title")) or pipeline,
        status=status,
        trigger_reason=trigger,
        trigger_user=_text(actor.get("login")) if isinstance(actor, dict) else None,
        branch=_text(run.get("head_branch")),
        commit_sha=_text(run.get("head_sha")),
        executor=EXECUTOR,
        error_reason=error_reason,
        environment={
            key: str(value)
            for key, value in (("github_event", run.get("event")), ("github_run_number", run.get("run_number")),
                               ("github_url", run.get("html_url")))
            if value is not None
        },
    )


def _map_job(payload: dict[str, Any]) -> list[BuildEvent]:
    action = payload.get("action")
    if action not in _JOB_ACTIONS:
        raise Unmappable(f"workflow_job action {action!r} is not mapped (mapped: {', '.join(_JOB_ACTIONS)})")
    job = _obj(payload, "workflow_job")
    repository = _obj(payload, "repository")
    pipeline = _text(job.get("workflow_name"))
    if not pipeline:
        raise Unmappable(
            "workflow_job has no workflow_name (sent by GitHub since 2022), so its pipeline is unknown"
        )
    build_id = _build_id(repository, _field(job, "run_id", "workflow_job"), job.get("run_attempt") or 1)
    stage_id = f"job-{_field(job, 'id', 'workflow_job')}"
    common = _Owner(build_id, _project(repository), pipeline)
    seq = _JOB_ACTIONS[action]
    if seq == 3:
        conclusion = job.get("conclusion")
        status = _conclusion(conclusion, "workflow_job")
        event_time = _time(job.get("completed_at"), "workflow_job.completed_at")
        duration = _millis(job.get("started_at"), job.get("completed_at"))
    elif seq == 2:
        status, conclusion, duration = BuildStatus.RUNNING, None, None
        event_time = _time(job.get("started_at"), "workflow_job.started_at")
    else:
        status, conclusion, duration = BuildStatus.QUEUED, None, None
        event_time = _time(job.get("created_at") or job.get("started_at"), "workflow_job.created_at")
    events = [BuildEvent(
        event_id=f"{build_id}/{stage_id}/{seq}", seq=seq, event_time=event_time, scope=BuildScope.STAGE,
        stage_id=stage_id, name=_text(job.get("name")), status=status,
        error_reason=f"GitHub conclusion: {conclusion}" if conclusion not in (None, "success") else None,
        executor=_text(job.get("runner_name")), duration_ms=duration,
        build_id=common.build_id, project=common.project, pipeline=common.pipeline,
    )]
    steps = job.get("steps") or []
    if not isinstance(steps, list):
        raise Unmappable("workflow_job.steps is not a list")
    for step in steps:
        events.append(_map_step(step, stage_id, event_time, common))
    return events


def _map_step(step: Any, stage_id: str, job_time: datetime, common: _Owner) -> BuildEvent:
    if not isinstance(step, dict):
        raise Unmappable("a workflow_job step is not an object")
    number = _field(step, "number", "workflow_job step")
    state = step.get("status")
    if state not in _STEP_STATUSES:
        raise Unmappable(f"workflow_job step {number}: status {state!r} is not mapped")
    seq = _STEP_STATUSES[state]
    conclusion = step.get("conclusion")
    if seq == 3:
        status = _conclusion(conclusion, f"workflow_job step {number}")
        when = step.get("completed_at")
        duration = _millis(step.get("started_at"), when)
    elif seq == 2:
        status, when = BuildStatus.RUNNING, step.get("started_at")
    else:
        status, when = BuildStatus.QUEUED, None
    if seq != 3:
        duration = None
    task_id = f"step-{number}"
    return BuildEvent(
        event_id=f"{common.build_id}/{stage_id}/{task_id}/{seq}", seq=seq,
        event_time=_time(when, f"step {number} time") if when else job_time, scope=BuildScope.TASK,
        stage_id=stage_id, task_id=task_id, name=_text(step.get("name")), status=status, duration_ms=duration,
        error_reason=f"GitHub conclusion: {conclusion}" if seq == 3 and conclusion not in ("success", "skipped") else None,
        build_id=common.build_id, project=common.project, pipeline=common.pipeline,
    )


def _conclusion(conclusion: Any, what: str) -> BuildStatus:
    if conclusion not in _CONCLUSIONS:
        raise Unmappable(f"{what} completed with conclusion {conclusion!r}, which is not mapped")
    return _CONCLUSIONS[conclusion]


def _build_id(repository: dict[str, Any], run_id: Any, attempt: Any) -> str:
    return f"gh-{_field(repository, 'id', 'repository')}-{run_id}-{attempt}"


def _project(repository: dict[str, Any]) -> str:
    project = _text(repository.get("full_name"))
    if not project:
        raise Unmappable("repository.full_name is missing")
    return project


def _obj(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise Unmappable(f"the payload has no {key} object")
    return value


def _field(obj: dict[str, Any], key: str, what: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise Unmappable(f"{what}.{key} is missing")
    return value


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise Unmappable(f"{what} is missing")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Unmappable(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None


def _millis(start: Any, end: Any) -> int | None:
    """Milliseconds from `start` to `end` (ISO times), None when either is missing or unreadable."""
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        return max(0, int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000))
    except ValueError:
        return None
