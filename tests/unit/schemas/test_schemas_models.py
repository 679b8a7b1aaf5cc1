"""The models enforce the domain rules at construction, before anything is encoded.

A producer that builds an impossible event (naive timestamp, TASK event without its task, empty
id) fails where the mistake is made, not in a consumer three topics later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import (
    BuildEvent,
    BuildScope,
    BuildStatus,
    NodeChange,
    SerdeError,
    UnknownSchemaError,
    encode,
)
from schemas.models import TopLevelRecord

T0 = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "event_id": "e-1",
    "build_id": "b-1",
    "project": "cipulse",
    "pipeline": "ci",
    "seq": 0,
    "event_time": T0,
    "scope": BuildScope.BUILD,
    "status": BuildStatus.QUEUED,
}


def build_event(**changes: Any) -> BuildEvent:
    return BuildEvent(**{**BASE, **changes})


def test_naive_event_time_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="(?s)event_time.*must be timezone-aware"):
        build_event(event_time=datetime(2026, 11, 25, 17, 0))


def test_event_time_is_normalised_to_utc_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = build_event(event_time=datetime(2026, 11, 25, 19, 0, 0, 999999, tzinfo=plus_two))
    assert event.event_time == datetime(2026, 11, 25, 17, 0, 0, 999000, tzinfo=UTC)
    assert event.event_time.utcoffset() == timedelta(0)


def test_timestamp_without_utc_equivalent_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="outside the representable UTC range"):
        build_event(event_time=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))


@pytest.mark.parametrize("field", ["event_id", "build_id", "project", "pipeline"])
@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_ids_must_not_be_empty_or_blank(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"{field}\n.*must be a non-empty id"):
        build_event(**{field: value})


def test_seq_must_not_be_negative() -> None:
    with pytest.raises(ValidationError, match="seq"):
        build_event(seq=-1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scope": BuildScope.STAGE}, "stage_id is required when scope is STAGE"),
        ({"scope": BuildScope.TASK, "task_id": "t"}, "stage_id is required when scope is TASK"),
        ({"scope": BuildScope.TASK, "stage_id": "s"}, "task_id is required when scope is TASK"),
        ({"scope": BuildScope.STAGE, "stage_id": ""}, "must be a non-empty id"),
    ],
)
def test_stage_and_task_events_must_name_their_node(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build_event(**changes)


def test_stage_and_task_events_with_their_ids_are_valid() -> None:
    assert build_event(scope=BuildScope.STAGE, stage_id="s").stage_id == "s"
    assert build_event(scope=BuildScope.TASK, stage_id="s", task_id="t").task_id == "t"


def test_task_node_change_must_name_its_task() -> None:
    with pytest.raises(ValidationError, match="task_id is required when scope is TASK"):
        NodeChange(scope=BuildScope.TASK, stage_id="s", status=BuildStatus.RUNNING)


def test_avro_int_range_is_enforced_so_valid_models_always_encode() -> None:
    with pytest.raises(ValidationError, match="exit_code"):
        build_event(exit_code=2**31)
    assert build_event(exit_code=-(2**31)).exit_code == -(2**31)


def test_models_are_frozen_and_forbid_unknown_fields() -> None:
    event = build_event()
    with pytest.raises(ValidationError, match="frozen"):
        event.status = BuildStatus.RUNNING
    with pytest.raises(ValidationError, match="runner_pool\n.*Extra inputs are not permitted"):
        build_event(runner_pool="x")


def test_enum_fields_accept_their_symbols_as_strings() -> None:
    event = build_event(status="RUNNING", trigger_reason="PULL_REQUEST")
    assert event.status is BuildStatus.RUNNING
    with pytest.raises(ValidationError, match="status"):
        build_event(status="running")


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_unvalidated_model_that_cannot_be_encoded_is_a_serde_error() -> None:
    broken = BuildEvent.model_construct(**{**BASE, "seq": "not a number"})
    with pytest.raises(SerdeError, match="cannot encode BuildEvent"):
        encode(broken)


def test_string_that_is_not_valid_utf8_is_a_serde_error_on_encode() -> None:
    with pytest.raises(SerdeError, match="surrogates not allowed.*keep strings valid UTF-8"):
        encode(build_event(name="\ud800"))


def test_encoding_a_model_without_a_published_schema_is_unknown_schema_error() -> None:
    class Unpublished(TopLevelRecord):
        avro_name = "io.cipulse.Unpublished"

    with pytest.raises(UnknownSchemaError, match="Unpublished is not a published record model"):
        encode(Unpublished())


def test_from_checked_values_builds_the_model_validation_builds_from_the_same_values() -> None:
    fields = {
        "scope": BuildScope.TASK, "stage_id": "build", "task_id": "compile", "name": "compile",
        "status": BuildStatus.FAILED, "previous_status": BuildStatus.RUNNING,
        "started_at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC), "finished_at": datetime(2026, 11, 1, 12, 5, tzinfo=UTC),
        "duration_ms": 300_000, "error_reason": "exit 2", "termination_reason": None, "exit_code": 2,
    }
    trusted = NodeChange.from_checked_values(dict(fields))
    assert trusted == NodeChange(**fields)
    assert trusted.model_fields_set == NodeChange(**fields).model_fields_set
    with pytest.raises(ValidationError):  # still frozen
        trusted.status = BuildStatus.SUCCEEDED  # type: ignore[misc]


@pytest.mark.parametrize("change", [{"drop": "exit_code"}, {"add": "exit_kode"}, {"drop": "name", "add": "nmae"}])
def test_from_checked_values_refuses_a_field_set_that_is_not_exactly_the_models(change: dict[str, str]) -> None:
    fields: dict[str, object] = {
        "scope": BuildScope.STAGE, "stage_id": "build", "task_id": None, "name": "build", "status": BuildStatus.RUNNING,
        "previous_status": None, "started_at": None, "finished_at": None, "duration_ms": None, "error_reason": None,
        "termination_reason": None, "exit_code": None,
    }
    if "drop" in change:
        del fields[change["drop"]]
    if "add" in change:
        fields[change["add"]] = 1
    with pytest.raises(TypeError, match="needs every field"):
        NodeChange.from_checked_values(fields)
