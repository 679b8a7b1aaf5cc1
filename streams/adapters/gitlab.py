"""GitLab CI webhooks (Pipeline Hook, Job Hook) -> `BuildEvent`s, without I/O.

The intake view is shared (`streams.adapters.contract`); this module only authenticates,
identifies and translates. Fixtures and their published sources: tests/fixtures/gitlab/README.md.

Authentication: GitLab sends the webhook's "Secret token" verbatim in `X-Gitlab-Token` (there is
no body signature). It must equal the token configured for the source (`?source=<name>`, or the
only configured one) in CIPULSE_GITLAB_WEBHOOK_SECRETS; compared in constant time. No message
ever carries a token.

Identity (`identify`): the event type is `X-Gitlab-Event`. The idempotency key is
`Idempotency-Key` (GitLab >= 17.4: "unique ID consistent across webhook retries"). Older GitLab
only sends `X-Gitlab-Event-UUID`, which GitLab documents as shared by recursive webhooks (hooks
triggered by a receiver calling GitLab back), so different deliveries may carry the same UUID;
the key is then `<X-Gitlab-Event-UUID>-<first 16 hex of sha256(body)>`, which still keeps a
retried identical body on one key but never merges two different payloads.

Mapping (`translate`):

- A GitLab pipeline is one build: `build_id = gl-<project.id>-<pipeline id>`,
  `project = project.path_with_namespace`.
- `pipeline` (the cipulse pipeline: the same definition across runs) is the pipeline's
  `workflow:name` when it has one (`object_attributes.name` in Pipeline Hooks, GitLab >= 16.1;
  `commit.name` in Job Hooks, GitLab >= 15.8), else `gitlab-ci` (the project's CI
  configuration). Not the ref: the branch is its own field (`branch`), and cipulse keys
  recovery on pipeline + branch; a ref-named pipeline would make every tag and every merge
  request a pipeline of its own. Not the `source`: Job Hooks do not carry it, and every event
  of one build must name the same pipeline. A `workflow:name` containing variables (e.g.
  "Pipeline for branch: $CI_COMMIT_BRANCH") gives one cipulse pipeline per value.
- Pipeline Hook -> a BUILD event for the pipeline's status, plus STAGE events for each entry of
  `builds` (the pipeline's jobs, each in its own status). Job Hook -> STAGE events for its job.
- A finished pipeline or job whose payload says when it started also yields the RUNNING event
  that start implies (seq 2, at the start time, identical to the one a running hook gives):
  GitLab sends hooks on status changes it sees, and a short job is often reported only pending
  and then finished; without it cipulse would never learn its start (queue time, started_at).
- A GitLab job is a cipulse STAGE (`stage_id = job-<job id>`, `name = "<gitlab stage>: <job
  name>"`), with no tasks: jobs are the unit GitLab reports a status, times and runner for; a
  GitLab stage has no status of its own in either hook, so a STAGE per GitLab stage could never
  leave QUEUED. A retried job has a new job id, so it is a new stage of the same build.
- `seq` is the lifecycle position of the reported status, per node (build, each job), never
  the arrival order: 1 waiting, 2 running, 3 finished.

  | GitLab status                                             | seq | build     | job       |
  |-----------------------------------------------------------|-----|-----------|-----------|
  | created, waiting_for_resource, pending, scheduled, manual | 1   | QUEUED    | QUEUED    |
  | preparing                                                 | 1   | PREPARING | PREPARING |
  | running, waiting_for_callback                             | 2   | RUNNING   | RUNNING   |
  | success                                                   | 3   | SUCCEEDED | SUCCEEDED |
  | failed                                                    | 3   | FAILED    | FAILED    |
  | canceled, canceling                                       | 3   | CANCELED  | CANCELED  |
  | skipped                                                   | 3   | CANCELED  | SKIPPED   |

  `manual` waits for a person to play a job, so it is "not finished yet", seq 1: a pipeline
  blocked on a manual job before anything ran stays QUEUED, one blocked after jobs ran stays
  RUNNING (seq 2 already applied), and playing it continues the same lifecycle. Builds cannot be
  SKIPPED, so a skipped pipeline is CANCELED. `preparing` shares seq 1 with the queued statuses,
  so it shows only when it is the first status cipulse hears of.
- Times: QUEUED at `created_at`; RUNNING at `started_at` (a pipeline has none: `created_at +
  queued_duration`, else its earliest job start, else `created_at`); final at `finished_at`
  (else, for a pipeline its latest job finish, for a job its start; else `created_at`).
  `duration_ms` = GitLab's `duration` (seconds) on final events. Job Hook times are read from
  the `*_iso` fields (whole seconds, like the Pipeline Hook's "YYYY-MM-DD hh:mm:ss UTC").
- Only Pipeline Hooks report the build itself; Job Hooks alone leave it QUEUED. Subscribe the
  webhook to both "Pipeline events" and "Job events" (Job events add the jobs' intermediate
  states between two pipeline status changes).
- `build_id` has no instance part: two GitLab instances sending to one cipulse can collide on
  project and pipeline ids (the events of the second would be rejected as another project's).
- `failure_reason` (job) -> `error_reason` of a FAILED job. A failed pipeline's `error_reason`
  is "<job>: <failure_reason>" of its first failed job that may not fail (by job id), else
  "GitLab status: failed"; canceled/skipped pipelines get "GitLab status: <status>".
- `object_attributes.source` -> trigger_reason: push PUSH; merge_request_event,
  external_pull_request_event PULL_REQUEST; schedule SCHEDULE; web, chat, webide MANUAL; api,
  trigger API; pipeline, parent_pipeline UPSTREAM; anything else OTHER. Build context: branch =
  the merge request's source branch, else the ref unless it is a tag; commit_sha = sha;
  trigger_user = user.username; executor "gitlab-ci"; environment gitlab_source, gitlab_ref,
  gitlab_url, gitlab_instance (the X-Gitlab-Instance header). Job: executor = runner
  description.
- A final status is final (streams.build_state): GitLab reopens a finished pipeline when a job
  of it is retried; cipulse keeps the pipeline's first final status, and the retried job shows
  as a new stage with its own outcome.
- Anything else (other event types, an object_kind that does not match the header, unknown
  statuses, missing fields, a body that is not a JSON object) raises `Unmappable` with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr, ValidationError

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason
from streams.adapters.payload import choose_source_secret, field, obj, optional_obj, parse_json, required_text, text
from streams.adapters.contract import (
    Adapter,
    BadDelivery,
    Delivery,
    Headers,
    Refused,
    Translated,
    Unmappable,
)

EXECUTOR = "gitlab-ci"
DEFAULT_PIPELINE = "gitlab-ci"
SECRETS_SETTING = "CIPULSE_GITLAB_WEBHOOK_SECRETS"
PIPELINE_HOOK = "Pipeline Hook"
JOB_HOOK = "Job Hook"
SUPPORTED_EVENTS = {PIPELINE_HOOK: "pipeline", JOB_HOOK: "build"}
"""X-Gitlab-Event -> the object_kind its body carries."""

KEPT_HEADERS = ("x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key", "x-gitlab-instance")
"""What identify/translate read; never x-gitlab-token."""

_WAITING = {"created", "waiting_for_resource", "pending", "scheduled", "manual"}
_STATUSES: dict[str, tuple[int, BuildStatus]] = {
    **{status: (1, BuildStatus.QUEUED) for status in _WAITING},
    "preparing": (1, BuildStatus.PREPARING),
    "running": (2, BuildStatus.RUNNING),
    "waiting_for_callback": (2, BuildStatus.RUNNING),
    "success": (3, BuildStatus.SUCCEEDED),
    "failed": (3, BuildStatus.FAILED),
    "canceled": (3, BuildStatus.CANCELED),
    "canceling": (3, BuildStatus.CANCELED),
    "skipped": (3, BuildStatus.SKIPPED),
}

_TRIGGERS = {
    "push": TriggerReason.PUSH,
    "merge_request_event": TriggerReason.PULL_REQUEST,
    "external_pull_request_event": TriggerReason.PULL_REQUEST,
    "schedule": TriggerReason.SCHEDULE,
    "web": TriggerReason.MANUAL,
    "chat": TriggerReason.MANUAL,
    "webide": TriggerReason.MANUAL,
    "api": TriggerReason.API,
    "trigger": TriggerReason.API,
    "pipeline": TriggerReason.UPSTREAM,
    "parent_pipeline": TriggerReason.UPSTREAM,
}


@dataclass(frozen=True)
class _Owner:
    """What every event of one webhook shares."""

    build_id: str
    project: str
    pipeline: str


# --- authenticate / identify -------------------------------------------------------------------

def authenticate(secrets: Mapping[str, SecretStr], source: str | None, headers: Headers, body: bytes) -> str:
    """The configured source whose token `X-Gitlab-Token` carries; raises `Refused` (401)."""
    source, token = choose_source_secret(secrets, source, system="GitLab", setting=SECRETS_SETTING, secret="secret token")
    sent = headers.get("x-gitlab-token") or ""
    if not sent.strip():
        raise Refused(
            "missing X-Gitlab-Token: set the webhook's Secret token in GitLab to the token configured "
            f"for source {source!r} ({SECRETS_SETTING})"
        )
    if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
        raise Refused(f"the X-Gitlab-Token does not match the token configured for source {source!r}")
    return source


def identify(headers: Headers, body: bytes) -> Delivery:
    """Idempotency key and event type of one delivery; raises `BadDelivery` (400) naming what is missing."""
    event_type = (headers.get("x-gitlab-event") or "").strip()
    idempotency_key = (headers.get("idempotency-key") or "").strip()
    event_uuid = (headers.get("x-gitlab-event-uuid") or "").strip()
    missing = []
    if not event_type:
        missing.append("X-Gitlab-Event")
    if not idempotency_key and not event_uuid:
        missing.append("X-Gitlab-Event-UUID (or Idempotency-Key)")
    if missing:
        raise BadDelivery(f"missing {' and '.join(missing)}: GitLab sends these headers with every webhook")
    key = idempotency_key or f"{event_uuid}-{hashlib.sha256(body).hexdigest()[:16]}"
    return Delivery(key=key, event_type=event_type)


# --- translate ---------------------------------------------------------------------------------

def translate(headers: Headers, body: bytes) -> list[Translated]:
    """The cipulse events of one GitLab webhook; raises `Unmappable` with the reason."""
    payload = parse_json(body)
    events: list[Translated] = []
    events.extend(map_webhook((headers.get("x-gitlab-event") or "").strip(), payload, headers.get("x-gitlab-instance")))
    return events


def map_webhook(event_type: str, payload: Any, instance: str | None = None) -> list[BuildEvent]:
    """The events of one decoded webhook body (`instance` = the X-Gitlab-Instance header)."""
    if event_type not in SUPPORTED_EVENTS:
        raise Unmappable(
            f"unsupported GitLab event type {event_type!r} (supported: {', '.join(SUPPORTED_EVENTS)}); "
            "deselect it in the webhook's settings"
        )
    if not isinstance(payload, dict):
        raise Unmappable("the body is not a JSON object")
    kind = payload.get("object_kind")
    if kind != SUPPORTED_EVENTS[event_type]:
        raise Unmappable(f"{event_type} with object_kind {kind!r} (expected {SUPPORTED_EVENTS[event_type]!r})")
    try:
        if event_type == PIPELINE_HOOK:
            return _map_pipeline(payload, instance)
        return _map_job_hook(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise Unmappable(f"{event_type}: the mapped event is invalid: {problems}") from None


def _map_pipeline(payload: dict[str, Any], instance: str | None) -> list[BuildEvent]:
    attrs = obj(payload, "object_attributes")
    project = obj(payload, "project")
    owner = _Owner(
        build_id=_build_id(project, field(attrs, "id", "object_attributes"), "project.id"),
        project=required_text(project, "path_with_namespace", "project"),
        pipeline=text(attrs.get("name")) or DEFAULT_PIPELINE,
    )
    raw_status = attrs.get("status")
    seq, status = _status(raw_status, "pipeline")
    jobs = payload.get("builds") or []
    if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
        raise Unmappable("Pipeline Hook builds is not a list of objects")
    created = _time(attrs.get("created_at"), "object_attributes.created_at")
    started = _pipeline_started(attrs, jobs, created)
    ref = text(attrs.get("ref"))
    merge_request = optional_obj(payload, "merge_request")
    branch = text(merge_request.get("source_branch")) or (None if attrs.get("tag") else ref)
    user = optional_obj(payload, "user")
    environment = {
        key: str(value)
        for key, value in (("gitlab_source", attrs.get("source")), ("gitlab_ref", ref),
                           ("gitlab_url", attrs.get("url")), ("gitlab_instance", instance))
        if value not in (None, "")
    }

    def build(seq: int, status: BuildStatus, event_time: datetime, error_reason: str | None = None,
              duration: int | None = None) -> BuildEvent:
        return BuildEvent(
            event_id=f"{owner.build_id}/build/{seq}", seq=seq, event_time=event_time, scope=BuildScope.BUILD,
            name=owner.pipeline, status=status,
            trigger_reason=_TRIGGERS.get(str(attrs.get("source")), TriggerReason.OTHER),
            trigger_user=text(user.get("username")), branch=branch, commit_sha=text(attrs.get("sha")),
            executor=EXECUTOR, error_reason=error_reason, duration_ms=duration, environment=environment,
            build_id=owner.build_id, project=owner.project, pipeline=owner.pipeline,
        )

    if seq == 1:
        events = [build(seq, status, created)]
    elif seq == 2:
        events = [build(seq, status, started or created)]
    else:
        error_reason = None
        if status is BuildStatus.SKIPPED:
            status = BuildStatus.CANCELED
        if status is BuildStatus.FAILED:
            error_reason = _first_failure(jobs) or "GitLab status: failed"
        elif status is BuildStatus.CANCELED:
            error_reason = f"GitLab status: {'canceled' if raw_status == 'canceling' else raw_status}"
        final = build(seq, status, _pipeline_finished(attrs, jobs, created), error_reason, _millis(attrs.get("duration")))
        events = [build(2, BuildStatus.RUNNING, started), final] if started else [final]
    for job in sorted(jobs, key=_job_order):
        events.extend(_job_events(owner, _pipeline_job(job)))
    return events


def _map_job_hook(payload: dict[str, Any]) -> list[BuildEvent]:
    project = obj(payload, "project")
    commit = optional_obj(payload, "commit")
    pipeline_id = payload.get("pipeline_id") or commit.get("id")
    if pipeline_id in (None, ""):
        raise Unmappable("Job Hook pipeline_id is missing")
    owner = _Owner(
        build_id=_build_id(project, pipeline_id, "project.id", fallback=payload.get("project_id")),
        project=required_text(project, "path_with_namespace", "project"),
        pipeline=text(commit.get("name")) or DEFAULT_PIPELINE,
    )
    runner: Any = payload.get("runner")
    return _job_events(owner, _Job(
        id=field(payload, "build_id", "Job Hook"),
        name=text(payload.get("build_name")),
        stage=text(payload.get("build_stage")),
        status=payload.get("build_status"),
        created=payload.get("build_created_at_iso") or payload.get("build_created_at"),
        started=payload.get("build_started_at_iso") or payload.get("build_started_at"),
        finished=payload.get("build_finished_at_iso") or payload.get("build_finished_at"),
        duration=payload.get("build_duration"),
        failure_reason=text(payload.get("build_failure_reason")),
        runner=text(runner.get("description")) if isinstance(runner, dict) else None,
    ))


@dataclass(frozen=True)
class _Job:
    """One job as either hook reports it."""

    id: Any
    name: str | None
    stage: str | None
    status: Any
    created: Any
    started: Any
    finished: Any
    duration: Any
    failure_reason: str | None
    runner: str | None


def _pipeline_job(job: dict[str, Any]) -> _Job:
    runner: Any = job.get("runner")
    return _Job(
        id=field(job, "id", "Pipeline Hook job"), name=text(job.get("name")), stage=text(job.get("stage")),
        status=job.get("status"), created=job.get("created_at"), started=job.get("started_at"),
        finished=job.get("finished_at"), duration=job.get("duration"), failure_reason=text(job.get("failure_reason")),
        runner=text(runner.get("description")) if isinstance(runner, dict) else None,
    )


def _job_events(owner: _Owner, job: _Job) -> list[BuildEvent]:
    """The job's STAGE event; a finished job that says when it started also gets its RUNNING event."""
    what = f"job {job.id}"
    seq, status = _status(job.status, what)
    created = _time(job.created, f"{what} created_at")
    started = _time(job.started, f"{what} started_at") if job.started else None
    stage_id = f"job-{job.id}"

    def stage(seq: int, status: BuildStatus, event_time: datetime) -> BuildEvent:
        return BuildEvent(
            event_id=f"{owner.build_id}/{stage_id}/{seq}", seq=seq, event_time=event_time, scope=BuildScope.STAGE,
            stage_id=stage_id, name=": ".join(part for part in (job.stage, job.name) if part) or None, status=status,
            error_reason=(job.failure_reason or "GitLab status: failed") if status is BuildStatus.FAILED else None,
            executor=job.runner if seq > 1 else None, duration_ms=_millis(job.duration) if seq == 3 else None,
            build_id=owner.build_id, project=owner.project, pipeline=owner.pipeline,
        )

    if seq == 1:
        return [stage(seq, status, created)]
    if seq == 2:
        return [stage(seq, status, started or created)]
    final = stage(seq, status, _time(job.finished, f"{what} finished_at") if job.finished else started or created)
    return [stage(2, BuildStatus.RUNNING, started), final] if started else [final]


def _pipeline_started(attrs: dict[str, Any], jobs: list[dict[str, Any]], created: datetime) -> datetime | None:
    """When the pipeline started: created_at + queued_duration, else its earliest job start, else unknown."""
    queued = attrs.get("queued_duration")
    if isinstance(queued, (int, float)) and not isinstance(queued, bool) and queued >= 0:
        return created + timedelta(seconds=queued)
    starts = [_time(job["started_at"], f"job {job.get('id')} started_at") for job in jobs if job.get("started_at")]
    return min(starts, default=None)


def _pipeline_finished(attrs: dict[str, Any], jobs: list[dict[str, Any]], created: datetime) -> datetime:
    if attrs.get("finished_at"):
        return _time(attrs["finished_at"], "object_attributes.finished_at")
    ends = [_time(job["finished_at"], f"job {job.get('id')} finished_at") for job in jobs if job.get("finished_at")]
    return max(ends, default=created)


def _job_order(job: dict[str, Any]) -> tuple[int, str]:
    """Jobs by id (GitLab ids are numbers), so a payload always maps to the same event order."""
    job_id = job.get("id")
    return (job_id if isinstance(job_id, int) else 0, str(job_id))


def _first_failure(jobs: list[dict[str, Any]]) -> str | None:
    failed = [job for job in jobs if job.get("status") == "failed" and not job.get("allow_failure")]
    if not failed:
        return None
    job = min(failed, key=_job_order)
    return f"{job.get('name')}: {job.get('failure_reason') or 'failed'}"


def _status(value: Any, what: str) -> tuple[int, BuildStatus]:
    if value not in _STATUSES:
        raise Unmappable(f"{what} status {value!r} is not mapped (mapped: {', '.join(sorted(_STATUSES))})")
    return _STATUSES[value]


def _build_id(project: dict[str, Any], pipeline_id: Any, what: str, fallback: Any = None) -> str:
    project_id = project.get("id") if project.get("id") not in (None, "") else fallback
    if project_id in (None, ""):
        raise Unmappable(f"{what} is missing")
    return f"gl-{project_id}-{pipeline_id}"


def _time(value: Any, what: str) -> datetime:
    """GitLab times: ISO 8601 ("2021-02-23T02:41:37Z") or "2016-08-12 15:23:28 UTC" / "... +0200"."""
    if not isinstance(value, str) or not value.strip():
        raise Unmappable(f"{what} is missing")
    stamp = value.strip()
    if stamp.endswith(" UTC"):
        stamp = stamp[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        try:
            parsed = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            raise Unmappable(f"{what} is not a time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _millis(seconds: Any) -> int | None:
    """GitLab's `duration` (seconds, int or float) in milliseconds; None when absent or negative."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        return None
    return round(seconds * 1000)


ADAPTER = Adapter(
    name="gitlab",
    secrets_setting=SECRETS_SETTING,
    kept_headers=KEPT_HEADERS,
    authenticate=authenticate,
    identify=identify,
    translate=translate,
)
