"""Prometheus metrics for the pipeline itself: throughput, outcomes, errors, DLQ, lag, sink health.

Served as text on the worker's `/metrics` endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from schemas import serde

BUILD_EVENTS = Counter(
    "cipulse_build_events_total",
    "Build events seen by the build-state agent, by outcome",
    ["outcome"],  # accepted | duplicate | late | rejected | undecodable | invalid
)
CHANGE_SETS_PUBLISHED = Counter(
    "cipulse_change_sets_published_total", "Change sets published to the build-status topic"
)
DEAD_LETTERS = Counter(
    "cipulse_dead_letters_total", "Records sent to the dead-letter topic", ["processor", "kind"]
)
SINK_ROWS = Counter("cipulse_sink_rows_written_total", "Rows written to ClickHouse", ["table"])
SINK_FLUSH_SECONDS = Histogram(
    "cipulse_sink_flush_seconds",
    "Time to write one batch to ClickHouse",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_FAILURES = Counter("cipulse_sink_write_failures_total", "Failed ClickHouse batch writes (each retried)")
SINK_HEALTHY = Gauge("cipulse_sink_healthy", "1 while the last ClickHouse write succeeded, 0 while failing")
CLICKHOUSE_ENGINE_STARTS = Counter(
    "cipulse_clickhouse_engine_starts_total",
    "Starts of the worker's ClickHouse engine process (1 at start-up; more mean it died and was replaced)",
)
CONSUMER_LAG = Gauge(
    "cipulse_consumer_lag_messages",
    "Messages in a partition not yet committed by this worker's consumer group (high watermark - committed offset);"
    " group is the worker's app id (its Faust agents) or <app id>-clickhouse-sink",
    ["group", "topic", "partition"],
)
CONSUMER_SEEK_BACKS = Counter(
    "cipulse_consumer_seek_backs_total",
    "Partitions the Faust consumer sought back so that records are not skipped, by cause: hole (a jump in delivered"
    " offsets), stuck (records beyond the committed offset that never reached an agent for 10 s; a delivery race"
    " the other checks missed), resumed (fetched again after flow control cleared the stream queues)",
    ["cause"],
)
CONSUMER_STALE_RECORDS_SKIPPED = Counter(
    "cipulse_consumer_stale_records_skipped_total",
    "Fetched records not delivered because their partition was sought after the fetch (fetched again from there)",
)
API_REQUESTS = Counter("cipulse_api_requests_total", "REST API requests", ["endpoint", "status"])
AUDIT_EVENTS = Counter(
    "cipulse_audit_events_total",
    "Audit events seen by the audit agent, by outcome",
    ["outcome"],  # accepted | duplicate | rejected | undecodable | invalid
)
AUDIT_ALERTS = Counter(
    "cipulse_audit_alerts_total",
    "Audit alerts by kind: raised (sent to the alerts topic) or already_marked (a repeated detection)",
    ["kind", "outcome"],
)
STATUS_CORRECTIONS = Counter(
    "cipulse_status_corrections_total",
    "Reported statuses overruled by termination facts (e.g. SUCCEEDED -> FAILED for a pod lost with its node)",
    ["reported", "recorded"],
)
NOTIFICATION_REQUESTS = Counter(
    "cipulse_notification_requests_total",
    "Notification requests seen by the grouping agent, by outcome",
    ["subscription", "outcome"],  # grouped | pending_duplicate | already_sent | group_full | unknown_subscription
)
NOTIFICATION_FLUSHES = Counter(
    "cipulse_notification_flushes_total",
    "Notification messages (group flushes) handed to the sender",
    ["subscription", "kind"],  # new | repeat
)
NOTIFICATION_DELIVERIES = Counter(
    "cipulse_notification_deliveries_total",
    "Notification messages finished by the sender: delivered (acknowledged) or gave_up (dead-lettered)",
    ["subscription", "channel", "outcome"],
)
NOTIFICATION_ATTEMPTS = Counter(
    "cipulse_notification_attempts_total", "HTTP attempts of notification messages, by outcome", ["channel", "outcome"]
)
NOTIFICATION_RATE_LIMITED = Counter(
    "cipulse_notification_rate_limited_total", "Flushes held back by a subscription's rate limit", ["subscription"]
)
NOTIFICATIONS_IN_FLIGHT = Gauge(
    "cipulse_notifications_in_flight", "Notification messages handed to the sender and not yet acknowledged or given up"
)
RETRY_DECISIONS = Counter(
    "cipulse_retry_decisions_total",
    "Retry eligibility decisions: action check|retry, verdict ELIGIBLE or the refusal reason",
    ["action", "verdict"],
)
INGEST_EVENTS = Counter(
    "cipulse_ingest_events_total",
    "Build events POSTed to the HTTP ingest endpoints, by outcome",
    ["outcome"],  # accepted | invalid | refused (valid, in a refused request) | not_acknowledged (Kafka failed)
)
SSE_CLIENTS = Gauge("cipulse_sse_clients", "Server-Sent Events clients connected to /stream/builds on this worker")
SSE_EVENTS_PUSHED = Counter("cipulse_sse_events_pushed_total", "Build-status change sets written to SSE clients")
SSE_RECORDS_UNDECODABLE = Counter(
    "cipulse_sse_records_undecodable_total", "build-status records an SSE stream could not decode (logged with position)"
)
SSE_RECORDS_DECODED = Counter(
    "cipulse_sse_records_decoded_total",
    "build-status records decoded for SSE clients: once per record by the shared tail, or by a client's catch-up reader",
    ["reader"],  # tail | catch_up
)
SSE_KAFKA_READERS = Gauge(
    "cipulse_sse_kafka_readers",
    "Kafka consumers reading build-status for SSE clients: the worker's shared tail, and catch-up readers of resumed clients",
    ["kind"],  # tail | catch_up
)
SSE_CLIENTS_DROPPED = Counter(
    "cipulse_sse_clients_dropped_total", "SSE clients disconnected by the worker, by reason (slow: their queue overflowed)",
    ["reason"],
)
CALLBACK_DELIVERIES = Counter(
    "cipulse_callback_deliveries_total",
    "REST callback deliveries finished: delivered (2xx), gave_up (dead-lettered) or skipped (callback disabled)",
    ["callback", "event", "outcome"],
)
CALLBACK_ATTEMPTS = Counter(
    "cipulse_callback_attempts_total", "HTTP attempts of REST callback deliveries, by outcome", ["outcome"]
)
CALLBACKS_DISABLED = Counter(
    "cipulse_callbacks_disabled_total", "REST callbacks disabled after failing continuously", ["callback"]
)
CALLBACKS = Gauge("cipulse_callbacks", "REST callback subscriptions by status (as last read by the dispatcher)", ["status"])
GATE_DECISIONS = Counter(
    "cipulse_gate_decisions_total", "Quality gate decisions published (only changes), by gate and result", ["gate", "result"]
)
GATE_INPUTS = Counter(
    "cipulse_gate_inputs_total",
    "Inputs applied by the gate agent, by kind (build, audit_alert, audit_event) and outcome (changed, unchanged, unknown_gate)",
    ["kind", "outcome"],
)


class DecodeMemoCollector:
    """Reads the worker's decode memo (`schemas.decode_memo`) at scrape time: how often reading a
    payload back was a lookup, how often it was decoded, and how many payloads the memo holds."""

    def collect(self) -> Iterator[Metric]:
        memo = serde.encoded_memo()
        hits = CounterMetricFamily(
            "cipulse_decode_memo_hits", "Payloads read back that this process had encoded (decoding skipped)"
        )
        misses = CounterMetricFamily(
            "cipulse_decode_memo_misses", "Payloads decoded because the decode memo did not hold them (or is off)"
        )
        held = GaugeMetricFamily("cipulse_decode_memo_payloads", "Payloads the decode memo holds (0 when off)")
        hits.add_metric([], memo.hits if memo else 0)
        misses.add_metric([], memo.misses if memo else 0)
        held.add_metric([], len(memo) if memo else 0)
        yield from (hits, misses, held)


REGISTRY.register(DecodeMemoCollector())
