"""Whether the Kafka broker answers, for /ready: a metadata request, cached, never awaited by /ready.

Nothing else in /ready looks at the broker: with it stopped, the consumer keeps its assignment and
the tables stay "recovered", so the worker claimed to be ready through a whole outage. The probe
asks the worker's own producer client (aiokafka, on the web server's event loop) for the cluster
metadata with a short timeout. `/ready` reads the last finished probe's result and, when that is
older than `refresh_seconds`, starts the next one in the background: a request never waits for
the broker, and the answer is at most `refresh_seconds + timeout_seconds` old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
TIMEOUT_SECONDS = 3.0


class BrokerProbe:
    def __init__(
        self,
        fetch_metadata: Callable[[], Awaitable[Any]],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        timeout_seconds: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fetch = fetch_metadata
        self.refresh_seconds = refresh_seconds
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._now = now
        self._task: asyncio.Task[None] | None = None
        self._checked_at: float | None = None
        self.unreachable_since: datetime | None = None
        """Start of the first failed probe of the current outage; None while the broker answers."""
        self.last_error: str | None = None

    def problem(self) -> str | None:
        """What /ready should say about the broker (None: it answered last time, or no probe has finished).

        Starts a probe in the background when the last one is stale; call it on the event loop.
        """
        self._refresh_if_stale()
        if self.unreachable_since is None:
            return None
        return (
            f"Kafka broker unreachable since {self.unreachable_since.isoformat(timespec='seconds')}: {self.last_error}"
        )

    def _refresh_if_stale(self) -> None:
        if self._task is not None and not self._task.done():
            return
        if self._checked_at is not None and self._clock() - self._checked_at < self.refresh_seconds:
            return
        self._task = asyncio.ensure_future(self.probe())

    async def probe(self) -> None:
        """One metadata request; records the outcome (never raises)."""
        started = self._now()
        try:
            await asyncio.wait_for(self._fetch(), self.timeout_seconds)
        except Exception as exc:  # every failure means the same to /ready: no answer from the broker
            if isinstance(exc, asyncio.TimeoutError):
                self.last_error = f"no metadata answer within {self.timeout_seconds:g}s"
            else:
                self.last_error = f"metadata request failed: {exc!r}"
            if self.unreachable_since is None:
                self.unreachable_since = started
                log.warning("Kafka broker unreachable: %s", self.last_error)
        else:
            if self.unreachable_since is not None:
                log.info("Kafka broker reachable again (unreachable since %s)", self.unreachable_since.isoformat())
            self.unreachable_since = None
            self.last_error = None
        finally:
            self._checked_at = self._clock()


def producer_metadata(app: faust.App) -> Callable[[], Awaitable[Any]]:
    """A metadata request over the app's running producer (faust 0.15.3: `Producer._producer`, aiokafka)."""

    async def fetch() -> Any:
        producer = getattr(app.producer, "_producer", None)
        if producer is None:
            raise RuntimeError("the Kafka producer has not started")
        return await producer.client.fetch_all_metadata()

    return fetch
