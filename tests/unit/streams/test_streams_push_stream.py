"""Push-stream rules without Kafka: positions round-trip, resume plans, filters and the SSE format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import BuildStatus, BuildStatusChange
from streams.exceptions import ApiRequestError, StreamPositionError
from streams.push_stream import (
    StatusFilter,
    decode_position,
    encode_position,
    parse_stream_request,
    plan_start,
    sse_event,
    sse_preamble,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def change(build_id: str = "b-1", project: str = "payments", pipeline: str = "deploy") -> BuildStatusChange:
    return BuildStatusChange(
        build_id=build_id, project=project, pipeline=pipeline, seq=1, revision=1, event_id="e-1", event_time=NOW,
        status=BuildStatus.QUEUED, first_seen_at=NOW,
    )


@given(st.dictionaries(st.integers(0, 99_999), st.integers(0, 2**63 - 1), min_size=1, max_size=64))
def test_positions_round_trip(position: dict[int, int]) -> None:
    assert decode_position(encode_position(position)) == position


@pytest.mark.parametrize("text", ["", "abc", "0:1,", "0:-1", "0=1", "0:1;1:2", "0:1,0:2"])
def test_malformed_positions_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(StreamPositionError):
        decode_position(text)


def test_without_a_position_a_stream_starts_at_the_live_end() -> None:
    assert plan_start(None, {0: 0, 1: 5}, {0: 10, 1: 7}).offsets == {0: 10, 1: 7}


def test_resume_starts_right_after_the_event_and_new_partitions_from_their_start() -> None:
    plan = plan_start({0: 4, 1: 7}, {0: 0, 1: 0, 2: 3}, {0: 10, 1: 7, 2: 9})
    assert plan.offsets == {0: 4, 1: 7, 2: 3} and plan.gaps == []


def test_a_resumed_range_deleted_by_retention_is_reported_as_a_gap() -> None:
    plan = plan_start({0: 2, 1: 7}, {0: 5, 1: 0}, {0: 10, 1: 7})
    assert plan.offsets == {0: 5, 1: 7}
    assert plan.gaps == [{"partition": 0, "resume_offset": 2, "earliest_offset": 5, "missed": 3}]


@pytest.mark.parametrize(("resume", "message"), [({5: 1}, "partition(s) 5"), ({0: 11}, "past its end (10)")])
def test_positions_that_cannot_come_from_this_topic_are_refused(resume: dict[int, int], message: str) -> None:
    with pytest.raises(StreamPositionError) as refused:
        plan_start(resume, {0: 0}, {0: 10})
    assert message in str(refused.value)


def test_filters_match_project_pipeline_and_build() -> None:
    assert StatusFilter().matches(change())
    assert StatusFilter(project="payments", pipeline="deploy", build_id="b-1").matches(change())
    assert not StatusFilter(project="search").matches(change())
    assert not StatusFilter(pipeline="test").matches(change())
    assert not StatusFilter(build_id="b-2").matches(change())
    assert StatusFilter(build_id="b-1").key_may_match(b"b-1") and not StatusFilter(build_id="b-1").key_may_match(b"b-2")
    assert StatusFilter(project="x").key_may_match(b"anything")


def test_the_header_wins_over_the_query_and_unknown_parameters_are_refused() -> None:
    wanted, resume = parse_stream_request({"project": "payments", "last_event_id": "0:1"}, "0:9,1:2")
    assert wanted == StatusFilter(project="payments") and resume == {0: 9, 1: 2}
    assert parse_stream_request({"last_event_id": "0:1"}, None)[1] == {0: 1}
    assert parse_stream_request({}, None) == (StatusFilter(), None)
    with pytest.raises(ApiRequestError, match="unknown query parameter"):
        parse_stream_request({"projct": "x"}, None)
    with pytest.raises(ApiRequestError, match="project='a b'"):
        parse_stream_request({"project": "a b"}, None)
    with pytest.raises(ApiRequestError, match="build_id"):
        parse_stream_request({"build_id": "a\nb"}, None)


def test_sse_wire_format() -> None:
    assert sse_event("0:5", "build-status", {"a": "x\ny"}) == b'id: 0:5\nevent: build-status\ndata: {"a":"x\\ny"}\n\n'
    assert sse_preamble({1: 3, 0: 2}, "t.build-status") == (
        b"retry: 2000\nid: 0:2,1:3\n: streaming t.build-status from 0:2,1:3\n\n"
    )
