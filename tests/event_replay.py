"""Apply mapped events with the worker's own pure functions, and read JSON fixtures: shared by the
CI adapter tests, which check that a webhook's events converge to the expected final state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas import AuditEvent, BuildEvent
from streams.audit_state import AuditAccepted, AuditIgnored, AuditState, apply_audit_event
from streams.build_state import Accepted, BuildState, Ignored, apply_event

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def json_fixture(folder: str, name: str) -> dict[str, Any]:
    """`tests/fixtures/<folder>/<name>.json` as an object."""
    payload: dict[str, Any] = json.loads((FIXTURES / folder / f"{name}.json").read_text())
    return payload


def replay_builds(events: list[BuildEvent], state: BuildState | None = None) -> BuildState:
    """The state after `events`, each accepted or ignored (a rejection fails the test)."""
    for event in events:
        outcome = apply_event(state, event)
        assert isinstance(outcome, (Accepted, Ignored)), outcome
        if isinstance(outcome, Accepted):
            state = outcome.state
    assert state is not None
    return state


def replay_audits(events: list[AuditEvent], state: AuditState | None = None) -> AuditState:
    """The audit state after `events`, each accepted or ignored (a rejection fails the test)."""
    for event in events:
        outcome = apply_audit_event(state, event)
        assert isinstance(outcome, (AuditAccepted, AuditIgnored)), outcome
        if isinstance(outcome, AuditAccepted):
            state = outcome.state
    assert state is not None
    return state
