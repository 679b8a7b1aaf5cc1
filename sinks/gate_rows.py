"""The typed row of `gate_decisions`, its column order, and the writer and reads the API uses.

Same contract as `sinks.rows`: a frozen dataclass field for field the table's columns, datetimes
aware UTC. `pipeline`, `branch` and `previous_result` are '' where the decision has None.
`failing` and `inputs` hold the JSON the API answers with, so a read needs no re-assembly.
Reads follow `sinks.queries`: FINAL, bound parameters, only the checked database name in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from clickhouse_connect.driver import Client

from schemas import GateDecision
from sinks.identifiers import checked_identifier
from sinks.queries import _query
from sinks.rows import _require_aware, _require_unsigned
from sinks.table_insert import TableInserter, column_getters, to_columns

GATE_DECISIONS_TABLE = "gate_decisions"


@dataclass(frozen=True, slots=True)
class GateDecisionRow:
    decision_id: str
    gate: str
    project: str
    pipeline: str
    branch: str
    result: str
    previous_result: str
    failing: str
    failing_rules: tuple[str, ...]
    inputs: str
    input_revision: int
    decided_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self, "decided_at")
        _require_unsigned(self, "input_revision")
        object.__setattr__(self, "failing_rules", tuple(self.failing_rules))

    @classmethod
    def from_decision(cls, decision: GateDecision) -> GateDecisionRow:
        return cls(
            decision_id=decision.decision_id, gate=decision.gate, project=decision.project,
            pipeline=decision.pipeline or "", branch=decision.branch or "", result=decision.result.value,
            previous_result=decision.previous_result or "",
            failing=json.dumps([f.model_dump() for f in decision.failing], separators=(",", ":")),
            failing_rules=tuple(sorted(f.rule for f in decision.failing)),
            inputs=json.dumps(decision.inputs, separators=(",", ":"), sort_keys=True),
            input_revision=decision.input_revision, decided_at=decision.decided_at,
        )

    def as_json(self) -> dict[str, Any]:
        """The decision as the API answers it (see `streams.gate_openapi.GateDecisionBody`)."""
        return {
            "gate": self.gate, "project": self.project, "pipeline": self.pipeline or None,
            "branch": self.branch or None, "result": self.result, "previous_result": self.previous_result or None,
            "failing": json.loads(self.failing), "decided_at": self.decided_at.isoformat(),
            "decision_id": self.decision_id, "input_revision": self.input_revision, "inputs": json.loads(self.inputs),
        }


GATE_DECISION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(GateDecisionRow))
_GETTERS = column_getters(GATE_DECISION_COLUMNS)


def write_gate_decisions(client: Client, database: str, rows: Sequence[GateDecisionRow]) -> None:
    """Gateway-callable: one insert; re-running it with the same rows is harmless (FINAL keeps one)."""
    if rows:
        data = to_columns(rows, _GETTERS)
        data[GATE_DECISION_COLUMNS.index("failing_rules")] = [list(r.failing_rules) for r in rows]
        TableInserter(client, database).insert(GATE_DECISIONS_TABLE, GATE_DECISION_COLUMNS, data)


def latest_decisions(client: Client, database: str) -> list[GateDecisionRow]:
    """The newest decision of every gate that has one (highest input_revision, then decided_at)."""
    database = checked_identifier(database)
    columns = ", ".join(GATE_DECISION_COLUMNS)
    rows = _query(
        client,
        f"SELECT {columns} FROM {database}.{GATE_DECISIONS_TABLE} FINAL"
        " ORDER BY gate, input_revision DESC, decided_at DESC LIMIT 1 BY gate",
        {},
    )
    return [_row(r) for r in rows]


def decision_history(client: Client, database: str, gate: str, *, limit: int = 100) -> list[GateDecisionRow]:
    """One gate's decisions, newest first."""
    database = checked_identifier(database)
    columns = ", ".join(GATE_DECISION_COLUMNS)
    rows = _query(
        client,
        f"SELECT {columns} FROM {database}.{GATE_DECISIONS_TABLE} FINAL WHERE gate = {{gate:String}}"
        " ORDER BY input_revision DESC, decided_at DESC LIMIT {limit:UInt32}",
        {"gate": gate, "limit": limit},
    )
    return [_row(r) for r in rows]


def _row(values: Sequence[object]) -> GateDecisionRow:
    return GateDecisionRow(*values)  # type: ignore[arg-type]
