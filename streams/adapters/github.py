"""GitHub webhooks -> cipulse events, without I/O (the view is `streams.adapters.intake`).

The module is the GitHub `Adapter` of `streams.adapters.contract` (`ADAPTER`, at the end):
`authenticate` checks `X-Hub-Signature-256` against the source's secret, `identify` reads
`X-GitHub-Delivery` (the idempotency key) and `X-GitHub-Event`, `translate` parses the body and
calls `map_webhook`. `ping` is answered by the view and is not translated.

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
- `deployment_status` (action created): one deployment is one build of pipeline
  `deploy:<environment>` (`deployment.original_environment`, which a later status cannot change,
  so every status of a deployment lands in the same build), `build_id =
  gh-deploy-<repository.id>-<deployment.id>`, branch/commit = `deployment.ref`/`deployment.sha`,
  `trigger_user` = the deployment's creator, trigger UPSTREAM when a workflow run made the
  deployment, else API. Every status maps to the BUILD event QUEUED at `deployment.created_at`
  (seq 1; a queued / pending / waiting status is exactly that event), followed by its own event:
  in_progress -> RUNNING (seq 2); success -> SUCCEEDED, failure / error -> FAILED with
  `error_reason` "GitHub deployment state: <state>[: <description>]" (seq 3), each at the
  status's `created_at`. `inactive` (GitHub deactivates a deployment when a newer one to the same
  environment succeeds, or someone marks it so) is not a step of the deployment's own run, whose
  build is already final: unmappable.
- `pull_request_review` (submitted / edited): one review is one audit, `audit_id =
  gh-review-<repository.id>-<pull number>-<review id>`, subject BUILD `<the reviewed commit>`
  (`review.commit_id`, else the PR head sha), project = `repository.full_name`, no pipeline.
  An approved / changes_requested review maps to three events, seq 1..3, all at
  `review.submitted_at`: REQUESTED (reviewers = the review's author), DECIDED APPROVED /
  REJECTED (actor = the author, decision_id `<audit_id>/decision`, the review body as reason),
  and RECORD_SYNCED for the same decision, since GitHub itself is the record of the review.
  Event ids are `<audit_id>/<seq>`, so `edited` (which changes only the body of a submitted
  review) and redeliveries map to the same events and change nothing. GitHub does not say when
  the review was requested, so requested_at equals decided_at (no review wait time) and the
  audit is never open long enough to look stuck.
  A `commented` review is not a decision, and a one-review audit that never decides would be
  reported stuck: unmappable. `dismissed` takes a decision back, which the audit lifecycle never
  allows (DECIDED / SYNCED become only SYNCED / REPAIRED; GitHub keeps the dismissal): unmappable.
- Anything else (other event types, other actions, missing fields, unknown conclusions or
  states) raises `Unmappable` with a reason; the intake dead-letters the payload with it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr, ValidationError

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
from streams.adapters.payload import choose_source_secret, field, obj, parse_json, required_text, text
from streams.adapters.contract import Adapter, BadDelivery, Delivery, Headers, Translated, Unmappable
from streams.adapters.contract import Refused as SignatureRefused

__all__ = [
    "ADAPTER",
    "DEPLOY_EXECUTOR",
    "EXECUTOR",
    "KEPT_HEADERS",
    "SUPPORTED_EVENTS",
    "SignatureRefused",
    "Unmappable",
    "authenticate",
    "choose_secret",
    "identify",
    "map_webhook",
    "sign",
    "signature_present",
    "translate",
    "verify_signature",
]

EXECUTOR = "github-actions"
DEPLOY_EXECUTOR = "github-deployments"
SUPPORTED_EVENTS = ("workflow_run", "workflow_job", "deployment_status", "pull_request_review")

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
KEPT_HEADERS = (
    EVENT_HEADER,
    DELIVERY_HEADER,
    "x-github-hook-id",
    "x-github-hook-installation-target-type",
    "x-github-hook-installation-target-id",
)
"""The headers stored with a raw payload for replay; never the signature."""

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
    return choose_source_secret(
        secrets, source, system="GitHub", setting="CIPULSE_GITHUB_WEBHOOK_SECRETS", secret="webhook secret"
    )


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


def authenticate(secrets: Mapping[str, SecretStr], source: str | None, headers: Headers, body: bytes) -> str:
    """The source that signed this request (`?source=`, or the only one); raises `SignatureRefused`."""
    name, secret = choose_secret(secrets, source)
    verify_signature(secret, body, headers.get(SIGNATURE_HEADER))
    return name


def identify(headers: Headers, body: bytes) -> Delivery:
    """`X-GitHub-Delivery` (the idempotency key) and `X-GitHub-Event`; raises `BadDelivery`."""
    key = (headers.get(DELIVERY_HEADER) or "").strip()
    event_type = (headers.get(EVENT_HEADER) or "").strip()
    missing = [name for name, value in (("X-GitHub-Event", event_type), ("X-GitHub-Delivery", key)) if not value]
    if missing:
        raise BadDelivery(f"the {' and '.join(missing)} header{'s are' if len(missing) > 1 else ' is'} missing "
                          "(GitHub always sends X-GitHub-Event and X-GitHub-Delivery)")
    return Delivery(key=key, event_type=event_type)


def translate(headers: Headers, body: bytes) -> list[Translated]:
    """The cipulse events of one delivery (JSON body, type from `X-GitHub-Event`); raises `Unmappable`."""
    event_type = (headers.get(EVENT_HEADER) or "").strip()
    if not event_type:
        raise Unmappable("the X-GitHub-Event header is missing, so the payload's type is unknown")
    if event_type == "ping":
        raise Unmappable("ping carries no CI events (the intake answers it with pong)")
    return map_webhook(event_type, parse_json(body))


def map_webhook(event_type: str, payload: Any) -> list[Translated]:
    """The cipulse events of one GitHub webhook; raises `Unmappable` with the reason."""
    if not isinstance(payload, dict):
        raise Unmappable("the body is not a JSON object")
    try:
        if event_type == "workflow_run":
            return [_map_run(payload)]
        if event_type == "workflow_job":
            return list(_map_job(payload))
        if event_type == "deployment_status":
            return list(_map_deployment_status(payload))
        if event_type == "pull_request_review":
            return list(_map_review(payload))
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
    run = obj(payload, "workflow_run")
    repository = obj(payload, "repository")
    workflow: dict[str, Any] = payload["workflow"] if isinstance(payload.get("workflow"), dict) else {}
    pipeline = text(run.get("name")) or text(workflow.get("name")) or text(run.get("path"))
    if not pipeline:
        raise Unmappable("workflow_run has no workflow name (workflow_run.name, workflow.name)")
    attempt = run.get("run_attempt") or 1
    build_id = _build_id(repository, field(run, "id", "workflow_run"), attempt)
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
        project=required_text(repository, "full_name", "repository"),
        pipeline=pipeline,
        seq=seq,
        event_time=event_time,
        scope=BuildScope.BUILD,
        name=text(run.get("display_title")) or pipeline,
        status=status,
        trigger_reason=trigger,
        trigger_user=text(actor.get("login")) if isinstance(actor, dict) else None,
        branch=text(run.get("head_branch")),
        commit_sha=text(run.get("head_sha")),
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
    job = obj(payload, "workflow_job")
    repository = obj(payload, "repository")
    pipeline = text(job.get("workflow_name"))
    if not pipeline:
        raise Unmappable(
            "workflow_job has no workflow_name (sent by GitHub since 2022), so its pipeline is unknown"
        )
    build_id = _build_id(repository, field(job, "run_id", "workflow_job"), job.get("run_attempt") or 1)
    stage_id = f"job-{field(job, 'id', 'workflow_job')}"
    common = _Owner(build_id, required_text(repository, "full_name", "repository"), pipeline)
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
        stage_id=stage_id, name=text(job.get("name")), status=status,
        error_reason=f"GitHub conclusion: {conclusion}" if conclusion not in (None, "success") else None,
        executor=text(job.get("runner_name")), duration_ms=duration,
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
    number = field(step, "number", "workflow_job step")
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
        stage_id=stage_id, task_id=task_id, name=text(step.get("name")), status=status, duration_ms=duration,
        error_reason=f"GitHub conclusion: {conclusion}" if seq == 3 and conclusion not in ("success", "skipped") else None,
        build_id=common.build_id, project=common.project, pipeline=common.pipeline,
    )


_DEPLOYMENT_STATES: dict[str, tuple[int, BuildStatus]] = {
    "queued": (1, BuildStatus.QUEUED),
    "pending": (1, BuildStatus.QUEUED),
    "waiting": (1, BuildStatus.QUEUED),
    "in_progress": (2, BuildStatus.RUNNING),
    "success": (3, BuildStatus.SUCCEEDED),
    "failure": (3, BuildStatus.FAILED),
    "error": (3, BuildStatus.FAILED),
}

_REVIEW_ACTIONS = ("submitted", "edited")
_REVIEW_DECISIONS = {"approved": AuditDecision.APPROVED, "changes_requested": AuditDecision.REJECTED}


def _map_deployment_status(payload: dict[str, Any]) -> list[BuildEvent]:
    action = payload.get("action")
    if action != "created":
        raise Unmappable(f"deployment_status action {action!r} is not mapped (mapped: created)")
    status = obj(payload, "deployment_status")
    deployment = obj(payload, "deployment")
    repository = obj(payload, "repository")
    state = status.get("state")
    if state == "inactive":
        raise Unmappable(
            "deployment_status inactive is not mapped: GitHub deactivates a deployment when a newer one to the same "
            "environment succeeds (or on request); the deployment's own build has already finished"
        )
    if state not in _DEPLOYMENT_STATES:
        raise Unmappable(
            f"deployment_status state {state!r} is not mapped (mapped: {', '.join(_DEPLOYMENT_STATES)}, inactive is not)"
        )
    environment = text(deployment.get("original_environment")) or text(deployment.get("environment"))
    if not environment:
        raise Unmappable("the deployment has no environment (deployment.original_environment, deployment.environment)")
    build_id = f"gh-deploy-{field(repository, 'id', 'repository')}-{field(deployment, 'id', 'deployment')}"
    pipeline = f"deploy:{environment}"
    creator: Any = deployment.get("creator") or payload.get("sender") or {}
    task = text(deployment.get("task")) or "deploy"
    ref = text(deployment.get("ref"))
    run: Any = payload.get("workflow_run")
    context: dict[str, Any] = dict(
        build_id=build_id,
        project=required_text(repository, "full_name", "repository"),
        pipeline=pipeline,
        scope=BuildScope.BUILD,
        name=f"{task} {ref} to {environment}" if ref else f"{task} to {environment}",
        trigger_reason=TriggerReason.UPSTREAM if isinstance(run, dict) else TriggerReason.API,
        trigger_user=text(creator.get("login")) if isinstance(creator, dict) else None,
        branch=ref,
        commit_sha=text(deployment.get("sha")),
        executor=DEPLOY_EXECUTOR,
        environment={
            key: str(value)
            for key, value in (
                ("github_environment", text(status.get("environment")) or environment),
                ("github_task", task),
                ("github_deployment_id", deployment.get("id")),
                ("github_workflow_run_id", run.get("id") if isinstance(run, dict) else None),
                ("github_url", text(status.get("log_url")) or text(status.get("target_url"))),
                ("github_environment_url", text(status.get("environment_url"))),
            )
            if value is not None
        },
    )
    queued = BuildEvent(
        event_id=f"{build_id}/build/1", seq=1, status=BuildStatus.QUEUED,
        event_time=_time(deployment.get("created_at"), "deployment.created_at"), **context,
    )
    seq, build_status = _DEPLOYMENT_STATES[state]
    if seq == 1:
        return [queued]
    error_reason = None
    if build_status is BuildStatus.FAILED:
        description = text(status.get("description"))
        error_reason = f"GitHub deployment state: {state}" + (f": {description}" if description else "")
    return [queued, BuildEvent(
        event_id=f"{build_id}/build/{seq}", seq=seq, status=build_status, error_reason=error_reason,
        event_time=_time(status.get("created_at") or status.get("updated_at"), "deployment_status.created_at"),
        **context,
    )]


def _map_review(payload: dict[str, Any]) -> list[AuditEvent]:
    action = payload.get("action")
    if action == "dismissed":
        raise Unmappable(
            "pull_request_review dismissed is not mapped: dismissing takes a decision back, which the audit "
            "lifecycle never allows (a decided audit only becomes SYNCED or REPAIRED); GitHub keeps the dismissal"
        )
    if action not in _REVIEW_ACTIONS:
        raise Unmappable(f"pull_request_review action {action!r} is not mapped (mapped: {', '.join(_REVIEW_ACTIONS)})")
    review = obj(payload, "review")
    pull = obj(payload, "pull_request")
    repository = obj(payload, "repository")
    state = str(review.get("state") or "").lower()
    if state not in _REVIEW_DECISIONS:
        why = " (a comment is not a decision)" if state == "commented" else ""
        raise Unmappable(
            f"pull_request_review state {review.get('state')!r} is not mapped{why}: only approved and "
            "changes_requested reviews are audit decisions"
        )
    decision = _REVIEW_DECISIONS[state]
    audit_id = (
        f"gh-review-{field(repository, 'id', 'repository')}-{field(pull, 'number', 'pull_request')}"
        f"-{field(review, 'id', 'review')}"
    )
    head: Any = pull.get("head")
    subject = text(review.get("commit_id")) or (text(head.get("sha")) if isinstance(head, dict) else None)
    if not subject:
        raise Unmappable("pull_request_review has no reviewed commit (review.commit_id, pull_request.head.sha)")
    user: Any = review.get("user")
    reviewer = text(user.get("login")) if isinstance(user, dict) else None
    decided_at = _time(review.get("submitted_at"), "review.submitted_at")
    decision_id = f"{audit_id}/decision"
    body = text(review.get("body"))
    common: dict[str, Any] = dict(
        audit_id=audit_id, subject_kind=AuditSubjectKind.BUILD, subject_id=subject,
        project=required_text(repository, "full_name", "repository"), event_time=decided_at,
    )
    return [
        AuditEvent(event_id=f"{audit_id}/1", seq=1, kind=AuditEventKind.REQUESTED,
                   reviewers=[reviewer] if reviewer else [], **common),
        AuditEvent(event_id=f"{audit_id}/2", seq=2, kind=AuditEventKind.DECIDED, decision=decision,
                   decision_id=decision_id, actor=reviewer, reason=body[:500] if body else None, **common),
        AuditEvent(event_id=f"{audit_id}/3", seq=3, kind=AuditEventKind.RECORD_SYNCED, decision=decision,
                   decision_id=decision_id, actor="github",
                   reason="GitHub is the record of its pull request reviews", **common),
    ]


def _conclusion(conclusion: Any, what: str) -> BuildStatus:
    if conclusion not in _CONCLUSIONS:
        raise Unmappable(f"{what} completed with conclusion {conclusion!r}, which is not mapped")
    return _CONCLUSIONS[conclusion]


def _build_id(repository: dict[str, Any], run_id: Any, attempt: Any) -> str:
    return f"gh-{field(repository, 'id', 'repository')}-{run_id}-{attempt}"


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


ADAPTER = Adapter(
    name="github",
    secrets_setting="CIPULSE_GITHUB_WEBHOOK_SECRETS",
    kept_headers=KEPT_HEADERS,
    authenticate=authenticate,
    identify=identify,
    translate=translate,
)
