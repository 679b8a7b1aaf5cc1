"""cipulse against the raw baseline and a Quix Streams peer on the same topic, and worker memory.

Two modes, each one command and one session (a private broker unless --bootstrap):

compare  - produce N simulated build events once (pipeline_throughput's produce code), then on
           that one topic, one after another so no two share the CPUs:
           1. raw baseline: confluent-kafka Consumer + fastavro `decode_dict` (and + pydantic `decode`),
           2. Quix Streams peer (`quix_peer.py` in `.cache/quix-venv`): decode, apply_event on
              the build's state in Quix's RocksDB state, group_by pipeline, count final results,
           3. cipulse: `python -m streams.cli worker` draining the backlog (pipeline_throughput's
              drain code): build-state agent, change sets to Kafka, ClickHouse sink.
           Prints events/s of each and the ratios cipulse/raw and cipulse/peer, and what bounds
           cipulse (`limits.py`): a no-op Faust agent over the same topic (`faust_ceiling.py`)
           and the build-state agent's own per-event work in-process.
memory   - produce M minimal builds (1 or 2 compact events each), drain them with the worker, and
           print the worker's VmRSS/VmHWM after the drain, with RSS sampled along the way and a
           linear extrapolation to 1,000,000 builds when M is smaller (labelled as such).

Figures go to stdout and benchmarks/results/peer_comparison.json or peer_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import faust_ceiling, own_work  # noqa: E402
from pipeline_throughput import (  # noqa: E402
    REPO,
    Backlog,
    Drain,
    build_backlog,
    child_pids,
    delete_topics,
    drain_backlog,
    git_commit,
    kafka_version,
    library_versions,
    log,
    produce_backlog,
    raw_consume_rate,
    read_counters,
)
from bench_session import BenchSession, run_session  # noqa: E402
from harness import KafkaBroker, WorkerProcess  # noqa: E402  (tests/ is on the path via pipeline_throughput)

from schemas import BuildEvent, BuildScope, BuildStatus  # noqa: E402
from schemas.serde import decode, decode_dict, encode  # noqa: E402
from streams.settings import CipulseSettings  # noqa: E402
from streams.topics import BUILD_EVENTS, ensure_topics, topic_name  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
QUIX_VENV = REPO / ".cache" / "quix-venv"
QUIX_REQUIREMENTS = ("quixstreams==3.28.1", "fastavro==1.13.1")
MEMORY_GOAL_MIB = 500.0


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def vm_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MiB, and VmRSS split into RssAnon (heap, RocksDB, caches:
    memory only this process holds) and RssFile (mapped files: mostly chDB's ~200 MiB engine
    library, clean pages the kernel can drop and re-read)."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            figures[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return figures


def dir_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1) if path.exists() else 0.0


# ---------------------------------------------------------------- the Quix peer


def ensure_quix_venv() -> Path:
    """quixstreams 3.28.1 needs confluent-kafka < 2.13 and pydantic < 2.14, so it gets its own venv."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {QUIX_VENV} with {', '.join(QUIX_REQUIREMENTS)} (the peer cannot share .venv)")
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *QUIX_REQUIREMENTS], check=True)
    return python


def run_quix_peer(bootstrap: str, topic: str, expected: int, work_dir: Path, timeout: float) -> dict[str, Any]:
    """Run quix_peer.py to completion; its figures plus its CPU time and peak RSS (from wait4)."""
    python = ensure_quix_venv()
    group = f"benchquix{uuid.uuid4().hex[:8]}"
    command = [str(python), str(REPO / "benchmarks" / "quix_peer.py"), "--bootstrap", bootstrap, "--topic", topic,
               "--group", group, "--state-dir", str(work_dir / "quix-state"), "--expected", str(expected)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, start_new_session=True)
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        output = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        if process.returncode is None:
            process.kill()
            process.wait()
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"quix peer exited with {process.returncode}: {output[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    figures["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    figures["peak_rss_mib_wait4"] = round(usage.ru_maxrss / 1024, 1)
    figures["consumer_group"] = group
    return figures


# ---------------------------------------------------------------- the cipulse worker


def start_worker(bootstrap: str, name: str, work_dir: Path, partitions: int, workers: list[WorkerProcess]) -> WorkerProcess:
    """The worker with the production batch settings (CipulseSettings defaults), log level warn."""
    defaults = CipulseSettings.model_fields
    env = {"CIPULSE_TOPIC_PARTITIONS": str(partitions), "CIPULSE_LOG_LEVEL": "warn"}
    for setting in ("state_batch_size", "sink_batch_size", "sink_flush_seconds"):
        env[f"CIPULSE_{setting.upper()}"] = str(defaults[setting].default)
    worker = WorkerProcess(bootstrap=bootstrap, work_dir=work_dir / "worker", name=name, extra_env=env)
    workers.append(worker)
    log(f"starting the worker ({worker.api}, log {worker.log_path})")
    worker.start(ready_timeout=180)
    return worker


# ---------------------------------------------------------------- compare


def compare(args: argparse.Namespace, bootstrap: str, broker: KafkaBroker | None, work_dir: Path,
            workers: list[WorkerProcess]) -> dict[str, Any]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    settings = CipulseSettings(kafka_bootstrap=bootstrap, topic_prefix=name, app_id=name, topic_partitions=args.partitions)
    topic = topic_name(settings, BUILD_EVENTS)
    ensure_topics(settings)
    loads: dict[str, list[float]] = {"start": load()}

    log(f"simulating and encoding ~{args.events:,} events")
    backlog = build_backlog(args.events, args.seed)
    total = len(backlog.records)
    log(f"producing {total:,} events ({backlog.builds:,} builds) to {topic}")
    producer_rate = produce_backlog(bootstrap, topic, backlog)
    log(f"produce: {producer_rate:,.0f} events/s")
    log("own work: the build-state agent's functions in-process (decode, apply_event, change_set, encode)")
    own = own_work(backlog.records)
    backlog.records.clear()
    log(f"own work: {own['cpu_us_per_event']} us CPU per event")

    log("raw baseline: confluent-kafka consumer + decode_dict (fastavro)")
    raw_rate = raw_consume_rate(bootstrap, topic, total, decode_dict)
    log(f"raw baseline: {raw_rate:,.0f} events/s; now + decode (fastavro + pydantic)")
    model_rate = raw_consume_rate(bootstrap, topic, total, lambda value: decode(value, BuildEvent))
    log(f"model baseline: {model_rate:,.0f} events/s")
    log("faust ceiling: a no-op agent (take_events) in the worker's app class")
    ceiling = faust_ceiling(bootstrap, topic, total, args.drain_timeout)
    log(f"faust ceiling: {ceiling['events_per_s']:,} events/s, {ceiling['cpu_us_per_event']} us CPU per event")
    loads["after_baseline"] = load()

    log("quix peer: decode + apply_event in RocksDB state + group_by pipeline + count finals")
    peer = run_quix_peer(bootstrap, topic, total, work_dir, args.drain_timeout)
    log(f"quix peer: {peer['events_per_s']:,} events/s ({peer['all_counted_s']} s)")
    loads["after_peer"] = load()

    worker = start_worker(bootstrap, name, work_dir, args.partitions, workers)
    t_ready = time.perf_counter()
    drain = drain_backlog(worker, total, t_ready, args.drain_timeout)
    assert worker.process is not None
    rss = vm_status(worker.process.pid)
    engine_rss = engine_status(worker.process.pid)
    loads["after_cipulse"] = load()
    end_to_end = (drain.final.rows_written - drain.at_ready.rows_written) / drain.seconds_to_clickhouse
    state_only = (drain.final.seen - drain.at_ready.seen) / drain.seconds_to_accepted
    log(f"cipulse: {end_to_end:,.0f} events/s end to end, {state_only:,.0f} events/s build-state agent")
    exit_code = worker.stop()

    peer_rate = float(peer["events_per_s"])
    return add_cpu_rates({
        "run": run_info(bootstrap, broker, loads),
        "settings": {"events": total, "builds": backlog.builds, "partitions": args.partitions, "seed": args.seed},
        "produce_events_per_s": round(producer_rate),
        "raw": {"decode_dict_events_per_s": round(raw_rate), "decode_model_events_per_s": round(model_rate)},
        "quix_peer": peer,
        "limits": limit_figures(ceiling, own, raw_rate),
        "cipulse": {
            "seen_at_ready": int(drain.at_ready.seen),
            "build_state_events_per_s": round(state_only),
            "end_to_end_events_per_s": round(end_to_end),
            "all_accepted_s": round(drain.seconds_to_accepted, 2),
            "all_in_clickhouse_s": round(drain.seconds_to_clickhouse, 2),
            "outcomes": {k: int(v) for k, v in sorted(drain.final.outcomes.items())},
            "cpu_s": round(drain.worker_cpu_seconds, 1),
            "engine_process_cpu_s": round(drain.engine_cpu_seconds, 1),
            "rss_mib": rss,
            "engine_process_rss_mib": engine_rss,
            "exit_code": exit_code,
        },
        "ratios": {
            "cipulse_end_to_end_over_raw_decode_dict": round(end_to_end / raw_rate, 4),
            "cipulse_end_to_end_over_raw_decode_model": round(end_to_end / model_rate, 4),
            "cipulse_end_to_end_over_quix": round(end_to_end / peer_rate, 3),
            "cipulse_build_state_over_quix": round(state_only / peer_rate, 3),
            "quix_over_raw_decode_dict": round(peer_rate / raw_rate, 4),
        },
        "goals": {
            "cipulse_at_least_half_of_raw": end_to_end >= 0.5 * raw_rate,
            "cipulse_ahead_of_peer": end_to_end > peer_rate,
        },
    })


def add_cpu_rates(f: dict[str, Any]) -> dict[str, Any]:
    """Events per CPU-second of the peer and the worker: wall-clock rates on a shared 2-core
    machine mostly measure the CPU share a process got, CPU-normalised rates do not."""
    events, peer, cip = f["settings"]["events"], f["quix_peer"], f["cipulse"]
    peer_rate = events / peer["cpu_s"]
    cip_rate = (events - cip["seen_at_ready"]) / cip["cpu_s"]
    f["per_cpu_second"] = {"quix_peer_whole_run": round(peer_rate), "cipulse_worker_drain": round(cip_rate),
                           "cipulse_over_quix": round(cip_rate / peer_rate, 3)}
    return f


def limit_figures(ceiling: dict[str, Any], own: dict[str, Any], raw_rate: float) -> dict[str, Any]:
    """The best rate any Faust-agent build-state job could reach here: Faust's no-op cost plus our
    own per-event work, on one core (the event loop), with nothing else (no ClickHouse, no sink)."""
    best_us = ceiling["cpu_us_per_event"] + own["cpu_us_per_event"]
    return {
        "faust_noop_agent": ceiling,
        "own_work_in_process": own,
        "faust_noop_over_raw_decode_dict": round(ceiling["events_per_s"] / raw_rate, 4),
        "best_faust_design_cpu_us_per_event": round(best_us, 1),
        "best_faust_design_events_per_cpu_s": round(1e6 / best_us),
    }


def render_limits(f: dict[str, Any]) -> list[str]:
    lim, peer_cpu = f["limits"], f["per_cpu_second"]["quix_peer_whole_run"]
    noop, own = lim["faust_noop_agent"], lim["own_work_in_process"]
    return [
        "  What bounds cipulse here (same topic, same session):",
        f"    Faust no-op agent (worker's app class, take_events)  {noop['events_per_s']:>9,} events/s  "
        f"{noop['cpu_us_per_event']} us CPU/event = {lim['faust_noop_over_raw_decode_dict']:.3f} x raw decode_dict",
        f"    our per-event work in-process (no Kafka, no table)  {own['events_per_cpu_s']:>9,} events/CPU-s  "
        f"{own['cpu_us_per_event']} us CPU/event",
        f"    a Faust agent doing our work, nothing else (sum)    {lim['best_faust_design_events_per_cpu_s']:>9,} "
        f"events/CPU-s  {lim['best_faust_design_cpu_us_per_event']} us/event; Quix peer {peer_cpu:,} events/CPU-s "
        f"({1e6 / peer_cpu:.0f} us/event)",
        f"    to match the peer per CPU, our per-event work must fit in {1e6 / peer_cpu - noop['cpu_us_per_event']:.0f} us "
        f"(peer's whole cost - Faust's no-op cost), before any sink; 0.5 x raw allows "
        f"{2e6 / f['raw']['decode_dict_events_per_s']:.0f} us per event in total (Faust's no-op agent alone: "
        f"{noop['cpu_us_per_event']} us)",
    ]


def render_compare(f: dict[str, Any]) -> str:
    raw, peer, cip, ratio = f["raw"], f["quix_peer"], f["cipulse"], f["ratios"]
    s = f["settings"]

    def row(label: str, rate: int, includes: str) -> str:
        return f"  {label:38} {rate:>9,} events/s  {includes}"

    return "\n".join([
        f"cipulse vs raw baseline vs Quix Streams peer  {f['run']['at']}  commit {f['run']['commit']}",
        f"  {s['events']:,} events in {s['builds']:,} builds, {s['partitions']} partitions, one topic; "
        f"{f['run']['cpu_count']} CPUs, load average {f['run']['load_average']}",
        "",
        row("raw: confluent-kafka + decode_dict", raw["decode_dict_events_per_s"], "consume + fastavro"),
        row("raw: confluent-kafka + decode", raw["decode_model_events_per_s"], "consume + fastavro + pydantic model"),
        row("Quix Streams peer", peer["events_per_s"],
            "decode + apply_event + RocksDB state (+changelog) + group_by + count"),
        row("cipulse build-state agent", cip["build_state_events_per_s"],
            "decode + apply_event + RocksDB table (+changelog) + change sets to Kafka"),
        row("cipulse END TO END (in ClickHouse)", cip["end_to_end_events_per_s"], "the above + ClickHouse sink"),
        "",
        f"  {'cipulse end to end / raw decode_dict':44} {ratio['cipulse_end_to_end_over_raw_decode_dict']:>8.3f}  (goal >= 0.5: "
        f"{'met' if f['goals']['cipulse_at_least_half_of_raw'] else 'NOT met'})",
        f"  {'cipulse end to end / raw decode (pydantic)':44} {ratio['cipulse_end_to_end_over_raw_decode_model']:>8.3f}",
        f"  {'cipulse end to end / Quix peer':44} {ratio['cipulse_end_to_end_over_quix']:>8.3f}  (goal > 1: "
        f"{'met' if f['goals']['cipulse_ahead_of_peer'] else 'NOT met'})",
        f"  {'cipulse build-state / Quix peer':44} {ratio['cipulse_build_state_over_quix']:>8.3f}  (like for like)",
        f"  {'Quix peer / raw decode_dict':44} {ratio['quix_over_raw_decode_dict']:>8.3f}",
        "",
        f"  CPU: Quix peer {peer['cpu_s']} s for its whole run (start-up included), peak RSS {peer['peak_rss_mib_wait4']} MiB; "
        f"cipulse worker {cip['cpu_s']} s during the drain (of which its ClickHouse engine process "
        f"{cip.get('engine_process_cpu_s', 0)} s), RSS {cip['rss_mib']} MiB"
        + (f", engine process RSS {cip['engine_process_rss_mib']} MiB" if cip.get("engine_process_rss_mib") else ""),
        f"  events per CPU-second (robust to other load on the machine): Quix peer "
        f"{f['per_cpu_second']['quix_peer_whole_run']:,} (whole run), cipulse worker "
        f"{f['per_cpu_second']['cipulse_worker_drain']:,} (drain), cipulse/Quix {f['per_cpu_second']['cipulse_over_quix']:.3f}",
        f"  cipulse outcomes {cip['outcomes']}; Quix peer accepted {peer['accepted']:,}, finals counted {peer['finals']:,}",
        "",
        *render_limits(f),
        f"  load average: {f['run']['load_averages']}",
    ])


# ---------------------------------------------------------------- memory


def minimal_backlog(builds: int, events_per_build: int) -> Backlog:
    """Compact builds: QUEUED (and CANCELED when 2 events), no stages, no context fields."""
    base = datetime.now(UTC) - timedelta(hours=1)
    started = time.perf_counter()
    records: list[tuple[bytes, bytes]] = []
    statuses = (BuildStatus.QUEUED, BuildStatus.CANCELED)[:events_per_build]
    for number in range(builds):
        build_id = f"m{number:07d}"
        key = build_id.encode()
        for seq, status in enumerate(statuses, 1):
            records.append((key, encode(BuildEvent(
                event_id=f"{build_id}-{seq}", build_id=build_id, project="payments", pipeline="api-ci", seq=seq,
                event_time=base + timedelta(milliseconds=number), scope=BuildScope.BUILD, status=status,
            ))))
        if number and number % 100_000 == 0:
            log(f"memory: encoded {number:,} builds")
    return Backlog(records, builds, 0.0, time.perf_counter() - started)


def memory(args: argparse.Namespace, bootstrap: str, broker: KafkaBroker | None, work_dir: Path,
           workers: list[WorkerProcess]) -> dict[str, Any]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    settings = CipulseSettings(kafka_bootstrap=bootstrap, topic_prefix=name, app_id=name, topic_partitions=args.partitions)
    topic = topic_name(settings, BUILD_EVENTS)
    ensure_topics(settings)
    loads: dict[str, list[float]] = {"start": load()}
    log(f"memory: encoding {args.builds:,} builds x {args.events_per_build} events")
    backlog = minimal_backlog(args.builds, args.events_per_build)
    total = len(backlog.records)
    value_bytes = sum(len(v) for _, v in backlog.records) / total
    t0 = time.perf_counter()
    producer_rate = produce_backlog(bootstrap, topic, backlog)
    produce_s = time.perf_counter() - t0
    backlog.records.clear()
    log(f"memory: produced {total:,} events in {produce_s:.1f} s ({producer_rate:,.0f}/s, {value_bytes:.0f} B/value)")

    worker = start_worker(bootstrap, name, work_dir, args.partitions, workers)
    assert worker.process is not None
    pid = worker.process.pid
    t_ready = time.perf_counter()
    at_ready = vm_status(pid)
    engine_at_ready = engine_status(pid)
    samples: list[dict[str, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5.0):
            try:
                counters = read_counters(worker.api)
                samples.append({"s": round(time.perf_counter() - t_ready, 1), "events_seen": counters.seen,
                                "builds": counters.seen / args.events_per_build, **vm_status(pid),
                                **{f"engine_{k}": v for k, v in engine_status(pid).items()}})
            except OSError:
                continue
            if len(samples) % 6 == 0:
                log(f"memory: {samples[-1]}")

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    drain: Drain | None = None
    try:
        drain = drain_backlog(worker, total, t_ready, args.drain_timeout)
    except RuntimeError as exc:
        if "timed out" not in str(exc):
            raise
        # Out of time: report what was measured so far, clearly as a partial run.
        log(f"memory: {exc}; reporting the RSS measured up to here")
    finally:
        stop.set()
        sampler.join()
    after = vm_status(pid)
    engine_after = engine_status(pid)
    tracked = read_counters(worker.api).seen / args.events_per_build
    loads["after_drain"] = load()
    rocksdb_mib = dir_mib(worker.work_dir / "worker")
    chdb_mib = dir_mib(worker.clickhouse_path)
    exit_code = worker.stop()

    # RSS against builds tracked, least squares over the second half of the drain (past start-up).
    points = [(p["builds"], p["VmRSS"]) for p in samples if p["builds"] >= tracked / 2] or \
             [(p["builds"], p["VmRSS"]) for p in samples]
    slope = intercept = None
    if len(points) >= 2:
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        var = sum((x - mean_x) ** 2 for x, _ in points)
        if var > 0:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
            intercept = mean_y - slope * mean_x
    extrapolated = None if slope is None or intercept is None else round(intercept + slope * 1_000_000, 1)
    return {
        "run": run_info(bootstrap, broker, loads),
        "settings": {"builds": args.builds, "events_per_build": args.events_per_build, "events": total,
                     "avro_value_bytes": round(value_bytes), "partitions": args.partitions,
                     "table_store": CipulseSettings().table_store},
        "produce": {"seconds": round(produce_s, 1), "events_per_s": round(producer_rate)},
        "drain": None if drain is None else {
            "all_accepted_s": round(drain.seconds_to_accepted, 1),
            "all_in_clickhouse_s": round(drain.seconds_to_clickhouse, 1),
            "events_per_s": round((drain.final.seen - drain.at_ready.seen) / drain.seconds_to_accepted),
            "outcomes": {k: int(v) for k, v in sorted(drain.final.outcomes.items())},
            "cpu_s": round(drain.worker_cpu_seconds, 1),
            "engine_process_cpu_s": round(drain.engine_cpu_seconds, 1)},
        "builds_tracked_at_end": int(tracked),
        "partial": drain is None,
        "rss_mib": {"at_ready": at_ready, "after_drain": after,
                    "per_1000_builds_slope": None if slope is None else round(slope * 1000, 3),
                    "extrapolated_vmrss_at_1m_builds": extrapolated if tracked < 1_000_000 else None,
                    "goal_mib": MEMORY_GOAL_MIB,
                    "goal_met_measured": after["VmHWM"] <= MEMORY_GOAL_MIB},
        "engine_process_rss_mib": {"at_ready": engine_at_ready, "after_drain": engine_after},
        "worker_and_engine_vmrss_mib": round(after["VmRSS"] + engine_after.get("VmRSS", 0.0), 1),
        "disk_mib": {"rocksdb_tables_dir": rocksdb_mib, "chdb_dir": chdb_mib},
        "samples": samples,
        "worker_exit_code": exit_code,
    }


def engine_status(worker_pid: int) -> dict[str, float]:
    """`vm_status` of the worker's ClickHouse engine process; empty when it runs in the worker."""
    children = child_pids(worker_pid)
    return vm_status(children[0]) if children else {}


def engine_line(f: dict[str, Any]) -> str:
    engine = f["engine_process_rss_mib"]["after_drain"]
    if not engine:
        return "  ClickHouse engine: inside the worker process (counted above)"
    return (f"  its ClickHouse engine process (the embedded engine, the sinks' inserts): VmRSS {engine['VmRSS']} MiB, "
            f"VmHWM {engine['VmHWM']} MiB (RssFile {engine.get('RssFile', '?')} MiB); worker + engine VmRSS "
            f"{f['worker_and_engine_vmrss_mib']} MiB")


def render_memory(f: dict[str, Any]) -> str:
    s, d, r = f["settings"], f["drain"], f["rss_mib"]
    lines = [
        f"cipulse worker memory with many tracked builds  {f['run']['at']}  commit {f['run']['commit']}",
        f"  {s['builds']:,} builds x {s['events_per_build']} events ({s['events']:,} events, {s['avro_value_bytes']} B Avro each), "
        f"{s['partitions']} partitions, tables in {s['table_store']}; {f['run']['cpu_count']} CPUs, load {f['run']['load_averages']}",
        f"  produce: {f['produce']['seconds']} s ({f['produce']['events_per_s']:,} events/s)",
        (f"  drain: all accepted after {d['all_accepted_s']} s ({d['events_per_s']:,} events/s), all in ClickHouse after "
         f"{d['all_in_clickhouse_s']} s, worker CPU {d['cpu_s']} s (its engine process {d.get('engine_process_cpu_s', 0)} s), "
         f"outcomes {d['outcomes']}" if d is not None else
         f"  PARTIAL: the drain timed out with {f['builds_tracked_at_end']:,} of {s['builds']:,} builds tracked"),
        f"  worker RSS at /ready: {r['at_ready']} MiB",
        f"  worker RSS at the end ({f['builds_tracked_at_end']:,} builds tracked): VmRSS {r['after_drain']['VmRSS']} MiB, VmHWM {r['after_drain']['VmHWM']} MiB "
        f"(goal <= {r['goal_mib']:.0f} MiB: {'met' if r['goal_met_measured'] else 'NOT met'}); of VmRSS: "
        f"RssAnon {r['after_drain'].get('RssAnon', '?')} MiB (heap, tables, caches), RssFile "
        f"{r['after_drain'].get('RssFile', '?')} MiB (mapped files: libraries; the chDB engine library too when "
        "it runs in the worker, CIPULSE_CLICKHOUSE_ENGINE_PROCESS=off)",
        engine_line(f),
        f"  RSS slope over the second half of the drain: {r['per_1000_builds_slope']} MiB per 1,000 builds",
        f"  on disk: RocksDB tables {f['disk_mib']['rocksdb_tables_dir']} MiB, chDB {f['disk_mib']['chdb_dir']} MiB",
    ]
    if r["extrapolated_vmrss_at_1m_builds"] is not None:
        lines.append(f"  EXTRAPOLATED (linear, not measured) VmRSS at 1,000,000 builds: {r['extrapolated_vmrss_at_1m_builds']} MiB")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def run_info(bootstrap: str, broker: KafkaBroker | None, loads: dict[str, list[float]]) -> dict[str, Any]:
    loads["end"] = load()
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_count": os.cpu_count(),
        "load_average": loads["end"],
        "load_averages": loads,
        "kafka": kafka_version(bootstrap, broker),
        "broker": "private (infra/kafka.sh, free port)" if broker else f"external {bootstrap}",
        "libraries": library_versions(),
        "note": "other engineers' test loops share these 2 CPUs; see load_averages",
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("compare", "memory"), nargs="?", default="compare")
    parser.add_argument("--events", type=int, default=200_000, help="compare: simulated events (default 200000)")
    parser.add_argument("--builds", type=int, default=1_000_000, help="memory: builds to track (default 1000000)")
    parser.add_argument("--events-per-build", type=int, choices=(1, 2), default=1,
                        help="memory: 1 = QUEUED, 2 = QUEUED + CANCELED (default 1)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bootstrap", default=None, help="HOST:PORT of a running broker (default: a private one)")
    parser.add_argument("--drain-timeout", type=float, default=1800.0, help="give up a phase after this many s")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON output (default results/peer_comparison.json or results/peer_memory.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def measure(session: BenchSession) -> tuple[str, dict[str, Any], Path]:
        if args.mode == "compare":
            figures = compare(args, session.bootstrap, session.broker, session.work_dir, session.workers)
            return render_compare(figures), figures, args.results or RESULTS_DIR / "peer_comparison.json"
        figures = memory(args, session.bootstrap, session.broker, session.work_dir, session.workers)
        return render_memory(figures), figures, args.results or RESULTS_DIR / "peer_memory.json"

    return run_session("cipulse-peer-", args.bootstrap, False, measure, delete_topics)


if __name__ == "__main__":
    sys.exit(main())
