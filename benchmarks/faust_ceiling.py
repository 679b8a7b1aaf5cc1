"""The most a Faust agent can do on this machine: a no-op agent over the build-events topic.

Why: the worker's per-event cost splits into our own work (decode, apply_event, change set,
encode, produce) and Faust's per-record machinery (aiokafka fetch -> conductor -> channel ->
stream -> event -> ack -> commit). This program runs only the second part, in the worker's own
app class (`streams.faust_patches.CipulseApp`, same consumer patches and broker settings) with
the worker's batching (`take_events(500, within=0.05)`), and an agent that does nothing with
the records it takes. Its rate is the ceiling of any Faust-agent design of the build-state job
here, whatever the agent does; `--decode` adds `schemas.serde.decode` per record for scale.

It prints one JSON line on stdout (events/s from the first record to the last, CPU seconds of
the process in that span, CPU microseconds per event) and exits. Run by
`peer_comparison.py compare`; standalone:

    .venv/bin/python benchmarks/faust_ceiling.py --bootstrap HOST:PORT --topic T --expected N
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faust  # noqa: E402

from schemas import BuildEvent  # noqa: E402
from schemas.serde import decode  # noqa: E402
from streams.faust_patches import CipulseApp  # noqa: E402
from streams.settings import CipulseSettings  # noqa: E402

BATCH_SIZE = 500
BATCH_WAIT_SECONDS = 0.05


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


class Span:
    """First record to last: wall clock and CPU, so start-up and the stop are not counted."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.started: tuple[float, float] | None = None
        self.last_report = time.perf_counter()

    def add(self, records: int) -> bool:
        if self.started is None:
            self.started = (time.perf_counter(), cpu_seconds())
        self.count += records
        now = time.perf_counter()
        if now - self.last_report >= 5.0:
            self.last_report = now
            print(f"faust ceiling: {self.count:,}/{self.expected:,}", file=sys.stderr, flush=True)
        return self.count >= self.expected

    def figures(self) -> dict[str, Any]:
        assert self.started is not None
        wall = time.perf_counter() - self.started[0]
        cpu = cpu_seconds() - self.started[1]
        return {
            "events": self.count,
            "seconds": round(wall, 2),
            "events_per_s": round(self.count / wall),
            "cpu_s": round(cpu, 2),
            "cpu_us_per_event": round(cpu / self.count * 1e6, 1),
            "events_per_cpu_s": round(self.count / cpu),
        }


def build_app(bootstrap: str, topic: str, span: Span, decode_records: bool, data_dir: Path,
              fetch_bytes: int) -> faust.App:
    app_id = f"benchceiling{uuid.uuid4().hex[:8]}"
    app = CipulseApp(
        app_id, broker=f"kafka://{bootstrap}", store="memory://", datadir=str(data_dir), autodiscover=False,
        topic_allow_declare=False, consumer_auto_offset_reset="earliest", web_enabled=False,
        broker_commit_interval=1.0, consumer_max_fetch_size=fetch_bytes,
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    async def take_and_drop(stream: Any) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(BATCH_SIZE, within=BATCH_WAIT_SECONDS):
            if decode_records:
                for event in events:
                    decode(event.value, BuildEvent)
            if span.add(len(events)):
                print(json.dumps(span.figures()), flush=True)
                os._exit(0)  # the figures are out; the stop is not what is measured

    app.agent(source, name="ceiling")(take_and_drop)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--topic", required=True, help="topic holding the backlog")
    parser.add_argument("--expected", type=int, required=True, help="records in the topic")
    parser.add_argument("--decode", action="store_true", help="also decode every record (fastavro + pydantic)")
    parser.add_argument("--fetch-bytes", type=int, default=CipulseSettings.model_fields["consumer_max_fetch_bytes"].default,
                        help="bytes fetched per partition per request (default: the worker's CIPULSE_CONSUMER_MAX_FETCH_BYTES)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    span = Span(args.expected)
    with tempfile.TemporaryDirectory(prefix="cipulse-ceiling-") as data_dir:
        app = build_app(args.bootstrap, args.topic, span, args.decode, Path(data_dir), args.fetch_bytes)
        worker = faust.Worker(app, loglevel="warn", quiet=True, override_logging=False)
        worker.execute_from_commandline()
    return 1  # only reached if the worker stopped before every record came


if __name__ == "__main__":
    sys.exit(main())
