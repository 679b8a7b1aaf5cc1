"""The compiled Avro writers (`schemas.avro_writer`) write exactly fastavro's bytes.

`encode` takes the compiled path for the records that have one and falls back to fastavro for any
value the compiled writer does not vouch for; either way the bytes (or the error) must be what
fastavro writes for `model_dump()`, byte for byte, because consumers and stored topics rely on it.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    BuildEvent,
    BuildScope,
    BuildStatus,
    BuildStatusChange,
    NodeChange,
    SerdeError,
    TopLevelRecord,
    TriggerReason,
    decode,
    encode,
)
from schemas.serde import _encode_generic, _writer_for

T0 = datetime(2026, 11, 25, 17, 0, 0, 123000, tzinfo=UTC)
ids = st.text(min_size=1, max_size=30).filter(str.strip)
texts = st.text(max_size=30)
labels = st.dictionaries(texts, texts, max_size=4)
timestamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]),
)
longs = st.integers(0, 2**63 - 1)


def fastavro_bytes(record: TopLevelRecord) -> bytes:
    """What `encode` wrote before the compiled writers: fastavro over `model_dump()`."""
    return _encode_generic(_writer_for(type(record)), record)


def test_the_hot_records_have_a_compiled_writer() -> None:
    assert _writer_for(BuildEvent).compiled is not None
    assert _writer_for(BuildStatusChange).compiled is not None


@st.composite
def build_events(draw: st.DrawFn) -> BuildEvent:
    scope = draw(st.sampled_from(BuildScope))
    return BuildEvent(
        event_id=draw(ids), build_id=draw(ids), project=draw(ids), pipeline=draw(ids), seq=draw(longs),
        event_time=draw(timestamps), scope=scope,
        stage_id=draw(ids if scope is not BuildScope.BUILD else st.none() | ids),
        task_id=draw(ids if scope is BuildScope.TASK else st.none() | ids),
        name=draw(st.none() | texts), status=draw(st.sampled_from(BuildStatus)),
        trigger_reason=draw(st.none() | st.sampled_from(TriggerReason)), trigger_user=draw(st.none() | texts),
        branch=draw(st.none() | texts), commit_sha=draw(st.none() | texts), environment=draw(labels),
        executor=draw(st.none() | texts), error_reason=draw(st.none() | texts),
        termination_reason=draw(st.none() | texts), exit_code=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        duration_ms=draw(st.none() | longs), executor_labels=draw(labels),
    )


@st.composite
def node_changes(draw: st.DrawFn) -> NodeChange:
    scope = draw(st.sampled_from([BuildScope.STAGE, BuildScope.TASK]))
    return NodeChange(
        scope=scope, stage_id=draw(ids), task_id=draw(ids if scope is BuildScope.TASK else st.none() | ids),
        name=draw(st.none() | texts), status=draw(st.sampled_from(BuildStatus)),
        previous_status=draw(st.none() | st.sampled_from(BuildStatus)), started_at=draw(st.none() | timestamps),
        finished_at=draw(st.none() | timestamps), duration_ms=draw(st.none() | longs),
        error_reason=draw(st.none() | texts), termination_reason=draw(st.none() | texts),
        exit_code=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
    )


@st.composite
def build_status_changes(draw: st.DrawFn) -> BuildStatusChange:
    return BuildStatusChange(
        build_id=draw(ids), project=draw(ids), pipeline=draw(ids), seq=draw(longs), revision=draw(longs),
        event_id=draw(ids), event_time=draw(timestamps), status=draw(st.sampled_from(BuildStatus)),
        previous_status=draw(st.none() | st.sampled_from(BuildStatus)), first_seen_at=draw(timestamps),
        queued_at=draw(st.none() | timestamps), started_at=draw(st.none() | timestamps),
        finished_at=draw(st.none() | timestamps), duration_ms=draw(st.none() | longs),
        trigger_reason=draw(st.none() | st.sampled_from(TriggerReason)), trigger_user=draw(st.none() | texts),
        branch=draw(st.none() | texts), error_reason=draw(st.none() | texts),
        termination_reason=draw(st.none() | texts), changed_fields=draw(st.lists(texts, max_size=4)),
        nodes=draw(st.lists(node_changes(), max_size=3)), commit_sha=draw(st.none() | texts),
        executor=draw(st.none() | texts), environment=draw(labels),
    )


@given(build_events())
def test_build_event_bytes_equal_fastavros(event: BuildEvent) -> None:
    assert encode(event) == fastavro_bytes(event)


@given(build_status_changes())
def test_build_status_change_bytes_equal_fastavros(change: BuildStatusChange) -> None:
    assert encode(change) == fastavro_bytes(change)
    assert decode(encode(change), BuildStatusChange) == change


def construct(**overrides: Any) -> BuildStatusChange:
    """A change built without validation, holding values a validated model never holds."""
    fields: dict[str, Any] = {
        "build_id": "b-1", "project": "p", "pipeline": "ci", "seq": 3, "revision": 2, "event_id": "e-3",
        "event_time": T0, "status": BuildStatus.RUNNING, "previous_status": None, "first_seen_at": T0,
        "queued_at": None, "started_at": None, "finished_at": None, "duration_ms": None,
        "trigger_reason": None, "trigger_user": None, "branch": None, "error_reason": None,
        "termination_reason": None, "changed_fields": [], "nodes": [], "commit_sha": None,
        "executor": None, "environment": {},
    }
    return BuildStatusChange.model_construct(**{**fields, **overrides})


class Colour(StrEnum):
    RED = "RUNNING"


def outcome(write: Any, change: BuildStatusChange) -> tuple[bytes | str, list[str]]:
    """The bytes or the SerdeError message of one encode, and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: bytes | str = write(change)
        except SerdeError as exc:
            result = str(exc)
    return result, [str(warning.message) for warning in caught]


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_time": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},  # floor before the epoch
        {"event_time": datetime(2026, 1, 1, 12, 0, 0, 456789, tzinfo=timezone(timedelta(hours=-3)))},
        {"started_at": 1_700_000_000_000},  # timestamp given as epoch millis
        {"status": "SUCCEEDED", "previous_status": Colour.RED},  # plain str and a foreign StrEnum symbol
        {"branch": Colour.RED, "environment": {"k": Colour.RED}},  # str subclasses in string fields
        {"changed_fields": ("status",)},  # a tuple where the model holds a list
        {"duration_ms": 2**40, "revision": 0},
        {"seq": "3"}, {"seq": True}, {"status": "DONE"}, {"branch": "\ud800"}, {"nodes": [{"scope": "STAGE"}]},
        {"event_time": datetime(2026, 1, 1)}, {"environment": {1: "x"}}, {"duration_ms": 2**63},
    ],
)
def test_values_only_unvalidated_models_hold_give_fastavros_bytes_errors_and_warnings(
    overrides: dict[str, Any],
) -> None:
    change = construct(**overrides)
    assert outcome(encode, change) == outcome(fastavro_bytes, change)


def test_every_record_type_with_a_compiled_writer_writes_fastavros_bytes_for_the_round_trip_examples() -> None:
    from test_schemas_roundtrip import EXAMPLES  # one example set for every record type

    compiled = [record for record in EXAMPLES if _writer_for(type(record)).compiled is not None]
    assert {type(record).__name__ for record in compiled} >= {
        "BuildEvent", "AuditEvent", "NotificationRequest", "RetryRequest", "GateDecision",
    }
    for record in compiled:
        assert encode(record) == fastavro_bytes(record), type(record).__name__


def test_one_instant_in_two_time_zones_writes_the_same_bytes_through_the_timestamp_memo() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    first = construct(event_time=T0, first_seen_at=T0)
    same_instant = construct(event_time=T0.astimezone(india), first_seen_at=T0.astimezone(india))
    assert encode(first) == fastavro_bytes(first)
    assert encode(same_instant) == fastavro_bytes(same_instant) == encode(first)


def test_timestamps_stay_exact_when_the_timestamp_memo_is_refilled() -> None:
    from schemas import avro_writer

    times = [T0 + timedelta(milliseconds=7 * n) for n in range(avro_writer._TIMESTAMPS_HELD + 50)]
    for at in times:
        encode(construct(event_time=at))
    assert len(avro_writer._TIMESTAMPS) <= avro_writer._TIMESTAMPS_HELD
    for at in (times[0], times[-1], T0 - timedelta(days=400_000)):
        change = construct(event_time=at, first_seen_at=at)
        assert encode(change) == fastavro_bytes(change)


def test_a_model_missing_a_field_falls_back_to_fastavros_outcome() -> None:
    change = construct()
    del change.__dict__["branch"]  # what a model_construct without the field holds
    assert outcome(encode, change) == outcome(fastavro_bytes, change)


def test_one_wall_clock_time_in_two_time_zones_writes_two_instants() -> None:
    wall_clock = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
    in_india = wall_clock.replace(tzinfo=timezone(timedelta(hours=5, minutes=30)))
    utc_change, india_change = construct(event_time=wall_clock), construct(event_time=in_india)
    assert encode(utc_change) == fastavro_bytes(utc_change)
    assert encode(india_change) == fastavro_bytes(india_change) != encode(utc_change)
