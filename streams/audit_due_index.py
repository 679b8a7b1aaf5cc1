"""When each open audit next needs a look, so the detection timer touches only due audits.

A worker-local cache derived entirely from the audit-state table: the agent reschedules an
audit after every change, and the timer rebuilds the index from the table whenever the
worker's partition assignment changes (nothing here survives a restart, nothing needs to).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime


class DueIndex:
    """A heap of (deadline, audit_id) with lazy deletion of superseded entries."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._deadline: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._deadline)

    def schedule(self, audit_id: str, deadline: datetime | None) -> None:
        """Replace the audit's deadline; None means it needs no look any more."""
        if deadline is None:
            self._deadline.pop(audit_id, None)
            return
        if self._deadline.get(audit_id) == deadline:
            return
        self._deadline[audit_id] = deadline
        heapq.heappush(self._heap, (deadline, audit_id))

    def pop_due(self, now: datetime) -> list[str]:
        """Audits whose deadline is at or before `now`, each once; they leave the index."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, audit_id = heapq.heappop(self._heap)
            if self._deadline.get(audit_id) == deadline:
                del self._deadline[audit_id]
                due.append(audit_id)
        return due

    def rebuild(self, deadlines: Iterable[tuple[str, datetime | None]]) -> None:
        self._heap.clear()
        self._deadline.clear()
        for audit_id, deadline in deadlines:
            self.schedule(audit_id, deadline)
