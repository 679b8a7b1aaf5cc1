"""Every `cipulse` command explains itself with --help."""

from __future__ import annotations

import pytest

from streams.cli import main

COMMANDS = [[], ["broker"], ["topics"], ["worker"], ["demo-feed"], ["build"], ["retry"], ["stats"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cipulse")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cipulse")
    assert len(out.splitlines()) > 3


def test_no_command_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out
