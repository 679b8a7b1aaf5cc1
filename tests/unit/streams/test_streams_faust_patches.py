"""The consumer overrides that keep Faust from committing past records it never processed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import faust_patches
from streams.faust_patches import (
    CipulseApp,
    NoSilentSkipConsumer,
    NoSilentSkipTransport,
    check_faust_version,
    gap_ranges,
    strict_new_offset,
)

TP0 = TP("events", 0)


def gaps(*ranges: tuple[int, int]) -> IntervalTree:
    """Inclusive ranges, as `Consumer._add_gap` takes them."""
    tree = IntervalTree()
    for first, last in ranges:
        tree.addi(first, last + 1)
    return tree


def stock_new_offset(acked: list[int], gap_tree: IntervalTree, committed: int | None) -> int | None:
    """faust's own `Consumer._new_offset` on the same state."""
    state = SimpleNamespace(
        _acked={TP0: acked}, _gap={TP0: gap_tree}, _committed_offset={TP0: committed},
        _acked_index=defaultdict(set, {TP0: set(acked)}),
    )
    return faust_consumer.Consumer._new_offset(state, TP0)  # type: ignore[arg-type]


def test_contiguous_acks_commit_past_the_last_one() -> None:
    acked = [12, 10, 11]
    assert strict_new_offset(acked, IntervalTree(), committed=10) == 13
    assert acked == []


def test_a_later_hole_stops_the_commit_there_and_keeps_the_rest() -> None:
    acked = [10, 11, 14, 15]
    assert strict_new_offset(acked, IntervalTree(), committed=10) == 12
    assert acked == [14, 15]


def test_the_committed_offset_itself_unacked_blocks_the_commit() -> None:
    # offset 10 (the next one to read) was never processed: stock Faust commits past it
    assert stock_new_offset([11, 12], IntervalTree(), committed=10) == 13
    acked = [11, 12]
    assert strict_new_offset(acked, IntervalTree(), committed=10) is None
    assert acked == [11, 12]


def test_a_gap_recorded_from_read_offset_plus_one_no_longer_hides_a_lost_range() -> None:
    # after a seek to 100 the first record delivered was 136: the drain loop records 101..136
    # as a gap; stock Faust then commits past 100..135 although they were never processed
    assert stock_new_offset([136, 137], gaps((101, 136)), committed=100) == 137
    assert strict_new_offset([136, 137], gaps((101, 136)), committed=100) is None


def test_a_gap_that_includes_the_committed_offset_is_committed_past() -> None:
    acked = [136, 137]
    tree = gaps((100, 135))
    assert strict_new_offset(acked, tree, committed=100) == 138
    assert acked == [] and not tree


def test_gaps_beyond_the_acked_offsets_are_kept_for_later() -> None:
    tree = gaps((13, 14), (40, 45))
    acked = [10, 11, 12, 15]
    assert strict_new_offset(acked, tree, committed=10) == 16
    assert gap_ranges(tree) == [(40, 45)]


def test_without_a_committed_offset_the_first_acked_run_is_committed() -> None:
    assert strict_new_offset([3, 4, 6], IntervalTree(), committed=None) == 5
    assert strict_new_offset([], IntervalTree(), committed=5) is None


def test_committed_offset_zero_is_checked_too() -> None:
    assert strict_new_offset([1, 2], IntervalTree(), committed=0) is None
    assert strict_new_offset([0, 1], IntervalTree(), committed=0) == 2


def test_version_guard_logs_an_error_for_another_faust(caplog: pytest.LogCaptureFixture) -> None:
    assert check_faust_version(faust_patches.CHECKED_FAUST_VERSION)
    assert check_faust_version()  # the installed one is the checked one
    with caplog.at_level("ERROR", logger="streams.faust_patches"):
        assert not check_faust_version("0.99.0")
    assert "0.99.0" in caplog.text


def test_the_app_uses_the_patched_transport_and_consumer() -> None:
    app = CipulseApp("patch-test", broker="kafka://localhost:9092", autodiscover=False, store="memory://")
    assert isinstance(app.transport, NoSilentSkipTransport)
    assert isinstance(app.consumer, NoSilentSkipConsumer)


# -- delivery holes -----------------------------------------------------------------------


class Fetches:
    """Stands in for Faust's `Consumer.getmany`: one list of offsets per call."""

    def __init__(self, *batches: list[int]) -> None:
        self.batches = list(batches)

    async def getmany(self, consumer: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for offset in self.batches.pop(0):
            yield TP0, SimpleNamespace(tp=TP0, topic=TP0.topic, offset=offset)


def deliver(consumer: Any, monkeypatch: pytest.MonkeyPatch, *batches: list[int]) -> list[list[int]]:
    fetches = Fetches(*batches)

    def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        return fetches.getmany(self, timeout)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)

    async def run() -> list[list[int]]:
        delivered = []
        for _ in batches:
            delivered.append([message.offset async for _, message in consumer.getmany(1.0)])
        return delivered

    return asyncio.run(run())


def test_contiguous_delivery_passes_through(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer._expect(TP0, 10)
    assert deliver(consumer, monkeypatch, [10, 11], [12, 13]) == [[10, 11], [12, 13]]
    assert consumer.seeks == []


def test_a_hole_after_a_seek_rewinds_the_partition(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    consumer._expect(TP0, 100)  # as seek_to_committed does
    with caplog.at_level("WARNING", logger="streams.faust_patches"):
        delivered = deliver(consumer, monkeypatch, [136, 137], [100, 101])
    assert delivered == [[], [100, 101]]
    assert consumer.seeks == [(TP0, 100)]
    assert "offsets 100..135" in caplog.text and "seeking back to 100" in caplog.text


def test_a_hole_in_mid_stream_rewinds_too(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer._expect(TP0, 10)
    assert deliver(consumer, monkeypatch, [10, 11, 15, 16], [12]) == [[10, 11], [12]]
    assert consumer.seeks == [(TP0, 12)]


def test_offsets_that_stay_missing_become_a_gap_including_the_first(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    consumer._committed_offset[TP0] = 100
    consumer._expect(TP0, 100)
    attempts = faust_patches.MAX_SEEK_BACKS
    with caplog.at_level("WARNING", logger="streams.faust_patches"):
        delivered = deliver(consumer, monkeypatch, *([[136]] * attempts), [136, 137])
    assert delivered == [[]] * attempts + [[136, 137]]
    assert consumer.seeks == [(TP0, 100)] * attempts
    assert "still missing after seeking back" in caplog.text
    assert gap_ranges(consumer._gap[TP0]) == [(100, 135)]
    consumer._acked[TP0] = [136, 137]
    assert consumer._new_offset(TP0) == 138


def test_topics_without_acks_are_not_checked(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: False)
    consumer._expect(TP0, 0)
    assert deliver(consumer, monkeypatch, [5, 6]) == [[5, 6]]
    assert consumer.seeks == []


def test_tables_get_bounded_rocksdb_options_unless_given(tmp_path: Any) -> None:
    from faust.stores.rocksdb import RocksDBOptions

    from streams.table_options import BLOCK_CACHE_SIZE, MAX_WRITE_BUFFER_NUMBER, WRITE_BUFFER_SIZE

    app = CipulseApp("opts", broker="kafka://localhost:9", store="memory://", datadir=str(tmp_path), autodiscover=False)
    bounded = app.Table("bounded", default=None, partitions=3)
    own = app.Table("own", default=None, partitions=3, options={"write_buffer_size": 1 << 20})
    assert bounded.options == {
        "write_buffer_size": WRITE_BUFFER_SIZE, "max_write_buffer_number": MAX_WRITE_BUFFER_NUMBER,
        "block_cache_size": BLOCK_CACHE_SIZE,
    }
    assert own.options == {"write_buffer_size": 1 << 20}
    assert bounded.options is not app.Table("other", default=None, partitions=3).options  # Faust pops keys
    opened = RocksDBOptions(**bounded.options)
    assert (opened.write_buffer_size, opened.max_write_buffer_number, opened.block_cache_size) == (
        WRITE_BUFFER_SIZE, MAX_WRITE_BUFFER_NUMBER, BLOCK_CACHE_SIZE,
    )


def test_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    import gc

    before = gc.get_threshold()
    try:
        faust_patches.tune_gc()
        assert gc.get_threshold() == faust_patches.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class TakenRecord:
    """A message an agent took; hashable like Faust's, so it can sit in `_unacked_messages`."""

    def __init__(self) -> None:
        self.acked = False


class NeverEmptyConsumer:
    """A consumer whose agents never ack what they took (a take_events buffer whose stream stopped).

    Its `wait_empty` ignores cancellation, like Faust's (its inner ack wait swallows it).
    """

    def __init__(self) -> None:
        self._unacked_messages = {TakenRecord(), TakenRecord()}
        self.waits = 0
        self.released = False
        self.commits = 0
        self.final_commits = 0

    async def wait_empty(self) -> None:
        self.waits += 1
        while not self.released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass

    def _clean_unacked_messages(self) -> None:
        self._unacked_messages = {m for m in self._unacked_messages if not m.acked}

    async def commit(self) -> bool:
        self.commits += 1
        return True

    async def commit_and_end_transactions(self) -> None:
        self.final_commits += 1


def test_a_stopping_worker_waits_a_bounded_time_for_unacked_records(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(faust_patches, "SHUTDOWN_STREAM_WAIT_SECONDS", 0.2)
    app = CipulseApp("wait-test", store="memory://", autodiscover=False)
    consumer = NeverEmptyConsumer()

    async def stop_and_wait() -> None:
        app._stopped.set()  # what Service.stop() sets first: the app is shutting down
        await asyncio.wait_for(app._consumer_wait_empty(consumer, faust_patches.log), 5)

    asyncio.run(stop_and_wait())
    assert consumer.waits == 0 and consumer.commits >= 1 and consumer.final_commits == 1
    assert "2 record(s) the agents took were not processed" in caplog.text


def test_a_stopping_worker_stops_waiting_as_soon_as_everything_is_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "SHUTDOWN_STREAM_WAIT_SECONDS", 30.0)
    app = CipulseApp("wait-test", store="memory://", autodiscover=False)
    consumer = NeverEmptyConsumer()

    async def ack_soon() -> None:
        await asyncio.sleep(0.2)
        for message in consumer._unacked_messages:
            message.acked = True

    async def stop_and_wait() -> float:
        app._stopped.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        acking = asyncio.ensure_future(ack_soon())
        await asyncio.wait_for(app._consumer_wait_empty(consumer, faust_patches.log), 5)
        await acking
        return loop.time() - started

    assert asyncio.run(stop_and_wait()) < 2
    assert consumer._unacked_messages == set() and consumer.final_commits == 1


def test_a_rebalance_still_waits_for_every_taken_record() -> None:
    app = CipulseApp("wait-test", store="memory://", autodiscover=False)
    consumer = NeverEmptyConsumer()

    async def rebalance() -> None:
        waiting = asyncio.ensure_future(app._consumer_wait_empty(consumer, faust_patches.log))
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done  # still waiting for the taken records, as Faust does
        consumer.released = True
        await waiting

    asyncio.run(rebalance())
    assert consumer.waits == 1


class Fetched:
    def __init__(self, tp: TP, acked: bool = False) -> None:
        self.tp, self.acked = tp, acked


def stuck_state(acked: list[int], committed: int | None, *, in_flight: bool = False, paused: bool = False,
                rebalancing: bool = False, gap: IntervalTree | None = None, end: int | None = None,
                acks: bool = True) -> Any:
    """The consumer fields `stuck_heads` reads, for partition TP0 (`end`: the broker's end offset)."""
    state = SimpleNamespace(
        app=SimpleNamespace(rebalancing=rebalancing, tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)),
                            topics=SimpleNamespace(acks_enabled_for=lambda topic: acks)),
        _acked={TP0: acked}, _committed_offset={TP0: committed}, _gap=defaultdict(IntervalTree, {TP0: gap or IntervalTree()}),
        _unacked_messages={Fetched(TP0)} if in_flight else set(), _paused_partitions={TP0} if paused else set(),
        _stuck_since={}, highwater=lambda tp: end,
    )
    state._end_offset = lambda tp: NoSilentSkipConsumer._end_offset(state, tp)  # type: ignore[arg-type]
    return state


def test_a_head_hole_nobody_holds_is_repaired_only_after_it_persisted() -> None:
    state = stuck_state(acked=[574, 575, 576], committed=218)  # the kill -9 run: 218..573 never reached an agent
    assert NoSilentSkipConsumer.stuck_heads(state, 100.0) == []  # first sighting: only suspected
    assert NoSilentSkipConsumer.stuck_heads(state, 105.0) == []
    assert NoSilentSkipConsumer.stuck_heads(state, 100.0 + faust_patches.STUCK_HEAD_SECONDS) == [(TP0, 218)]
    assert state._stuck_since == {}  # repaired: the clock starts afresh if it happens again


@pytest.mark.parametrize(
    "kwargs",
    [
        {"acked": [218, 219], "committed": 218},  # the head itself is acked: the commit just has not run
        {"acked": [574], "committed": 218, "in_flight": True},  # an agent still holds a record of the partition
        {"acked": [574], "committed": 218, "paused": True},  # paused partitions are not fetched at all
        {"acked": [574], "committed": 218, "rebalancing": True},
        {"acked": [574], "committed": 218, "gap": gaps((218, 573))},  # known missing offsets (retention, markers)
        {"acked": [], "committed": 218, "end": 218},  # caught up: nothing beyond the committed offset
        {"acked": [], "committed": 218, "end": None},  # end offset not known yet (nothing fetched)
        {"acked": [], "committed": 218, "end": 900, "in_flight": True},  # delivered, being processed
        {"acked": [], "committed": 218, "end": 900, "paused": True},
        {"acked": [574], "committed": 218, "acks": False},  # a topic whose records are never acked
        {"acked": [574], "committed": None},
    ],
)
def test_nothing_is_sought_back_while_the_head_is_accounted_for(kwargs: dict[str, Any]) -> None:
    state = stuck_state(**kwargs)
    for now in (0.0, 100.0, 1000.0):
        assert NoSilentSkipConsumer.stuck_heads(state, now) == []


def test_a_partition_with_records_but_nothing_delivered_is_repaired_after_it_persisted() -> None:
    # the kill -9 + restart stall: fetched to the end, nothing delivered, committed offset unmoved
    state = stuck_state(acked=[], committed=496, end=1480)
    assert NoSilentSkipConsumer.stuck_heads(state, 50.0) == []
    assert NoSilentSkipConsumer.stuck_heads(state, 50.0 + faust_patches.STUCK_HEAD_SECONDS) == [(TP0, 496)]


def test_an_end_offset_that_cannot_be_read_counts_as_unknown() -> None:
    state = stuck_state(acked=[], committed=496)

    def not_assigned(tp: TP) -> int:
        raise AssertionError("Partition is not assigned")  # aiokafka's check

    state.highwater = not_assigned
    for now in (0.0, 1000.0):
        assert NoSilentSkipConsumer.stuck_heads(state, now) == []


def test_a_moving_committed_offset_restarts_the_clock() -> None:
    state = stuck_state(acked=[574], committed=218)
    assert NoSilentSkipConsumer.stuck_heads(state, 0.0) == []
    state._committed_offset[TP0] = 300  # the head moved on: not the same hole
    assert NoSilentSkipConsumer.stuck_heads(state, faust_patches.STUCK_HEAD_SECONDS) == []
    assert NoSilentSkipConsumer.stuck_heads(state, 2 * faust_patches.STUCK_HEAD_SECONDS) == [(TP0, 300)]


def test_a_stuck_partition_out_of_the_fetch_is_put_back_and_sought(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # a full stream queue took TP0 out of the fetch, then a clear emptied it: nothing in flight, never fetched
    consumer._committed_offset[TP0] = 619
    consumer._active_partitions = set()
    consumer._buffered_partitions = {TP0}
    monkeypatch.setattr(consumer, "highwater", lambda tp: 925)
    monkeypatch.setattr(type(consumer.app), "rebalancing", False, raising=False)
    monkeypatch.setattr(consumer.app.tables.recovery, "in_recovery", False, raising=False)
    clock = iter([100.0, 100.0 + faust_patches.STUCK_HEAD_SECONDS + 1])
    monkeypatch.setattr(consumer, "stuck_heads", lambda now, real=consumer.stuck_heads: real(next(clock)))

    async def two_checks() -> None:
        await consumer._repair_stuck_heads()
        consumer._last_stuck_check = 0.0
        await consumer._repair_stuck_heads()

    asyncio.run(two_checks())
    assert consumer.seeks == [(TP0, 619)]
    assert TP0 in consumer._active_partitions and not consumer._buffered_partitions
