"""Run one stream worker: apply ClickHouse migrations, create topics, start Faust.

In embedded mode (`chdb://` DSN) this process owns the ClickHouse data path: the
sink and the API share one engine, and no other process may open that path while
the worker runs.
"""

from __future__ import annotations

import logging

import faust

from schemas.serde import remember_encoded
from sinks.cluster_ddl import check_cluster_dsn
from sinks.connection import open_client
from sinks.gateway import ClickHouseGateway
from sinks.migrations import apply_migrations
from streams.allocator import limit_malloc_arenas
from streams.app import create_app
from streams.debug_dump import dump_worker
from streams.settings import CipulseSettings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def open_gateway(settings: CipulseSettings) -> ClickHouseGateway:
    dsn = settings.clickhouse_dsn.get_secret_value()
    database = settings.clickhouse_database
    check_cluster_dsn(dsn, settings.clickhouse_cluster)  # chDB cannot run ON CLUSTER DDL
    memory = settings.clickhouse_embedded_memory_mib * 2**20
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


class DiagnosableWorker(faust.Worker):
    """mode's SIGUSR1 stack dump, followed by where each task awaits and the consumer's state."""

    async def _cry(self) -> None:
        await super()._cry()
        dump_worker(self.app, self.stderr)


def run_worker(settings: CipulseSettings) -> None:
    """Block until the worker is stopped (SIGTERM / Ctrl-C)."""
    limit_malloc_arenas(settings.malloc_arena_max)  # first: the engine, RocksDB and Kafka start threads
    if settings.decode_memo_entries:
        remember_encoded(settings.decode_memo_entries)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = open_gateway(settings)
    try:
        prepare_clickhouse(settings, gateway)
        created = ensure_topics(settings)
        if created:
            log.info("created topics: %s", ", ".join(created))
        app = create_app(settings, gateway)
        worker = DiagnosableWorker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
        log.info("worker %s starting: Kafka %s, API %s", settings.app_id, settings.kafka_bootstrap, settings.api_url)
        worker.execute_from_commandline()
    finally:
        gateway.close()
