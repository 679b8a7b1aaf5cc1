"""Turn a change set or an audit alert into the notification requests of every subscription.

The agent's whole decision in one call: which transitions happened (`notify_transitions`),
which subscriptions want which one (at most one per subscription and subject), and the
request each gets, whose `notification_id` is the dedup key. Pure: `now` is only the
`created_at` stamp and never enters the key, so the same input always yields the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from schemas import AuditAlert, BuildStatus, BuildStatusChange, NotificationRequest, NotificationTransition
from streams.notify_dedup import dedup_key
from streams.notify_subscriptions import Subscription
from streams.notify_transitions import audit_alert_transitions, build_transitions, pick_transition

BUILD_SUBJECT = "BUILD"
AUDIT_SUBJECT = "AUDIT"

_VERBS = {
    NotificationTransition.FAILED: "failed",
    NotificationTransition.RECOVERED: "recovered",
    NotificationTransition.CANCELED: "was canceled",
    NotificationTransition.SUCCEEDED: "succeeded",
    NotificationTransition.AUDIT_STUCK: "is stuck in review",
    NotificationTransition.GATE_FAILED: "failed its quality gate",
}


def build_requests(
    change: BuildStatusChange,
    last_final_status_of_pipeline: BuildStatus | None,
    subscriptions: Iterable[Subscription],
    now: datetime,
    links: Mapping[str, str] | None = None,
) -> list[NotificationRequest]:
    """One request per subscription that wants a transition of `change`; [] when no state changed."""
    candidates = build_transitions(change, last_final_status_of_pipeline)
    if not candidates:
        return []
    requests: list[NotificationRequest] = []
    for subscription in subscriptions:
        if not subscription.match.matches(change.project, change.pipeline):
            continue
        transition = pick_transition(candidates, subscription.transitions)
        if transition is None:
            continue
        requests.append(
            NotificationRequest(
                notification_id=dedup_key(subscription.id, BUILD_SUBJECT, change.build_id, transition, change.revision),
                subscription_id=subscription.id,
                subject_kind=BUILD_SUBJECT,
                subject_id=change.build_id,
                project=change.project,
                pipeline=change.pipeline,
                transition=transition,
                status=change.status.value,
                version=change.revision,
                channel=subscription.channel.kind,
                title=f"{change.project}/{change.pipeline} build {change.build_id} {_VERBS[transition]}",
                body=_build_body(change, last_final_status_of_pipeline, transition),
                links=dict(links or {}),
                created_at=now,
                branch=change.branch,
            )
        )
    return requests


def audit_alert_requests(
    alert: AuditAlert, subscriptions: Iterable[Subscription], now: datetime
) -> list[NotificationRequest]:
    """One request per subscription that wants AUDIT_STUCK for this alert's project/pipeline.

    The version is the alert's episode: a re-opened audit that gets stuck again notifies again.
    """
    candidates = audit_alert_transitions(alert)
    requests: list[NotificationRequest] = []
    for subscription in subscriptions:
        if not subscription.match.matches(alert.project, alert.pipeline):
            continue
        transition = pick_transition(candidates, subscription.transitions)
        if transition is None:
            continue
        reviewers = ", ".join(alert.reviewers) or "nobody assigned"
        requests.append(
            NotificationRequest(
                notification_id=dedup_key(subscription.id, AUDIT_SUBJECT, alert.audit_id, transition, alert.episode),
                subscription_id=subscription.id,
                subject_kind=AUDIT_SUBJECT,
                subject_id=alert.audit_id,
                project=alert.project,
                pipeline=alert.pipeline,
                transition=transition,
                status=alert.status,
                version=alert.episode,
                channel=subscription.channel.kind,
                title=f"{alert.project} review {alert.audit_id} of {alert.subject_kind.lower()} "
                f"{alert.subject_id} {_VERBS[transition]}",
                body=f"{alert.status.lower()} for {_duration(alert.age_seconds)} "
                f"(threshold {_duration(alert.threshold_seconds)}); reviewers: {reviewers}",
                links=dict(alert.links),
                created_at=now,
            )
        )
    return requests


def _build_body(change: BuildStatusChange, before: BuildStatus | None, transition: NotificationTransition) -> str:
    lines = [f"status {change.status.value}" + (f" on branch {change.branch}" if change.branch else "")]
    if transition is NotificationTransition.RECOVERED and before is not None:
        lines.append(f"previous build of this pipeline {before.value}")
    if change.duration_ms is not None:
        lines.append(f"took {_duration(change.duration_ms / 1000)}")
    if change.trigger_reason is not None:
        lines.append(f"triggered by {change.trigger_reason.value.lower()}" + (
            f" ({change.trigger_user})" if change.trigger_user else ""
        ))
    if change.termination_reason:
        lines.append(f"terminated: {change.termination_reason}")
    if change.error_reason:
        lines.append(f"error: {change.error_reason}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
