"""The one typed settings object, built once at the entry point from CIPULSE_* variables.

Modules never read the environment: they receive this object (or the values they
need) from the CLI, so tests can run several isolated workers side by side.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
"""Bind-everything addresses: they name no worker in particular."""


class CipulseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIPULSE_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    topic_prefix: str = Field(default="cipulse", description="Prefix of every topic cipulse creates and uses")
    topic_partitions: int = Field(default=4, ge=1, description="Partitions of the keyed topics (and table changelogs)")
    app_id: str = Field(default="cipulse", description="Faust application id: consumer group and changelog prefix")
    clickhouse_dsn: SecretStr = Field(default=
        SecretStr(f"chdb://{REPO_ROOT / '.data' / 'clickhouse'}"),
        description="chdb:///abs/path (embedded, one owning process), chdb://memory, or http(s)://user:pass@host:port",
    )
    clickhouse_database: str = Field(default="cipulse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clickhouse_embedded_memory_mib: int = Field(
        default=1024,
        ge=128,
        description="Embedded engine (chdb://) only: its memory cap (max_server_memory_usage; a query above it fails) "
        "and the base of how many freed pages it may keep (5 %)",
    )
    clickhouse_engine_process: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Run the ClickHouse client in a child process of the worker (on), or in a thread of the worker "
        "(off); auto = a child process for the embedded engine (chdb://), which keeps the engine's memory and "
        "crashes apart from the stream state, and a thread for a server DSN, where there is no engine to keep apart",
    )
    malloc_arena_max: int = Field(
        default=2, ge=0, description="glibc malloc arenas of the worker process; 0 = glibc's default (8 per core)"
    )
    decode_memo_entries: int = Field(
        default=4096,
        ge=0,
        description="Payloads the worker encoded lately whose models it keeps, so that its own sink and agents "
        "reading them back from Kafka skip decoding them (schemas.decode_memo); 0 = decode everything",
    )
    clickhouse_cluster: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse cluster (remote_servers) the migrations create replicated tables on, ON CLUSTER; "
        "unset = single node. Server DSNs only",
    )
    raw_retention_days: int = Field(default=30, ge=1, description="TTL of day-partitioned raw event tables")
    results_retention_days: int = Field(default=400, ge=1, description="TTL of per-build result rows")
    context_retention_days: int = Field(
        default=28, ge=1, description="TTL of the build_context table (what a retry needs), set at table creation"
    )
    retry_safety_margin_seconds: float = Field(
        default=3600.0, ge=0, description="Retries stop this long before a build's context expires (partition-drop race)"
    )
    retention_cache_seconds: float = Field(
        default=30.0, gt=0, description="How long the context table's TTL, read from ClickHouse, is cached"
    )
    data_dir: Path = Field(default=REPO_ROOT / ".data" / "worker", description="Faust table stores (RocksDB) live here")
    table_store: Literal["rocksdb", "memory"] = Field(default="rocksdb", description="Faust table store")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    state_batch_size: int = Field(default=500, ge=1, description="Events the build-state agent takes per batch")
    state_batch_wait_seconds: float = Field(
        default=0.05, gt=0, description="Longest the build-state agent waits to fill a batch (adds to latency)"
    )
    sink_batch_size: int = Field(default=5000, ge=1, description="Change sets per ClickHouse insert (or sink_flush_seconds)")
    sink_flush_seconds: float = Field(default=1.0, gt=0, description="Longest a change set waits before its batch is written")
    sink_retry_max_seconds: float = Field(default=30.0, gt=0, description="Cap of the sink's retry backoff while ClickHouse fails")
    consumer_max_fetch_bytes: int = Field(
        default=64 * 1024,
        ge=16 * 1024,
        description="Most bytes fetched per partition per request (Faust consumer_max_fetch_size); the worker holds "
        "a fetch as Python records, ~28x its size for small events. A larger record still comes whole",
    )
    consumer_session_timeout: float = Field(
        default=30.0,
        ge=6.0,
        description="Seconds before a silent worker (killed, partitioned) loses its partitions to the others",
    )
    static_membership: bool = Field(
        default=False,
        description="Join the consumer groups as a static member (Kafka group.instance.id, derived from the API URL): "
        "a worker restarted at the same URL gets its partitions back at once instead of after the session timeout, "
        "but a worker stopped for good keeps them until the session timeout ends",
    )
    audit_stuck_after_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="An audit in review longer than this raises one STUCK alert"
    )
    audit_stuck_after_by_project: dict[str, float] = Field(
        default_factory=dict, description='Per-project stuck thresholds in seconds, JSON: {"payments": 3600}'
    )
    audit_sync_grace_seconds: float = Field(
        default=300.0, gt=0, description="How long a decision may wait for its record-status sync before repair"
    )
    audit_scan_interval_seconds: float = Field(
        default=0.25, gt=0, le=1.0, description="How often due audits are checked (alert delay <= threshold + this)"
    )
    notify_subscriptions_file: Path | None = Field(
        default=None,
        description="YAML/JSON notification subscriptions (see streams/notify_subscriptions.example.yaml); unset = none",
    )
    gates_file: Path | None = Field(
        default=None,
        description="YAML/JSON quality gates (see streams/gates.example.yaml); unset = no gates",
    )
    notify_log_retention_days: float = Field(
        default=35.0, gt=0, description="Acknowledged sends are remembered this long; keep above the input topics' retention"
    )
    callback_disable_after_seconds: float = Field(
        default=3600.0, gt=0, description="A REST callback whose every attempt failed for this long is disabled"
    )
    callback_max_attempts: int = Field(default=5, ge=1, le=100, description="HTTP attempts per callback delivery")
    callback_initial_backoff_seconds: float = Field(default=1.0, gt=0, description="First retry wait cap (full jitter)")
    callback_max_backoff_seconds: float = Field(default=60.0, gt=0, description="Cap of the callback retry backoff")
    callback_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one callback HTTP attempt")
    callback_cache_seconds: float = Field(
        default=5.0, gt=0, description="How long the dispatcher caches callback subscriptions read from ClickHouse"
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for state-changing API calls (repairs); unset disables them"
    )
    ingest_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='HTTP ingest bearer token per project, JSON {"project": "token"} (secret, never logged); empty disables ingest',
    )
    ingest_max_batch: int = Field(default=1000, ge=1, le=10000, description="Most events in one POST /ingest/builds/batch")
    ingest_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest ingest request body; a larger one gets 413"
    )
    ingest_max_event_bytes: int = Field(
        default=1_000_000, ge=1024,
        description="Largest single ingested event as one Kafka record (Avro value + key + record overhead); a larger "
        "one gets 413. Keep it at or under the build-events topic's max.message.bytes (broker default 1048588)",
    )
    ingest_ack_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long an ingest request waits for the broker's acknowledgements before 503"
    )
    github_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='GitHub webhook secret per source, JSON {"source": "secret"} (secret, never logged); '
        'POST /adapters/github?source=<source> (the only one when just one); empty disables the adapter',
    )
    gitlab_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='GitLab webhook secret token per source, JSON {"source": "token"} (secret, never logged); '
        'POST /adapters/gitlab?source=<source> (the only one when just one); empty disables the adapter',
    )
    cdevents_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='CDEvents bearer token per source, JSON {"source": "token"} (secret, never logged); '
        'POST /adapters/cdevents?source=<source> (the only one when just one); empty disables the adapter',
    )
    sse_max_clients: int = Field(default=100, ge=1, description="Concurrent /stream/builds clients per worker; more get 503")
    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="Comment line sent on an idle SSE stream so proxies keep it open"
    )
    sse_client_queue_events: int = Field(
        default=1000, ge=1,
        description="Change sets queued for one SSE client; a client that falls further behind is disconnected "
        "(it resumes with Last-Event-ID)",
    )
    sse_tail_linger_seconds: float = Field(
        default=5.0, ge=0,
        description="How long the shared SSE Kafka reader stays open after its last client left (saves a "
        "reconnect when clients come and go)",
    )
    dashboard_dir: Path = Field(
        default=REPO_ROOT / "dashboards" / "web", description="Folder of the live dashboard page served at /dashboard"
    )
    log_level: Literal["crit", "error", "warn", "info", "debug"] = "info"

    @model_validator(mode="after")
    def _static_member_needs_an_own_address(self) -> Self:
        if self.static_membership and self.web_host in WILDCARD_HOSTS:
            raise ValueError(
                f"CIPULSE_STATIC_MEMBERSHIP needs CIPULSE_WEB_HOST to be this worker's own name or address, not "
                f"{self.web_host!r}: the static member id is made from it, and workers on other hosts with the same "
                "wildcard and port would share one id (the broker then hands one worker the other's partitions)"
            )
        return self

    @property
    def kafka_url(self) -> str:
        """Faust wants kafka:// URLs, one per bootstrap server."""
        return ";".join(f"kafka://{server.strip()}" for server in self.kafka_bootstrap.split(","))

    @property
    def api_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def group_instance_id(self) -> str | None:
        """This worker's static member id, or None for dynamic membership.

        Derived from the API URL because Faust's assignments carry each member's URL and a
        worker refuses one made out to another URL (faust's PartitionAssignor asserts it, and the
        worker then never becomes ready): the id must change exactly when the URL does. The URL
        is already unique per worker (other workers route API requests to it).
        """
        if not self.static_membership:
            return None
        return "cipulse-" + re.sub(r"[^A-Za-z0-9._-]", "-", f"{self.web_host}-{self.web_port}")
