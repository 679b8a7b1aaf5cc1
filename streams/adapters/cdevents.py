"""CDEvents (over CloudEvents HTTP) -> cipulse events, without I/O (the view is wired separately).

The module is the CDEvents `Adapter` of `streams.adapters.contract` (`ADAPTER`, at the end).
It reads CDEvents spec 0.5 (event versions 0.3.x) and, since the shapes it reads did not change,
CDEvents 0.4 (event versions 0.2.x); `-draft` versions of both are accepted. Other versions are
unmappable.

Transport (CloudEvents 1.0 HTTP binding):

- binary mode: the CloudEvent attributes are the `ce-id`, `ce-source`, `ce-type` (and
  `ce-specversion`, `ce-time`) headers, the body is the CDEvent JSON (`context` + `subject`);
- structured mode (`Content-Type: application/cloudevents+json`): the body is the CloudEvent
  (`specversion`, `id`, `source`, `type`, `time`, `data`), and `data` is the CDEvent object.
  Batch mode (`application/cloudevents-batch+json`) is refused: one event per request.

The CloudEvent `id`/`source`/`type` must equal the CDEvent's `context.id`/`source`/`type` (the
CDEvents binding says so); a disagreement is unmappable rather than guessed at.

Requests:

- `authenticate`: CDEvents defines no signature, so each source has a bearer token:
  `Authorization: Bearer <token>` must equal `CIPULSE_CDEVENTS_TOKENS[<source>]` (constant-time
  compare). The source is `?source=<name>`, or the only configured one.
- `identify`: the idempotency key is `<CloudEvent source>#<CloudEvent id>` (CloudEvents makes that
  pair unique per event), the event type the CloudEvent `type`. A request without them is a
  `BadDelivery` that names what is missing.

Mapping (`translate`):

- Ids are digests, never raw CDEvents ids (those are free text, often paths): a subject is
  `(kind, source, id)` with `source` = `subject.source`, else `context.source`.
  `build_id = cde-<sha256 of (pipelineRun | build, source, id), 16 hex>`. Every cipulse event's
  `event_id` is `cde-<digest of (CloudEvent source, id)>` (`/<kind>` appended for the audit
  events of one CDEvent), so a re-sent CloudEvent maps to the same events.
- `pipelineRun` queued / started / finished -> a BUILD event QUEUED / RUNNING / final, seq 1 / 2 /
  3 (the lifecycle position, as for GitHub: the worker keeps seq per node, so redeliveries and late
  events change nothing). `project` = the run's source, `pipeline` = "pipelineRun". A `taskRun`
  names only its pipelineRun's id and source, never its pipeline's name, and the build state
  refuses events of one build that disagree on project/pipeline; so the pipeline is fixed per
  subject kind and `pipelineName` goes to the event's `name` and `environment`
  (`cdevents_pipeline_name`, with `cdevents_source`, `cdevents_subject_id`, `cdevents_url`).
- `taskRun` started / finished -> a STAGE event (RUNNING seq 2 / final seq 3) of the pipelineRun's
  build (`content.pipelineRun.id`, its `source` defaulting to the taskRun's), `stage_id =
  taskrun-<digest of (taskRun, source, id), 12 hex>`, `name` = `taskName`. A STAGE, not a TASK:
  a taskRun is a direct child of the pipeline run (like a GitHub job), and a TASK would need a
  parent stage nobody reports. A taskRun without `content.pipelineRun.id` cannot be placed in a
  build: unmappable.
- `build` queued / started / finished -> a BUILD event QUEUED / RUNNING / final, seq 1 / 2 / 3,
  `pipeline` = "build". CDEvents' build.finished has no outcome yet: an `outcome` is used when
  present, else a finished build that names its `artifactId` produced it and SUCCEEDED; with
  neither, the result is unknown: unmappable.
- Outcomes: success -> SUCCEEDED; failure -> FAILED; cancel -> CANCELED; error -> FAILED. Anything
  but success keeps "CDEvents outcome: <outcome>[: <errors>]" in `error_reason`; an unknown or
  missing outcome on a finished event is unmappable.
- `change` events -> AuditEvents of one audit per change: `audit_id = cde-change-<digest of
  (change, source, id)>`, subject BUILD `<change id>` (no audit subject kind fits a change
  better; GitHub's review mapping uses BUILD too), `project` = `content.repository.id`, else the
  change's source, no pipeline. CDEvents 0.5's change.reviewed carries no verdict (its content
  is only the repository), so:
  - `reviewed` -> REQUESTED (seq 1) + REVIEW_STARTED (seq 2): the change is in review. Every
    review of the change maps to the same seqs, so later reviews are duplicates. An open review
    counts toward the stuck detection until the change is merged or abandoned.
  - `merged` -> DECIDED APPROVED (seq 3, `decision_id = <audit_id>/merged`) + RECORD_SYNCED
    (seq 4) of that decision: a merge is the change's approval, applied to the repository, which
    is the record. A merge never reviewed over CDEvents is an audit decided and synced at once.
  - `abandoned` -> CANCELED (seq 3). A change both merged and abandoned contradicts itself (seq 3
    holds either) and the audit state dead-letters the second.
- Anything else (other subjects or predicates, versions, missing ids, bad JSON, a body that is
  not an object, timestamps that are not RFC 3339 with an offset) raises `Unmappable` with the
  reason; the intake dead-letters the payload with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
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
)
from streams.adapters.payload import choose_source_secret, obj, parse_json, required_text, text
from streams.adapters.contract import (
    Adapter,
    BadDelivery,
    Delivery,
    Headers,
    Refused,
    Translated,
    Unmappable,
)

EXECUTOR = "cdevents"
SECRETS_SETTING = "CIPULSE_CDEVENTS_TOKENS"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

KEPT_HEADERS = ("content-type", "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time")
"""The headers stored with a raw payload for replay; never `authorization`."""

SUPPORTED_TYPES = (
    "pipelinerun.queued", "pipelinerun.started", "pipelinerun.finished",
    "taskrun.started", "taskrun.finished",
    "build.queued", "build.started", "build.finished",
    "change.reviewed", "change.merged", "change.abandoned",
)
SUPPORTED_EVENT_VERSIONS = "0.3.x (CDEvents 0.5) and 0.2.x (CDEvents 0.4)"

PIPELINE_RUN_PIPELINE = "pipelineRun"
BUILD_PIPELINE = "build"

_TYPE = re.compile(
    r"^dev\.cdevents\.(?P<subject>[a-z]+)\.(?P<predicate>[a-z]+)\.(?P<version>(?P<major>\d+)\.(?P<minor>\d+)\.\d+(?:-draft)?)$"
)
_SUPPORTED_MINORS = {(0, 2), (0, 3)}
_LIFECYCLE = {"queued": (1, BuildStatus.QUEUED), "started": (2, BuildStatus.RUNNING), "finished": (3, None)}
_OUTCOMES = {
    "success": BuildStatus.SUCCEEDED,
    "failure": BuildStatus.FAILED,
    "cancel": BuildStatus.CANCELED,
    "error": BuildStatus.FAILED,
}
_FRACTION = re.compile(r"(\.\d{6})\d+")
_MAX_ERRORS = 500


@dataclass(frozen=True)
class _Envelope:
    """One CloudEvent: its attributes and the CDEvent it carries."""

    id: str
    source: str
    type: str
    time: str | None
    cdevent: dict[str, Any]


@dataclass(frozen=True)
class _CDEvent:
    """What every mapping reads of one CDEvent."""

    event_key: str
    """Digest of the CloudEvent (source, id): the base of every event id."""
    subject: str
    predicate: str
    subject_id: str
    subject_source: str
    content: dict[str, Any]
    at: datetime


# --- authenticate ------------------------------------------------------------------------------

def choose_token(secrets: Mapping[str, SecretStr], source: str | None) -> tuple[str, SecretStr]:
    """The (source, token) a request must carry: `?source=`, or the only configured one."""
    return choose_source_secret(secrets, source, system="CDEvents", setting=SECRETS_SETTING, secret="token")


def authenticate(secrets: Mapping[str, SecretStr], source: str | None, headers: Headers, body: bytes) -> str:
    """The source whose bearer token this request carries; raises `Refused` (never naming a token)."""
    name, token = choose_token(secrets, source)
    scheme, _, presented = (headers.get("authorization") or "").strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise Refused(f"missing bearer token: send Authorization: Bearer <the token of source {name!r}>")
    if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        raise Refused(f"the bearer token is not the token of source {name!r}")
    return name


# --- identify ----------------------------------------------------------------------------------

def identify(headers: Headers, body: bytes) -> Delivery:
    """`<source>#<id>` of the CloudEvent (the idempotency key) and its `type`; raises `BadDelivery`."""
    mode = _mode(headers)
    if mode == "batch":
        raise BadDelivery("CloudEvents batch mode is not supported: send one event per request")
    if mode == "structured":
        try:
            event = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            event = None
        if not isinstance(event, dict):
            raise BadDelivery(
                f"a structured CloudEvent ({STRUCTURED_CONTENT_TYPE}) must be a JSON object with id, source and type"
            )
        attributes = {name: event.get(name) for name in ("id", "source", "type")}
        where = "field"
    else:
        attributes = {name: headers.get(f"ce-{name}") for name in ("id", "source", "type")}
        where = "header"
    values = {name: value.strip() for name, value in attributes.items() if isinstance(value, str) and value.strip()}
    missing = [name for name in ("id", "source", "type") if name not in values]
    if missing:
        names = ", ".join(f"ce-{m}" if mode == "binary" else m for m in missing)
        hint = (
            "; binary mode sends ce-id, ce-source, ce-type and ce-specversion headers, structured mode "
            f"sends Content-Type: {STRUCTURED_CONTENT_TYPE}"
            if mode == "binary" else ""
        )
        raise BadDelivery(f"the CloudEvent {where}{'s' if len(missing) > 1 else ''} {names} "
                          f"{'are' if len(missing) > 1 else 'is'} missing{hint}")
    return Delivery(key=f"{values['source']}#{values['id']}", event_type=values["type"])


# --- translate ---------------------------------------------------------------------------------

def translate(headers: Headers, body: bytes) -> list[Translated]:
    """The cipulse events of one CloudEvent carrying a CDEvent; raises `Unmappable` with the reason."""
    envelope = _envelope(headers, body)
    event = _cdevent(envelope)
    try:
        if event.subject == "pipelinerun":
            return [_map_pipeline_run(event)]
        if event.subject == "taskrun":
            return [_map_task_run(event)]
        if event.subject == "build":
            return [_map_build(event)]
        return list(_map_change(event))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise Unmappable(f"{envelope.type}: the mapped event is invalid: {problems}") from None


def _mode(headers: Headers) -> str:
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == STRUCTURED_CONTENT_TYPE:
        return "structured"
    if content_type == BATCH_CONTENT_TYPE:
        return "batch"
    return "binary"


def _envelope(headers: Headers, body: bytes) -> _Envelope:
    mode = _mode(headers)
    if mode == "batch":
        raise Unmappable("CloudEvents batch mode is not supported: send one event per request")
    if mode == "structured":
        event = parse_json(body, "structured CloudEvent")
        if not isinstance(event, dict):
            raise Unmappable("the structured CloudEvent is not a JSON object")
        attributes: dict[str, Any] = {name: event.get(name) for name in ("specversion", "id", "source", "type", "time")}
        if "data" not in event:
            why = " (data_base64 is not read: send the CDEvent as JSON data)" if "data_base64" in event else ""
            raise Unmappable(f"the structured CloudEvent has no data{why}")
        data = event["data"]
        where = "structured CloudEvent"
    else:
        attributes = {name: headers.get(f"ce-{name}") for name in ("specversion", "id", "source", "type", "time")}
        data = parse_json(body, "body")
        where = "binary CloudEvent (ce-* headers)"
    specversion = attributes["specversion"]
    if specversion is not None and not (isinstance(specversion, str) and specversion.strip().startswith("1.")):
        raise Unmappable(f"CloudEvents specversion {str(specversion)[:20]!r} is not supported (only 1.0)")
    for name in ("id", "source", "type"):
        if not text(attributes[name]):
            raise Unmappable(f"the {where} has no {name}")
    if not isinstance(data, dict):
        raise Unmappable("the CDEvent is not a JSON object (it must have context and subject)")
    time = attributes["time"]
    return _Envelope(
        id=str(attributes["id"]).strip(), source=str(attributes["source"]).strip(), type=str(attributes["type"]).strip(),
        time=time if isinstance(time, str) else None, cdevent=data,
    )


def _cdevent(envelope: _Envelope) -> _CDEvent:
    context = obj(envelope.cdevent, "context", "the CDEvent")
    subject = obj(envelope.cdevent, "subject", "the CDEvent")
    for name, value in (("id", envelope.id), ("source", envelope.source), ("type", envelope.type)):
        own = context.get(name)
        if own is not None and own != value:
            raise Unmappable(
                f"the CloudEvent {name} {value[:120]!r} differs from the CDEvent's context.{name} {str(own)[:120]!r} "
                "(the CDEvents binding requires them equal)"
            )
    match = _TYPE.match(envelope.type)
    if not match:
        raise Unmappable(f"{envelope.type[:120]!r} is not a CDEvents type (dev.cdevents.<subject>.<predicate>.<version>)")
    kind = f"{match['subject']}.{match['predicate']}"
    if kind not in SUPPORTED_TYPES:
        raise Unmappable(f"CDEvents type {kind} is not mapped (mapped: {', '.join(SUPPORTED_TYPES)})")
    if (int(match["major"]), int(match["minor"])) not in _SUPPORTED_MINORS:
        raise Unmappable(
            f"{kind} event version {match['version']} is not supported (supported: {SUPPORTED_EVENT_VERSIONS})"
        )
    content = subject.get("content", {})
    if not isinstance(content, dict):
        raise Unmappable("subject.content is not an object")
    timestamp = context.get("timestamp")
    return _CDEvent(
        event_key=_digest(envelope.source, envelope.id, size=20),
        subject=match["subject"],
        predicate=match["predicate"],
        subject_id=required_text(subject, "id", "subject"),
        subject_source=text(subject.get("source")) or required_text(context, "source", "context"),
        content=content,
        at=_time(timestamp if timestamp is not None else envelope.time, "context.timestamp"),
    )


# --- builds ------------------------------------------------------------------------------------

def _map_pipeline_run(event: _CDEvent) -> BuildEvent:
    seq, status, error_reason = _lifecycle(event)
    build_id = f"cde-{_digest('pipelineRun', event.subject_source, event.subject_id)}"
    pipeline_name = text(event.content.get("pipelineName"))
    return BuildEvent(
        event_id=f"cde-{event.event_key}", build_id=build_id, project=event.subject_source,
        pipeline=PIPELINE_RUN_PIPELINE, seq=seq, event_time=event.at, scope=BuildScope.BUILD,
        name=pipeline_name, status=status, executor=EXECUTOR, error_reason=error_reason,
        environment=_environment(event, cdevents_pipeline_name=pipeline_name),
    )


def _map_task_run(event: _CDEvent) -> BuildEvent:
    seq, status, error_reason = _lifecycle(event)
    run = event.content.get("pipelineRun")
    run_id = text(run.get("id")) if isinstance(run, dict) else None
    if not isinstance(run, dict) or not run_id:
        raise Unmappable(
            f"taskRun {event.subject_id[:120]!r} does not reference its pipelineRun (subject.content.pipelineRun.id), "
            "so it cannot be placed in a build"
        )
    run_source = text(run.get("source")) or event.subject_source
    build_id = f"cde-{_digest('pipelineRun', run_source, run_id)}"
    return BuildEvent(
        event_id=f"cde-{event.event_key}", build_id=build_id, project=run_source,
        pipeline=PIPELINE_RUN_PIPELINE, seq=seq, event_time=event.at, scope=BuildScope.STAGE,
        stage_id=f"taskrun-{_digest('taskRun', event.subject_source, event.subject_id, size=12)}",
        name=text(event.content.get("taskName")), status=status, executor=EXECUTOR, error_reason=error_reason,
    )


def _map_build(event: _CDEvent) -> BuildEvent:
    artifact = text(event.content.get("artifactId"))
    if event.predicate == "finished" and event.content.get("outcome") is None:
        if not artifact:
            raise Unmappable(
                "build.finished has neither an outcome nor an artifactId, so whether the build succeeded is unknown"
            )
        seq, status, error_reason = 3, BuildStatus.SUCCEEDED, None
    else:
        seq, status, error_reason = _lifecycle(event)
    return BuildEvent(
        event_id=f"cde-{event.event_key}", build_id=f"cde-{_digest('build', event.subject_source, event.subject_id)}",
        project=event.subject_source, pipeline=BUILD_PIPELINE, seq=seq, event_time=event.at, scope=BuildScope.BUILD,
        status=status, executor=EXECUTOR, error_reason=error_reason,
        environment=_environment(event, cdevents_artifact_id=artifact),
    )


def _lifecycle(event: _CDEvent) -> tuple[int, BuildStatus, str | None]:
    """(seq, status, error_reason) of a queued / started / finished event."""
    seq, status = _LIFECYCLE[event.predicate]
    if status is not None:
        return seq, status, None
    outcome = event.content.get("outcome")
    if outcome not in _OUTCOMES:
        what = "has no outcome" if outcome is None else f"has outcome {str(outcome)[:40]!r}, which is not mapped"
        raise Unmappable(f"{event.subject}.finished {what} (mapped: {', '.join(_OUTCOMES)})")
    if outcome == "success":
        return seq, _OUTCOMES[outcome], None
    errors = text(event.content.get("errors"))
    reason = f"CDEvents outcome: {outcome}" + (f": {errors[:_MAX_ERRORS]}" if errors else "")
    return seq, _OUTCOMES[outcome], reason


def _environment(event: _CDEvent, **extra: str | None) -> dict[str, str]:
    url = text(event.content.get("uri")) or text(event.content.get("url"))
    values = {"cdevents_source": event.subject_source, "cdevents_subject_id": event.subject_id,
              "cdevents_url": url, **extra}
    return {key: value for key, value in values.items() if value}


# --- changes -> audits -------------------------------------------------------------------------

def _map_change(event: _CDEvent) -> list[AuditEvent]:
    audit_id = f"cde-change-{_digest('change', event.subject_source, event.subject_id)}"
    repository = event.content.get("repository")
    repository_id = text(repository.get("id")) if isinstance(repository, dict) else None
    common: dict[str, Any] = dict(
        audit_id=audit_id, subject_kind=AuditSubjectKind.BUILD, subject_id=event.subject_id,
        project=repository_id or event.subject_source, event_time=event.at,
    )
    base = f"cde-{event.event_key}"
    if event.predicate == "reviewed":
        return [
            AuditEvent(event_id=f"{base}/requested", seq=1, kind=AuditEventKind.REQUESTED, **common),
            AuditEvent(event_id=f"{base}/review_started", seq=2, kind=AuditEventKind.REVIEW_STARTED, **common),
        ]
    if event.predicate == "merged":
        decision_id = f"{audit_id}/merged"
        return [
            AuditEvent(event_id=f"{base}/decided", seq=3, kind=AuditEventKind.DECIDED,
                       decision=AuditDecision.APPROVED, decision_id=decision_id,
                       reason="the change was merged", **common),
            AuditEvent(event_id=f"{base}/record_synced", seq=4, kind=AuditEventKind.RECORD_SYNCED,
                       decision=AuditDecision.APPROVED, decision_id=decision_id,
                       reason="merged into the repository, which is the change's record", **common),
        ]
    return [AuditEvent(event_id=f"{base}/canceled", seq=3, kind=AuditEventKind.CANCELED,
                       reason="the change was abandoned", **common)]


# --- helpers -----------------------------------------------------------------------------------

def _digest(*parts: str, size: int = 16) -> str:
    """A short stable digest of `parts` (JSON-encoded, so no two part lists collide by joining)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:size]


def _time(value: Any, what: str) -> datetime:
    """An RFC 3339 time with an offset; nanoseconds (Go producers) are cut to microseconds."""
    if not isinstance(value, str) or not value.strip():
        raise Unmappable(f"{what} is missing")
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        raise Unmappable(f"{what} is not an RFC 3339 time: {value[:40]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Unmappable(f"{what} has no UTC offset: {value[:40]!r}")
    return parsed


ADAPTER = Adapter(
    name="cdevents",
    secrets_setting=SECRETS_SETTING,
    kept_headers=KEPT_HEADERS,
    authenticate=authenticate,
    identify=identify,
    translate=translate,
)
