"""The build-state job written with Quix Streams, as a peer for `peer_comparison.py`.

Runs under the separate Quix venv (`.cache/quix-venv`, see `peer_comparison.py`): quixstreams
3.28.1 pins confluent-kafka < 2.13 and pydantic < 2.14, which would downgrade cipulse's own
pins, so it cannot live in `.venv`.

The job is the same as cipulse's build-state agent, minus ClickHouse:
1. consume the build-events topic from the start (own consumer group, raw bytes),
2. `schemas.serde.decode(value, BuildEvent)` (fastavro + pydantic, as the worker),
3. `streams.build_state.apply_event` on the build's state kept in Quix's RocksDB state under the
   message key (the build id), stored as `BuildState.model_dump_json()` (as the worker stores it),
4. for each build entering a final status, `group_by(pipeline)` (a repartition topic, like the
   worker's `build-finals`) and count final results per pipeline and status in RocksDB state.

It prints one JSON line with its figures on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quixstreams import Application, State  # noqa: E402

from schemas import BuildEvent, BuildScope  # noqa: E402
from schemas.serde import decode  # noqa: E402
from streams.build_state import Accepted, BuildState, apply_event  # noqa: E402
from streams.transitions import is_final  # noqa: E402

STATE_KEY = "build"


class Progress:
    """Counters of this process (Quix runs the whole topology on one thread)."""

    def __init__(self, expected: int, app: Application) -> None:
        self.expected = expected
        self.app = app
        self.processed = 0
        self.accepted = 0
        self.finals_emitted = 0
        self.finals_counted = 0
        self.first_at: float | None = None
        self.all_processed_at: float | None = None
        self.done_at: float | None = None
        self.last_report = time.perf_counter()

    def check(self) -> None:
        now = time.perf_counter()
        if self.all_processed_at is None and self.processed >= self.expected:
            self.all_processed_at = now
        if self.all_processed_at is not None and self.finals_counted >= self.finals_emitted and self.done_at is None:
            self.done_at = now
            self.app.stop()
        if now - self.last_report >= 5.0:
            self.last_report = now
            assert self.first_at is not None
            print(f"[quix peer] {self.processed:,}/{self.expected:,} events, {self.finals_counted:,} finals counted, "
                  f"{self.processed / (now - self.first_at):,.0f} events/s", file=sys.stderr, flush=True)


def vm_status() -> dict[str, float]:
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            figures[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--expected", type=int, required=True)
    args = parser.parse_args()

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        state_dir=args.state_dir, loglevel="WARNING",
    )
    progress = Progress(args.expected, app)
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")

    def track_build(value: bytes, state: State) -> dict[str, Any] | None:
        if progress.first_at is None:
            progress.first_at = time.perf_counter()
        event = decode(value, BuildEvent)
        stored = state.get(STATE_KEY)
        previous = BuildState.model_validate_json(stored) if stored is not None else None
        outcome = apply_event(previous, event)
        progress.processed += 1
        final: dict[str, Any] | None = None
        if isinstance(outcome, Accepted):
            progress.accepted += 1
            state.set(STATE_KEY, outcome.state.model_dump_json())
            was_final = previous is not None and is_final(previous.status)
            if event.scope is BuildScope.BUILD and is_final(outcome.state.status) and not was_final:
                progress.finals_emitted += 1
                final = {"pipeline": f"{outcome.state.project}/{outcome.state.pipeline}",
                         "status": outcome.state.status.value}
        progress.check()
        return final

    def count_result(value: dict[str, Any], state: State) -> None:
        state.set(value["status"], (state.get(value["status"]) or 0) + 1)
        progress.finals_counted += 1
        progress.check()

    sdf = app.dataframe(topic)
    sdf = sdf.apply(track_build, stateful=True).filter(lambda final: final is not None)
    sdf = sdf.group_by(lambda final: final["pipeline"], name="pipeline")
    sdf.update(count_result, stateful=True)

    started = time.perf_counter()
    app.run()
    stopped = time.perf_counter()
    if progress.done_at is None or progress.first_at is None or progress.all_processed_at is None:
        print(json.dumps({"error": f"stopped after {progress.processed} of {args.expected} events"}))
        return 1
    figures = {
        "events": progress.processed,
        "accepted": progress.accepted,
        "finals": progress.finals_counted,
        "startup_to_first_record_s": round(progress.first_at - started, 2),
        "all_processed_s": round(progress.all_processed_at - progress.first_at, 2),
        "all_counted_s": round(progress.done_at - progress.first_at, 2),
        "events_per_s": round(progress.processed / (progress.done_at - progress.first_at)),
        "stop_and_final_checkpoint_s": round(stopped - progress.done_at, 2),
        "rss_mib": vm_status(),
        "state_store": "RocksDB (Quix default), value = BuildState JSON str",
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
