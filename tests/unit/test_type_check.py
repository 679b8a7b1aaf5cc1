"""The packages pass mypy in strict mode (pyproject's [tool.mypy]), as part of the test command.

Why: the code is typed so that a wrong attribute or a lost narrowing is found before it runs; a
type check nobody runs found two such errors in a session's change only by chance.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_packages_pass_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mypy found type errors:\n{result.stdout}{result.stderr}"
