"""One benchmark run's broker, work directory and workers, and their cleanup on every exit path.

`pipeline_throughput.py` and `peer_comparison.py` both start a private broker unless given one,
start workers, and must stop all of it on success, error, Ctrl-C or SIGTERM; this is that part.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import KafkaBroker, WorkerProcess, free_port_pair  # tests/ is on the path (pipeline_throughput)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class BenchSession:
    """What the run uses; every worker it starts goes into `workers` first, so it gets stopped."""

    bootstrap: str
    broker: KafkaBroker | None
    work_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_session(
    prefix: str, bootstrap: str | None, keep_data: bool, run: Callable[[BenchSession], tuple[str, dict[str, Any], Path]],
    delete_topics: Callable[[str, str], None],
) -> int:
    """Run `run(session)` -> (text to print, figures, results path); write the figures; clean up.

    With `bootstrap` None a private broker is started on free ports and stopped at the end; with a
    given broker, the run's topics (the first worker's name prefix) are deleted afterwards.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix=prefix))
    broker: KafkaBroker | None = None
    session: BenchSession | None = None
    try:
        if bootstrap is None:
            broker = KafkaBroker(port=free_port_pair(), data_dir=work_dir / "kafka")
            log(f"starting a private Kafka broker on {broker.bootstrap} ({broker.data_dir})")
            broker.start()
        session = BenchSession(bootstrap or (broker.bootstrap if broker else ""), broker, work_dir)
        text, figures, results = run(session)
        print(text)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {results}")
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        return 130
    finally:
        workers = session.workers if session else []
        for worker in workers:
            worker.stop()
        if bootstrap is not None and workers:
            delete_topics(bootstrap, workers[0].name)
        if broker is not None:
            log("stopping the private broker")
            broker.stop()
        if keep_data:
            log(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
