"""The thread consumer's offset bookkeeping: what to commit after a batch, what a revocation drops."""

from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from streams.sink_consumer import sink_group
from streams.thread_consumer import next_offsets, without_partitions


def record(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=b"k", value=b"v")


def test_the_offset_to_commit_is_the_highest_handled_offset_plus_one_per_partition() -> None:
    batch = [record("s", 0, 7), record("s", 1, 3), record("s", 0, 9), record("s", 0, 8), record("t", 0, 1)]
    assert next_offsets(batch) == {("s", 0): 10, ("s", 1): 4, ("t", 0): 2}
    assert next_offsets([]) == {}


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000)), max_size=50))
def test_committing_next_offsets_never_skips_past_an_unhandled_record(pairs: list[tuple[int, int]]) -> None:
    batch = [record("s", partition, offset) for partition, offset in pairs]
    offsets = next_offsets(batch)
    for partition, offset in pairs:
        assert offsets[("s", partition)] > offset  # every handled record is below its commit
    for (_, partition), offset in offsets.items():
        assert offset - 1 in {o for p, o in pairs if p == partition}  # and nothing beyond the batch is


def test_a_revocation_drops_only_the_revoked_partitions_records() -> None:
    batch = [record("s", 0, 1), record("s", 1, 1), record("s", 2, 5), record("s", 1, 2)]
    kept = without_partitions(batch, {("s", 1), ("other", 0)})
    assert [(m.partition(), m.offset()) for m in kept] == [(0, 1), (2, 5)]


def test_the_sink_commits_in_a_group_of_its_own() -> None:
    assert sink_group("cipulse") == "cipulse-clickhouse-sink"
