"""The demo feed's deployment reviews are valid audit histories with every outcome the demo should show."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

from schemas import AuditEventKind
from streams.audit_state import AuditAccepted, apply_audit_event
from streams.demo_feed import simulate_audit, simulate_build

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def last_kinds(count: int, seed: int) -> Counter[AuditEventKind]:
    rng = random.Random(seed)
    endings: Counter[AuditEventKind] = Counter()
    for _ in range(count):
        audit = simulate_audit(rng, simulate_build(rng, T0))
        state = None
        for event in audit:
            outcome = apply_audit_event(state, event)
            assert isinstance(outcome, AuditAccepted), outcome
            state = outcome.state
        if audit:
            endings[audit[-1].kind] += 1
    return endings


def test_demo_reviews_apply_cleanly_and_include_synced_stuck_and_lost_sync_cases() -> None:
    endings = last_kinds(3000, seed=3)
    assert endings[AuditEventKind.RECORD_SYNCED] > endings[AuditEventKind.DECIDED] > 0
    assert endings[AuditEventKind.REVIEW_STARTED] > 0  # never decided: stuck


def test_demo_reviews_are_deterministic_per_seed() -> None:
    assert last_kinds(300, seed=9) == last_kinds(300, seed=9)
