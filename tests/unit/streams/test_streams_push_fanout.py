"""The SSE fan-out without Kafka: one decode per record, per-client filters and positions, a
resumed client's catch-up joining the shared tail per partition without loss or duplication
(whatever the interleaving), and a slow client dropped without holding the others back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BuildStatus, BuildStatusChange
from streams.push_fanout import Decoded, Fanout, Subscriber, TailRecord
from streams.push_stream import EVENT_TYPE, GAP_EVENT_TYPE, StatusFilter, decode_position

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PROJECTS = ("payments", "search")
CHANGES = {
    project: BuildStatusChange(
        build_id=f"b-{project}", project=project, pipeline="deploy", seq=1, revision=1, event_id="e-1", event_time=NOW,
        status=BuildStatus.QUEUED, first_seen_at=NOW,
    )
    for project in PROJECTS
}


@dataclass
class Log:
    """A partitioned topic: per partition, offset -> project (missing offsets are control records or compacted)."""

    partitions: dict[int, dict[int, str]]
    ends: dict[int, int]
    decodes: int = 0

    def record(self, partition: int, offset: int) -> TailRecord:
        project = self.partitions[partition][offset]
        return TailRecord(partition, offset, f"b-{project}".encode(), b"", self._decode)

    def _decode(self, record: TailRecord) -> Decoded:
        self.decodes += 1
        project = self.partitions[record.partition][record.offset]
        return Decoded(CHANGES[project], f"{record.partition}:{record.offset}")

    def after(self, partition: int, offset: int) -> list[int]:
        return [o for o in sorted(self.partitions[partition]) if o >= offset]


@st.composite
def logs(draw: st.DrawFn) -> Log:
    partitions: dict[int, dict[int, str]] = {}
    ends: dict[int, int] = {}
    for partition in range(draw(st.integers(1, 3))):
        slots = draw(st.lists(st.sampled_from((*PROJECTS, None)), max_size=25))
        partitions[partition] = {offset: project for offset, project in enumerate(slots) if project is not None}
        ends[partition] = len(slots)
    return Log(partitions, ends)


class Reader:
    """A catch-up reader's view of a partition: its position moves past the records it returned,
    and sometimes past the holes after them (as a consumer's position does past control records)."""

    def __init__(self, log: Log, partition: int, start: int) -> None:
        self.log, self.partition, self.position = log, partition, start

    def read(self, count: int, skip_holes: bool) -> list[TailRecord]:
        if count == 0:
            return []
        offsets = self.log.after(self.partition, self.position)[:count]
        if offsets:
            self.position = offsets[-1] + 1
        following = self.log.after(self.partition, self.position)
        if not following:  # at the end: the position is the log end, past any trailing holes
            self.position = self.log.ends[self.partition]
        elif skip_holes:
            self.position = following[0]
        return [self.log.record(self.partition, offset) for offset in offsets]


class Tail:
    def __init__(self, log: Log, fanout: Fanout, start: dict[int, int]) -> None:
        self.log, self.fanout, self.cursor = log, fanout, dict(start)
        fanout.start_at(start)

    def read(self, partition: int, count: int) -> list[Subscriber]:
        offsets = self.log.after(partition, self.cursor[partition])[:count]
        if offsets:
            self.cursor[partition] = offsets[-1] + 1
        return self.fanout.dispatch(self.log.record(partition, offset) for offset in offsets)


def check_exact_resume(log: Log, start: dict[int, int], wanted: Callable[[str], bool],
                       events: list[tuple[str, str]]) -> None:
    """The client got every matching record from its start, in order per partition, once; and each
    id is a position that covers exactly the events before it (resuming from it loses and repeats nothing)."""
    delivered = [tuple(int(n) for n in data.split(":")) for _, data in events]
    for partition, records in log.partitions.items():
        expected = [o for o in sorted(records) if o >= start[partition] and wanted(records[o])]
        assert [o for p, o in delivered if p == partition] == expected
    previous: dict[int, int] = {}
    for k, (event_id, _) in enumerate(events):
        position = decode_position(event_id)
        assert all(position[p] >= previous.get(p, 0) for p in position)
        previous = position
        for j, (partition, offset) in enumerate(delivered):
            assert (offset < position[partition]) == (j <= k), (k, event_id, j, partition, offset)


actions = st.lists(
    st.tuples(st.sampled_from(("tail", "read", "attach", "drain")), st.integers(0, 2), st.integers(0, 6), st.booleans()),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(log=logs(), data=st.data(), steps=actions, project_filter=st.sampled_from((None, *PROJECTS)), live_end=st.booleans())
def test_a_resumed_client_joins_the_tail_per_partition_without_loss_or_duplication(
    log: Log, data: st.DataObject, steps: list[tuple[str, int, int, bool]], project_filter: str | None, live_end: bool
) -> None:
    fanout = Fanout()
    tail = Tail(log, fanout, {p: data.draw(st.integers(0, end)) for p, end in log.ends.items()})
    for partition, count in data.draw(st.lists(st.tuples(st.sampled_from(sorted(log.ends)), st.integers(0, 5)), max_size=4)):
        tail.read(partition, count)  # the tail ran before the client came
    resume = {p: data.draw(st.integers(0, end)) for p, end in log.ends.items()}
    subscriber = Subscriber("c", StatusFilter(project=project_filter), resume, limit=10_000)
    fanout.register(subscriber, live_end=live_end)
    start = dict(subscriber.position)
    if live_end:
        assert start == {p: max(resume[p], tail.cursor[p]) for p in resume} and not subscriber.behind
    readers = {p: Reader(log, p, start[p]) for p in subscriber.behind}
    events: list[tuple[str, str]] = []

    def read(partition: int, count: int, skip_holes: bool) -> None:
        for record in readers[partition].read(count, skip_holes):
            assert subscriber.take(record)

    for action, which, count, flag in steps:
        partition = sorted(log.ends)[which % len(log.ends)]
        if action == "tail":
            assert tail.read(partition, count) == []
        elif action == "read" and partition in subscriber.behind:
            read(partition, count, flag)
        elif action == "attach" and partition in subscriber.behind:
            fanout.attach(subscriber, partition, readers[partition].position)
        elif action == "drain":
            events += [(e.event_id, e.data) for e in subscriber.drain()]
    while subscriber.behind:  # finish: every reader reaches the tail and joins
        for partition in subscriber.behind:
            read(partition, 100, True)
            assert fanout.attach(subscriber, partition, readers[partition].position)
    for partition in log.ends:
        tail.read(partition, 100)
    events += [(e.event_id, e.data) for e in subscriber.drain()]
    assert all(e.event == EVENT_TYPE for e in subscriber.drain())
    check_exact_resume(log, start, lambda project: project_filter in (None, project), events)


def test_each_record_is_decoded_once_for_all_clients_and_build_filters_skip_decoding() -> None:
    log = Log({0: {0: "payments", 1: "search", 2: "payments"}}, {0: 3})
    fanout = Fanout()
    tail = Tail(log, fanout, {0: 0})
    clients = [Subscriber(f"c{i}", StatusFilter(project="payments"), {0: 0}) for i in range(5)]
    by_build = Subscriber("b", StatusFilter(build_id="b-search"), {0: 0})
    for client in [*clients, by_build]:
        fanout.register(client, live_end=False)
    tail.read(0, 3)
    assert log.decodes == 3
    for client in clients:
        assert [(e.event_id, e.data) for e in client.drain()] == [("0:1", "0:0"), ("0:3", "0:2")]
    assert [(e.event_id, e.data) for e in by_build.drain()] == [("0:2", "0:1")]
    only_builds = Fanout()
    Tail(log, only_builds, {0: 0})
    only_builds.register(Subscriber("x", StatusFilter(build_id="b-other"), {0: 0}), live_end=False)
    before = log.decodes
    only_builds.dispatch(log.record(0, o) for o in range(3))
    assert log.decodes == before  # no client wanted any of these keys


def test_a_slow_client_is_dropped_and_the_others_keep_receiving() -> None:
    log = Log({0: {o: "payments" for o in range(10)}}, {0: 10})
    fanout = Fanout()
    tail = Tail(log, fanout, {0: 0})
    slow, fast = Subscriber("slow", StatusFilter(), {0: 0}, limit=3), Subscriber("fast", StatusFilter(), {0: 0}, limit=3)
    fanout.register(slow, live_end=False)
    fanout.register(fast, live_end=False)
    for offset in range(10):
        dropped = tail.read(0, 1)
        assert [e.data for e in fast.drain()] == [f"0:{offset}"]
        assert dropped == ([slow] if offset == 3 else [])
    assert slow.dropped == "slow" and slow.wakeup.is_set() and slow not in fanout.subscribers
    assert [(e.event_id, e.data) for e in slow.drain()] == [("0:1", "0:0"), ("0:2", "0:1"), ("0:3", "0:2")]
    assert slow.position == {0: 3}  # the refused record is not counted: resuming from 0:3 gets it


def test_a_catch_up_reader_waits_for_room_and_a_full_queue_refuses_without_moving() -> None:
    log = Log({0: {o: "payments" for o in range(6)}}, {0: 6})
    client = Subscriber("c", StatusFilter(), {0: 0}, limit=4)
    for offset in range(4):
        assert client.take(log.record(0, offset))
        assert client.has_room() == (offset < 2)
    assert not client.take(log.record(0, 4)) and client.position == {0: 4}


def test_gaps_move_the_position_and_are_queued_in_order() -> None:
    log = Log({0: {5: "payments"}, 1: {}}, {0: 6, 1: 0})
    fanout = Fanout()
    tail = Tail(log, fanout, {0: 2, 1: 0})
    client = Subscriber("c", StatusFilter(), {0: 2, 1: 0})
    fanout.register(client, live_end=False)
    fanout.tail_gap(0, 5)
    tail.cursor[0] = 5
    tail.read(0, 1)
    assert [(e.event_id, e.event, e.data) for e in client.drain()] == [
        ("0:5,1:0", GAP_EVENT_TYPE, '{"partition":0,"resume_offset":2,"earliest_offset":5,"missed":3}'),
        ("0:6,1:0", EVENT_TYPE, "0:5"),
    ]


def test_a_partition_the_tail_does_not_read_stays_with_the_catch_up_reader() -> None:
    fanout = Fanout()
    fanout.start_at({0: 4})
    client = Subscriber("c", StatusFilter(), {0: 4, 1: 0})
    fanout.register(client, live_end=True)
    assert client.live == {0} and client.behind == {1}
    assert not fanout.attach(client, 1, 10)
