"""Run one stream worker: apply ClickHouse migrations, create topics, start Faust.

In embedded mode (`chdb://` DSN) the ClickHouse client runs in the worker's engine process
(`sinks.engine_gateway`), a child that lives and dies with it and owns the data path: the
sinks and the API share its engine, and no other process may open that path while the worker
runs. With a server DSN the client runs in a thread of the worker (both: CIPULSE_CLICKHOUSE_ENGINE_PROCESS).
"""

from __future__ import annotations

import logging
import subprocess

from schemas.serde import remember_encoded
from sinks.cluster_ddl import check_cluster_dsn
from sinks.connection import open_client, parse_dsn
from sinks.engine_gateway import EngineProcessGateway
from sinks.engine_launch import discard_engine_process, uses_engine_process
from sinks.engine_process import EngineConfig
from sinks.gateway import ClickHouseGateway
from sinks.migrations import apply_migrations
from streams import metrics
from streams.allocator import limit_malloc_arenas
from streams.app import create_app
from streams.debug_dump import dump_worker
from streams.failed_batches import EXIT_AGENT_FAILED, agent_failure
from streams.faust_pauses import PromptStopWorker
from streams.settings import CipulseSettings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

ENGINE_LOCK_WAIT_SECONDS = 15.0
"""How long a starting engine process waits for a previous owner of the embedded path to exit."""


def open_gateway(
    settings: CipulseSettings, log_level: int = logging.INFO, launched: subprocess.Popen[bytes] | None = None,
) -> ClickHouseGateway:
    """The engine process's gateway (embedded engine, by default) or the in-thread one.

    `launched`: an engine process the command started early (`sinks.engine_launch`); used by
    the engine gateway, discarded when the client runs in a thread.
    """
    dsn = settings.clickhouse_dsn.get_secret_value()
    database = settings.clickhouse_database
    try:
        parse_dsn(dsn)  # a malformed DSN fails here, with its fix, whichever side opens the client
        check_cluster_dsn(dsn, settings.clickhouse_cluster)  # chDB cannot run ON CLUSTER DDL
    except Exception:
        if launched is not None:
            discard_engine_process(launched)
        raise
    memory = settings.clickhouse_embedded_memory_mib * 2**20
    if uses_engine_process(settings.clickhouse_engine_process, dsn):
        return EngineProcessGateway(EngineConfig(
            dsn=dsn, database=database, embedded_memory_bytes=memory, log_level=log_level,
            lock_wait_seconds=ENGINE_LOCK_WAIT_SECONDS,
        ), on_start=lambda pid: metrics.CLICKHOUSE_ENGINE_STARTS.inc(), launched=launched)
    if launched is not None:
        discard_engine_process(launched)
    return ClickHouseGateway(lambda: open_client(dsn, database, embedded_memory_bytes=memory), database)


def prepare_clickhouse(settings: CipulseSettings, gateway: ClickHouseGateway) -> None:
    """Fail fast, before consuming anything, when ClickHouse is unusable."""
    applied = gateway.call_sync(
        apply_migrations,
        raw_retention_days=settings.raw_retention_days,
        results_retention_days=settings.results_retention_days,
        context_retention_days=settings.context_retention_days,
        cluster=settings.clickhouse_cluster,
    )
    names = ", ".join(migration.file_name for migration in applied) or "nothing new"
    log.info("ClickHouse schema ready (applied: %s)", names)


class DiagnosableWorker(PromptStopWorker):
    """mode's SIGUSR1 stack dump, followed by where each task awaits and the consumer's state."""

    async def _cry(self) -> None:
        await super()._cry()
        dump_worker(self.app, self.stderr)


def run_worker(settings: CipulseSettings, launched_engine: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the worker is stopped (SIGTERM / Ctrl-C); `launched_engine`: see `open_gateway`."""
    limit_malloc_arenas(settings.malloc_arena_max)  # first: the engine, RocksDB and Kafka start threads
    if settings.decode_memo_entries:
        remember_encoded(settings.decode_memo_entries)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = open_gateway(settings, logging.getLogger().getEffectiveLevel(), launched_engine)
    try:
        prepare_clickhouse(settings, gateway)
        created = ensure_topics(settings)
        if created:
            log.info("created topics: %s", ", ".join(created))
        app = create_app(settings, gateway)
        worker = DiagnosableWorker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
        log.info("worker %s starting: Kafka %s, API %s, group membership %s", settings.app_id, settings.kafka_bootstrap,
                 settings.api_url, f"static as {settings.group_instance_id}" if settings.group_instance_id else "dynamic")
        try:
            worker.execute_from_commandline()
        except SystemExit:
            failure = agent_failure()
            if failure is not None:
                log.critical("worker stopped because an agent failed on a batch: %r", failure)
                raise SystemExit(EXIT_AGENT_FAILED) from failure
            raise
    finally:
        gateway.close()
