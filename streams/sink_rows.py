"""Map build-status change sets to ClickHouse rows (pure, unit-tested without an engine)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from schemas import BuildScope, BuildStatusChange
from sinks.context_rows import BuildContextRow
from sinks.rows import BuildEventRow, BuildResultRow
from streams.transitions import is_final


def event_row(change: BuildStatusChange) -> BuildEventRow:
    """One `build_events` row per change set; (build_id, seq) identifies it under redelivery."""
    node = change.nodes[0] if change.nodes else None
    return BuildEventRow(
        build_id=change.build_id,
        seq=change.seq,
        event_id=change.event_id,
        event_time=change.event_time,
        project=change.project,
        pipeline=change.pipeline,
        scope=(node.scope if node else BuildScope.BUILD).value,
        stage_id=node.stage_id if node else "",
        task_id=(node.task_id or "") if node else "",
        node_status=(node.status if node else change.status).value,
        build_status=change.status.value,
        previous_build_status=change.previous_status.value if change.previous_status else "",
        trigger_reason=change.trigger_reason.value if change.trigger_reason else "",
        trigger_user=change.trigger_user or "",
        branch=change.branch or "",
        error_reason=(node.error_reason if node else change.error_reason) or "",
        termination_reason=(node.termination_reason if node else change.termination_reason) or "",
    )


def result_row(change: BuildStatusChange, now: datetime | None = None) -> BuildResultRow:
    """The build's latest summary; `revision` versions it so the newest state always wins."""
    queue_ms = None
    if change.queued_at is not None and change.started_at is not None:
        queue_ms = max(0, int((change.started_at - change.queued_at).total_seconds() * 1000))
    return BuildResultRow(
        build_id=change.build_id,
        project=change.project,
        pipeline=change.pipeline,
        status=change.status.value,
        version=change.revision,
        is_final=is_final(change.status),
        first_seen_at=change.first_seen_at,
        queued_at=change.queued_at,
        started_at=change.started_at,
        finished_at=change.finished_at,
        duration_ms=change.duration_ms,
        queue_ms=queue_ms,
        trigger_reason=change.trigger_reason.value if change.trigger_reason else "",
        trigger_user=change.trigger_user or "",
        branch=change.branch or "",
        error_reason=change.error_reason or "",
        termination_reason=change.termination_reason or "",
        updated_at=now or datetime.now(UTC),
    )


def context_row(change: BuildStatusChange) -> BuildContextRow:
    """What a retry of the build needs after this change: its variables and trigger context."""
    return BuildContextRow(
        project=change.project,
        pipeline=change.pipeline,
        build_id=change.build_id,
        first_seen_at=change.first_seen_at,
        started_at=change.started_at,
        finished_at=change.finished_at,
        status=change.status.value,
        trigger_reason=change.trigger_reason.value if change.trigger_reason else "",
        trigger_user=change.trigger_user or "",
        branch=change.branch or "",
        commit_sha=change.commit_sha or "",
        executor=change.executor or "",
        variables=dict(change.environment),
        revision=change.revision,
    )


def latest_per_build(changes: Iterable[BuildStatusChange]) -> list[BuildStatusChange]:
    """The newest revision of each build in a batch, in first-seen order.

    Summary tables keep one row per build anyway (ReplacingMergeTree on the revision), so
    writing the older revisions of a batch only costs parts and merges.
    """
    latest: dict[str, BuildStatusChange] = {}
    for change in changes:
        known = latest.get(change.build_id)
        if known is None or change.revision >= known.revision:
            latest[change.build_id] = change
    return list(latest.values())
