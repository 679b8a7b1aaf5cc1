"""One retry decision from live data: the build's state, its context row and the retention.

The API asks `RetryAssessor.assess` for every eligibility check and retry request; the pure
rule is `streams.retry_eligibility.decide`. The assessor gathers its inputs (the context row
and the context table's retention, both from ClickHouse) and counts every decision in
Prometheus and in `retry_decisions`, so refusals can be watched on the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas import BuildStatus
from sinks.bound_writes import writer_call
from sinks import context_queries
from sinks.context_rows import BuildContextRow, RetryDecisionRow
from sinks.context_writer import BuildContextWriter
from sinks.gateway import ClickHouseGateway
from sinks.retention import TableRetention
from streams import metrics
from streams.build_state import BuildState
from streams.retention_cache import RetentionCache
from streams.retry_eligibility import BuildFacts, Eligibility, RetentionWindow, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    eligibility: Eligibility
    window: RetentionWindow
    retention: TableRetention
    context: BuildContextRow | None
    project: str
    pipeline: str
    status: BuildStatus | None


class RetryAssessor:
    """Decides and records; one per worker, so the retention cache is shared by all requests."""

    def __init__(
        self,
        gateway: ClickHouseGateway,
        cache: RetentionCache,
        margin: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateway = gateway
        self._cache = cache
        self.margin = margin
        self._clock = clock

    async def assess(self, build_id: str, state: BuildState | None) -> Assessment:
        """The verdict for `build_id`; `state` is its live state (None when the worker has none).

        A build the live table forgot but whose context row remains is judged from that row.
        Raises when ClickHouse cannot be read: no verdict is better than a wrong one.
        """
        window, retention = await self._cache.get()
        context = await self._gateway.call(context_queries.build_context_of, build_id)
        facts: BuildFacts | None = None
        project, pipeline, status = "", "", None
        if state is not None:
            project, pipeline, status = state.project, state.pipeline, state.status
            facts = BuildFacts(build_id, state.status, state.first_seen_at, context is not None)
        elif context is not None:
            project, pipeline, status = context.project, context.pipeline, BuildStatus(context.status)
            facts = BuildFacts(build_id, status, context.first_seen_at, True)
        verdict = decide(build_id, facts, window, self._clock(), self.margin)
        return Assessment(verdict, window, retention, context, project, pipeline, status)

    async def record(self, assessment: Assessment, action: str, retry_id: str = "") -> None:
        """Count the decision; a failed ClickHouse write is logged, never turned into a refusal."""
        verdict = assessment.eligibility
        metrics.RETRY_DECISIONS.labels(action, verdict.verdict.value).inc()
        row = RetryDecisionRow(
            decided_at=self._clock(),
            project=assessment.project,
            pipeline=assessment.pipeline,
            build_id=verdict.build_id,
            action=action,
            eligible=verdict.eligible,
            reason=verdict.verdict.value,
            build_started_at=verdict.first_seen_at,
            age_seconds=verdict.age.total_seconds() if verdict.age is not None else 0.0,
            retention_seconds=verdict.retention.total_seconds() if verdict.retention is not None else None,
            deadline=verdict.deadline,
            retry_id=retry_id,
        )
        try:
            await self._gateway.call(writer_call(BuildContextWriter, "write_decisions", [row]))
        except Exception as exc:
            log.error("retry decision for %s not written to ClickHouse: %s", verdict.build_id, exc)
