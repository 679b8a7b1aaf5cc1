"""Two fixed pauses of Faust's and mode's start and stop, shortened.

Checked against faust-streaming 0.15.3 (``faust/tables/manager.py``) and mode-streaming 0.4
(``mode/worker.py``).

Why: every worker start waited a flat second in `TableManager.on_start` (room for tables an
app registers while its agents start) and every stop a flat second in mode's
`Worker._sentinel_task` before closing the event loop. cipulse registers all its tables in
`streams.app.create_app`, before Faust starts, and a table added later still fails loudly
(Faust's "Too late to add tables"); the loop needs a few turns, not a second, to run the
callbacks the stop scheduled. Two seconds per worker restart is a rolling restart's, and the
test suite's, dead time.
"""

from __future__ import annotations

import asyncio

import faust
from faust.tables.manager import TableManager

LOOP_CLOSE_GRACE_SECONDS = 0.1
"""How long the stopped worker's loop keeps running callbacks before it is closed."""


class PromptTableManager(TableManager):
    """TableManager that starts its tables at once: all of cipulse's exist before Faust starts."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class PromptStopWorker(faust.Worker):
    """faust.Worker that closes its stopped event loop after a short grace, not mode's second."""

    async def _sentinel_task(self) -> None:
        await asyncio.sleep(LOOP_CLOSE_GRACE_SECONDS)
