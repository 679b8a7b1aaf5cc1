"""Which notification transitions a change set or an audit alert stands for.

This is where "notify only when the state changed" is decided. A build change set is a
transition only when it moves the build into a final status (previous status not final, new
status final); a change set that only fills gaps, reports a stage or task, or repeats a finished
build never is. A redelivered change set yields the same transitions again, by design: it is
the dedup key (`streams.notify_dedup`), built from the change's `revision`, that makes the
second one a recognisable duplicate.

RECOVERED needs the pipeline's previous outcome. The agent keeps a `PipelineOutcome` per
(project, pipeline, branch), updated with `record_outcome`; `outcome_before` reads it so that a
redelivered SUCCEEDED still sees the FAILED that preceded it (and stays RECOVERED), instead of
its own earlier effect.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from schemas import AuditAlert, AuditAlertKind, BuildStatus, BuildStatusChange, NotificationTransition
from streams.transitions import is_final

T = NotificationTransition

OUTCOME_STATUSES = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED})
"""Final statuses that say something about a pipeline's health; CANCELED says nothing, so a
cancel between a failure and a success does not hide the recovery."""

_SPECIFICITY = (T.RECOVERED, T.FAILED, T.CANCELED, T.SUCCEEDED, T.AUDIT_STUCK, T.GATE_FAILED)
"""Order of `build_transitions`' result: the most specific transition first."""


def enters_final_status(change: BuildStatusChange) -> bool:
    """True when this change set is the build reaching its final status."""
    previous = change.previous_status
    return is_final(change.status) and (previous is None or not is_final(previous))


def build_transitions(
    change: BuildStatusChange, last_final_status_of_pipeline: BuildStatus | None
) -> list[NotificationTransition]:
    """The transitions `change` represents, most specific first; empty when nothing changed.

    `last_final_status_of_pipeline` is the outcome (SUCCEEDED/FAILED) of the pipeline+branch
    before this build (see `outcome_before`); None when unknown. A success after a failure is
    both RECOVERED and SUCCEEDED; `pick_transition` gives a subscription the one it wants most.
    GATE_FAILED is never produced here: no event carries quality-gate results yet.
    """
    if not enters_final_status(change):
        return []
    status = change.status
    if status is BuildStatus.FAILED:
        return [T.FAILED]
    if status is BuildStatus.CANCELED:
        return [T.CANCELED]
    if status is BuildStatus.SUCCEEDED:
        if last_final_status_of_pipeline is BuildStatus.FAILED:
            return [T.RECOVERED, T.SUCCEEDED]
        return [T.SUCCEEDED]
    return []  # SKIPPED: never a build status


def audit_alert_transitions(alert: AuditAlert) -> list[NotificationTransition]:
    """A stuck review is AUDIT_STUCK (once per episode: the alert's `episode` is its version).

    INCONSISTENT alerts are repaired by cipulse itself and have no transition subscribers can
    choose, so they notify nobody.
    """
    if alert.kind is AuditAlertKind.STUCK:
        return [T.AUDIT_STUCK]
    return []


def pick_transition(
    candidates: Iterable[NotificationTransition], subscribed: Iterable[NotificationTransition]
) -> NotificationTransition | None:
    """The one transition a subscription is notified about, or None.

    A subscriber to both RECOVERED and SUCCEEDED gets one message for a recovering build
    (RECOVERED), not two. `candidates` must come most specific first, as the functions above
    return them.
    """
    wanted = set(subscribed)
    return next((t for t in candidates if t in wanted), None)


class PipelineOutcome(BaseModel):
    """What the agent stores per pipeline+branch to recognise recoveries (JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    build_id: str
    """The build whose final status is `status`."""
    status: BuildStatus
    before: BuildStatus | None = None
    """The pipeline's outcome before `build_id` finished."""


def pipeline_key(change: BuildStatusChange) -> str:
    """Table key of a pipeline+branch's outcome; builds without a branch share one key."""
    return f"{change.project}/{change.pipeline}@{change.branch or ''}"


def outcome_before(outcome: PipelineOutcome | None, change: BuildStatusChange) -> BuildStatus | None:
    """The pipeline's outcome before `change`'s build; stable when `change` is redelivered."""
    if outcome is None:
        return None
    if outcome.build_id == change.build_id:
        return outcome.before
    return outcome.status


def record_outcome(outcome: PipelineOutcome | None, change: BuildStatusChange) -> PipelineOutcome | None:
    """The outcome to store after `change`; unchanged unless the build just ended SUCCEEDED/FAILED."""
    if not enters_final_status(change) or change.status not in OUTCOME_STATUSES:
        return outcome
    if outcome is not None and outcome.build_id == change.build_id:
        return outcome  # redelivery of the change that set it
    return PipelineOutcome(build_id=change.build_id, status=change.status, before=outcome_before(outcome, change))
