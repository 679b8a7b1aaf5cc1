"""The OpenAPI document: a well-formed 3.1 description of exactly the endpoints the worker serves."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.api_models import BuildStateBody, ErrorBody
from streams.build_state import Accepted, BuildState, apply_event
from streams.demo_feed import simulate_build
from streams.openapi import all_endpoints, openapi_document

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document("http://127.0.0.1:6066")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs_in(value)


def test_document_declares_openapi_3_1_with_info(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert document["servers"] == [{"url": "http://127.0.0.1:6066"}]


def test_document_without_a_server_url_has_no_servers() -> None:
    assert "servers" not in openapi_document()


def test_paths_are_exactly_the_registered_endpoints_with_their_methods(document: dict[str, Any]) -> None:
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == {(endpoint.method, endpoint.path) for endpoint in all_endpoints()}
    for item in document["paths"].values():
        assert set(item) <= HTTP_METHODS


def test_every_operation_has_an_id_a_summary_and_responses_with_content(document: dict[str, Any]) -> None:
    for path, _, operation in operations(document):
        assert operation["operationId"], path
        assert operation["summary"], path
        assert operation["responses"], path
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), (path, status)
            assert response["description"], (path, status)
            assert response["content"], (path, status)
            for media_type, body in response["content"].items():
                assert "/" in media_type and "schema" in body, (path, status)


def test_every_operation_documents_its_success(document: dict[str, Any]) -> None:
    """200 for reads; a 2xx for every change: 202 for the repair and retries, which are applied
    asynchronously through Kafka, 201 for a created callback, 200 for one applied at once."""
    for path, method, op in operations(document):
        if method == "get":
            assert "200" in op["responses"], path
        else:
            assert any(status.startswith("2") for status in op["responses"]), (method, path)


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


def test_every_ref_resolves_inside_components_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = set(refs_in(document))
    assert refs, "responses reference their models"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_every_component_schema_is_used(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    used = {ref.removeprefix("#/components/schemas/") for ref in refs_in(document)}
    assert used == set(schemas)


def test_path_parameters_are_declared_for_every_placeholder_and_required(document: dict[str, Any]) -> None:
    for path, _, operation in operations(document):
        placeholders = set(re.findall(r"{([^}]+)}", path))
        params = operation.get("parameters", [])
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == placeholders, path
        assert all(p["required"] is True for p in params if p["in"] == "path"), path


def test_parameters_are_unique_per_operation_and_in_path_or_query(document: dict[str, Any]) -> None:
    for path, _, operation in operations(document):
        params = operation.get("parameters", [])
        keys = [(p["name"], p["in"]) for p in params]
        assert len(keys) == len(set(keys)), path
        assert all(p["in"] in {"path", "query"} and "schema" in p for p in params), path
        assert all(p["required"] is False for p in params if p["in"] == "query"), path


def test_every_endpoint_taking_query_parameters_documents_a_400_with_the_error_body(document: dict[str, Any]) -> None:
    for path, _, operation in operations(document):
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            bad_request = operation["responses"]["400"]["content"]["application/json"]["schema"]
            assert bad_request == {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}, path


def test_document_passes_openapi_spec_validator(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_a_real_build_state_validates_against_the_documented_build_state_schema(document: dict[str, Any]) -> None:
    """The spec describes what /builds/{id} really returns: a JSON dump of the table value."""
    jsonschema = pytest.importorskip("jsonschema")
    state: BuildState | None = None
    for event in simulate_build(random.Random(3), datetime(2026, 11, 1, tzinfo=UTC)).events:
        outcome = apply_event(state, event)
        assert isinstance(outcome, Accepted)
        state = outcome.state
    assert state is not None and state.stages
    body = BuildStateBody.model_validate(state.model_dump()).model_dump(mode="json")
    response = document["paths"]["/builds/{build_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    # Local refs resolve against the root schema, so carry the components along with the response schema.
    schema = {**response["schema"], "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)
    broken = {**body, "status": "EXPLODED"}
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)
