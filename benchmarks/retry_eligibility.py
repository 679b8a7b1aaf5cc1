"""Cost of a retry eligibility decision on the real embedded engine, with a realistic store.

Fills `build_context` (the shipped DDL, 28-day TTL, day partitions) with N builds spread over
the retention, then times, each on the ClickHouse gateway thread as in the worker:
1. `read_retention` (system.tables + system.parts), what the cache saves on most requests;
2. `build_context_of`, the point lookup by build id (FINAL, bloom-filter skip index);
3. `RetryAssessor.assess` with a warm retention cache: the whole decision an API call makes.

Progress goes to stderr, the figures table to stdout and benchmarks/results/retry_eligibility.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sinks.connection import open_client  # noqa: E402
from sinks.context_queries import build_context_of  # noqa: E402
from sinks.context_rows import BuildContextRow  # noqa: E402
from sinks.context_writer import BuildContextWriter  # noqa: E402
from sinks.gateway import ClickHouseGateway  # noqa: E402
from sinks.migrations import apply_migrations  # noqa: E402
from sinks.retention import read_retention  # noqa: E402
from streams.retention_cache import RetentionCache  # noqa: E402
from streams.retry_assessment import RetryAssessor  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "retry_eligibility.json"
DATABASE = "cipulse_bench"


def progress(message: str) -> None:
    print(f"[retry_eligibility] {message}", file=sys.stderr, flush=True)


def context_rows(start: int, count: int, now: datetime, rng: random.Random) -> list[BuildContextRow]:
    rows = []
    for index in range(start, start + count):
        first_seen = now - timedelta(seconds=rng.uniform(60, 27 * 86_400))
        rows.append(BuildContextRow(
            project=f"project-{index % 12}", pipeline=f"pipeline-{index % 7}", build_id=f"build-{index:08d}",
            first_seen_at=first_seen, started_at=first_seen + timedelta(seconds=20),
            finished_at=first_seen + timedelta(minutes=9), status=rng.choice(("SUCCEEDED", "FAILED", "CANCELED")),
            trigger_reason="PUSH", trigger_user="alice", branch="main", commit_sha=f"{rng.getrandbits(160):040x}",
            executor=f"runner-{index % 12}", variables={"TARGET_ENV": "staging", "GIT_BRANCH": "main"}, revision=3,
        ))
    return rows


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


async def timed(calls: int, call: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for index in range(calls):
        started = time.perf_counter()
        await call(index)
        samples.append((time.perf_counter() - started) * 1000)
    return {"calls": calls, "p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
            "max_ms": max(samples)}


async def measure(gateway: ClickHouseGateway, builds: int, lookups: int, rng: random.Random) -> dict[str, Any]:
    ids = [f"build-{rng.randrange(builds):08d}" for _ in range(lookups)]
    assessor = RetryAssessor(gateway, RetentionCache(gateway, 30.0), timedelta(hours=1))
    await assessor.assess(ids[0], None)  # warm the cache and the engine
    figures = {
        "read_retention": await timed(50, lambda _: gateway.call(read_retention, "build_context")),
        "build_context_of": await timed(lookups, lambda i: gateway.call(build_context_of, ids[i])),
        "assess_cached_retention": await timed(lookups, lambda i: assessor.assess(ids[i], None)),
    }
    verdicts: dict[str, int] = {}
    for build_id in ids[:200]:
        verdict = (await assessor.assess(build_id, None)).eligibility.verdict.value
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    figures["verdicts_of_200"] = verdicts
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=200_000, help="build contexts stored (default 200000)")
    parser.add_argument("--lookups", type=int, default=500, help="timed lookups/decisions (default 500)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="cipulse-retry-bench-"))
    gateway = ClickHouseGateway(lambda: open_client(f"chdb://{data_dir}", "default"), DATABASE)
    try:
        gateway.call_sync(lambda client, _: client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}"))
        gateway.call_sync(apply_migrations, context_retention_days=28)
        now = datetime.now(UTC)
        started = time.perf_counter()
        for offset in range(0, args.builds, 10_000):
            batch = context_rows(offset, min(10_000, args.builds - offset), now, rng)
            gateway.call_sync(lambda client, database, rows=batch: BuildContextWriter(client, database).write(rows))
            progress(f"stored {offset + len(batch)}/{args.builds} build contexts")
        load_seconds = time.perf_counter() - started
        parts = gateway.call_sync(lambda client, database: client.query(
            f"SELECT count(), uniqExact(partition_id) FROM system.parts WHERE database = '{database}'"
            " AND table = 'build_context' AND active").result_rows[0])
        progress(f"timing {args.lookups} lookups and decisions")
        figures = asyncio.run(measure(gateway, args.builds, args.lookups, rng))
    finally:
        gateway.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    result = {
        "builds": args.builds, "active_parts": parts[0], "day_partitions": parts[1],
        "insert_rows_per_second": round(args.builds / load_seconds), **figures,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'builds stored':28} {args.builds} in {parts[1]} day partitions ({parts[0]} active parts)")
    print(f"{'insert rate':28} {result['insert_rows_per_second']} rows/s")
    print(f"{'what':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("read_retention", "build_context_of", "assess_cached_retention"):
        row = figures[name]
        print(f"{name:28} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['max_ms']:8.2f}")
    print(f"{'verdicts of 200 random ids':28} {figures['verdicts_of_200']}")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus; figures in {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
