"""Gate decision history on the real engine: the migration applies once on top of 0001-0007, a
republished decision (same id) is stored once, the newest decision of each gate is the one with
the highest input revision, and the history comes newest first with the API's JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver import Client

from schemas import GateDecision, GateResult, GateRuleFailure
from sinks.gate_rows import GateDecisionRow, decision_history, latest_decisions, write_gate_decisions
from sinks.migrations import applied_migrations, apply_migrations, load_migrations

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def decision(gate: str, revision: int, result: GateResult, *failing: str) -> GateDecisionRow:
    return GateDecisionRow.from_decision(GateDecision(
        decision_id=f"{gate}-{revision}", gate=gate, project="payments", pipeline="deploy" if gate == "a" else None,
        result=result, failing=[GateRuleFailure(rule=r, measured="0.5", threshold=">= 0.8", message=r) for r in failing],
        input_revision=revision, inputs={"input_revision": str(revision)}, decided_at=T0 + timedelta(seconds=revision),
    ))


def test_gate_decisions_migration_applies_on_top_of_0001_to_0007_once(ch_client: Client, database: str) -> None:
    apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 7])
    applied_now = apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 8])
    assert [m.file_name for m in applied_now] == ["0008_gate_decisions.sql"]
    assert apply_migrations(ch_client, database, migrations=[m for m in load_migrations() if m.version <= 8]) == []
    assert [r.version for r in applied_migrations(ch_client, database)][:8] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_latest_decision_per_gate_and_history_newest_first(ch_client: Client, migrated: str) -> None:
    rows = [
        decision("a", 1, GateResult.PASS),
        decision("a", 4, GateResult.FAIL, "success_rate", "latest_build_succeeded"),
        decision("a", 7, GateResult.PASS),
        decision("b", 2, GateResult.PENDING, "min_builds"),
    ]
    write_gate_decisions(ch_client, migrated, rows)
    write_gate_decisions(ch_client, migrated, rows[1:2])  # a replayed decision: same id, kept once

    latest = {row.gate: row for row in latest_decisions(ch_client, migrated)}
    assert {gate: row.result for gate, row in latest.items()} == {"a": "PASS", "b": "PENDING"}
    assert latest["a"].input_revision == 7

    history = decision_history(ch_client, migrated, "a", limit=10)
    assert [(r.input_revision, r.result) for r in history] == [(7, "PASS"), (4, "FAIL"), (1, "PASS")]
    body = history[1].as_json()
    assert body["pipeline"] == "deploy" and body["branch"] is None and body["decision_id"] == "a-4"
    assert [f["rule"] for f in body["failing"]] == ["success_rate", "latest_build_succeeded"]
    assert history[1].failing_rules == ("latest_build_succeeded", "success_rate")
    assert latest["b"].as_json()["pipeline"] is None
    assert decision_history(ch_client, migrated, "a", limit=1)[0].input_revision == 7
    assert decision_history(ch_client, migrated, "unknown") == []
