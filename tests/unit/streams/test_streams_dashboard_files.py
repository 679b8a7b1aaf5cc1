"""What the worker serves as the dashboard: only the shipped files, with types a browser accepts,
referencing nothing outside the worker, and no secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import REPO
from sinks.recent_builds import RecentScope
from streams.dashboard_api import SECURITY_HEADERS, DashboardFiles, parse_scope
from streams.exceptions import ApiRequestError
from streams.settings import CipulseSettings

WEB = REPO / "dashboards" / "web"


def test_the_shipped_page_and_assets_load_with_their_content_types() -> None:
    files = DashboardFiles.load(WEB)
    assert "<title>" in files.page
    assert {"dashboard.mjs", "dashboard.css", "live_builds.mjs", "svg_charts.mjs"} <= set(files.assets)
    assert files.assets["dashboard.css"].content_type == "text/css"
    assert files.assets["dashboard.mjs"].content_type == "text/javascript"


def test_every_asset_the_page_and_modules_reference_is_served() -> None:
    files = DashboardFiles.load(WEB)
    referenced = set(re.findall(r"/dashboard/static/([\w.\-]+)", files.page))
    for asset in files.assets.values():
        referenced |= set(re.findall(r"from \"\./([\w.\-]+)\"", asset.body))
    assert referenced and referenced <= set(files.assets), referenced - set(files.assets)


def test_nothing_is_loaded_from_outside_the_worker() -> None:
    files = DashboardFiles.load(WEB)
    for name, text in [("dashboard.html", files.page), *((n, a.body) for n, a in files.assets.items())]:
        outside = [url for url in re.findall(r"(?:https?:)?//[\w.\-]+\.[a-z]{2,}[^\s\"')]*", text) if "w3.org" not in url]
        assert not outside, (name, outside)
        assert "token" not in text.lower() and "authorization" not in text.lower(), name
    assert "'self'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_only_plain_asset_names_are_picked_up(tmp_path: Path) -> None:
    (tmp_path / "dashboard.html").write_text("<title>x</title>")
    static = tmp_path / "static"
    static.mkdir()
    for name in ("ok.mjs", "ok.css", ".hidden.js", "notes.txt", "Upper.JS"):
        (static / name).write_text("x")
    assert set(DashboardFiles.load(tmp_path).assets) == {"ok.mjs", "ok.css"}


def test_a_missing_page_says_which_setting_points_at_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CIPULSE_DASHBOARD_DIR"):
        DashboardFiles.load(tmp_path)


def test_the_default_dashboard_dir_is_the_shipped_one(tmp_path: Path) -> None:
    assert CipulseSettings(data_dir=tmp_path).dashboard_dir == WEB


@pytest.mark.parametrize(("raw", "scope"), [(None, RecentScope.ALL), ("", RecentScope.ALL), ("running", RecentScope.RUNNING),
                                            ("finished", RecentScope.FINISHED)])
def test_the_status_parameter_picks_a_scope(raw: str | None, scope: RecentScope) -> None:
    assert parse_scope(raw) is scope


def test_an_unknown_status_names_the_allowed_ones() -> None:
    with pytest.raises(ApiRequestError, match="status='done' is not one of running, finished, all"):
        parse_scope("done")
