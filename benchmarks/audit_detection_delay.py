"""How late are stuck audits reported? Issue 3's target: no later than threshold + 1 s.

Opens `--audits` reviews at once on a private broker, none of which is ever decided, with a
stuck threshold of `--threshold` seconds, and reads every STUCK alert from the alerts topic.
An audit's delay is the alert record's Kafka timestamp minus (its REQUESTED event time +
threshold). Prints the worst, p50 and p99 delay, and whether every audit got exactly one alert.

    .venv/bin/python benchmarks/audit_detection_delay.py [--audits 3000] [--threshold 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer  # noqa: E402
from harness import KafkaBroker, WorkerProcess, free_port_pair  # noqa: E402

from schemas import AuditAlert, AuditAlertKind, AuditEvent, AuditEventKind, AuditSubjectKind, decode, encode  # noqa: E402
from streams.producer import BuildEventProducer  # noqa: E402


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audits", type=int, default=3000, help="open audits to track (default 3000)")
    parser.add_argument("--threshold", type=float, default=10.0, help="stuck threshold in seconds (default 10)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the audit topics (default 3)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cipulse-audit-bench-"))
    broker = KafkaBroker(port=free_port_pair(), data_dir=work / "kafka")
    log(f"starting a private broker on {broker.bootstrap}")
    broker.start()
    worker = WorkerProcess(
        bootstrap=broker.bootstrap, work_dir=work / "worker",
        extra_env={
            "CIPULSE_AUDIT_STUCK_AFTER_SECONDS": str(args.threshold),
            "CIPULSE_TOPIC_PARTITIONS": str(args.partitions),
            "CIPULSE_LOG_LEVEL": "warn",
        },
    )
    try:
        worker.start()
        log(f"worker ready; opening {args.audits} audits (threshold {args.threshold:.0f}s)")
        producer = BuildEventProducer(broker.bootstrap, worker.topic("audit-events"))
        opened: dict[str, datetime] = {}
        run = uuid.uuid4().hex[:6]
        for number in range(args.audits):
            audit_id = f"bench-{run}-{number}"
            event = AuditEvent(
                event_id=f"{audit_id}-1", audit_id=audit_id, subject_kind=AuditSubjectKind.BUILD,
                subject_id=f"build-{number}", project=f"project-{number % 7}", kind=AuditEventKind.REQUESTED,
                reviewers=["reviewer"], seq=1, event_time=datetime.now(UTC),
            )
            opened[audit_id] = event.event_time
            producer.send_raw(audit_id.encode(), encode(event))
        producer.flush()
        log("all audits produced; waiting for their alerts")

        consumer = Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": f"bench-{run}", "auto.offset.reset": "earliest",
        })
        consumer.subscribe([worker.topic("audit-alerts")])
        alerts: dict[str, list[float]] = {}
        deadline = time.monotonic() + args.threshold + 120
        quiet_until = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if len(alerts) == len(opened):
                    quiet_until = quiet_until or time.monotonic() + 3  # catch any duplicate for 3 s more
                    if time.monotonic() > quiet_until:
                        break
                continue
            alert = decode(message.value(), AuditAlert)
            if alert.kind is not AuditAlertKind.STUCK or alert.audit_id not in opened:
                continue
            _, stamp_ms = message.timestamp()
            due = opened[alert.audit_id] + timedelta(seconds=args.threshold)
            alerts.setdefault(alert.audit_id, []).append(stamp_ms / 1000 - due.timestamp())
            if len(alerts) % 500 == 0 and len(alerts[alert.audit_id]) == 1:
                log(f"{len(alerts)}/{len(opened)} audits alerted")
        consumer.close()
    finally:
        worker.stop()
        broker.stop()

    delays = [values[0] for values in alerts.values()]
    duplicates = sum(len(values) - 1 for values in alerts.values())
    missing = len(opened) - len(alerts)
    print(f"audit detection delay: {len(opened)} open audits, threshold {args.threshold:.0f}s, scan every 0.25s")
    if delays:
        print(f"  delay after threshold   p50 {percentile(delays, 0.5) * 1000:7.0f} ms   "
              f"p99 {percentile(delays, 0.99) * 1000:7.0f} ms   worst {max(delays) * 1000:7.0f} ms")
        print(f"  earliest (never before the threshold): {min(delays) * 1000:.0f} ms")
    print(f"  alerts: {len(alerts)} audits alerted, {duplicates} duplicate alerts, {missing} audits never alerted")
    within = bool(delays) and max(delays) <= 1.0 and missing == 0 and duplicates == 0
    print(f"  target (every audit reported once, no later than threshold + 1 s): {'met' if within else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
