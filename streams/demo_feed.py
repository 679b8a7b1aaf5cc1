"""A realistic stream of builds for demos, tests and benchmarks.

Several projects and pipelines, stages with tasks, failures with reasons (some of them
killed runners), cancellations, and skipped stages after a failure. `simulate_build`
is pure (seeded), so tests know exactly which final statuses to expect.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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

S = BuildStatus

PROJECTS: dict[str, tuple[str, ...]] = {
    "payments": ("api-ci", "deploy-prod"),
    "web": ("frontend-ci", "e2e-nightly"),
    "platform": ("infra-plan", "images"),
}
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("checkout", ("git-clone",)),
    ("build", ("compile", "package")),
    ("test", ("unit", "integration", "lint")),
    ("deploy", ("upload", "rollout")),
)
FAILURES: tuple[tuple[str, str | None, int | None], ...] = (
    ("tests failed: 3 of 412", None, 1),
    ("compilation error in src/main.py", None, 2),
    ("runner pod OOMKilled", "OOMKilled", 137),
    ("node lost during task", "NodeLost", None),
    ("step timed out after 30m", "DeadlineExceeded", None),
)
USERS = ("alice", "bob", "carol", "dan", "erin", "ci-bot")


@dataclass(frozen=True)
class SimulatedBuild:
    build_id: str
    project: str
    pipeline: str
    final_status: BuildStatus
    events: tuple[BuildEvent, ...]


def simulate_build(rng: random.Random, start: datetime, build_id: str | None = None) -> SimulatedBuild:
    """One build's events in order, with event times spread over simulated minutes."""
    project = rng.choice(sorted(PROJECTS))
    pipeline = rng.choice(PROJECTS[project])
    build_id = build_id or f"{project}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
    trigger = rng.choice(list(TriggerReason)[:5])
    user = rng.choice(USERS)
    branch = rng.choice(("main", "main", "release/2.4", "feature/login"))
    sha = f"{rng.getrandbits(160):040x}"
    clock = start
    seq = 0
    events: list[BuildEvent] = []
    variables = {"TARGET_ENV": "production" if pipeline.endswith("-prod") else "staging", "GIT_BRANCH": branch}
    build_context: dict[str, Any] = {
        "trigger_reason": trigger, "trigger_user": user, "branch": branch, "commit_sha": sha, "environment": variables,
    }

    def emit(status: BuildStatus, scope: BuildScope = BuildScope.BUILD, stage: str | None = None,
             task: str | None = None, **extra: Any) -> None:
        nonlocal seq
        seq += 1
        events.append(BuildEvent(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex, build_id=build_id, project=project,
            pipeline=pipeline, seq=seq, event_time=clock, scope=scope, stage_id=stage, task_id=task,
            name=task or stage, status=status,
            **(build_context if scope is BuildScope.BUILD else {}),
            **extra,
        ))

    def advance(low: float, high: float) -> None:
        nonlocal clock
        clock += timedelta(seconds=rng.uniform(low, high))

    emit(S.QUEUED)
    advance(1, 40)
    if rng.random() < 0.04:
        emit(S.CANCELED, error_reason=f"canceled by {user} while queued")
        return SimulatedBuild(build_id, project, pipeline, S.CANCELED, tuple(events))
    emit(S.PREPARING, executor=f"runner-{rng.randint(1, 12)}")
    advance(1, 10)
    emit(S.RUNNING)
    final = S.SUCCEEDED
    build_error: dict[str, Any] = {}
    for stage, tasks in STAGES:
        if final is not S.SUCCEEDED:
            emit(S.SKIPPED, BuildScope.STAGE, stage)
            continue
        emit(S.RUNNING, BuildScope.STAGE, stage)
        stage_status = S.SUCCEEDED
        for task in tasks:
            if stage_status is not S.SUCCEEDED:
                emit(S.SKIPPED, BuildScope.TASK, stage, task)
                continue
            emit(S.RUNNING, BuildScope.TASK, stage, task)
            advance(2, 90)
            roll = rng.random()
            if roll < 0.05:
                reason, termination, code = rng.choice(FAILURES)
                emit(S.FAILED, BuildScope.TASK, stage, task, error_reason=reason,
                     termination_reason=termination, exit_code=code)
                stage_status = S.FAILED
                build_error = {"error_reason": f"{stage}/{task}: {reason}", "termination_reason": termination}
            elif roll < 0.065:
                emit(S.CANCELED, BuildScope.TASK, stage, task, error_reason=f"canceled by {user}")
                stage_status = S.CANCELED
                build_error = {"error_reason": f"canceled by {user} during {stage}/{task}"}
            else:
                emit(S.SUCCEEDED, BuildScope.TASK, stage, task, exit_code=0)
        emit(stage_status, BuildScope.STAGE, stage)
        final = stage_status
    advance(0.5, 3)
    emit(final, **build_error)
    return SimulatedBuild(build_id, project, pipeline, final, tuple(events))


def simulate_builds(seed: int, count: int, start: datetime, spacing_seconds: float = 7.0) -> list[SimulatedBuild]:
    """`count` builds, one starting every `spacing_seconds` (simulated) from `start`."""
    rng = random.Random(seed)
    return [simulate_build(rng, start + timedelta(seconds=i * spacing_seconds)) for i in range(count)]


def simulate_audit(rng: random.Random, build: SimulatedBuild) -> tuple[AuditEvent, ...]:
    """A deployment review for a successful deploy-prod build, or nothing.

    Most reviews are decided and their record synced; some stay in review (stuck), and some
    lose the record-status message after the decision: the BK-CI failure cipulse repairs.
    """
    if build.pipeline != "deploy-prod" or build.final_status is not S.SUCCEEDED:
        return ()
    audit_id = f"review-{build.build_id}"
    reviewers = rng.sample(USERS[:5], k=2)
    clock = build.events[-1].event_time
    seq = 0
    events: list[AuditEvent] = []

    def emit(kind: AuditEventKind, after: tuple[float, float], **fields: Any) -> None:
        nonlocal seq, clock
        seq += 1
        clock += timedelta(seconds=rng.uniform(*after))
        events.append(AuditEvent(
            event_id=f"{audit_id}-{seq}", audit_id=audit_id, subject_kind=AuditSubjectKind.BUILD,
            subject_id=build.build_id, project=build.project, pipeline=build.pipeline, kind=kind, seq=seq,
            event_time=clock, reviewers=reviewers, **fields,
        ))

    emit(AuditEventKind.REQUESTED, (0, 1))
    emit(AuditEventKind.REVIEW_STARTED, (10, 60), actor=reviewers[0])
    if rng.random() < 0.1:
        return tuple(events)  # nobody decides: stuck in review
    decision = AuditDecision.APPROVED if rng.random() < 0.9 else AuditDecision.REJECTED
    decision_id = f"{audit_id}-decision"
    emit(AuditEventKind.DECIDED, (30, 300), decision=decision, decision_id=decision_id, actor=reviewers[0])
    if rng.random() < 0.15:
        return tuple(events)  # the record-status message is lost
    emit(AuditEventKind.RECORD_SYNCED, (1, 5), decision=decision, decision_id=decision_id)
    return tuple(events)
