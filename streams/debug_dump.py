"""Where a stalled worker is waiting: every task's full await chain plus Faust's consumer state.

mode's SIGUSR1 dump shows only a task's outermost frame, which for an agent says
`async for ...` and nothing more. `dump_worker` follows each coroutine's `cr_await`
(and async generators' `ag_await`) down to the future it blocks on, and then prints what
decides whether records reach the agents: per partition whether Faust and aiokafka fetch
it, flow control, each channel's queue, and the offsets read, acked and committed.
It only reads state (aiokafka's, owned by the consumer thread, racily) and is meant to be
triggered by a signal on a stalled worker, not called on a hot path.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from faust.types import AppT


def dump_worker(app: AppT, out: IO[Any] | None = None) -> None:
    """Write the dump to `out` (stderr, i.e. the worker log, by default)."""
    target = out or sys.stderr

    def write(line: str) -> None:
        print(line, file=target)

    write("=" * 30 + " cipulse debug dump " + "=" * 30)
    for section in (_tasks, _consumer, _channels):
        try:
            for line in section(app):
                write(line)
        except Exception:  # a dump must never kill the worker; show what broke instead
            write(f"!! {section.__name__} failed:\n{traceback.format_exc()}")
    write("=" * 80)
    target.flush()


def _tasks(app: AppT) -> Iterator[str]:
    yield "--- asyncio tasks (await chains, outermost first)"
    for task in sorted(asyncio.all_tasks(app.loop), key=lambda t: t.get_name()):
        yield f"* {task.get_name()} {'done' if task.done() else 'pending'}"
        yield from ("    " + line for line in _await_chain(task.get_coro()))


def _await_chain(awaitable: Any, depth: int = 0) -> Iterator[str]:
    seen = 0
    while awaitable is not None and seen < 60:
        seen += 1
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None) or getattr(
            awaitable, "gi_frame", None
        )
        if frame is not None:
            code = frame.f_code
            yield f"{code.co_filename}:{frame.f_lineno} {code.co_name}{_frame_note(frame)}"
            nxt = (
                getattr(awaitable, "cr_await", None)
                or getattr(awaitable, "ag_await", None)
                or getattr(awaitable, "gi_yieldfrom", None)
            )
            awaitable = nxt
            continue
        kind = type(awaitable).__name__
        if not isinstance(awaitable, asyncio.Future):
            # `async for` awaits an asend object, `await future` a FutureIter, Cython code a
            # coroutine_wrapper: what they wrap is only reachable through gc.
            inner = [r for r in gc.get_referents(awaitable) if _is_awaitable_state(r)]
            if inner:
                yield f"<{kind}> of {getattr(inner[0], '__qualname__', type(inner[0]).__name__)}"
                awaitable = inner[0]
                continue
        if isinstance(awaitable, asyncio.Future):
            yield f"-> {awaitable!r}"[:300]
            if isinstance(awaitable, asyncio.Task) and depth < 1:
                yield from ("   " + line for line in _await_chain(awaitable.get_coro(), depth + 1))
            return
        yield f"-> {awaitable!r}"[:300]
        return


TAKE_LOCALS = ("buffer", "events", "buffer_full", "buffer_consumed", "buffer_consuming")


def _frame_note(frame: Any) -> str:
    """The locals that tell stalls apart: whose method, and take()/take_events()' buffer state."""
    local = frame.f_locals
    note = ""
    owner = local.get("self")
    if owner is not None:
        note += f" self={type(owner).__name__}#{id(owner):x}"
    if "buffer_full" in local or "buffer_consuming" in local:
        for name in TAKE_LOCALS:
            if name in local:
                value = local[name]
                if isinstance(value, list):
                    shown: Any = len(value)
                elif hasattr(value, "is_set"):
                    shown = f"set={value.is_set()}#{id(value):x}"
                else:
                    shown = value
                note += f" {name}={shown}"
    return note


def _is_awaitable_state(obj: Any) -> bool:
    return isinstance(obj, asyncio.Future) or any(
        getattr(obj, attr, None) is not None for attr in ("cr_frame", "ag_frame", "gi_frame")
    )


def _consumer(app: AppT) -> Iterator[str]:
    consumer: Any = app.consumer
    yield "--- faust consumer"
    flow = app.flow_control
    yield (
        f"app.flow_control active={flow.is_active()} consumer.flow_active={consumer.flow_active}"
        f" can_resume_flow={consumer.can_resume_flow.is_set()} suspend_flow={consumer.suspend_flow.is_set()}"
        f" in_recovery={app.in_recovery} rebalancing={app.rebalancing}"
        f" generation={app.consumer_generation_id} n_acked={getattr(consumer, '_n_acked', '?')}"
    )
    yield f"recovery: {_recovery_state(app)}"
    assigned = consumer.assignment()
    active = consumer._active_partitions
    kafka = consumer._thread._ensure_consumer()
    kafka_paused = kafka.paused()
    unacked: Counter[Any] = Counter()
    oldest_unacked: dict[Any, int] = {}
    for message in list(consumer._unacked_messages):
        unacked[message.tp] += 1
        oldest_unacked[message.tp] = min(oldest_unacked.get(message.tp, message.offset), message.offset)
    state = kafka._subscription.subscription.assignment
    for tp in sorted(assigned):
        acked = consumer._acked.get(tp) or []
        try:
            tp_state = state.state_value(tp)
            position = tp_state.position if tp_state.has_valid_position else None
        except Exception:
            position = "?"
        yield (
            f"{tp.topic}[{tp.partition}] faust:"
            f"{' active' if active is not None and tp in active else ''}"
            f"{' paused' if tp in consumer._paused_partitions else ''}"
            f"{' buffered' if tp in consumer._buffered_partitions else ''}"
            f" aiokafka:{'paused' if tp in kafka_paused else 'fetching'} position={position}"
            f" highwater={_safe(lambda: kafka.highwater(tp))}"
            f" read={consumer._read_offset.get(tp)} committed={consumer._committed_offset.get(tp)}"
            f" acked={len(acked)}{f' [{min(acked)}..{max(acked)}]' if acked else ''}"
            f" gap={list(consumer._gap.get(tp) or [])[:3]}"
            f" unacked={unacked.get(tp, 0)} oldest_unacked={oldest_unacked.get(tp)}"
        )


def _recovery_state(app: AppT) -> str:
    recovery: Any = getattr(app.tables, "_recovery", None)
    if recovery is None:
        return "n/a"
    return (
        f"active_tps={len(recovery.active_tps)} standby_tps={len(recovery.standby_tps)}"
        f" completed={recovery.completed.is_set()} in_recovery={recovery.in_recovery}"
        f" active_remaining={recovery.active_remaining_total()}"
    )


def _channels(app: AppT) -> Iterator[str]:
    yield "--- channels (queue size / max, pending pressure-drop callbacks)"
    seen: set[int] = set()
    for name, agent in sorted(app.agents.items()):
        for actor in list(getattr(agent, "_actors", ())):
            stream = getattr(actor, "stream", None)
            channel = getattr(stream, "channel", None)
            if channel is None:
                continue
            yield f"agent {name}: {_queue_line(channel)}"
            seen.add(id(channel))
    conductor: Any = app.topics
    for channel in list(getattr(conductor, "_topics", ())):
        if id(channel) not in seen:
            yield f"subscribed {channel}: {_queue_line(channel)}"


def _queue_line(channel: Any) -> str:
    queue = channel.queue
    pending = len(getattr(queue, "_pending_pressure_drop_callbacks", ()))
    return (
        f"{channel} {type(channel).__name__}#{id(channel):x} queue#{id(queue):x}"
        f" qsize={queue.qsize()}/{queue.maxsize} pressure_pending={pending}"
        f" getters={len(getattr(queue, '_getters', ()))} putters={len(getattr(queue, '_putters', ()))}"
    )


def _safe(read: Any) -> Any:
    try:
        return read()
    except Exception as exc:
        return f"?{type(exc).__name__}"
