"""Every record survives encode -> decode unchanged, framed as Avro single-object encoding.

The framing is checked against the Avro specification independently of fastavro: `C3 01`, then
the CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, little-endian.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from fastavro.schema import to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    AdapterDelivery,
    AuditAlert,
    AuditAlertKind,
    AuditDecision,
    AuditEvent,
    AuditEventKind,
    AuditSubjectKind,
    BuildEvent,
    BuildScope,
    BuildStatus,
    BuildStatusChange,
    DeadLetter,
    DeadLetterKind,
    DeliveryAttempt,
    GateDecision,
    GateResult,
    GateRuleFailure,
    NodeChange,
    NotificationChannel,
    NotificationRequest,
    NotificationTransition,
    NotifierSignal,
    NotifierSignalKind,
    RetryRequest,
    TopLevelRecord,
    TriggerReason,
    decode,
    encode,
    fingerprint_of,
    get_catalog,
)

CRC64_AVRO_EMPTY = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    """The Avro spec's reference fingerprint64, transcribed."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & -(fp & 1))
        table.append(fp)
    fp = CRC64_AVRO_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_reference_fingerprint_matches_the_avro_spec_test_vector() -> None:
    # share/test/data/schema-tests.txt in apache/avro: "null" -> 7195948357588979594
    assert crc64_avro(b'"null"') == 7195948357588979594


T0 = datetime(2026, 11, 25, 17, 0, 0, 123000, tzinfo=UTC)
ids = st.text(min_size=1, max_size=40).filter(str.strip)
texts = st.text(max_size=40)
labels = st.dictionaries(texts, texts, max_size=4)
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
longs = st.integers(-(2**63), 2**63 - 1)
durations = st.integers(0, 2**63 - 1)


@st.composite
def build_events(draw: st.DrawFn) -> BuildEvent:
    scope = draw(st.sampled_from(BuildScope))
    stage_id = draw(ids if scope is not BuildScope.BUILD else st.none() | ids)
    task_id = draw(ids if scope is BuildScope.TASK else st.none() | ids)
    return BuildEvent(
        event_id=draw(ids),
        build_id=draw(ids),
        project=draw(ids),
        pipeline=draw(ids),
        seq=draw(st.integers(0, 2**63 - 1)),
        event_time=draw(timestamps),
        scope=scope,
        stage_id=stage_id,
        task_id=task_id,
        name=draw(st.none() | texts),
        status=draw(st.sampled_from(BuildStatus)),
        trigger_reason=draw(st.none() | st.sampled_from(TriggerReason)),
        trigger_user=draw(st.none() | texts),
        branch=draw(st.none() | texts),
        commit_sha=draw(st.none() | st.text("0123456789abcdef", min_size=40, max_size=40)),
        environment=draw(labels),
        executor=draw(st.none() | texts),
        error_reason=draw(st.none() | texts),
        termination_reason=draw(st.none() | st.sampled_from(["OOMKilled", "Evicted", "NodeLost"])),
        exit_code=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        duration_ms=draw(st.none() | durations),
        executor_labels=draw(labels),
    )


@st.composite
def node_changes(draw: st.DrawFn) -> NodeChange:
    scope = draw(st.sampled_from([BuildScope.STAGE, BuildScope.TASK]))
    return NodeChange(
        scope=scope,
        stage_id=draw(ids),
        task_id=draw(ids if scope is BuildScope.TASK else st.none()),
        name=draw(st.none() | texts),
        status=draw(st.sampled_from(BuildStatus)),
        previous_status=draw(st.none() | st.sampled_from(BuildStatus)),
        started_at=draw(st.none() | timestamps),
        finished_at=draw(st.none() | timestamps),
        duration_ms=draw(st.none() | durations),
        error_reason=draw(st.none() | texts),
    )


@st.composite
def build_status_changes(draw: st.DrawFn) -> BuildStatusChange:
    return BuildStatusChange(
        build_id=draw(ids),
        project=draw(ids),
        pipeline=draw(ids),
        seq=draw(st.integers(0, 2**63 - 1)),
        revision=draw(st.integers(0, 2**63 - 1)),
        event_id=draw(ids),
        event_time=draw(timestamps),
        status=draw(st.sampled_from(BuildStatus)),
        previous_status=draw(st.none() | st.sampled_from(BuildStatus)),
        first_seen_at=draw(timestamps),
        queued_at=draw(st.none() | timestamps),
        started_at=draw(st.none() | timestamps),
        finished_at=draw(st.none() | timestamps),
        duration_ms=draw(st.none() | durations),
        trigger_reason=draw(st.none() | st.sampled_from(TriggerReason)),
        trigger_user=draw(st.none() | texts),
        branch=draw(st.none() | texts),
        error_reason=draw(st.none() | texts),
        termination_reason=draw(st.none() | texts),
        changed_fields=draw(st.lists(texts, max_size=4)),
        nodes=draw(st.lists(node_changes(), max_size=3)),
    )


def assert_single_object_framing(payload: bytes, record: TopLevelRecord) -> None:
    latest = get_catalog().latest(type(record).avro_name)
    canonical = to_parsing_canonical_form(latest.raw).encode()
    assert payload[:2] == b"\xc3\x01"
    assert payload[2:10] == crc64_avro(canonical).to_bytes(8, "little")
    assert payload[2:10] == fingerprint_of(type(record))


@given(build_events())
def test_build_event_round_trips_unchanged(event: BuildEvent) -> None:
    payload = encode(event)
    assert_single_object_framing(payload, event)
    assert decode(payload, BuildEvent) == event


@given(build_status_changes())
def test_build_status_change_with_nodes_round_trips_unchanged(change: BuildStatusChange) -> None:
    payload = encode(change)
    assert_single_object_framing(payload, change)
    assert decode(payload, BuildStatusChange) == change


EXAMPLES: list[TopLevelRecord] = [
    BuildEvent(
        event_id="e-1", build_id="b-1", project="cipulse", pipeline="ci", seq=0, event_time=T0,
        scope=BuildScope.BUILD, status=BuildStatus.QUEUED,
    ),
    AuditEvent(
        event_id="a-e-1", audit_id="audit-1", subject_kind=AuditSubjectKind.BUILD,
        subject_id="b-1", project="cipulse", pipeline="ci", kind=AuditEventKind.DECIDED,
        decision=AuditDecision.APPROVED, decision_id="d-1", actor="alice",
        reviewers=["alice", "bob"], reason="looks good", seq=3, event_time=T0,
    ),
    AuditEvent(
        event_id="a-e-2", audit_id="audit-1", subject_kind=AuditSubjectKind.QUALITY_GATE,
        subject_id="gate-9", project="cipulse", kind=AuditEventKind.REQUESTED, seq=0,
        event_time=T0,
    ),
    AuditAlert(
        alert_id="audit-1/stuck/1", audit_id="audit-1", kind=AuditAlertKind.STUCK, project="cipulse",
        subject_kind="BUILD", subject_id="b-1", status="IN_REVIEW", episode=1, age_seconds=90000.5,
        threshold_seconds=86400.0, reviewers=["alice"], reason="in review for 25h", raised_at=T0,
        links={"audit": "http://127.0.0.1:6066/audits/audit-1"},
    ),
    NotificationRequest(
        notification_id="n-1", subscription_id="s-1", subject_kind="BUILD", subject_id="b-1",
        project="cipulse", pipeline="ci", transition=NotificationTransition.FAILED,
        status="FAILED", version=7, channel=NotificationChannel.SLACK, title="Build failed",
        body="ci #1 failed in stage build", links={"build": "https://ci.example/b-1"},
        created_at=T0,
    ),
    NotifierSignal(
        kind=NotifierSignalKind.GAVE_UP, group_key='s-1{project="cipulse"}', flush_id="f-1",
        attempts=[
            DeliveryAttempt(number=1, outcome="retry", http_status=503, error="HTTP 503", latency_ms=12.5,
                            attempted_at=T0),
            DeliveryAttempt(number=2, outcome="gave_up", http_status=0, error="ClientConnectorError",
                            latency_ms=0.25, attempted_at=T0),
        ],
        reason="ClientConnectorError on attempt 2 of 2", signalled_at=T0,
    ),
    NotifierSignal(kind=NotifierSignalKind.FLUSH_DUE, group_key="s-1{}", signalled_at=T0),
    NotifierSignal(
        kind=NotifierSignalKind.DELIVERED, group_key="s-1{}", flush_id="f-2", signalled_at=T0,
        notification_ids=["n-1", "n-2"], projects=["cipulse", "web"],
    ),
    NotificationRequest(
        notification_id="n-2", subscription_id="s-1", subject_kind="BUILD", subject_id="b-2",
        project="cipulse", pipeline="ci", transition=NotificationTransition.FAILED, status="FAILED", version=3,
        channel=NotificationChannel.WEBHOOK, title="Build failed", body="", created_at=T0, branch="main",
    ),
    RetryRequest(
        retry_id="r-1", build_id="b-1", project="cipulse", pipeline="ci", original_status="FAILED", branch="main",
        commit_sha="abc123", trigger_reason="PUSH", trigger_user="alice", variables={"TARGET": "prod"},
        original_first_seen_at=T0, context_deadline=T0, requested_by="bob", reason="flaky test", requested_at=T0,
    ),
    RetryRequest(
        retry_id="r-2", build_id="b-2", project="cipulse", pipeline="ci", original_status="CANCELED",
        original_first_seen_at=T0, requested_by="api", requested_at=T0,
    ),
    GateDecision(
        decision_id="d-1", gate="payments-main", project="payments", pipeline="deploy", branch="main",
        result=GateResult.FAIL, previous_result="PASS",
        failing=[GateRuleFailure(rule="success_rate", measured="0.5", threshold=">= 0.8", message="2 of 4 succeeded")],
        input_revision=12, inputs={"builds_in_window": "4"}, decided_at=T0,
    ),
    GateDecision(decision_id="d-2", gate="g", project="p", result=GateResult.PENDING, input_revision=0, decided_at=T0),
    AdapterDelivery(
        adapter="github", source="acme", delivery_key="72d3162e-cc78-11e3-81ab-4c9367dc0958", event_type="workflow_run",
        headers={"x-github-event": "workflow_run"}, body=b'{"action": "completed"}', received_at=T0,
    ),
    AdapterDelivery(adapter="gitlab", source="s", delivery_key="k", event_type="Job Hook", body=b"", received_at=T0),
    DeadLetter(
        source_topic="build-events", source_partition=3, source_offset=1234,
        key=b"b-1", payload=b"\x00\xff not avro", kind=DeadLetterKind.UNDECODABLE,
        reason="payload starts with 00ff", failed_at=T0, processor="build-status-agent",
    ),
    DeadLetter(
        source_topic="build-events", source_partition=0, source_offset=0, payload=b"",
        kind=DeadLetterKind.SCHEMA_VIOLATION, reason="build_id empty", failed_at=T0,
        processor="build-status-agent",
    ),
]


def test_every_record_type_round_trips_unchanged() -> None:
    seen = set()
    for record in EXAMPLES:
        payload = encode(record)
        assert_single_object_framing(payload, record)
        assert decode(payload, type(record)) == record
        assert decode(payload) == record
        seen.add(type(record).avro_name)
    seen |= {BuildStatusChange.avro_name}  # covered by the hypothesis test above
    assert seen == set(get_catalog().record_names())


def test_timestamps_decode_as_aware_utc_at_millisecond_precision() -> None:
    local = datetime(2026, 11, 25, 18, 30, 0, 456789, tzinfo=timezone(timedelta(hours=1)))
    event = BuildEvent(
        event_id="e-1", build_id="b-1", project="p", pipeline="ci", seq=1, event_time=local,
        scope=BuildScope.BUILD, status=BuildStatus.RUNNING,
    )
    decoded = decode(encode(event), BuildEvent)
    assert decoded.event_time == datetime(2026, 11, 25, 17, 30, 0, 456000, tzinfo=UTC)
    assert decoded.event_time.tzinfo is UTC
