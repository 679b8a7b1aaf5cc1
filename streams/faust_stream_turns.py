"""Faust streams give the event loop a turn every few records, not before every record.

Checked against faust-streaming 0.15.3 (``faust/_cython/streams.pyx``, ``StreamIterator.next``).

Why: the stream iterator starts every record with ``await asyncio.sleep(0)``, so a backlog
costs one full event-loop iteration per record (an ``epoll`` call, the ready queue, the
task step): one of the largest items left in a no-op agent's profile. Fairness does not
need it per record: a stream that runs out of records suspends on its queue anyway, and
the other tasks (fetching, the API, commits) are served as well with a turn every
`TURN_EVERY_RECORDS` records. `install` replaces the iterator module's ``sleep`` (a module
global the compiled code looks up at run time) with `RareTurns`, which hands out a real
``sleep(0)`` once per `TURN_EVERY_RECORDS` calls and an already-finished awaitable otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Generator
from typing import Any

log = logging.getLogger(__name__)

TURN_EVERY_RECORDS = 32
"""Records a stream iterator takes between two turns it gives the event loop."""


class _Finished:
    """An awaitable that completes at once, without suspending the awaiting task."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # an empty iterator finishes the await at once


_FINISHED = _Finished()


class RareTurns:
    """Stands in for ``asyncio.sleep`` in Faust's stream iterator (see the module docstring)."""

    def __init__(self, every: int = TURN_EVERY_RECORDS) -> None:
        self.every = every
        self._since_turn = 0

    def __call__(self, delay: float = 0, result: Any = None) -> Awaitable[Any]:
        self._since_turn += 1
        if delay or self._since_turn >= self.every:
            self._since_turn = 0
            return asyncio.sleep(delay, result)
        return _FINISHED


def install(every: int = TURN_EVERY_RECORDS) -> bool:
    """Patch Faust's compiled stream iterator; False (and a log line) when it is not in use."""
    try:
        from faust._cython import streams as compiled_streams
    except ImportError:  # pure-Python Faust: its iterator keeps the per-record sleep
        log.info("faust's compiled stream iterator is not installed: streams yield before every record")
        return False
    if not isinstance(compiled_streams.sleep, RareTurns):
        compiled_streams.sleep = RareTurns(every)
    return True
