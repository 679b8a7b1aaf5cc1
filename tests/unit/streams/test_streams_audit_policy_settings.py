"""The audit thresholds an operator sets in CIPULSE_* variables become the detection policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from streams.app import audit_policy
from streams.settings import CipulseSettings


def test_default_and_per_project_stuck_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPULSE_AUDIT_STUCK_AFTER_SECONDS", "7200")
    monkeypatch.setenv("CIPULSE_AUDIT_STUCK_AFTER_BY_PROJECT", '{"payments": 600}')
    monkeypatch.setenv("CIPULSE_AUDIT_SYNC_GRACE_SECONDS", "90")
    policy = audit_policy(CipulseSettings())
    assert policy.stuck_threshold("payments") == timedelta(minutes=10)
    assert policy.stuck_threshold("web") == timedelta(hours=2)
    assert policy.sync_grace == timedelta(seconds=90)


def test_a_malformed_per_project_override_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPULSE_AUDIT_STUCK_AFTER_BY_PROJECT", '{"payments": "soon"}')
    with pytest.raises(ValidationError, match="audit_stuck_after_by_project"):
        CipulseSettings()


def test_a_non_positive_per_project_override_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be positive"):
        audit_policy(CipulseSettings(audit_stuck_after_by_project={"payments": -5}))
