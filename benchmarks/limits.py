"""What bounds the worker's rate, measured apart: Faust's per-record path and our own per-event work.

`compare` runs both on the same backlog as the peer and the worker, so the written-down limit
(benchmarks/README.md) is a figure of the same session, not an estimate:

- `faust_ceiling`: `faust_ceiling.py` in a subprocess, a no-op agent in the worker's app class
  over the build-events topic. No Faust-agent design of the job can be faster than this.
- `own_work`: the build-state agent's own per-event functions in this process, no Kafka, no
  table: decode, `apply_event`, `change_set`, encode, and once per 500-event batch the load and
  dump of each touched build's state (what the agent's `BatchStates` does per batch).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas import BuildEvent
from schemas.serde import decode, encode
from streams.build_state import Accepted, BuildState, apply_event
from streams.builds import dump_state, load_state
from streams.change_set import change_set

REPO = Path(__file__).resolve().parent.parent
BATCH_SIZE = 500


def faust_ceiling(bootstrap: str, topic: str, expected: int, timeout: float, decode_records: bool = False) -> dict[str, Any]:
    """The no-op Faust agent's figures (faust_ceiling.py's JSON line)."""
    command = [sys.executable, str(REPO / "benchmarks" / "faust_ceiling.py"), "--bootstrap", bootstrap,
               "--topic", topic, "--expected", str(expected)] + (["--decode"] if decode_records else [])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    # Faust's worker writes terminal escapes (cursor show) before our line: take it from its brace
    lines = [line[line.index("{"):] for line in done.stdout.splitlines() if "{" in line]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"faust_ceiling.py exited with {done.returncode}: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def own_work(records: Sequence[tuple[bytes, bytes]]) -> dict[str, Any]:
    """CPU microseconds per event of the build-state agent's own functions, in order, per batch."""
    stored: dict[bytes, bytes] = {}
    accepted = 0
    started = time.process_time()
    for first in range(0, len(records), BATCH_SIZE):
        batch: dict[bytes, BuildState | None] = {}
        for key, value in records[first:first + BATCH_SIZE]:
            event = decode(value, BuildEvent)
            if key not in batch:
                batch[key] = load_state(stored.get(key))
            outcome = apply_event(batch[key], event)
            if isinstance(outcome, Accepted):
                encode(change_set(outcome, event))
                batch[key] = outcome.state
                accepted += 1
        for key, state in batch.items():
            if state is not None:
                stored[key] = dump_state(state)
    cpu = time.process_time() - started
    return {
        "events": len(records),
        "accepted": accepted,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / len(records) * 1e6, 1),
        "events_per_cpu_s": round(len(records) / cpu),
    }
