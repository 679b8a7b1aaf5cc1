"""Old data is read by new code: a BuildEvent written with schema v1 decodes as the v2 model.

The v1 payload is built here with fastavro and the v1 `.avsc` directly, the way a producer still
running the old package would write it, without going through `schemas.serde`.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import BuildEvent, BuildScope, BuildStatus, TriggerReason, decode, decode_dict
from schemas import encode_dict, get_catalog
from schemas.catalog import AVRO_DIR

V1_FIELDS: dict[str, Any] = {
    "event_id": "e-7",
    "build_id": "b-1",
    "project": "cipulse",
    "pipeline": "ci",
    "seq": 7,
    "event_time": datetime(2026, 11, 25, 17, 0, 1, 500000, tzinfo=UTC),
    "scope": "TASK",
    "stage_id": "build",
    "task_id": "compile",
    "name": "Compile",
    "status": "FAILED",
    "trigger_reason": "PUSH",
    "trigger_user": "alice",
    "branch": "main",
    "commit_sha": "0" * 40,
    "environment": {"env": "staging"},
    "executor": "agent-3",
    "error_reason": "compiler error",
    "termination_reason": "OOMKilled",
    "exit_code": 137,
    "duration_ms": 5400,
}


def v1_payload_as_an_old_producer_writes_it(fields: dict[str, Any]) -> bytes:
    raw = json.loads((AVRO_DIR / "build_event.v1.avsc").read_text())
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(raw), fields)
    return b"\xc3\x01" + fp + body.getvalue()


def test_v1_build_event_decodes_as_current_model_with_empty_executor_labels() -> None:
    decoded = decode(v1_payload_as_an_old_producer_writes_it(V1_FIELDS), BuildEvent)

    assert decoded.executor_labels == {}
    assert decoded == BuildEvent(
        **{**V1_FIELDS, "scope": BuildScope.TASK, "status": BuildStatus.FAILED},
        executor_labels={},
    )
    assert decoded.trigger_reason is TriggerReason.PUSH


def test_v1_payload_is_reported_as_written_by_version_1() -> None:
    payload = v1_payload_as_an_old_producer_writes_it(V1_FIELDS)
    catalog = get_catalog()
    assert payload[2:10] == catalog.version("io.cipulse.BuildEvent", 1).fingerprint
    assert payload[2:10] != catalog.latest("io.cipulse.BuildEvent").fingerprint

    record = decode_dict(payload)
    assert (record.full_name, record.writer_version) == ("io.cipulse.BuildEvent", 1)
    assert record.fields["executor_labels"] == {}


def test_encode_dict_with_an_old_version_matches_an_old_producer_byte_for_byte() -> None:
    assert encode_dict("io.cipulse.BuildEvent", V1_FIELDS, version=1) == (
        v1_payload_as_an_old_producer_writes_it(V1_FIELDS)
    )


def test_minimal_v1_build_event_gets_every_optional_field_defaulted() -> None:
    minimal = {k: V1_FIELDS[k] for k in ("event_id", "build_id", "project", "pipeline", "seq")}
    minimal |= {"event_time": V1_FIELDS["event_time"], "scope": "BUILD", "status": "QUEUED"}
    decoded = decode(encode_dict("io.cipulse.BuildEvent", minimal, version=1), BuildEvent)
    assert decoded.environment == {} and decoded.executor_labels == {}
    assert decoded.stage_id is None and decoded.duration_ms is None


def test_v1_notifier_receipt_decodes_with_no_notification_ids_or_projects() -> None:
    """A receipt written before v2 (an old sender, or one still in the topic) names no notifications."""
    from schemas import NotifierSignal, NotifierSignalKind

    v1 = {"kind": "DELIVERED", "group_key": 's{project="p"}', "flush_id": "f-1", "attempts": [], "reason": "",
          "signalled_at": V1_FIELDS["event_time"]}
    payload = encode_dict("io.cipulse.NotifierSignal", v1, version=1)
    assert payload[2:10] == get_catalog().version("io.cipulse.NotifierSignal", 1).fingerprint
    decoded = decode(payload, NotifierSignal)
    assert decoded.kind is NotifierSignalKind.DELIVERED and decoded.flush_id == "f-1"
    assert decoded.notification_ids == [] and decoded.projects == []


def test_v1_notification_request_decodes_without_a_branch() -> None:
    from schemas import NotificationRequest

    v1 = {"notification_id": "n-1", "subscription_id": "s", "subject_kind": "BUILD", "subject_id": "b-1",
          "project": "p", "pipeline": "ci", "transition": "FAILED", "status": "FAILED", "version": 3,
          "channel": "WEBHOOK", "title": "t", "body": "", "links": {}, "created_at": V1_FIELDS["event_time"]}
    decoded = decode(encode_dict("io.cipulse.NotificationRequest", v1, version=1), NotificationRequest)
    assert decoded.branch is None and decoded.pipeline == "ci"
