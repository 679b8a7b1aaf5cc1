"""HTTP ingest checks without I/O: bearer token per project, event validation listing every
invalid field (with its index in a batch), batch shape and size, and the project check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from streams.exceptions import IngestRefused
from streams.ingest import IngestInvalid, authorize, check_projects, parse_batch, parse_event

TOKENS = {"payments": SecretStr("pay-token"), "search": SecretStr("search-token"), "shared": SecretStr("pay-token")}


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1", "build_id": "b-1", "project": "payments", "pipeline": "deploy", "seq": 1,
        "event_time": "2026-11-25T10:00:00Z", "scope": "BUILD", "status": "QUEUED",
    }
    base.update(overrides)
    return base


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def test_a_valid_token_authorizes_every_project_it_belongs_to() -> None:
    assert authorize("Bearer search-token", TOKENS) == {"search"}
    assert authorize("bearer  pay-token ", TOKENS) == {"payments", "shared"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credentials"),
        ("", "missing credentials"),
        ("Basic cGF5LXRva2Vu", "missing credentials"),
        ("Bearer", "missing credentials"),
        ("Bearer wrong", "not the ingest token of any project"),
    ],
)
def test_no_or_unknown_token_is_401_and_never_echoes_a_token(header: str | None, message: str) -> None:
    with pytest.raises(IngestRefused) as refused:
        authorize(header, TOKENS)
    assert refused.value.status == 401 and message in str(refused.value)
    assert "pay-token" not in str(refused.value) and "wrong" not in str(refused.value)


def test_ingest_without_configured_tokens_is_disabled_and_says_how_to_enable_it() -> None:
    with pytest.raises(IngestRefused) as refused:
        authorize("Bearer anything", {})
    assert refused.value.status == 401 and "CIPULSE_INGEST_TOKENS" in str(refused.value)


def test_a_single_event_is_validated_with_json_rules() -> None:
    parsed = parse_event(body(event(event_time="2026-11-25T10:00:00.123456+02:00")))
    assert parsed.event_time == datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=UTC)


def test_every_invalid_field_is_listed_for_a_single_event() -> None:
    with pytest.raises(IngestInvalid) as invalid:
        parse_event(body(event(seq=-1, status="DONE", event_time="2026-11-25T10:00:00", colour="red")))
    fields = {problem.field for problem in invalid.value.problems}
    assert fields == {"seq", "status", "event_time", "colour"}
    assert all(problem.index is None for problem in invalid.value.problems)
    assert invalid.value.status == 422 and "nothing was produced" in str(invalid.value)
    assert "timezone-aware" in str(invalid.value)


def test_a_batch_lists_every_invalid_field_with_its_index_and_refuses_the_whole_batch() -> None:
    items = [event(), event(event_id="e-2", seq="x"), event(event_id="e-3", scope="STAGE"), 7]
    with pytest.raises(IngestInvalid) as invalid:
        parse_batch(body({"events": items}), max_events=10)
    where = {(problem.index, problem.field) for problem in invalid.value.problems}
    assert where == {(1, "seq"), (2, "<event>"), (3, "<event>")}
    message = str(invalid.value)
    assert message.startswith("3 of 4 events are invalid")
    assert "events[1].seq" in message and "events[2]: Value error, stage_id is required" in message
    assert (invalid.value.events, invalid.value.invalid_events) == (4, 3)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"", 422, "the body is empty"),
        (b"{not json", 422, "not JSON"),
        (body({"items": []}), 422, 'exactly one key, "events"'),
        (body({"events": [], "x": 1}), 422, 'exactly one key, "events"'),
        (body("text"), 422, "not a str"),
        (body([]), 422, "the batch is empty"),
        (body([event()] * 4), 413, "the batch holds 4 events; at most 3 per request"),
    ],
)
def test_batch_shape_and_size_are_checked(payload: bytes, status: int, message: str) -> None:
    with pytest.raises(IngestRefused) as refused:
        parse_batch(payload, max_events=3)
    assert refused.value.status == status and message in str(refused.value)


def test_a_batch_may_be_a_plain_array_or_an_events_object() -> None:
    items = [event(), event(event_id="e-2", seq=2, status="RUNNING")]
    assert parse_batch(body(items), 10) == parse_batch(body({"events": items}), 10)


def test_an_array_posted_to_the_single_endpoint_points_to_the_batch_endpoint() -> None:
    with pytest.raises(IngestRefused) as refused:
        parse_event(body([event()]))
    assert refused.value.status == 422 and "/ingest/builds/batch" in str(refused.value)


def test_events_of_another_project_are_403_naming_the_project_and_indices() -> None:
    events = parse_batch(body([event(), event(project="search"), event(project="billing"), event(project="search")]), 10)
    with pytest.raises(IngestRefused) as refused:
        check_projects(events, frozenset({"payments"}), batch=True)
    message = str(refused.value)
    assert refused.value.status == 403
    assert "'billing' (events 2)" in message and "'search' (events 1, 3)" in message and "'payments'" in message
    check_projects(events[:1], frozenset({"payments"}), batch=True)
