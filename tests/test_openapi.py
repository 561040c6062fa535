"""The OpenAPI document tells the truth: bounded inputs, the real error body, stable ids.

A client generated from ``/openapi.json`` must be able to call every operation and read every
answer, errors included; the route table is walked so a new route cannot slip past.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

import annotated_types
import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.app import create_app
from rxroute.models import Role
from rxroute.prescriptions.endpoints import MAX_OFFSET
from tests.factories import PASSWORD, make_user

ERROR_REF = "#/components/schemas/ErrorBody"
OPERATION_ID = re.compile(r"^[a-z]+(-[a-z0-9]+)+$")
#: Ids generated clients already call; renaming a handler must not change them.
KNOWN_OPERATION_IDS = {
    "auth-create-token",
    "auth-me",
    "health-live",
    "health-ready",
    "patients-upsert",
    "pharmacies-search",
    "prescriptions-cancel",
    "prescriptions-create",
    "prescriptions-get",
    "prescriptions-list",
    "prescriptions-reroute",
    "prescriptions-send",
    "prescriptions-void",
    "webhooks-receive-erx",
}
BIGINT_PLUS_ONE = 2**63


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _route_dependants(app: FastAPI) -> Iterator[tuple[str, Dependant]]:
    """Every API route of the app, pages and routes left out of the document included."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as one entry each
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, route.dependant
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield f"{sorted(context.methods)} {context.path}", context.dependant


def _parameters(dependant: Dependant) -> Iterator[tuple[str, Any, FieldInfo]]:
    """(name, annotation, field info) of every non-body parameter, through sub-dependencies."""
    for param in (
        *dependant.query_params,
        *dependant.path_params,
        *dependant.header_params,
        *dependant.cookie_params,
    ):
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for name, info in annotation.model_fields.items():  # a parameter model
                yield f"{param.name}.{name}", info.annotation, info
        else:
            yield param.name, annotation, param.field_info
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def _is_integer(annotation: Any) -> bool:
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, set, tuple):
        return any(_is_integer(arg) for arg in typing.get_args(annotation))
    return False


def test_every_integer_parameter_of_every_route_is_bounded(app: FastAPI) -> None:
    """Unbounded, ``offset=9223372036854775808`` reached PostgreSQL and came back a 500."""
    found: list[str] = []
    unbounded: list[str] = []
    for route, dependant in _route_dependants(app):
        for name, annotation, info in _parameters(dependant):
            if not _is_integer(annotation):
                continue
            found.append(f"{route} {name}")
            lower = any(
                isinstance(m, annotated_types.Ge | annotated_types.Gt) for m in info.metadata
            )
            upper = any(
                isinstance(m, annotated_types.Le | annotated_types.Lt) for m in info.metadata
            )
            if not (lower and upper):
                unbounded.append(f"{route} {name}")
    assert any("offset" in entry for entry in found), f"the walk missed offset: {found}"
    assert unbounded == [], f"integer parameters without both bounds: {unbounded}"


async def _bearer(client: httpx.AsyncClient, session: AsyncSession, role: Role) -> dict[str, str]:
    user = await make_user(session, role)
    await session.commit()
    response = await client.post(
        "/api/v1/auth/token", json={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _error_validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    schema = {"$ref": ERROR_REF, "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def _assert_documented(
    document: dict[str, Any], method: str, path: str, response: httpx.Response
) -> None:
    """The answer's status is documented for the operation and its body fits the schema."""
    operation = document["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path} does not document {status}"
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    assert schema == {"$ref": ERROR_REF}
    errors = sorted(_error_validator(document).iter_errors(response.json()), key=str)
    assert errors == [], [error.message for error in errors]


async def test_offset_beyond_bigint_is_a_422_naming_offset(
    client: httpx.AsyncClient, session: AsyncSession, document: dict[str, Any]
) -> None:
    headers = await _bearer(client, session, Role.SUPPORT)
    response = await client.get(
        "/api/v1/prescriptions", params={"offset": str(BIGINT_PLUS_ONE)}, headers=headers
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["errors"]] == ["offset"]
    assert "offset" in body["detail"]
    _assert_documented(document, "GET", "/api/v1/prescriptions", response)

    at_bound = await client.get(
        "/api/v1/prescriptions", params={"offset": MAX_OFFSET}, headers=headers
    )
    assert at_bound.status_code == 200, at_bound.text
    assert at_bound.json()["results"] == []


async def test_real_errors_fit_the_documented_error_body(
    client: httpx.AsyncClient, session: AsyncSession, document: dict[str, Any]
) -> None:
    headers = await _bearer(client, session, Role.PATIENT)
    missing = "/api/v1/prescriptions/00000000-0000-4000-8000-000000000000"

    not_found = await client.get(missing, headers=headers)
    assert not_found.status_code == 404
    _assert_documented(document, "GET", "/api/v1/prescriptions/{prescription_id}", not_found)

    unauthenticated = await client.get("/api/v1/prescriptions")
    assert unauthenticated.status_code == 401
    _assert_documented(document, "GET", "/api/v1/prescriptions", unauthenticated)

    bad_body = await client.post(f"{missing}/send", json={"region": "B" * 9}, headers=headers)
    assert bad_body.status_code == 422
    assert [e["field"] for e in bad_body.json()["errors"]] == ["region"]
    _assert_documented(document, "POST", "/api/v1/prescriptions/{prescription_id}/send", bad_body)

    # Refused by the handler rather than by validation: it names the field all the same.
    unserved = await client.get("/api/v1/pharmacies", params={"region": "Z"}, headers=headers)
    assert unserved.status_code == 422
    assert [e["field"] for e in unserved.json()["errors"]] == ["region"]
    _assert_documented(document, "GET", "/api/v1/pharmacies", unserved)

    unsigned = await client.post("/webhooks/erx", content=b'{"id": "evt_1", "event": "x"}')
    assert unsigned.status_code == 401
    assert unsigned.json()["code"]
    _assert_documented(document, "POST", "/webhooks/erx", unsigned)


def test_document_never_mentions_fastapis_default_validation_error(
    document: dict[str, Any],
) -> None:
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert "#/components/schemas/ValidationError" not in text


def test_every_error_answer_references_the_error_body(document: dict[str, Any]) -> None:
    wrong: list[str] = []
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if not (status.startswith("4") or status == "503"):
                continue
            if (method, path, status) == ("GET", "/readyz", "503"):
                continue  # a probe's answer, documented as Readiness (checked below)
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema != {"$ref": ERROR_REF}:
                wrong.append(f"{method} {path} {status}: {schema}")
    assert wrong == []
    readiness = document["paths"]["/readyz"]["get"]["responses"]["503"]
    assert readiness["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }


def test_operations_document_the_errors_they_can_answer(document: dict[str, Any]) -> None:
    """Inputs can be refused (422); authenticated calls can be refused (401)."""
    missing: list[str] = []
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        if (operation.get("parameters") or "requestBody" in operation) and "422" not in responses:
            missing.append(f"{method} {path} 422")
        if operation.get("security") and "401" not in responses:
            missing.append(f"{method} {path} 401")
    assert missing == []


def test_api_operations_declare_bearer_authentication(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "description": scheme["description"],
    }
    for method, path, operation in _operations(document):
        if path.startswith(("/api/v1/prescriptions", "/api/v1/pharmacies", "/api/v1/auth/me")):
            # A signed-in user's token, or (where an API key may call it) a key: the scope
            # each key operation documents is checked in tests/apiclients/test_openapi_scopes.
            security = operation.get("security", [])
            assert security[0] == {"bearerAuth": []}, f"{method} {path}"
            assert all(set(alternative) == {"apiKey"} for alternative in security[1:]), path


def test_operation_ids_are_unique_readable_and_stable(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids)), sorted(ids)
    assert [i for i in ids if not OPERATION_ID.match(i)] == []
    assert sorted(KNOWN_OPERATION_IDS - set(ids)) == []


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_served_document_is_the_checked_one(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    served = response.json()
    assert {op["operationId"] for _, _, op in _operations(served)} == {
        op["operationId"] for _, _, op in _operations(document)
    }
    validate(served, cls=OpenAPIV31SpecValidator)
