"""Delivery policy: 2xx acknowledges, 429/503 honour Retry-After, other failures back off with full
jitter until max_attempts then give up with the last error; signed canonical bodies, an
Idempotency-Key on every webhook, and Slack bodies within Slack's limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.notify_delivery import (
    SIGNATURE_HEADER,
    SLACK_MAX_LISTED,
    Delivered,
    DeliveryAction,
    GiveUp,
    Retry,
    backoff,
    next_action,
    retry_after,
    sign,
    slack_body,
    webhook_body,
    webhook_headers,
)
from streams.notify_grouping import GroupFlush, GroupScheduler
from streams.notify_subscriptions import DeliveryPolicy, GroupingPolicy

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
N = NotificationTransition
POLICY = DeliveryPolicy.model_validate({"max_attempts": 3, "initial_backoff": "1s", "max_backoff": "30s"})


def act(attempt: int, outcome: int | BaseException, headers: dict[str, str] | None = None) -> DeliveryAction:
    return next_action(attempt, outcome, headers or {}, POLICY, now=T0, rng=random.Random(7))


@given(attempt=st.integers(1, 2000), initial=st.floats(0.001, 10), extra=st.floats(0, 100), seed=st.integers())
def test_backoff_stays_within_zero_and_the_exponential_cap(attempt: int, initial: float, extra: float, seed: int) -> None:
    maximum = initial + extra
    wait = backoff(attempt, initial, maximum, random.Random(seed))
    assert 0.0 <= wait <= min(maximum, initial * 2.0 ** min(attempt - 1, 1023))


def test_backoff_is_jittered_not_a_fixed_schedule() -> None:
    rng = random.Random(1)
    waits = {round(backoff(4, 1.0, 60.0, rng), 6) for _ in range(50)}
    assert len(waits) > 40 and max(waits) <= 8.0


def test_backoff_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff(0, 1.0, 2.0, random.Random())


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 0 ", 0.0), (None, None), ("soon", None), ("-5", None), ("1.5", None),
    ("Sun, 01 Nov 2026 12:00:30 GMT", 30.0), ("Sun, 01 Nov 2026 11:00:00 GMT", 0.0),
])
def test_retry_after_reads_delta_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    assert retry_after(value, T0) == expected


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_the_acknowledgement(status: int) -> None:
    assert act(2, status) == Delivered(2)


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_honour_retry_after(status: int) -> None:
    action = act(1, status, {"retry-after": "45"})
    assert isinstance(action, Retry) and action.after == 45.0 and "Retry-After" in action.reason


@pytest.mark.parametrize("outcome", [500, 502, 503, 504, 408, 429, ConnectionRefusedError("refused"), TimeoutError()])
def test_transient_failures_back_off(outcome: int | BaseException) -> None:
    action = act(1, outcome)
    assert isinstance(action, Retry) and 0.0 <= action.after <= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301])
def test_permanent_refusals_give_up_at_once(status: int) -> None:
    action = act(1, status)
    assert isinstance(action, GiveUp) and action.attempts == 1 and f"HTTP {status}" in action.reason


def test_a_receiver_failing_twice_then_succeeding_is_delivered_on_attempt_three() -> None:
    outcomes: list[int | BaseException] = [500, ConnectionResetError("reset"), 200]
    actions = [act(i + 1, outcome) for i, outcome in enumerate(outcomes)]
    assert [type(a) for a in actions] == [Retry, Retry, Delivered]
    assert actions[-1] == Delivered(3)


def test_after_max_attempts_it_gives_up_with_the_last_error() -> None:
    action = act(3, ConnectionRefusedError("connect to hooks.example.com:443 refused"))
    assert action == GiveUp("ConnectionRefusedError: connect to hooks.example.com:443 refused on attempt 3 of 3", 3)
    assert act(3, 503, {"Retry-After": "1"}) == GiveUp("HTTP 503 on attempt 3 of 3", 3)


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"a":1}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, SecretStr("s3cret")) == sign(body, "s3cret") == sign(body, b"s3cret") == expected
    assert sign(body + b" ", "s3cret") != expected


def test_webhook_headers_carry_the_idempotency_key_and_signature_and_keep_extra_headers() -> None:
    headers = webhook_headers("flush-1", "sha256=ab", {"X-Team": "payments"})
    assert headers["Idempotency-Key"] == "flush-1"
    assert headers[SIGNATURE_HEADER] == "sha256=ab"
    assert headers["Content-Type"] == "application/json" and headers["X-Team"] == "payments"
    assert SIGNATURE_HEADER not in webhook_headers("flush-1", None)


def note(i: int, transition: N = N.FAILED, title: str | None = None) -> NotificationRequest:
    return NotificationRequest(
        notification_id=f"n{i}", subscription_id="oncall", subject_kind="BUILD", subject_id=f"b{i}",
        project="payments", pipeline="deploy", transition=transition, status="FAILED", version=1,
        channel=NotificationChannel.SLACK, title=title or f"payments/deploy build b{i} failed",
        body="error: <OOMKilled> & more", links={"build": f"https://ci.example.com/b{i}"}, created_at=T0,
    )


def flush_of(count: int) -> GroupFlush:
    scheduler = GroupScheduler({"oncall": GroupingPolicy.model_validate({"group_wait": "0s"})})
    for i in range(count):
        scheduler.add(note(i), T0)
    [flush] = scheduler.due(T0)
    return flush


def test_the_webhook_body_is_canonical_json_naming_the_flush_and_its_notifications() -> None:
    flush = flush_of(2)
    body = webhook_body(flush)
    document = json.loads(body)
    assert document["notification_id"] == flush.flush_id
    assert [n["notification_id"] for n in document["notifications"]] == ["n0", "n1"]
    assert body == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert webhook_body(flush) == body


def test_a_single_slack_notification_has_fallback_text_and_escaped_blocks() -> None:
    body = slack_body(note(1))
    assert body["text"] == ":x: payments/deploy build b1 failed"
    section = body["blocks"][1]["text"]["text"]
    assert "&lt;OOMKilled&gt; &amp; more" in section and "<https://ci.example.com/b1|build>" in section


def test_a_large_grouped_slack_message_lists_some_and_counts_the_rest() -> None:
    body = slack_body(flush_of(25))
    assert body["text"] == "25 notifications (failed) in payments"
    assert len(body["blocks"]) == 1 + SLACK_MAX_LISTED + 1 <= 50
    assert "15 more" in body["blocks"][-1]["elements"][0]["text"]
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if b["type"] == "section")


def test_a_huge_title_is_cut_to_slack_limits() -> None:
    body = slack_body(note(1, title="x" * 5000))
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert len(body["blocks"][1]["text"]["text"]) <= 3000
