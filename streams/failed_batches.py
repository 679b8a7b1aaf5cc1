"""An agent that fails on a batch stops the worker instead of letting Faust commit the batch.

Faust's `take_events` acks a batch's events in its generator's `finally`, which also runs when
the agent's body raised (once the abandoned generator is closed), and Faust then restarts the
agent in the same process, whose old stream can go on acking records it never processed. Seen
with a build-status topic refusing change sets: every input offset of the build-state agent was
committed although no change set, table write or ClickHouse row ever happened
(`tests/integration/test_agent_failures.py`).

So an agent batch runs inside `stop_worker_on_failure`: if it raises, its events get one more
reference each (the generator's late ack is never the last one), they leave the consumer's
in-flight set (the shutdown does not wait for them), the agent parks instead of being restarted
(so its stream takes and acks nothing more), and the worker stops gracefully, committing only
what was processed, and exits with `EXIT_AGENT_FAILED`. Its next start processes the failed
batch again: a lasting cause (a record the broker refuses for good) shows as a worker that
keeps stopping with the reason in its log, never as lost events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from faust.types import EventT, StreamT

log = logging.getLogger(__name__)

EXIT_AGENT_FAILED = 70
"""The worker's exit status after an agent failed on a batch (sysexits' EX_SOFTWARE)."""

_failure: BaseException | None = None


def agent_failure() -> BaseException | None:
    """Why this process's worker stopped, if an agent failed on a batch."""
    return _failure


@asynccontextmanager
async def stop_worker_on_failure(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> AsyncIterator[None]:
    """Around one `take_events` batch of an agent (see the module docstring)."""
    try:
        yield
    except asyncio.CancelledError:  # stopping mid-batch: the unfinished batch must not be acked either
        _keep_unacked(stream, events)
        raise
    except Exception as exc:
        _keep_unacked(stream, events)
        log.critical(
            "%s failed on a batch of %d events: %r. Stopping the worker so that nothing acks them; "
            "the next start processes them again", _describe(events), len(events), exc,
        )
        _stop_worker(exc)
        await asyncio.Event().wait()  # parked until the stop cancels the agent: no restart, no later ack
        raise


def _keep_unacked(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
    unacked = getattr(stream.app.consumer, "_unacked_messages", None)
    for event in events:
        event.message.incref()
        if unacked is not None:
            unacked.discard(event.message)


def _stop_worker(reason: BaseException) -> None:
    global _failure
    if _failure is None:
        _failure = reason
        _signal_stop()


def _signal_stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful stop, as `kill <pid>` would


def _describe(events: Sequence[EventT[Any]]) -> str:
    message = events[0].message  # take_events never yields an empty batch
    return f"the agent reading {message.topic}[{message.partition}]@{message.offset}"
