"""The OpenAPI document lists exactly the routes the worker's web server registers."""

from __future__ import annotations

from pathlib import Path

from sinks.gateway import ClickHouseGateway
from streams.app import create_app
from streams.openapi import all_endpoints, openapi_document
from streams.settings import CipulseSettings

FAUST_BUILT_IN = {("GET", "/")}
"""Faust's production index page, added when the web server starts (described in ENDPOINTS too)."""


def registered_routes(tmp_path: Path) -> set[tuple[str, str]]:
    settings = CipulseSettings(app_id="routes-test", data_dir=tmp_path, table_store="memory")
    gateway = ClickHouseGateway(lambda: None, "unused")  # type: ignore[arg-type, return-value]
    app = create_app(settings, gateway)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.web.web_app.router.routes()
        if route.method in ("GET", "POST", "DELETE")
    }
    gateway.close()
    return routes


def test_every_registered_route_is_described_and_every_description_is_served(tmp_path: Path) -> None:
    described = {
        (method.upper(), path) for path, operations in openapi_document()["paths"].items() for method in operations
    }
    assert registered_routes(tmp_path) | FAUST_BUILT_IN == described


def test_every_endpoint_declares_its_path_parameters() -> None:
    for endpoint in all_endpoints():
        in_path = {part[1:-1] for part in endpoint.path.split("/") if part.startswith("{")}
        declared = {p.name for p in endpoint.params if p.where == "path"}
        assert in_path == declared, endpoint.name
