"""Run a coroutine inline until it first suspends; only then pay for a Task.

Why: Faust's consumer hands every record to its callback through ``wait_first``, which wraps
the callback and three flags in four Tasks and costs several event-loop turns per record
(about a third of a no-op agent's CPU here), although the callback nearly always finishes
without suspending (a free flow-control flag, a queue with room). `start_inline` steps the
coroutine once in the caller; a coroutine that did suspend is finished by `_resume`, which
drives it exactly as an ``asyncio.Task`` would, so the caller can still race it against
other events. (Python 3.12's eager task factory does the same; this project runs on 3.11.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Suspended:
    """The rest of a coroutine that suspended on its first step; `rest()` finishes it."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def rest(self) -> Coroutine[Any, Any, Any]:
        return _resume(self._coro, self._yielded)


def start_inline(coro: Coroutine[Any, Any, T]) -> tuple[bool, T | Suspended]:
    """Step `coro` once: (True, its result) if it finished, else (False, `Suspended`).

    An exception raised before the first suspension propagates to the caller, as awaiting
    the coroutine would.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, Suspended(coro, yielded)


async def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    """Finish a coroutine that yielded `yielded` (a future, or None for a bare yield) to its driver.

    Mirrors ``asyncio.Task.__step``: once the awaited future is done the coroutine reads its
    outcome itself (result, exception or cancellation); a cancellation that arrives while
    the future is still pending, or during a bare yield, is thrown into the coroutine.
    """
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False  # taken over, as Task.__step does before waiting
                await yielded
            outcome: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as a Task does
            outcome = None if yielded is not None and yielded.done() else exc
        try:
            yielded = coro.send(None) if outcome is None else coro.throw(outcome)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
