"""`start_inline`: a coroutine runs in the caller until it suspends, then finishes as a Task would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.inline_await import Suspended, start_inline


async def no_suspension(value: int) -> int:
    return value * 2


async def wait_on(future: asyncio.Future[int], log: list[str]) -> int:
    log.append("before")
    try:
        result = await future
    finally:
        log.append("finally")
    log.append("after")
    return result + 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_coroutine_that_never_suspends_finishes_in_the_caller() -> None:
    finished, result = start_inline(no_suspension(21))
    assert finished is True
    assert result == 42


def test_an_error_before_the_first_suspension_reaches_the_caller() -> None:
    async def fails() -> None:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        start_inline(fails())


def test_a_suspended_coroutine_finishes_with_the_awaited_result() -> None:
    async def scenario() -> tuple[list[str], int]:
        log: list[str] = []
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        finished, rest = start_inline(wait_on(future, log))
        assert finished is False and isinstance(rest, Suspended)
        assert log == ["before"]
        task = asyncio.ensure_future(rest.rest())
        await asyncio.sleep(0)
        assert not task.done()
        future.set_result(41)
        return log, await task

    log, result = run(scenario())
    assert result == 42
    assert log == ["before", "finally", "after"]


def test_the_awaited_future_s_error_is_raised_inside_the_coroutine() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        _, rest = start_inline(wait_on(future, log))
        task = asyncio.ensure_future(rest.rest())  # type: ignore[union-attr]
        await asyncio.sleep(0)
        future.set_exception(KeyError("gone"))
        with pytest.raises(KeyError, match="gone"):
            await task
        return log

    assert run(scenario()) == ["before", "finally"]


def test_cancelling_the_rest_cancels_the_coroutine_and_what_it_waits_on() -> None:
    async def scenario() -> tuple[list[str], asyncio.Future[int]]:
        log: list[str] = []
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        _, rest = start_inline(wait_on(future, log))
        task = asyncio.ensure_future(rest.rest())  # type: ignore[union-attr]
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log, future

    log, future = run(scenario())
    assert log == ["before", "finally"]
    assert future.cancelled()


def test_bare_yields_and_several_suspensions_are_driven_to_the_end() -> None:
    async def many_steps(futures: list[asyncio.Future[int]]) -> int:
        total = 0
        await asyncio.sleep(0)  # a bare yield first
        for future in futures:
            total += await future
            await asyncio.sleep(0)
        return total

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(3)]
        finished, rest = start_inline(many_steps(futures))
        assert finished is False
        task = asyncio.ensure_future(rest.rest())  # type: ignore[union-attr]
        for number, future in enumerate(futures, 1):
            await asyncio.sleep(0)
            loop.call_soon(future.set_result, number)
        total: int = await task
        return total

    assert run(scenario()) == 6


def test_a_cancellation_during_a_bare_yield_is_thrown_into_the_coroutine() -> None:
    async def yields_forever(log: list[str]) -> None:
        try:
            while True:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append("cancelled inside")
            raise

    async def scenario() -> list[str]:
        log: list[str] = []
        _, rest = start_inline(yields_forever(log))
        task = asyncio.ensure_future(rest.rest())  # type: ignore[union-attr]
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log

    assert run(scenario()) == ["cancelled inside"]


def test_the_rest_can_be_raced_like_any_coroutine() -> None:
    """As the consumer does: the rest of a suspended delivery against a flag that wins first."""

    async def scenario() -> tuple[bool, list[str]]:
        log: list[str] = []
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        _, rest = start_inline(wait_on(future, log))
        flag = asyncio.Event()
        delivery = asyncio.ensure_future(rest.rest())  # type: ignore[union-attr]
        flagged = asyncio.ensure_future(flag.wait())
        asyncio.get_running_loop().call_soon(flag.set)
        done, pending = await asyncio.wait({delivery, flagged}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return delivery in done, log

    delivered, log = run(scenario())
    assert delivered is False
    assert log == ["before", "finally"]
