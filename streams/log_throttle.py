"""One log line per subject per interval, with the count of the ones held back.

A failure that every request hits (an unreachable peer during a rebalance) would otherwise log
a line per request; operators need to know that it happens and how often, not each instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """`admit(subject)` says whether to log now, and how many were suppressed since the last line."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, subject: str) -> tuple[bool, int]:
        """(True, suppressed since the last admitted line) or (False, 0) while within the interval."""
        now = self._clock()
        last = self._last.get(subject)
        if last is not None and now - last < self._interval:
            self._held[subject] = self._held.get(subject, 0) + 1
            return False, 0
        self._last[subject] = now
        return True, self._held.pop(subject, 0)
