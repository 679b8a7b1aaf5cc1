"""Profile the worker while it drains a backlog: where does a build event's CPU time go?

Pre-produces `--events` simulated build events (as pipeline_throughput.py does), runs
`python -m cProfile -m streams.cli worker` on them with isolated settings, stops it with
SIGTERM once every event is in ClickHouse, and prints the hottest functions: all of them,
and those in our own packages (streams/, schemas/, sinks/). cProfile sees the event-loop
thread only; the ClickHouse thread's time is read from the worker's flush histogram.

    .venv/bin/python benchmarks/profile_worker.py [--events 30000] [--top 35]
"""

from __future__ import annotations

import argparse
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_throughput import (  # noqa: E402
    REPO,
    build_backlog,
    drain_backlog,
    log,
    produce_backlog,
)
from harness import KafkaBroker, WorkerProcess, free_port_pair, wait_until, http_json  # noqa: E402

from streams.settings import CipulseSettings  # noqa: E402
from streams.topics import BUILD_EVENTS, ensure_topics, topic_name  # noqa: E402

OWN_PACKAGES = ("/streams/", "/schemas/", "/sinks/")


def group_of(filename: str) -> str:
    """Which library (or our package) a profiled function lives in."""
    for own in OWN_PACKAGES:
        if own in filename and "site-packages" not in filename:
            return own.strip("/")
    match = re.search(r"site-packages/([A-Za-z0-9_]+)", filename)
    if match:
        return match.group(1)
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    return "stdlib"


def report(profile_path: Path, top: int, events: int) -> None:
    stats = pstats.Stats(str(profile_path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_group: dict[str, float] = defaultdict(float)
    for (filename, _, _), entry in raw.items():
        by_group[group_of(filename)] += entry[2]
    print(f"\nevent-loop thread: {total:.1f} s self time in total, {1e6 * total / events:.0f} us per event\n")
    print("self time by package")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {group:24} {seconds:8.2f} s  {100 * seconds / total:5.1f} %  {1e6 * seconds / events:7.1f} us/event")

    def rows(predicate: object, key: int) -> list[tuple[tuple[str, int, str], tuple[int, int, float, float, object]]]:
        chosen = [(func, entry) for func, entry in raw.items() if predicate(func)]  # type: ignore[operator]
        return sorted(chosen, key=lambda item: -item[1][key])[:top]

    def show(title: str, chosen: list[tuple[tuple[str, int, str], tuple[int, int, float, float, object]]]) -> None:
        print(f"\n{title}")
        print(f"  {'calls':>9} {'self s':>8} {'cum s':>8} {'cum us/ev':>9}  function")
        for (filename, line, name), (_, calls, self_s, cum_s, _) in chosen:
            short = filename.split("site-packages/")[-1].replace(str(REPO) + "/", "")
            print(f"  {calls:>9} {self_s:>8.2f} {cum_s:>8.2f} {1e6 * cum_s / events:>9.1f}  {short}:{line}({name})")

    show(f"top {top} functions by self time", rows(lambda func: True, 2))
    own = lambda func: any(p in func[0] for p in OWN_PACKAGES) and "site-packages" not in func[0]  # noqa: E731
    show(f"top {top} of our functions by cumulative time", rows(own, 3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000, help="events to pre-produce (default 30000)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--top", type=int, default=35, help="functions to list (default 35)")
    parser.add_argument("--bootstrap", default=None, help="HOST:PORT of a running broker (default: a private one)")
    parser.add_argument("--output", type=Path, default=None, help="keep the .prof file here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))

    work_dir = Path(tempfile.mkdtemp(prefix="cipulse-profile-"))
    broker: KafkaBroker | None = None
    worker = WorkerProcess(bootstrap="", work_dir=work_dir / "worker", name=f"prof{uuid.uuid4().hex[:8]}",
                           extra_env={"CIPULSE_TOPIC_PARTITIONS": str(args.partitions), "CIPULSE_LOG_LEVEL": "warn",
                                      "CIPULSE_SINK_FLUSH_SECONDS": "1.0"})
    try:
        if args.bootstrap is None:
            broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
            log(f"starting a private Kafka broker on {broker.bootstrap}")
            broker.start()
        worker.bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
        settings = CipulseSettings(kafka_bootstrap=worker.bootstrap, topic_prefix=worker.name, app_id=worker.name,
                                   topic_partitions=args.partitions)
        ensure_topics(settings)
        backlog = build_backlog(args.events, seed=11)
        total = len(backlog.records)
        produce_backlog(worker.bootstrap, topic_name(settings, BUILD_EVENTS), backlog)
        profile_path = args.output or work_dir / "worker.prof"
        worker.work_dir.mkdir(parents=True, exist_ok=True)
        log(f"running the worker under cProfile on {total:,} events")
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(profile_path), "-m", "streams.cli", "worker"],
            cwd=REPO, env=worker.env, stdout=worker.log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: http_json(f"{worker.api}/ready", timeout=2)[0] == 200, 120, "the profiled worker")
        t_ready = time.perf_counter()
        drain = drain_backlog(worker, total, t_ready, timeout=480)
        with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as response:
            text = response.read().decode()
        flush = {m[0]: float(m[1]) for m in re.findall(r"^cipulse_sink_flush_seconds_(sum|count) (\S+)$", text, re.M)}
        log(f"drained in {drain.seconds_to_clickhouse:.1f}s under the profiler "
            f"({total / drain.seconds_to_clickhouse:,.0f} events/s); stopping the worker")
        worker.stop(timeout=60)
        print(f"profiled drain: {total:,} events in {drain.seconds_to_clickhouse:.1f} s under cProfile, "
              f"worker CPU {drain.worker_cpu_seconds:.1f} s")
        print(f"ClickHouse thread: {flush.get('count', 0):.0f} batch writes, {flush.get('sum', 0):.1f} s "
              f"({1e6 * flush.get('sum', 0) / total:.0f} us/event)")
        report(profile_path, args.top, total)
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        worker.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
