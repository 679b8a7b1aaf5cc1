"""Every endpoint that changes state declares authentication, and the served document says so.

The integration test `tests/integration/test_bad_input.py` proves the running worker refuses
each of them without credentials; this test keeps a new endpoint from being added without.
"""

from __future__ import annotations

from streams.openapi import all_endpoints, openapi_document

STATE_CHANGING = {"post", "put", "patch", "delete"}


def test_every_state_changing_endpoint_is_authenticated() -> None:
    changing = [e for e in all_endpoints() if e.method.lower() in STATE_CHANGING]
    assert changing, "expected state-changing endpoints (ingest, repairs, retries, callbacks)"
    unauthenticated = [f"{e.method.upper()} {e.path} ({e.name})" for e in changing if not e.authenticated]
    assert not unauthenticated, f"state-changing endpoints without authentication: {unauthenticated}"


def test_read_only_endpoints_are_gets() -> None:
    """Anything not authenticated must be a GET: it may read, never change state."""
    assert {e.method.lower() for e in all_endpoints() if not e.authenticated} == {"get"}


def test_the_document_declares_a_known_security_scheme_on_every_state_changing_operation() -> None:
    document = openapi_document()
    schemes = set(document["components"]["securitySchemes"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in STATE_CHANGING:
                security = operation.get("security")
                assert security, f"{method.upper()} {path} has no security requirement"
                assert all(set(requirement) <= schemes for requirement in security), (path, security)
