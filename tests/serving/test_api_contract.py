"""The HTTP contract: the OpenAPI document resolves, error bodies match it, every response
carries X-Request-Id, request types are strict and forcing a variant needs the admin role."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from serving_testkit import ADMIN, PREDICT, TestClient, walk


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], ref: str) -> object:
    assert ref.startswith("#/"), f"{ref}: only local references are expected"
    node: object = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _declared(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """A validator-ready schema of the declared JSON body of one response."""
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def test_every_ref_of_the_openapi_document_resolves(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    refs = set(_refs(doc))
    assert refs, "the document has references"
    for ref in refs:
        _resolve(doc, ref)


def test_every_operation_declares_the_error_body_for_its_errors(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            assert "422" in responses and "500" in responses, (method, path)
            for status, response in responses.items():
                described = "content" in response or int(status) < 500  # every 4xx has one
                if int(status) >= 400 and described and (path, status) != ("/ready", "503"):
                    assert response.get("content") == error_body, (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"agents": [{"agent_id": 1, "points": [[0, "x"], [1, 1]]}]}', 422),  # pydantic
        ('{"agents": [{"agent_id": 1, "points": [[0, 0]]}], "k": 0}', 422),
        (json.dumps({"agents": [walk(1), walk(1)]}), 422),  # duplicate id: a RequestError
        ("{not json", 422),
    ],
)
def test_error_bodies_match_the_declared_schema(client: TestClient, body: str, status: int) -> None:
    doc = client.get("/openapi.json").json()
    r = client.post("/v1/predict", content=body,
                    headers=PREDICT | {"content-type": "application/json"})
    assert r.status_code == status, r.text
    jsonschema.validate(r.json(), _declared(doc, "/v1/predict", "post", status))
    missing = client.post("/v1/predict", json={"agents": [walk(1)]})
    jsonschema.validate(missing.json(), _declared(doc, "/v1/predict", "post", 401))


def test_every_response_carries_the_request_id(client: TestClient) -> None:
    async def boom() -> None:
        raise RuntimeError("secret detail at /etc/passwd")

    client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as c:
        crashed = c.get("/boom", headers={"X-Request-Id": "trace-1"})
        assert crashed.status_code == 500 and crashed.headers["x-request-id"] == "trace-1"
        assert crashed.headers["x-served-by"] == socket.gethostname()  # the replica, for lb
        assert crashed.json() == {"error": "InternalError", "detail": "internal error",
                                  "request_id": "trace-1"}
        assert "secret" not in crashed.text
        too_big = c.post("/v1/predict", content=b"x" * 2_000_000,
                         headers=PREDICT | {"content-type": "application/json"})
        not_found = c.get("/no/such/route")
        wrong_method = c.put("/v1/predict", headers=PREDICT)
        for r, status in ((too_big, 413), (not_found, 404), (wrong_method, 405)):
            assert r.status_code == status and r.headers["x-request-id"], r
            assert r.json()["request_id"] == r.headers["x-request-id"]
        assert wrong_method.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("agent", "extra", "field"),
    [
        ({"agent_id": 1, "points": [["0", "0"], [1, 1]]}, {}, "agents.0.points.0.0"),
        ({"agent_id": "7", "points": [[0, 0], [1, 1]]}, {}, "agents.0.agent_id"),
        ({"agent_id": 1, "points": [[0, 0], [1, 1]]}, {"k": True}, "k"),
        ({"agent_id": 1, "points": [[0, 0], [1, 1]]}, {"frame": "3"}, "frame"),
        ({"agent_id": 1, "points": [[0, 0], [1, 1]]}, {"dt": "0.4"}, "dt"),
    ],
)
def test_strings_and_booleans_are_not_coerced_to_numbers(
    client: TestClient, agent: dict[str, object], extra: dict[str, object], field: str
) -> None:
    r = client.post("/v1/predict", json={"agents": [agent], **extra}, headers=PREDICT)
    assert r.status_code == 422, r.text
    assert any(e["field"] == field for e in r.json()["detail"]), r.json()


def test_forcing_a_variant_needs_the_admin_role(client: TestClient) -> None:
    body = {"agents": [walk(1)], "variant": "challenger"}
    denied = client.post("/v1/predict", json=body, headers=PREDICT)
    assert denied.status_code == 403 and "admin" in denied.json()["detail"], denied.text
    forced = client.post("/v1/predict", json=body, headers=ADMIN)
    assert forced.status_code == 200 and forced.json()["variant"] == "challenger"
    unknown = client.post("/v1/predict", json=body | {"variant": "nope"}, headers=ADMIN)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "variant"


def test_a_body_that_cannot_be_decoded_is_422_naming_the_body(client: TestClient) -> None:
    r = client.put("/v1/admin/ab-weights", content=b"\xb7\xc7\xbd\x06e\x83",
                   headers=ADMIN | {"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body", r.text
