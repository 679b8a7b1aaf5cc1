"""The topic catalog: every topic cipulse uses, its key, schema, producers and consumers.

The README's topic table and `cipulse topics` are generated from this list, and
`ensure_topics` creates them with explicit partition counts (Faust changelogs must
match their source topic, so nothing is left to broker auto-creation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.exceptions import KafkaSetupError
from streams.notify_groups_table import changelog_configs as groups_changelog_configs
from streams.notify_log_table import changelog_configs
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    key: str
    schema: str
    producers: str
    consumers: str
    keyed: bool = True
    """Keyed topics get `topic_partitions`; unkeyed ones (dead letters) one partition."""


BUILD_EVENTS = TopicSpec(
    "build-events", "build_id", "BuildEvent", "CI runners, reporter SDK, demo feed", "build-state agent"
)
BUILD_STATUS = TopicSpec(
    "build-status",
    "build_id",
    "BuildStatusChange",
    "build-state agent",
    "ClickHouse sink agent, push channels, quality gates",
)
DEAD_LETTER = TopicSpec(
    "dead-letter",
    "original key",
    "DeadLetter",
    "every agent that rejects input",
    "operators (`cipulse dlq`), alerting",
    keyed=False,
)
AUDIT_EVENTS = TopicSpec(
    "audit-events",
    "audit_id",
    "AuditEvent",
    "review systems (decisions, record-status syncs), cipulse's reconciler and repair API",
    "audit agent",
)
AUDIT_ALERTS = TopicSpec(
    "audit-alerts",
    "audit_id",
    "AuditAlert",
    "audit detection timer",
    "on-call alerting, notifications, dashboards; the audit agent (stores the already-alerted mark)",
)
BUILD_FINALS = TopicSpec(
    "build-finals",
    "project/pipeline@branch",
    "BuildStatusChange",
    "build-state agent (the change set of every build entering a final status)",
    "notification requester (pipeline outcomes, RECOVERED), quality gates",
)
NOTIFY_REQUESTS = TopicSpec(
    "notify-requests",
    "group key",
    "NotificationRequest",
    "notification requester (one per subscription that wants a transition)",
    "notification grouping agent; gate router (FAILED requests, for no_unacknowledged_failure_notification)",
)
NOTIFY_SIGNALS = TopicSpec(
    "notify-signals",
    "group key",
    "NotifierSignal",
    "notification grouping timer (FLUSH_DUE), notification sender (DELIVERED, GAVE_UP receipts naming their "
    "notifications), grouping agent (flush-less receipts for requests it does not send)",
    "notification grouping agent; gate router (receipts, for no_unacknowledged_failure_notification)",
)
RETRY_REQUESTS = TopicSpec(
    "retry-requests",
    "build_id",
    "RetryRequest",
    "REST API / `cipulse retry request` (only for builds whose context is still retained)",
    "the CI system that runs the retry",
)
GATE_INPUTS = TopicSpec(
    "gate-inputs",
    "gate id",
    "BuildStatusChange | AuditAlert | AuditEvent | NotificationRequest | NotifierSignal (the input record's own bytes)",
    "gate router (build-finals, audit-alerts, audit-events, notify-requests and notify-signals re-keyed by every "
    "gate they concern)",
    "gate agent (gate-state table)",
)
GATE_DECISIONS = TopicSpec(
    "gate-decisions",
    "gate id",
    "GateDecision",
    "gate agent (only when a gate's decision changes; decision_id repeats on replay)",
    "gate decision sink (ClickHouse gate_decisions), release tooling, dashboards",
)
ADAPTER_DELIVERIES = TopicSpec(
    "adapter-deliveries",
    "adapter:delivery key",
    "AdapterDelivery",
    "CI adapters (POST /adapters/github|gitlab|cdevents): every authenticated request as received, before it is "
    "translated",
    "adapter delivery sink (ClickHouse adapter_deliveries, kept for `cipulse adapters replay`)",
)
CATALOG: tuple[TopicSpec, ...] = (
    BUILD_EVENTS,
    BUILD_STATUS,
    DEAD_LETTER,
    AUDIT_EVENTS,
    AUDIT_ALERTS,
    BUILD_FINALS,
    NOTIFY_REQUESTS,
    NOTIFY_SIGNALS,
    RETRY_REQUESTS,
    GATE_INPUTS,
    GATE_DECISIONS,
    ADAPTER_DELIVERIES,
)

BUILD_STATE_TABLE = "build-state"
AUDIT_STATE_TABLE = "audit-state"
PIPELINE_OUTCOMES_TABLE = "pipeline-outcomes"
NOTIFY_GROUPS_TABLE = "notify-groups"
NOTIFY_LOG_TABLE = "notify-log"
GATE_STATE_TABLE = "gate-state"
TABLES: tuple[str, ...] = (
    BUILD_STATE_TABLE,
    AUDIT_STATE_TABLE,
    PIPELINE_OUTCOMES_TABLE,
    NOTIFY_GROUPS_TABLE,
    NOTIFY_LOG_TABLE,
    GATE_STATE_TABLE,
)


def topic_name(settings: CipulseSettings, spec: TopicSpec) -> str:
    return f"{settings.topic_prefix}.{spec.suffix}"


def changelog_name(settings: CipulseSettings, table: str) -> str:
    """Faust names a table's changelog `<app id>-<table>-changelog`."""
    return f"{settings.app_id}-{table}-changelog"


def ensure_topics(settings: CipulseSettings, timeout: float = 30.0) -> list[str]:
    """Create missing topics (and table changelogs) with the right partition counts.

    Returns the names created; existing topics are left as they are.
    """
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:
        raise KafkaSetupError(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}. "
            "Start it with `cipulse broker start` or set CIPULSE_KAFKA_BOOTSTRAP."
        ) from exc
    wanted: dict[str, NewTopic] = {}
    for spec in CATALOG:
        partitions = settings.topic_partitions if spec.keyed else 1
        wanted[topic_name(settings, spec)] = NewTopic(topic_name(settings, spec), partitions, 1)
    for table in TABLES:
        changelog = changelog_name(settings, table)
        config = {"cleanup.policy": "compact"}
        if table == NOTIFY_LOG_TABLE:
            config = changelog_configs(settings.notify_log_retention_days)
        elif table == NOTIFY_GROUPS_TABLE:
            config = groups_changelog_configs()
        wanted[changelog] = NewTopic(changelog, settings.topic_partitions, 1, config=config)
    missing = [topic for name, topic in wanted.items() if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(missing, operation_timeout=timeout)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
            log.info("created topic %s", name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise KafkaSetupError(f"could not create topic {name}: {exc}") from exc
    return created
