"""Drive the demo feed into Kafka, paced in real time or as fast as possible, with progress.

Paced mode starts a new build every `1/rate` seconds and plays each build's events at
`speed` times real speed, re-stamping them with the wall clock so the live views show
builds running now. Burst mode sends every event at once with simulated timestamps
(tests and benchmarks).
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TextIO

from schemas import AuditEvent, BuildEvent, encode
from streams.demo_feed import simulate_audit, simulate_build
from streams.producer import BuildEventProducer


class Progress:
    """One status line, rewritten in place on a terminal and every 5 s otherwise."""

    def __init__(self, out: TextIO, total_builds: int | None) -> None:
        self._out = out
        self._total = total_builds
        self._tty = out.isatty()
        self._started = time.monotonic()
        self._last = 0.0

    def update(self, builds: int, events: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.5 if self._tty else 5.0):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        of = f"/{self._total}" if self._total else ""
        line = f"demo feed: {builds}{of} builds started, {events} events sent, {events / elapsed:,.0f} events/s"
        self._out.write(("\r" + line) if self._tty else (line + "\n"))
        self._out.flush()

    def done(self, builds: int, events: int) -> None:
        self.update(builds, events, force=True)
        if self._tty:
            self._out.write("\n")


def run_burst(
    producer: BuildEventProducer,
    builds: int,
    seed: int,
    out: TextIO = sys.stderr,
    audit_producer: BuildEventProducer | None = None,
) -> int:
    """Send `builds` simulated builds as fast as the producer allows; returns events sent."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    progress = Progress(out, builds)
    sent = 0
    for number in range(builds):
        build = simulate_build(rng, start + timedelta(seconds=number * 3))
        for event in build.events:
            producer.send(event)
            sent += 1
        if audit_producer is not None:
            for audit in simulate_audit(rng, build):
                audit_producer.send_raw(audit.audit_id.encode(), encode(audit))
        progress.update(number + 1, sent)
    producer.flush()
    if audit_producer is not None:
        audit_producer.flush()
    progress.done(builds, sent)
    return sent


def run_paced(
    producer: BuildEventProducer,
    rate: float,
    speed: float,
    seed: int,
    builds: int | None = None,
    out: TextIO = sys.stderr,
    audit_producer: BuildEventProducer | None = None,
) -> int:
    """Start `rate` builds per second (forever when `builds` is None); returns events sent."""
    rng = random.Random(seed)
    progress = Progress(out, builds)
    pending: list[tuple[float, int, BuildEvent | AuditEvent]] = []
    counter = itertools.count()
    started_builds = sent = 0
    next_build_at = time.monotonic()
    while builds is None or started_builds < builds or pending:
        now = time.monotonic()
        if (builds is None or started_builds < builds) and now >= next_build_at:
            build = simulate_build(rng, datetime.now(UTC))
            audits = simulate_audit(rng, build) if audit_producer is not None else ()
            _schedule(pending, counter, (*build.events, *audits), now, speed)
            started_builds += 1
            next_build_at += 1.0 / rate
        while pending and pending[0][0] <= now:
            _, _, record = heapq.heappop(pending)
            record = record.model_copy(update={"event_time": datetime.now(UTC)})
            if isinstance(record, AuditEvent):
                assert audit_producer is not None
                audit_producer.send_raw(record.audit_id.encode(), encode(record))
            else:
                producer.send(record)
            sent += 1
        progress.update(started_builds, sent)
        wake = min([next_build_at] + ([pending[0][0]] if pending else []))
        time.sleep(max(0.0, min(0.2, wake - time.monotonic())))
    producer.flush()
    if audit_producer is not None:
        audit_producer.flush()
    progress.done(started_builds, sent)
    return sent


def _schedule(
    pending: list[tuple[float, int, BuildEvent | AuditEvent]],
    counter: Iterator[int],
    events: tuple[BuildEvent | AuditEvent, ...],
    now: float,
    speed: float,
) -> None:
    origin = events[0].event_time
    for event in events:
        due = now + (event.event_time - origin).total_seconds() / speed
        heapq.heappush(pending, (due, next(counter), event))
