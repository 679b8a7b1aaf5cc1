"""The subscription file: the shipped example loads, durations need units, and every mistake
stops the worker at start with the file, the subscription id and the field in the message."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from schemas import NotificationChannel, NotificationTransition
from streams.exceptions import StreamsError
from streams.notify_errors import NotificationConfigError
from streams.notify_subscriptions import (
    LogChannel,
    SlackChannel,
    WebhookChannel,
    load_subscriptions,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "streams" / "notify_subscriptions.example.yaml"


def write(tmp_path: Path, text: str, name: str = "subs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_file_loads_with_every_channel_kind() -> None:
    subs = load_subscriptions(EXAMPLE)
    by_id = {s.id: s for s in subs}
    oncall = by_id["payments-oncall"]
    assert isinstance(oncall.channel, WebhookChannel)
    assert oncall.channel.hmac_secret is not None and oncall.channel.hmac_secret.get_secret_value() == "change-me"
    assert "change-me" not in repr(oncall)
    assert oncall.transitions == (NotificationTransition.FAILED, NotificationTransition.RECOVERED,
                                  NotificationTransition.CANCELED)
    assert oncall.grouping.group_wait == timedelta(seconds=30)
    assert oncall.grouping.repeat_interval is None
    assert (oncall.grouping.max_per_message, oncall.grouping.max_pending) == (100, 5000)
    assert oncall.rate_limit is not None and oncall.rate_limit.per_minute == 20
    assert isinstance(by_id["all-failures-slack"].channel, SlackChannel)
    assert isinstance(by_id["dev-log"].channel, LogChannel)
    assert by_id["dev-log"].channel.kind is NotificationChannel.LOG


def test_a_json_file_is_read_as_json(tmp_path: Path) -> None:
    doc = {"subscriptions": [{"id": "j", "transitions": ["FAILED"], "channel": {"type": "log"}}]}
    [sub] = load_subscriptions(write(tmp_path, json.dumps(doc), "subs.json"))
    assert sub.id == "j" and sub.match.matches("any", None)


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)), ("5m", timedelta(minutes=5)), ("4h", timedelta(hours=4)),
    ("1h30m", timedelta(minutes=90)), ("500ms", timedelta(milliseconds=500)), ("1d", timedelta(days=1)),
    ("PT30S", timedelta(seconds=30)), ("0s", timedelta(0)),
])
def test_durations_are_written_with_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", [30, "30", "5 minutes", "5x", ""])
def test_a_duration_without_a_known_unit_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration|unit"):
        parse_duration(bad)


def test_errors_name_the_file_the_subscription_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, """
subscriptions:
  - id: ok
    transitions: [failed]
    channel: {type: log}
  - id: broken-hook
    transitions: [failed, exploded]
    channel: {type: webhook, url: not-a-url}
    grouping: {group_wait: "30"}
  - transitions: [failed]
    channel: {type: pager}
""")
    with pytest.raises(NotificationConfigError) as info:
        load_subscriptions(path)
    message = str(info.value)
    assert f"{path}: subscription 'broken-hook' (entry 2): field transitions.1:" in message
    assert f"{path}: subscription 'broken-hook' (entry 2): field channel.url:" in message
    assert f"{path}: subscription 'broken-hook' (entry 2): field grouping.group_wait:" in message
    assert "has no unit" in message or "not a duration" in message
    assert f"{path}: subscription entry 3 (no id): field id:" in message
    assert f"{path}: subscription entry 3 (no id): field channel:" in message
    assert "'ok'" not in message


def test_the_config_error_belongs_to_the_streams_error_family(tmp_path: Path) -> None:
    with pytest.raises(StreamsError, match="cannot read"):
        load_subscriptions(tmp_path / "missing.yaml")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
subscriptions:
  - {id: a, transitions: [failed], channel: {type: log}}
  - {id: a, transitions: [canceled], channel: {type: log}}
""")
    with pytest.raises(NotificationConfigError, match=r"subscription 'a' \(entry 2\): field id: duplicate id"):
        load_subscriptions(path)


@pytest.mark.parametrize(("text", "fragment"), [
    ("subscriptions: [\n", "not valid YAML"),
    ("- id: a\n", "'subscriptions' list"),
    ("subscriptions: []\nsubscription: []\n", "unknown top-level key"),
])
def test_a_malformed_document_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(NotificationConfigError, match=fragment) as info:
        load_subscriptions(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("entry", "field"), [
    ("{id: a, transitions: [], channel: {type: log}}", "field transitions:"),
    ("{id: a, transitions: [failed, FAILED], channel: {type: log}}", "field transitions:"),
    ("{id: a, transitions: [failed], channel: {type: webhook, url: 'https://h', "
     "headers: {Idempotency-Key: x}}}", "field channel.headers:"),
    ("{id: a, transitions: [failed], channel: {type: webhook, url: 'https://h', hmac_secret: ''}}",
     "field channel.hmac_secret:"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {group_interval: 0s}}",
     "field grouping.group_interval:"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {group_by: [project, colour]}}",
     "field grouping.group_by.1:"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {max_per_message: 0}}",
     "field grouping.max_per_message: Value error, must be between 1 and 1000"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {max_per_message: 1001}}",
     "field grouping.max_per_message: Value error, must be between 1 and 1000"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {max_per_message: yes}}",
     "field grouping.max_per_message: Input should be a valid integer"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {max_pending: 8001}}",
     "field grouping.max_pending: Value error, must be between 1 and 8000"),
    ("{id: a, transitions: [failed], channel: {type: log}, grouping: {max_per_message: 50, max_pending: 20}}",
     "field grouping: Value error, max_pending (20) is below max_per_message (50)"),
    ("{id: a, transitions: [failed], channel: {type: log}, rate_limit: {per_minute: 0}}",
     "field rate_limit.per_minute:"),
    ("{id: a, transitions: [failed], channel: {type: log}, delivery: {initial_backoff: 2m, max_backoff: 1m}}",
     "field delivery:"),
    ("{id: a, transitions: [failed], channel: {type: log}, colour: red}", "field colour:"),
    ("{id: 'has space', transitions: [failed], channel: {type: log}}", "field id:"),
])
def test_each_invalid_field_is_reported_by_name(tmp_path: Path, entry: str, field: str) -> None:
    path = write(tmp_path, f"subscriptions:\n  - {entry}\n")
    with pytest.raises(NotificationConfigError) as info:
        load_subscriptions(path)
    assert field in str(info.value)


def test_transition_names_are_case_and_dash_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "subscriptions:\n  - {id: a, transitions: [Audit-Stuck, gate_failed], channel: {type: log}}\n")
    [sub] = load_subscriptions(path)
    assert sub.transitions == (NotificationTransition.AUDIT_STUCK, NotificationTransition.GATE_FAILED)


def test_empty_match_lists_mean_everything_and_a_pipeline_filter_skips_pipelineless_subjects(tmp_path: Path) -> None:
    path = write(tmp_path, """
subscriptions:
  - {id: all, transitions: [failed], channel: {type: log}}
  - {id: deploys, transitions: [failed], channel: {type: log}, match: {projects: [pay], pipelines: [deploy]}}
""")
    everything, deploys = load_subscriptions(path)
    assert everything.wants("x", None, NotificationTransition.FAILED)
    assert not everything.wants("x", None, NotificationTransition.CANCELED)
    assert deploys.wants("pay", "deploy", NotificationTransition.FAILED)
    assert not deploys.wants("pay", "build", NotificationTransition.FAILED)
    assert not deploys.wants("web", "deploy", NotificationTransition.FAILED)
    assert not deploys.wants("pay", None, NotificationTransition.FAILED)
