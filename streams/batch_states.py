"""Table state changed by one batch, written back only when the batch's outputs are safe.

Agents keep the states their batch changes here and call `commit` after every record they
produced for the batch is acknowledged: a table write that outlived a lost output would turn
the replayed input into a no-op and lose that output for good. It also turns one table write
per event into one per key per batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faust import streams as faust_streams
from faust.types import EventT, TableT

StateT = TypeVar("StateT")


def make_current(event: EventT[Any]) -> None:
    """Make `event` the current event of *this task* for table writes.

    Tables pick the changelog partition and RocksDB shard from the current event, and
    take_events() leaves the last buffered one current. Only the task-local context
    variable is set: changing `stream.current_event` would race with take_events()'s
    background buffering, which reads that attribute (it lost one event and doubled
    another in the integration tests).
    """
    faust_streams._current_event.set(weakref.ref(event))


@dataclass
class BatchStates(Generic[StateT]):
    table: TableT[bytes, Any]
    load: Callable[[bytes | None], StateT | None]
    dump: Callable[[StateT], bytes]
    changed: dict[bytes, tuple[StateT | None, EventT[Any]]] = field(default_factory=dict)

    def get(self, key: bytes) -> StateT | None:
        if key in self.changed:
            return self.changed[key][0]
        return self.load(self.table.get(key))

    def put(self, key: bytes, state: StateT, event: EventT[Any]) -> None:
        """Stage `state`; `event` decides the changelog partition (the key's source partition)."""
        self.changed[key] = (state, event)

    def delete(self, key: bytes, event: EventT[Any]) -> None:
        """Stage the key's removal (a changelog tombstone in `event`'s partition)."""
        self.changed[key] = (None, event)

    def staged(self) -> Iterator[tuple[bytes, StateT]]:
        """Keys this batch stores a state for (not the ones it deletes)."""
        for key, (state, _) in self.changed.items():
            if state is not None:
                yield key, state

    def deleted(self) -> Iterator[bytes]:
        for key, (state, _) in self.changed.items():
            if state is None:
                yield key

    def commit(self) -> None:
        """One table write per key; call only after the batch's outputs are acknowledged."""
        for key, (state, event) in self.changed.items():
            make_current(event)
            if state is not None:
                self.table[key] = self.dump(state)
            elif key in self.table:
                del self.table[key]
        self.changed.clear()
