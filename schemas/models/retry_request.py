"""`RetryRequest`: an accepted retry of a finished build. Mirrors `retry_request.v1.avsc`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.models._base import NonEmptyId, TopLevelRecord, UtcTimestamp


class RetryRequest(TopLevelRecord):
    """Published to the retry-requests topic for the CI system to run; `retry_id` de-duplicates."""

    avro_name: ClassVar[str] = "io.cipulse.RetryRequest"

    retry_id: NonEmptyId
    build_id: NonEmptyId
    project: NonEmptyId
    pipeline: NonEmptyId
    original_status: str
    branch: str | None = None
    commit_sha: str | None = None
    trigger_reason: str | None = None
    trigger_user: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    original_first_seen_at: UtcTimestamp
    context_deadline: UtcTimestamp | None = None
    requested_by: NonEmptyId
    reason: str = ""
    requested_at: UtcTimestamp
