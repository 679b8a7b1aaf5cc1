"""`RareTurns`: Faust's stream iterator yields to the event loop once per N records, not per record."""

from __future__ import annotations

import asyncio

from faust._cython import streams as compiled_streams

from streams import faust_stream_turns
from streams.faust_patches import CipulseApp
from streams.faust_stream_turns import RareTurns


def test_only_every_nth_call_gives_the_loop_a_turn() -> None:
    turns = RareTurns(every=4)

    async def scenario() -> list[bool]:
        other_ran: list[bool] = []
        flag = {"ran": False}

        def other() -> None:
            flag["ran"] = True

        for _ in range(8):
            flag["ran"] = False
            asyncio.get_running_loop().call_soon(other)
            await turns(0)
            other_ran.append(flag["ran"])
            await asyncio.sleep(0)  # let a callback that did not run yet run now
        return other_ran

    # the 4th and 8th awaits suspend the stream, so the callback scheduled before them runs during the await
    assert asyncio.run(scenario()) == [False, False, False, True, False, False, False, True]


def test_a_real_delay_is_always_slept() -> None:
    turns = RareTurns(every=1000)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await turns(0.05)
        return loop.time() - started

    assert asyncio.run(scenario()) >= 0.04


def test_the_app_installs_it_into_faust_s_compiled_stream_iterator_once() -> None:
    CipulseApp("turns-test", store="memory://", autodiscover=False)
    installed = compiled_streams.sleep
    assert isinstance(installed, RareTurns)
    assert installed.every == faust_stream_turns.TURN_EVERY_RECORDS
    CipulseApp("turns-test-2", store="memory://", autodiscover=False)
    assert compiled_streams.sleep is installed
