"""The gates file: every mistake listed as `file: gate 'id' (entry N): field X: message`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from streams.cli import main
from streams.exceptions import GateConfigError
from streams.gate_config import MAX_WINDOW_BUILDS, describe, load_gates, parse_gates, span

EXAMPLE = Path(__file__).resolve().parents[3] / "streams" / "gates.example.yaml"


def test_the_example_file_is_valid() -> None:
    gates = load_gates(EXAMPLE)
    assert [g.id for g in gates] == ["payments-deploy-main", "web-any-branch"]
    main_gate = gates[0]
    assert main_gate.rules.p95_duration is not None and main_gate.rules.p95_duration.at_most == timedelta(minutes=15)
    assert main_gate.kept_builds == 20 and main_gate.kept_for is None
    assert gates[1].kept_builds == MAX_WINDOW_BUILDS and gates[1].kept_for == timedelta(hours=6)


def test_every_problem_is_listed_with_file_gate_and_field() -> None:
    document = {"gates": [
        {"id": "a", "project": "p", "rules": {"success_rate": {"at_least": 0.9}}},
        {"id": "a", "project": "p", "rules": {"latest_build_succeeded": True}},
        {"project": "p", "rules": {"p95_duration": {"at_most": 600, "last_builds": 5}}},
        {"id": "b", "project": "p", "rules": {}},
        {"id": "c", "project": "p", "rules": {"no_unacknowledged_failure_notification": True, "typo": 1}},
        "not a mapping",
    ]}
    with pytest.raises(GateConfigError) as caught:
        parse_gates(document, "gates.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid quality gates:"
    text = "\n".join(lines)
    assert "gates.yaml: gate 'a' (entry 1): field rules.success_rate: Value error, give last_builds" in text
    assert "gates.yaml: gate 'a' (entry 2): field id: duplicate id, already used by entry 1" in text
    assert "gates.yaml: gate entry 3 (no id): field id: Field required" in text
    assert "field rules.p95_duration.at_most: Value error, 600 has no unit" in text
    assert "gates.yaml: gate 'b' (entry 4): field rules: Value error, no rule enabled" in text
    assert "field rules.no_unacknowledged_failure_notification" not in text  # accepted: receipts name their notifications
    assert "gate 'c' (entry 5): field rules.typo: Extra inputs are not permitted" in text
    assert "gates.yaml: gate entry 6 (no id): must be a mapping, got str" in text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a mapping with a 'gates' list"),
        ({"gates": [], "extra": 1}, "unknown top-level key(s) extra"),
    ],
)
def test_the_top_level_shape_is_checked(document: object, message: str) -> None:
    with pytest.raises(GateConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gates(document, "f.yaml")


def test_unreadable_and_unparseable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(GateConfigError, match="cannot read the gates file"):
        load_gates(tmp_path / "missing.yaml")
    broken = tmp_path / "gates.json"
    broken.write_text("{not json")
    with pytest.raises(GateConfigError, match=r"gates.json: not valid JSON \(line 1\)"):
        load_gates(broken)


def test_describe_and_span_write_durations_like_the_file() -> None:
    assert span(timedelta(minutes=90)) == "1h30m"
    assert span(timedelta(seconds=45)) == "45s"
    assert describe(load_gates(EXAMPLE)[1]) == (
        "web-any-branch: web/*@*: min 1 build(s), success rate >= 0.9 over builds within 6h of the newest"
    )


def test_check_gates_prints_the_gates_or_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--check-gates", "--gates", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("payments-deploy-main: payments/deploy@main: min 5")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - id: x\n    project: p\n    rules: {success_rate: {at_least: 2, last_builds: 3}}\n")
    assert main(["worker", "--check-gates", "--gates", str(bad)]) == 1
    assert f"{bad}: gate 'x' (entry 1): field rules.success_rate.at_least" in capsys.readouterr().err


def test_the_notification_rule_alone_is_a_gate_and_covers_only_its_scope() -> None:
    [gate, project_wide] = parse_gates({"gates": [
        {"id": "n", "project": "p", "pipeline": "deploy", "branch": "main",
         "rules": {"no_unacknowledged_failure_notification": True}},
        {"id": "w", "project": "p", "rules": {"no_unacknowledged_failure_notification": True}},
    ]}, "g.yaml")
    assert not gate.rules.uses_builds
    assert gate.covers_notification("p", "deploy", "main")
    assert not gate.covers_notification("p", "deploy", "feature")
    assert not gate.covers_notification("p", "deploy", None)  # a v1 request names no branch
    assert not gate.covers_notification("p", "other", "main")
    assert not gate.covers_notification("q", "deploy", "main")
    assert project_wide.covers_notification("p", "other", None)
    assert describe(gate) == "n: p/deploy@main: no unacknowledged failure notification"
