"""Reporter SDK without a broker: the SQLite outbox is durable and atomic, a killed runner loses
nothing it was told was accepted, and a restarted one continues its sequence numbers."""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import BuildEvent, BuildStatus
from schemas.serde import decode
from streams.reporter import BuildReporter, BuildSnapshot, OutboxError, ReporterConfig, ReporterError, StageSnapshot
from streams.reporter.diff import event_id_for
from streams.reporter.outbox import Outbox, PendingEvent
from streams.reporter.sender import backoff_delay, sender_producer_config

REPO = Path(__file__).resolve().parents[3]
S = BuildStatus


def snapshot(status: BuildStatus = S.RUNNING, *stages: StageSnapshot, build_id: str = "b1") -> BuildSnapshot:
    return BuildSnapshot(build_id, "p", "ci", status, stages=stages)


def closed_port() -> int:
    """A port nobody listens on: the reporter's broker is 'down'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline_config(path: Path) -> ReporterConfig:
    return ReporterConfig(bootstrap=f"127.0.0.1:{closed_port()}", outbox_path=path, delivery_timeout_s=1.0,
                          backoff_base_s=0.05, backoff_cap_s=0.2, close_timeout_s=0.2)


# ---------------------------------------------------------------- the outbox itself

def test_accepted_rows_and_progress_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    state = snapshot(S.RUNNING, StageSnapshot("build", S.RUNNING))
    outbox.accept(state, [PendingEvent(1, b"b1", b"one"), PendingEvent(2, b"b1", b"two")], next_seq=3)
    outbox.close()

    reopened = Outbox(path)
    assert [(r.seq, r.value) for r in reopened.pending()] == [(1, b"one"), (2, b"two")]
    progress = reopened.progress("b1")
    assert (progress.next_seq, progress.snapshot) == (3, state)
    assert reopened.progress("unknown").next_seq == 1 and reopened.progress("unknown").snapshot is None
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_a_failing_accept_leaves_nothing_behind(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    first = snapshot(S.QUEUED)
    outbox.accept(first, [PendingEvent(1, b"b1", b"one")], next_seq=2)
    with pytest.raises(OutboxError, match="nothing of this report was accepted"):
        # seq 1 again: the UNIQUE (build_id, seq) constraint fails the whole transaction
        outbox.accept(snapshot(S.RUNNING), [PendingEvent(2, b"b1", b"two"), PendingEvent(1, b"b1", b"dup")], next_seq=3)
    assert [r.seq for r in outbox.pending()] == [1]
    assert outbox.progress("b1").next_seq == 2 and outbox.progress("b1").snapshot == first
    outbox.close()


def test_pending_reads_in_acceptance_order_and_delete_forgets_only_the_given_rows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for seq in range(1, 11):
        outbox.accept(snapshot(build_id=f"b{seq % 3}"), [PendingEvent(seq, b"k", str(seq).encode())], next_seq=seq + 1)
    rows = outbox.pending(limit=4)
    assert [r.value for r in rows] == [b"1", b"2", b"3", b"4"]
    assert [r.value for r in outbox.pending(after_id=rows[-1].id, limit=2)] == [b"5", b"6"]
    assert outbox.delete([rows[0].id, rows[2].id]) == 2
    assert [r.value for r in outbox.pending(limit=3)] == [b"2", b"4", b"5"] and outbox.count() == 8
    outbox.close()


def test_an_outbox_written_by_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path)


# ---------------------------------------------------------------- the reporter with the broker down

def test_report_accepts_into_the_outbox_quickly_while_kafka_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with BuildReporter(offline_config(path)) as reporter:
        started = time.perf_counter()
        first = reporter.report(snapshot(S.QUEUED))
        second = reporter.report(snapshot(S.RUNNING, StageSnapshot("build", S.RUNNING)))
        same = reporter.report(snapshot(S.RUNNING, StageSnapshot("build", S.RUNNING)))
        elapsed = time.perf_counter() - started
        assert (list(first.seqs), list(second.seqs), same.changes) == ([1], [2, 3], 0)
        assert reporter.pending() == 3
        assert reporter.flush(timeout=0.3) == 3  # nothing acknowledged: nothing deleted
    assert elapsed < 1.0
    rows = Outbox(path).pending()
    events = [decode(r.value, BuildEvent) for r in rows]
    assert [(e.seq, e.event_id) for e in events] == [(s, event_id_for("b1", s)) for s in (1, 2, 3)]
    assert {r.key for r in rows} == {b"b1"}


def test_a_restarted_reporter_continues_the_sequence_and_resends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with BuildReporter(offline_config(path)) as reporter:
        reporter.report(snapshot(S.RUNNING, StageSnapshot("build", S.RUNNING)))
    with BuildReporter(offline_config(path)) as restarted:
        assert restarted.report(snapshot(S.RUNNING, StageSnapshot("build", S.RUNNING))).changes == 0
        receipt = restarted.report(snapshot(S.SUCCEEDED, StageSnapshot("build", S.SUCCEEDED)))
        assert list(receipt.seqs) == [3, 4]
        assert restarted.pending() == 4


def test_a_killed_runner_loses_nothing_it_was_told_was_accepted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    runner = textwrap.dedent(f"""
        import os, signal, sys
        from streams.reporter import BuildReporter, BuildSnapshot, ReporterConfig, StageSnapshot, TaskSnapshot
        reporter = BuildReporter(ReporterConfig(bootstrap="127.0.0.1:{closed_port()}", outbox_path={str(path)!r}))
        tasks = []
        for index in range(150):
            tasks.append(TaskSnapshot(f"t{{index}}", "RUNNING"))
            receipt = reporter.report(BuildSnapshot("b1", "p", "ci", "RUNNING",
                                                    stages=[StageSnapshot("s", "RUNNING", tasks=tasks)]))
            print(receipt.seqs.stop - 1, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no flush
    """)
    result = subprocess.run([sys.executable, "-c", runner], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    last_acknowledged_seq = int(result.stdout.split()[-1])
    assert last_acknowledged_seq == 152  # build, stage, then one task per report

    outbox = Outbox(path)
    assert [r.seq for r in outbox.pending(limit=1000)] == list(range(1, 153))
    assert outbox.progress("b1").next_seq == 153
    outbox.close()
    with BuildReporter(offline_config(path)) as restarted:
        known = restarted.last_snapshot("b1")
        assert known is not None and len(known.stages[0].tasks) == 150
        assert list(restarted.report(snapshot(S.RUNNING, StageSnapshot("s", S.SUCCEEDED))).seqs) == [153]


def test_a_rejected_snapshot_accepts_nothing(tmp_path: Path) -> None:
    with BuildReporter(offline_config(tmp_path / "outbox.sqlite")) as reporter:
        reporter.report(snapshot(S.SUCCEEDED))
        with pytest.raises(ReporterError, match="SUCCEEDED \\(final\\)"):
            reporter.report(snapshot(S.RUNNING))
        assert reporter.pending() == 1
        assert reporter.last_snapshot("b1") == snapshot(S.SUCCEEDED)


# ---------------------------------------------------------------- sender policy

def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(3)
    for attempt in range(12):
        ceiling = min(10.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 10.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range
    assert backoff_delay(10_000, 0.5, 10.0, rng) <= 10.0


@pytest.mark.parametrize("override", [
    {"enable.idempotence": False}, {"acks": "1"}, {"max.in.flight.requests.per.connection": 6},
    {"partitioner": "consistent_random"},
])
def test_producer_settings_that_break_ordered_acknowledged_delivery_are_refused(override: dict[str, object]) -> None:
    with pytest.raises(ReporterError):
        sender_producer_config({"bootstrap.servers": "x", **override}, 30.0)


def test_producer_settings_keep_idempotence_acks_all_and_a_timeout() -> None:
    config = sender_producer_config({"bootstrap.servers": "x", "acks": "all", "enable.idempotence": True}, 2.5)
    assert config["message.timeout.ms"] == 2500 and config["max.in.flight.requests.per.connection"] == 5
    assert config["partitioner"] == "murmur2_random"


def test_event_time_defaults_to_the_reporters_clock(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    path = tmp_path / "outbox.sqlite"
    with BuildReporter(offline_config(path), clock=lambda: moment) as reporter:
        reporter.report(snapshot(S.QUEUED))
    [row] = Outbox(path).pending()
    assert decode(row.value, BuildEvent).event_time == moment


def test_one_reporter_per_outbox_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with BuildReporter(offline_config(path)):
        with pytest.raises(OutboxError, match=f"in use by pid {os.getpid()}"):
            BuildReporter(offline_config(path))
    with BuildReporter(offline_config(path)) as after_close:  # the claim ends with close()
        assert after_close.pending() == 0
