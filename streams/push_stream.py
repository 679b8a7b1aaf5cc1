"""The push channel's rules, without I/O: resumable positions, filters and the SSE wire format.

A stream follows every partition of the build-status topic (not as a consumer group, so any
worker can serve any client; one shared reader per worker, see `streams.push_fanout`). Its position is the next offset to read in each partition,
written `0:812,1:790,2:805`. Every event a client receives carries, as its `id:`, the position
just after it, counting the records the filter skipped too; so resuming with the last id
received (`Last-Event-ID`) yields exactly the events after it, none twice. Positions order
records within a partition only, which is all a client needs: one build's changes share a
partition (the topic is keyed by build id), so they arrive in revision order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas import BuildStatusChange
from streams.exceptions import ApiRequestError, StreamPositionError
from streams.query_params import parse_name, reject_unknown

STREAM_PARAMETERS = {"project", "pipeline", "build_id", "last_event_id"}
EVENT_TYPE = "build-status"
GAP_EVENT_TYPE = "gap"
_POSITION = re.compile(r"[0-9]{1,5}:[0-9]{1,19}(,[0-9]{1,5}:[0-9]{1,19}){0,1023}")
_BUILD_ID_MAX = 256

Position = dict[int, int]
"""Partition -> next offset to read."""


def encode_position(position: Mapping[int, int]) -> str:
    return ",".join(f"{partition}:{offset}" for partition, offset in sorted(position.items()))


def decode_position(text: str) -> Position:
    """Read an event id back; `StreamPositionError` (400) says what is wrong with it."""
    if not _POSITION.fullmatch(text.strip()):
        raise StreamPositionError(
            f"last event id {text[:120]!r} is not a cipulse stream position: send back the id of the last "
            "event received unchanged, e.g. '0:812,1:790,2:805' (partition:next offset, comma-separated)"
        )
    position: Position = {}
    for part in text.strip().split(","):
        partition, offset = (int(number) for number in part.split(":"))
        if partition in position:
            raise StreamPositionError(f"last event id {text[:120]!r} names partition {partition} twice")
        position[partition] = offset
    return position


@dataclass(frozen=True)
class StartPlan:
    """Where a stream starts in each partition, and the resumed ranges that are gone (retention)."""

    offsets: Position
    gaps: list[dict[str, int]] = field(default_factory=list)


def plan_start(resume: Position | None, beginnings: Mapping[int, int], ends: Mapping[int, int]) -> StartPlan:
    """Without `resume`: the live end of every partition. With it: right after that event.

    A partition the id does not name was added to the topic since: it is read from its start.
    A resumed offset older than the partition's first retained record is a gap the client is
    told about (the records between were deleted by retention); one past the end is refused,
    because it cannot come from this topic.
    """
    if resume is None:
        return StartPlan(offsets=dict(ends))
    unknown = sorted(set(resume) - set(ends))
    if unknown:
        raise StreamPositionError(
            f"last event id names partition(s) {', '.join(map(str, unknown))}, but the build-status topic has "
            f"partitions {min(ends)}-{max(ends)}: the id is from another topic or cluster; reconnect without it"
        )
    offsets: Position = {}
    gaps: list[dict[str, int]] = []
    for partition, end in sorted(ends.items()):
        wanted = resume.get(partition, beginnings[partition])
        if wanted > end:
            raise StreamPositionError(
                f"last event id is at offset {wanted} of partition {partition}, past its end ({end}): the id is "
                "from another topic or cluster; reconnect without it"
            )
        if wanted < beginnings[partition]:
            gaps.append({
                "partition": partition, "resume_offset": wanted, "earliest_offset": beginnings[partition],
                "missed": beginnings[partition] - wanted,
            })
            wanted = beginnings[partition]
        offsets[partition] = wanted
    return StartPlan(offsets=offsets, gaps=gaps)


@dataclass(frozen=True)
class StatusFilter:
    """Which change sets a client wants; unset fields match everything."""

    project: str | None = None
    pipeline: str | None = None
    build_id: str | None = None

    def key_may_match(self, key: bytes | None) -> bool:
        """The topic is keyed by build id: a build filter skips other builds without decoding them."""
        return self.build_id is None or key is None or key == self.build_id.encode()

    def matches(self, change: BuildStatusChange) -> bool:
        return (
            (self.project is None or change.project == self.project)
            and (self.pipeline is None or change.pipeline == self.pipeline)
            and (self.build_id is None or change.build_id == self.build_id)
        )


def parse_stream_request(query: Mapping[str, str], last_event_id_header: str | None) -> tuple[StatusFilter, Position | None]:
    """Filters and resume position of `GET /stream/builds`; the header wins over `?last_event_id=`
    (a reconnecting browser sends the header and keeps the URL it first used)."""
    reject_unknown(query, STREAM_PARAMETERS)
    build_id = query.get("build_id") or None
    if build_id is not None and (len(build_id) > _BUILD_ID_MAX or not build_id.isprintable() or not build_id.strip()):
        raise ApiRequestError(f"build_id={build_id[:80]!r} is not a build id: printable, 1-{_BUILD_ID_MAX} characters")
    wanted = StatusFilter(project=parse_name(query, "project"), pipeline=parse_name(query, "pipeline"), build_id=build_id)
    raw = last_event_id_header if last_event_id_header else query.get("last_event_id")
    return wanted, (decode_position(raw) if raw else None)


def sse_event(event_id: str, event: str, data: object) -> bytes:
    """One SSE event; `data` is written as one line of compact JSON."""
    return sse_event_json(event_id, event, json.dumps(data, separators=(",", ":")))


def sse_event_json(event_id: str, event: str, payload: str) -> bytes:
    """One SSE event whose data is already one line of JSON (encoded once, shared by every client)."""
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n".encode()


def sse_preamble(position: Mapping[int, int], topic: str, retry_ms: int = 2000) -> bytes:
    """First bytes of a stream: the reconnect delay, the start position as the id (a client that
    reconnects before any event resumes from here, not from the live end), and a comment."""
    at = encode_position(position)
    return f"retry: {retry_ms}\nid: {at}\n: streaming {topic} from {at}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"
