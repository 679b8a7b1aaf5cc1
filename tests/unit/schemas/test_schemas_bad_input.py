"""Bad bytes never escape `decode` as anything but `UndecodableError` or `SchemaViolationError`.

Stream agents rely on this to dead-letter a poison record with one `except SerdeError` instead of
crashing the worker, and the messages are what an operator reads in the dead-letter topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    BuildEvent,
    BuildScope,
    BuildStatus,
    BuildStatusChange,
    DeadLetter,
    DeadLetterKind,
    NodeChange,
    SchemaViolationError,
    SerdeError,
    TopLevelRecord,
    UndecodableError,
    decode,
    decode_dict,
    encode,
    encode_dict,
    get_catalog,
)

T0 = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)
BUILD_EVENT = BuildEvent(
    event_id="e-1", build_id="b-1", project="cipulse", pipeline="ci", seq=5, event_time=T0,
    scope=BuildScope.TASK, stage_id="build", task_id="compile", name="Compile",
    status=BuildStatus.FAILED, branch="main", environment={"env": "prod"}, exit_code=2,
    duration_ms=1500, executor_labels={"os": "linux"},
)
SAMPLES: list[TopLevelRecord] = [
    BUILD_EVENT,
    BuildStatusChange(
        build_id="b-1", project="cipulse", pipeline="ci", seq=5, revision=3, event_id="e-1", event_time=T0,
        first_seen_at=T0,
        status=BuildStatus.FAILED, previous_status=BuildStatus.RUNNING, finished_at=T0,
        changed_fields=["status", "finished_at"],
        nodes=[NodeChange(scope=BuildScope.TASK, stage_id="build", task_id="compile",
                          status=BuildStatus.FAILED, finished_at=T0)],
    ),
    AuditEvent(
        event_id="a-1", audit_id="au-1", subject_kind=AuditSubjectKind.BUILD, subject_id="b-1",
        project="cipulse", kind=AuditEventKind.REQUESTED, reviewers=["bob"], seq=0,
        event_time=T0,
    ),
    DeadLetter(
        source_topic="t", source_partition=0, source_offset=9, payload=b"\x01\x02",
        kind=DeadLetterKind.UNDECODABLE, reason="bad", failed_at=T0, processor="agent",
    ),
]
HEADERS = [v.header for v in get_catalog().all_versions()]
VALID_BUILD_EVENT_FIELDS: dict[str, Any] = BUILD_EVENT.model_dump()


def decode_or_serde_error(data: Any) -> TopLevelRecord | SerdeError:
    """Decode, turning only the two documented errors into values; anything else propagates."""
    try:
        return decode(data)
    except (UndecodableError, SchemaViolationError) as exc:
        assert str(exc), "errors must carry a message"
        return exc


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_serde_errors(data: bytes) -> None:
    decode_or_serde_error(data)


@settings(max_examples=1000)
@given(st.sampled_from(HEADERS), st.binary(max_size=200))
def test_random_body_behind_a_known_header_raises_only_serde_errors(
    header: bytes, body: bytes
) -> None:
    decode_or_serde_error(header + body)


@settings(max_examples=500)
@given(st.sampled_from(SAMPLES), st.data())
def test_corrupted_valid_payload_raises_only_serde_errors(
    record: TopLevelRecord, data: st.DataObject
) -> None:
    payload = bytearray(encode(record))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(10, len(payload) - 1))
        payload[index] ^= data.draw(st.integers(1, 255))
    decode_or_serde_error(bytes(payload))


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_payload_truncated_at_every_length_is_undecodable(record: TopLevelRecord) -> None:
    payload = encode(record)
    for length in range(len(payload)):
        with pytest.raises(UndecodableError, match="truncated"):
            decode(payload[:length])


def test_empty_payload_is_undecodable() -> None:
    with pytest.raises(UndecodableError, match="payload is 0 bytes.*empty or truncated"):
        decode(b"")


@pytest.mark.parametrize("value", [None, "c301", 42])
def test_non_bytes_value_is_undecodable(value: Any) -> None:
    with pytest.raises(UndecodableError, match="expected the record's bytes"):
        decode(value)


def test_bytearray_and_memoryview_payloads_decode() -> None:
    payload = encode(BUILD_EVENT)
    assert decode(bytearray(payload)) == BUILD_EVENT
    assert decode(memoryview(payload)) == BUILD_EVENT


@pytest.mark.parametrize("marker", [b"\xc3\x00", b"\x00\x01", b"\x01\xc3", b"{\""])
def test_wrong_marker_is_undecodable(marker: bytes) -> None:
    payload = marker + encode(BUILD_EVENT)[2:]
    with pytest.raises(UndecodableError, match="not the Avro single-object marker c301"):
        decode(payload)


def test_confluent_wire_format_is_undecodable_with_a_clear_message() -> None:
    confluent = b"\x00\x00\x00\x00\x07" + encode(BUILD_EVENT)[10:]
    with pytest.raises(UndecodableError, match="starts with 0000"):
        decode(confluent)


def test_unknown_fingerprint_is_undecodable_and_named() -> None:
    payload = b"\xc3\x01" + bytes(range(8)) + encode(BUILD_EVENT)[10:]
    with pytest.raises(UndecodableError, match="unknown writer schema fingerprint 00010203"):
        decode(payload)


def test_trailing_bytes_are_undecodable() -> None:
    with pytest.raises(UndecodableError, match="1 trailing bytes"):
        decode(encode(BUILD_EVENT) + b"\x00")
    with pytest.raises(UndecodableError, match="trailing bytes"):
        decode(encode(BUILD_EVENT) * 2)


def test_timestamp_outside_datetime_range_is_undecodable() -> None:
    fields = {**VALID_BUILD_EVENT_FIELDS, "event_time": 2**62}
    with pytest.raises(UndecodableError, match="corrupt or truncated io.cipulse.BuildEvent v2"):
        decode(encode_dict("io.cipulse.BuildEvent", fields))


@pytest.mark.parametrize(
    ("changes", "named_in_message"),
    [
        ({"build_id": ""}, "build_id: Value error, must be a non-empty id"),
        ({"event_id": "   "}, "event_id: Value error, must be a non-empty id"),
        ({"seq": -1}, "seq: Input should be greater than or equal to 0"),
        ({"scope": "TASK", "task_id": None}, "task_id is required when scope is TASK"),
        ({"scope": "STAGE", "stage_id": None}, "stage_id is required when scope is STAGE"),
        ({"scope": "TASK", "stage_id": None}, "stage_id is required when scope is TASK"),
    ],
)
def test_valid_avro_breaking_model_rules_is_schema_violation(
    changes: dict[str, Any], named_in_message: str
) -> None:
    payload = encode_dict("io.cipulse.BuildEvent", {**VALID_BUILD_EVENT_FIELDS, **changes})
    with pytest.raises(SchemaViolationError) as caught:
        decode(payload, BuildEvent)
    message = str(caught.value)
    assert message.startswith("io.cipulse.BuildEvent v2 decoded but breaks the BuildEvent rules")
    assert named_in_message in message
    assert caught.value.errors, "the pydantic error list travels with the exception"


def test_nested_node_breaking_model_rules_names_its_position() -> None:
    fields = SAMPLES[1].model_dump()
    fields["nodes"][0]["task_id"] = None
    with pytest.raises(SchemaViolationError, match=r"nodes\.0: Value error, task_id is required"):
        decode(encode_dict("io.cipulse.BuildStatusChange", fields))


def test_schema_violation_still_decodes_with_decode_dict_for_inspection() -> None:
    payload = encode_dict("io.cipulse.BuildEvent", {**VALID_BUILD_EVENT_FIELDS, "build_id": ""})
    assert decode_dict(payload).fields["build_id"] == ""


def test_record_of_another_type_than_expected_is_schema_violation_naming_both() -> None:
    payload = encode(SAMPLES[2])
    with pytest.raises(
        SchemaViolationError,
        match=r"expected BuildEvent \(io.cipulse.BuildEvent\) but the payload holds AuditEvent",
    ):
        decode(payload, BuildEvent)


def test_schemas_negative_duration_is_a_schema_violation() -> None:
    """A clock-skewed runner's negative duration is refused at the contract, never stored."""
    payload = encode_dict("io.cipulse.BuildEvent", {**BUILD_EVENT.model_dump(), "duration_ms": -5})
    with pytest.raises(SchemaViolationError, match="duration_ms"):
        decode(payload, BuildEvent)
