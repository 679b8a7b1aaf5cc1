"""One ingested event is one Kafka record: one too large for the broker gets a 413 naming it (and
what to shrink) before anything is produced, instead of the broker's refusal surfacing as a 503."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import BuildEvent, BuildScope, BuildStatus
from schemas.serde import encode
from streams.ingest import RECORD_OVERHEAD_BYTES, IngestTooLarge, check_record_sizes, record_size
from streams.ingest_openapi import IngestTooLargeBody
from streams.settings import CipulseSettings

KAFKA_DEFAULT_MESSAGE_MAX_BYTES = 1048588


def event(build_id: str, error_reason: str | None = None) -> BuildEvent:
    return BuildEvent(event_id=f"{build_id}-1", build_id=build_id, project="p", pipeline="q", seq=1,
                      event_time=datetime.now(UTC), scope=BuildScope.BUILD, status=BuildStatus.FAILED,
                      error_reason=error_reason)


def records(events: list[BuildEvent]) -> list[tuple[bytes, bytes]]:
    return [(e.build_id.encode(), encode(e)) for e in events]


def test_the_default_event_limit_fits_kafkas_default_record_limit_and_is_below_the_body_limit() -> None:
    settings = CipulseSettings()
    assert settings.ingest_max_event_bytes <= KAFKA_DEFAULT_MESSAGE_MAX_BYTES
    assert settings.ingest_max_event_bytes < settings.ingest_max_body_bytes


def test_a_single_event_over_the_limit_is_refused_with_413_naming_the_limit_and_what_to_shrink() -> None:
    huge = [event("b1", "x" * 1_500_000)]  # fits the 4 MiB body limit, not one Kafka record
    with pytest.raises(IngestTooLarge) as refused:
        check_record_sizes(huge, records(huge), CipulseSettings().ingest_max_event_bytes, batch=False)
    exc = refused.value
    assert exc.status == 413
    message = str(exc)
    assert "the event is too large to be one Kafka record, nothing was produced" in message
    assert "at most 1000000 (CIPULSE_INGEST_MAX_EVENT_BYTES)" in message
    assert "shrink its largest fields: error_reason (~1500002 bytes)" in message
    assert [(p.index, p.field) for p in exc.problems] == [(None, "<event>")]
    assert IngestTooLargeBody(error=message, problems=exc.problems).problems  # the documented 413 body


def test_in_a_batch_each_oversized_event_is_named_by_index_and_nothing_is_produced() -> None:
    batch = [event("b0"), event("b1", "y" * 2000), event("b2"), event("b3", "z" * 5000)]
    with pytest.raises(IngestTooLarge) as refused:
        check_record_sizes(batch, records(batch), 1500, batch=True)
    assert [p.index for p in refused.value.problems] == [1, 3]
    assert str(refused.value).startswith("2 of 4 events are too large to be one Kafka record, nothing was produced: "
                                         "events[1]: the event is ")


def test_normal_events_pass_however_many_and_the_limit_is_inclusive() -> None:
    batch = [event(f"b{i}", "r" * 3000) for i in range(1000)]  # ~3.4 MB in all: a full batch under 4 MiB
    check_record_sizes(batch, records(batch), CipulseSettings().ingest_max_event_bytes, batch=True)
    (key, value), = records([batch[0]])
    exact = record_size(key, value)
    assert exact == len(key) + len(value) + RECORD_OVERHEAD_BYTES
    check_record_sizes([batch[0]], [(key, value)], exact, batch=False)
    with pytest.raises(IngestTooLarge):
        check_record_sizes([batch[0]], [(key, value)], exact - 1, batch=False)
