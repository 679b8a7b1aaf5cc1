"""The models behind payloads this process encoded itself, so reading them back is a lookup.

Why: the worker encodes every change set in the build-state agent, and moments later its own
ClickHouse sink (and, for final ones, the notification and gate agents) read the very same bytes
back from Kafka: fastavro plus pydantic validation, ~40 us of the GIL per change set, the largest
single cost of the sink thread. Decoding is a function of the bytes alone, and a validated model
decodes back equal to itself (the round-trip property tests in tests/unit/schemas), so the model
that was encoded is the answer. Consumers still read the bytes from Kafka and commit their own
offsets: only the decoding is skipped, and whatever the memo no longer holds (another worker's
records, a consumer lagging further behind than `entries` payloads, a restart) is decoded as
always.

Models are frozen and no reader changes the lists or dicts inside them, so one instance can be
handed to every reader. The memo is bounded (oldest payload out first) and thread-safe: the sink
decodes in its own thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

ModelT = TypeVar("ModelT")


class DecodeMemo(Generic[ModelT]):
    """Payload bytes -> the model they were encoded from, for the last `entries` payloads."""

    def __init__(self, entries: int) -> None:
        if entries < 1:
            raise ValueError(f"a decode memo needs room for at least one payload, got {entries}")
        self.entries = entries
        self.hits = 0
        self.misses = 0
        self._models: OrderedDict[bytes, ModelT] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, payload: bytes, model: ModelT) -> None:
        with self._lock:
            self._models[payload] = model
            if len(self._models) > self.entries:
                self._models.popitem(last=False)

    def recall(self, payload: bytes) -> ModelT | None:
        """The model `payload` was encoded from, or None when it is not (or no longer) held."""
        with self._lock:
            model = self._models.get(payload)
            if model is None:
                self.misses += 1
            else:
                self.hits += 1
        return model

    def __len__(self) -> int:
        return len(self._models)
