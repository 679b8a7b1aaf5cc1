"""The dashboard's pure JavaScript (build merging, chart geometry, panel data) under node's own
test runner: `dashboards/web/tests/*.test.mjs`. Node.js is part of every machine of this project
(machines doc); without it this fails and says so, rather than skipping the page's logic."""

from __future__ import annotations

import shutil
import subprocess

from harness import REPO

TESTS = REPO / "dashboards" / "web" / "tests"


def test_dashboard_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not on PATH: the dashboard's JavaScript tests need Node.js 18 or newer"
    files = sorted(str(path) for path in TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs under {TESTS}"
    result = subprocess.run([node, "--test", *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout, result.stdout[-3000:]
