"""Back-to-back drain of the same backlog by two (or more) code trees, on one broker.

On this shared 2-core machine a single figure mostly shows how much CPU the worker got, so a
change is judged by draining the same pre-produced backlog with the old and the new code
alternately, several rounds, and comparing events/s, worker CPU per event and peak RSS, with
the load average of each drain. A "tree" is a directory holding a copy of this repository
(e.g. `git archive` of a commit, or a copy with one file reverted); the worker runs there
(`python -m streams.cli worker`, cwd = the tree) with this venv's interpreter.

    .venv/bin/python benchmarks/ab_drain.py --tree base=/tmp/cip-base --tree new=. \\
        [--events 60000] [--rounds 2] [--partitions 3]

Every tree drains its own fresh topics (same records, same order). Workers run the
CipulseSettings production batch defaults, log level warn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_throughput import (  # noqa: E402
    REPO,
    build_backlog,
    child_pids,
    delete_topics,
    drain_backlog,
    log,
    peak_rss_mib,
    produce_backlog,
)
from harness import KafkaBroker, WorkerProcess, free_port_pair, wait_until  # noqa: E402

from streams.settings import CipulseSettings  # noqa: E402
from streams.topics import BUILD_EVENTS, ensure_topics, topic_name  # noqa: E402


@dataclass
class TreeWorker(WorkerProcess):
    """A worker started from another copy of the code."""

    tree: Path = REPO

    def start(self, ready_timeout: float = 180.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=self.tree, env={**self.env, "PYTHONPATH": str(self.tree)}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, ready_timeout, f"worker {self.name} ({self.tree}) ready")


def vm(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def drain_once(label: str, tree: Path, bootstrap: str, backlog: Any, partitions: int, work_dir: Path,
               extra_env: dict[str, str]) -> dict[str, Any]:
    name = f"ab{uuid.uuid4().hex[:8]}"
    settings = CipulseSettings(kafka_bootstrap=bootstrap, topic_prefix=name, app_id=name, topic_partitions=partitions)
    ensure_topics(settings)
    produce_backlog(bootstrap, topic_name(settings, BUILD_EVENTS), backlog)
    total = len(backlog.records)
    defaults = CipulseSettings.model_fields
    env = {"CIPULSE_TOPIC_PARTITIONS": str(partitions), "CIPULSE_LOG_LEVEL": "warn"}
    for setting in ("state_batch_size", "sink_batch_size", "sink_flush_seconds"):
        env[f"CIPULSE_{setting.upper()}"] = str(defaults[setting].default)
    env.update(extra_env)
    worker = TreeWorker(bootstrap=bootstrap, work_dir=work_dir / name, name=name, extra_env=env, tree=tree)
    load_before = os.getloadavg()[0]
    try:
        worker.start()
        assert worker.process is not None
        rss_ready = vm(worker.process.pid, "VmRSS")
        t_ready = time.perf_counter()
        drain = drain_backlog(worker, total, t_ready, timeout=1200)
        pid = worker.process.pid
        result = {
            "tree": label,
            "events": total,
            "seen_at_ready": int(drain.at_ready.seen),
            "state_events_per_s": round((drain.final.seen - drain.at_ready.seen) / drain.seconds_to_accepted),
            "end_to_end_events_per_s": round(
                (drain.final.rows_written - drain.at_ready.rows_written) / drain.seconds_to_clickhouse),
            "cpu_us_per_event": round(1e6 * drain.worker_cpu_seconds / max(1.0, drain.final.seen - drain.at_ready.seen)),
            "event_loop_busy": round(drain.event_loop_busy, 3),
            "engine_cpu_us_per_event": round(
                1e6 * drain.engine_cpu_seconds / max(1.0, drain.final.seen - drain.at_ready.seen)),
            "rss_ready_mib": rss_ready,
            "rss_end_mib": vm(pid, "VmRSS"),
            "hwm_mib": round(peak_rss_mib(pid), 1),
            "engine_rss_end_mib": sum(vm(child, "VmRSS") for child in child_pids(pid)),
            "load_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "outcomes": {k: int(v) for k, v in drain.final.outcomes.items()},
            "rows_written": int(drain.final.rows_written),
        }
    finally:
        code = worker.stop(timeout=60)
    result["exit_code"] = code
    delete_topics(bootstrap, name)
    log(f"{label}: {json.dumps(result)}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="LABEL=DIR (repeat; default new=this repo)")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--env", action="append", default=[], help="LABEL:NAME=VALUE extra worker env for one tree")
    parser.add_argument("--results", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree] or [("new", REPO)]
    extra: dict[str, dict[str, str]] = {}
    for item in args.env:
        label, assignment = item.split(":", 1)
        key, value = assignment.split("=", 1)
        extra.setdefault(label, {})[key] = value
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    work_dir = Path(tempfile.mkdtemp(prefix="cipulse-ab-"))
    broker: KafkaBroker | None = None
    rows: list[dict[str, Any]] = []
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
            log(f"starting a private Kafka broker on {broker.bootstrap}")
            broker.start()
            bootstrap = broker.bootstrap
        backlog = build_backlog(args.events, args.seed)
        log(f"{len(backlog.records):,} events, {backlog.builds:,} builds")
        for round_number in range(args.rounds):
            for label, tree in (trees if round_number % 2 == 0 else list(reversed(trees))):
                rows.append(drain_once(label, tree, bootstrap, backlog, args.partitions, work_dir,
                                       extra.get(label, {})) | {"round": round_number})
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        print(f"\n{'tree':10} {'round':>5} {'state ev/s':>10} {'e2e ev/s':>9} {'CPU us/ev':>9} {'loop busy':>9} "
              f"{'RSS ready':>9} {'RSS end':>8} {'HWM':>7} {'load 1m':>12}")
        for row in rows:
            print(f"{row['tree']:10} {row['round']:>5} {row['state_events_per_s']:>10,} "
                  f"{row['end_to_end_events_per_s']:>9,} {row['cpu_us_per_event']:>9} "
                  f"{row['event_loop_busy']:>9} {row['rss_ready_mib']:>9} "
                  f"{row['rss_end_mib']:>8} {row['hwm_mib']:>7} {str(row['load_1m_before_after']):>12}")
        if args.results is not None and rows:
            args.results.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
