"""Assemble the Faust application: topics, the build-state table, agents, API and timers.

One factory builds everything from a `CipulseSettings`, so tests start isolated
workers (own topics, group, store and ClickHouse database) in the same way the CLI does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from weakref import WeakKeyDictionary
from typing import Any
from dataclasses import dataclass

import faust
from faust.types import TableT, TopicT

from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.api import register_api
from streams.audit_api import register_audit_api
from streams.notifier import NotifierTopics, register_notifier_agent
from streams.notifier_runtime import NotifierRuntime
from streams.notify_api import register_notify_api
from streams.notify_groups_table import GROUP_RECORD_LIMIT_BYTES
from streams.notify_groups_table import changelog_configs as groups_changelog_configs
from streams.notify_log_table import changelog_configs
from streams.notify_requester import RequesterTopics, register_requester_agent
from streams.notify_subscriptions import Subscription, load_subscriptions
from streams.retry_api import register_retry_api
from streams.callback_api import register_callback_api
from streams.callbacks import CallbackRegistry, callback_dispatcher
from streams.ingest_api import register_ingest_api
from streams.adapters.delivery_sink import PROCESSOR as DELIVERY_SINK
from streams.adapters.delivery_sink import register_delivery_sink
from streams.adapters.intake import IntakeTopics, register_adapter
from streams.adapters.registry import ADAPTERS, BY_NAME
from streams.adapters.replay_api import register_replay_api
from streams.push_api import register_push_api
from streams.gate_api import register_gate_api
from streams.gate_config import Gate, describe, load_gates
from streams.gates import GateTopics, register_gate_agents, watches_notifications
from streams.dashboard_api import register_dashboard_api
from streams.builds import register_build_agent
from streams.dead_letter import DeadLetterPublisher
from streams.faust_patches import CipulseApp
from streams.settings import CipulseSettings
from streams.sink_agent import SinkHealth
from streams.sink_consumer import status_sink
from streams.thread_consumer import ThreadConsumer, heartbeat_seconds
from streams.audit_detection import AuditPolicy
from streams.producer import BatchPublisher, BuildEventProducer
from streams.audits import AuditRuntime, AuditTopics, register_audit_agent
from streams.topics import (
    ADAPTER_DELIVERIES,
    AUDIT_ALERTS,
    AUDIT_EVENTS,
    AUDIT_STATE_TABLE,
    BUILD_EVENTS,
    BUILD_FINALS,
    BUILD_STATE_TABLE,
    BUILD_STATUS,
    DEAD_LETTER,
    GATE_DECISIONS,
    GATE_INPUTS,
    GATE_STATE_TABLE,
    NOTIFY_GROUPS_TABLE,
    NOTIFY_LOG_TABLE,
    NOTIFY_REQUESTS,
    NOTIFY_SIGNALS,
    PIPELINE_OUTCOMES_TABLE,
    RETRY_REQUESTS,
    topic_name,
)

log = logging.getLogger(__name__)

LAG_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class PipelineTopics:
    build_events: TopicT
    build_status: TopicT
    build_finals: TopicT
    dead_letter: TopicT


def create_app(settings: CipulseSettings, gateway: ClickHouseGateway) -> faust.App:
    store = "rocksdb://" if settings.table_store == "rocksdb" else "memory://"
    # CipulseApp: faust.App whose consumer never commits past unprocessed records (streams.faust_patches)
    app = CipulseApp(
        settings.app_id,
        broker=settings.kafka_url,
        store=store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # aiokafka turns a whole fetch into Python records at once: with Faust's 1 MiB per
        # partition that was ~47k ConsumerRecords (~28 MiB) per partition of small events
        consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
        producer_acks=-1,
        # a notification group's table value may reach 8 MiB (streams.notify_groups_table)
        producer_max_request_size=GROUP_RECORD_LIMIT_BYTES,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.consumer_session_timeout,
        broker_heartbeat_interval=heartbeat_seconds(settings.consumer_session_timeout),
        consumer_group_instance_id=settings.group_instance_id,
    )
    topics = PipelineTopics(
        build_events=_raw_topic(app, topic_name(settings, BUILD_EVENTS)),
        build_status=_raw_topic(app, topic_name(settings, BUILD_STATUS)),
        build_finals=_raw_topic(app, topic_name(settings, BUILD_FINALS)),
        dead_letter=_raw_topic(app, topic_name(settings, DEAD_LETTER), partitions=1),
    )
    table: TableT[bytes, Any] = app.Table(
        BUILD_STATE_TABLE,
        default=None,
        partitions=settings.topic_partitions,
        # bytes in, bytes out: Faust derives the changelog codecs from these types, and a
        # schema= argument is overridden by them (recovery then decoded raw keys as JSON).
        key_type=bytes,
        value_type=bytes,
    )
    health = SinkHealth()
    register_build_agent(
        app,
        source=topics.build_events,
        status_topic=topics.build_status,
        finals_topic=topics.build_finals,
        dead_letters=DeadLetterPublisher(topics.dead_letter, "build-state"),
        table=table,
        batch_size=settings.state_batch_size,
        batch_wait_seconds=settings.state_batch_wait_seconds,
        publisher=lambda: BatchPublisher(settings.kafka_bootstrap),
    )
    register_status_sink(app, settings, gateway, health, topics)
    audit_table: TableT[bytes, Any] = app.Table(
        AUDIT_STATE_TABLE, default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes
    )
    audit_topics = AuditTopics(
        events=_raw_topic(app, topic_name(settings, AUDIT_EVENTS)),
        alerts=_raw_topic(app, topic_name(settings, AUDIT_ALERTS)),
        inputs=_raw_channel(app, topic_name(settings, AUDIT_EVENTS), topic_name(settings, AUDIT_ALERTS)),
    )
    audit_runtime = AuditRuntime(
        policy=audit_policy(settings),
        api_url=settings.api_url,
        alert_producer_factory=lambda: BuildEventProducer(
            settings.kafka_bootstrap, topic_name(settings, AUDIT_ALERTS), **{"linger.ms": 1}
        ),
    )
    register_audit_agent(
        app,
        topics=audit_topics,
        dead_letters=DeadLetterPublisher(topics.dead_letter, "audit-state"),
        table=audit_table,
        gateway=gateway,
        health=health,
        runtime=audit_runtime,
        batch_size=settings.state_batch_size,
        batch_wait_seconds=settings.state_batch_wait_seconds,
        retry_max_seconds=settings.sink_retry_max_seconds,
    )
    @app.on_before_shutdown.connect
    async def flush_alerts(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Alerts sent just before a stop reach the topic (an unsent one would be raised again anyway)."""
        if audit_runtime.alert_producer is not None:
            try:
                audit_runtime.alert_producer.flush(timeout=5.0)
            except Exception as exc:  # the broker may be gone; the mark was not committed, so it re-raises
                log.warning("audit alerts not flushed at shutdown: %s", exc)

    register_api(app, table=table, gateway=gateway, health=health, public_url=settings.api_url)
    register_audit_api(
        app, table=audit_table, events=audit_topics.events, gateway=gateway, settings=settings,
        policy=audit_runtime.policy,
    )
    register_notifications(app, settings, gateway, health, topics, audit_topics.alerts)
    register_notify_api(app, gateway=gateway, settings=settings)
    register_gates(app, settings, gateway, health, topics)
    register_retry_api(
        app, table=table, retries=_raw_topic(app, topic_name(settings, RETRY_REQUESTS)), gateway=gateway,
        settings=settings,
    )
    callback_registry = CallbackRegistry(gateway, settings.callback_cache_seconds)
    run_with_worker(app, callback_dispatcher(
        source_topic=topics.build_status.get_topic_name(), dead_letter_topic=topics.dead_letter.get_topic_name(),
        gateway=gateway, health=health, registry=callback_registry, settings=settings,
    ))
    register_callback_api(app, gateway=gateway, registry=callback_registry, settings=settings)
    register_ingest_api(app, events=topics.build_events, settings=settings)
    register_adapters(app, settings, gateway, health, topics, audit_topics.events)
    register_push_api(app, status_topic=topics.build_status.get_topic_name(), settings=settings)
    register_dashboard_api(app, gateway=gateway, directory=settings.dashboard_dir)

    async def refresh_lag() -> None:
        """Publish consumer lag (end offset - committed offset) per assigned partition."""
        monitor = app.monitor
        committed = monitor._tp_committed_offsets_dict()
        for topic, partitions in monitor._tp_end_offsets_dict().items():
            for partition, end in partitions.items():
                done = (committed.get(topic) or {}).get(partition)
                if end is not None:
                    metrics.CONSUMER_LAG.labels(settings.app_id, topic, str(partition)).set(max(0, end - (done or 0)))

    app.timer(interval=LAG_REFRESH_SECONDS)(refresh_lag)
    return app


def register_status_sink(
    app: faust.App, settings: CipulseSettings, gateway: ClickHouseGateway, health: SinkHealth, topics: PipelineTopics
) -> ThreadConsumer:
    """The ClickHouse sink of build-status: its own consumer thread, started and stopped with the worker."""
    sink = status_sink(
        settings, source_topic=topics.build_status.get_topic_name(),
        dead_letter_topic=topics.dead_letter.get_topic_name(), gateway=gateway, health=health,
    )
    run_with_worker(app, sink)
    return sink


_THREAD_CONSUMERS: WeakKeyDictionary[faust.App, list[ThreadConsumer]] = WeakKeyDictionary()


def run_with_worker(app: faust.App, consumer: ThreadConsumer) -> None:
    """Start `consumer` once the worker runs; stop it before the worker shuts down (and the gateway closes).

    An app's consumers stop together, not one after the other: each takes a poll interval and a
    group leave to stop, which a worker's stop need not pay once per consumer.
    """

    async def start_consumer() -> None:
        consumer.start()

    app.task(start_consumer)
    consumers = _THREAD_CONSUMERS.get(app)
    if consumers is not None:
        consumers.append(consumer)
        return
    consumers = _THREAD_CONSUMERS[app] = [consumer]

    @app.on_before_shutdown.connect
    async def stop_consumers(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, each.stop) for each in consumers))


def register_adapters(
    app: faust.App,
    settings: CipulseSettings,
    gateway: ClickHouseGateway,
    health: SinkHealth,
    topics: PipelineTopics,
    audit_events: TopicT,
) -> None:
    """POST /adapters/<name> for every CI adapter, the sink keeping their deliveries, and the replay API."""
    intake = IntakeTopics(
        build_events=topics.build_events,
        audit_events=audit_events,
        deliveries=_raw_topic(app, topic_name(settings, ADAPTER_DELIVERIES)),
        dead_letter=topics.dead_letter,
    )
    for adapter in ADAPTERS:
        register_adapter(app, adapter, topics=intake, settings=settings)
    register_delivery_sink(
        app,
        source=intake.deliveries,
        dead_letters=DeadLetterPublisher(topics.dead_letter, DELIVERY_SINK),
        gateway=gateway,
        health=health,
        batch_size=settings.sink_batch_size,
        flush_seconds=settings.sink_flush_seconds,
        retry_max_seconds=settings.sink_retry_max_seconds,
    )
    register_replay_api(app, adapters=BY_NAME, topics=intake, gateway=gateway, settings=settings)


def load_configured_subscriptions(settings: CipulseSettings) -> list[Subscription]:
    """The subscription file's subscriptions (none when unset); raises NotificationConfigError."""
    if settings.notify_subscriptions_file is None:
        return []
    subscriptions = load_subscriptions(settings.notify_subscriptions_file)
    log.info(
        "notifications: %d subscription(s) from %s: %s", len(subscriptions), settings.notify_subscriptions_file,
        ", ".join(f"{s.id} ({s.channel.kind.value.lower()})" for s in subscriptions),
    )
    return subscriptions


def register_notifications(
    app: faust.App,
    settings: CipulseSettings,
    gateway: ClickHouseGateway,
    health: SinkHealth,
    topics: PipelineTopics,
    audit_alerts: TopicT,
) -> None:
    """The requester (finals + alerts -> requests) and the grouping agent (requests -> sends)."""
    subscriptions = load_configured_subscriptions(settings)
    requests = _raw_topic(app, topic_name(settings, NOTIFY_REQUESTS))
    signals = _raw_topic(app, topic_name(settings, NOTIFY_SIGNALS))
    outcomes: TableT[bytes, Any] = app.Table(
        PIPELINE_OUTCOMES_TABLE, default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes
    )
    register_requester_agent(
        app,
        topics=RequesterTopics(
            inputs=_raw_channel(app, topic_name(settings, BUILD_FINALS), topic_name(settings, AUDIT_ALERTS)),
            alerts_name=audit_alerts.get_topic_name(),
            requests=requests,
        ),
        dead_letters=DeadLetterPublisher(topics.dead_letter, "notify-requester"),
        outcomes=outcomes,
        subscriptions=subscriptions,
        api_url=settings.api_url,
        batch_size=settings.state_batch_size,
        batch_wait_seconds=settings.state_batch_wait_seconds,
    )
    groups: TableT[bytes, Any] = app.Table(
        NOTIFY_GROUPS_TABLE, default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes,
        extra_topic_configs=groups_changelog_configs(),
    )
    sent_log: TableT[bytes, Any] = app.Table(
        NOTIFY_LOG_TABLE, default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes,
        extra_topic_configs=changelog_configs(settings.notify_log_retention_days),
    )
    register_notifier_agent(
        app,
        topics=NotifierTopics(
            requests=requests,
            signals=signals,
            inputs=_raw_channel(app, topic_name(settings, NOTIFY_REQUESTS), topic_name(settings, NOTIFY_SIGNALS)),
        ),
        dead_letters=DeadLetterPublisher(topics.dead_letter, "notifier"),
        groups_table=groups,
        log_table=sent_log,
        gateway=gateway,
        health=health,
        runtime=NotifierRuntime(subscriptions={s.id: s for s in subscriptions}),
        batch_size=settings.state_batch_size,
        batch_wait_seconds=settings.state_batch_wait_seconds,
        retry_max_seconds=settings.sink_retry_max_seconds,
    )


def load_configured_gates(settings: CipulseSettings) -> list[Gate]:
    """The gates file's gates (none when unset); raises GateConfigError, so a bad file stops the worker."""
    if settings.gates_file is None:
        return []
    gates = load_gates(settings.gates_file)
    log.info("quality gates: %d from %s", len(gates), settings.gates_file)
    for gate in gates:
        log.info("quality gate %s", describe(gate))
    return gates


def register_gates(
    app: faust.App, settings: CipulseSettings, gateway: ClickHouseGateway, health: SinkHealth, topics: PipelineTopics
) -> None:
    """Router (finals + audits [+ notification requests and receipts] -> gate-inputs), gate agent
    (-> gate-decisions), decision sink, and the API."""
    gates = load_configured_gates(settings)
    if gates:
        notify_sources = (
            (topic_name(settings, NOTIFY_REQUESTS), topic_name(settings, NOTIFY_SIGNALS))
            if watches_notifications(gates) else ()
        )
        register_gate_agents(
            app,
            gates=gates,
            topics=GateTopics(
                sources=_raw_channel(
                    app, topic_name(settings, BUILD_FINALS), topic_name(settings, AUDIT_ALERTS),
                    topic_name(settings, AUDIT_EVENTS), *notify_sources,
                ),
                finals_name=topic_name(settings, BUILD_FINALS),
                alerts_name=topic_name(settings, AUDIT_ALERTS),
                requests_name=topic_name(settings, NOTIFY_REQUESTS),
                signals_name=topic_name(settings, NOTIFY_SIGNALS),
                inputs=_raw_topic(app, topic_name(settings, GATE_INPUTS)),
                decisions=_raw_topic(app, topic_name(settings, GATE_DECISIONS)),
            ),
            dead_letter_topic=topics.dead_letter,
            table=app.Table(
                GATE_STATE_TABLE, default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes
            ),
            gateway=gateway,
            health=health,
            batch_size=settings.state_batch_size,
            batch_wait_seconds=settings.state_batch_wait_seconds,
            retry_max_seconds=settings.sink_retry_max_seconds,
        )
    register_gate_api(app, gates=gates, gateway=gateway)


def audit_policy(settings: CipulseSettings) -> AuditPolicy:
    return AuditPolicy(
        stuck_after=timedelta(seconds=settings.audit_stuck_after_seconds),
        stuck_after_by_project={
            project: timedelta(seconds=seconds) for project, seconds in settings.audit_stuck_after_by_project.items()
        },
        sync_grace=timedelta(seconds=settings.audit_sync_grace_seconds),
    )


def _raw_topic(app: faust.App, name: str, partitions: int | None = None) -> TopicT:
    """Topics carry Avro single-object bytes: only `schemas.serde` decodes them."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=partitions
    )


def _raw_channel(app: faust.App, *names: str) -> TopicT:
    """Several co-partitioned raw topics consumed by one agent as one stream."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
