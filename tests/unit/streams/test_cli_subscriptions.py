"""`cipulse worker --check-subscriptions` validates the subscription file without starting anything,
and a bad file stops `cipulse worker` with every problem listed before any service starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from streams.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "streams" / "notify_subscriptions.example.yaml"
DEMO = REPO_ROOT / "infra" / "demo-subscriptions.yaml"


@pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
def test_shipped_subscription_files_are_valid(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--check-subscriptions", "--subscriptions", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip(), "prints what the file subscribes to"
    assert all("->" in line for line in out.strip().splitlines())


def test_a_bad_file_stops_the_worker_with_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "subs.yaml"
    bad.write_text(
        "subscriptions:\n"
        "  - id: oncall\n    transitions: [fialed]\n    channel: {type: webhook, url: https://h.example/x}\n"
        "  - id: chat\n    transitions: [failed]\n    channel: {type: slack, url: not-a-url}\n"
    )
    # no broker, no ClickHouse: the file is checked before anything starts
    assert main(["worker", "--subscriptions", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "subscription 'oncall' (entry 1): field transitions.0" in err
    assert "subscription 'chat' (entry 2): field channel.url" in err


def test_checking_without_a_file_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE", raising=False)
    assert main(["worker", "--check-subscriptions"]) == 2
    assert "no subscription file" in capsys.readouterr().out
