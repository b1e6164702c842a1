"""Helpers shared by the token, introspection and revocation tests: service clients, request parts, token checks.

Clients are registered through the service layer (``create_client``), exactly as ``idp clients create`` does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import jwt
from flask.testing import FlaskClient

from idp.services.clients import ClientSpec, create_client

API = "https://api.example.com"
OTHER_API = "https://other.example.com"
CC = {"grant_type": "client_credentials"}


@dataclass(frozen=True)
class Service:
    """A registered confidential client and its first API key (the only copy of the secret)."""

    client_id: str
    key: str
    key_id: str


def service(**spec: Any) -> Service:
    """A client-credentials client allowed ``read write`` on two APIs (the first is its default audience)."""
    defaults = ClientSpec(
        name="svc", grant_types=["client_credentials"], audiences=[API, OTHER_API], scope="read write"
    )
    client, key = create_client(dataclasses.replace(defaults, **spec))
    assert key is not None
    return Service(client.id, key.key, key.row.id)


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1 ``client_secret_basic`` (our ids and keys need no form-encoding)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def b64url(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_no_store(response: Any) -> None:
    """RFC 6749 §5.1: token-endpoint answers, successes and errors alike, are never cached."""
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 §5.2 JSON error with the status and headers SPEC §9 pins."""
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert response.status_code == status, body
    assert body["error"] == error, body
    assert response.headers["Content-Type"].startswith("application/json")
    assert_no_store(response)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    return body


def issue(client: FlaskClient, svc: Service, **params: str) -> str:
    """A client-credentials access token for ``svc`` (client_secret_basic)."""
    response = client.post("/token", data={**CC, **params}, headers=basic(svc.client_id, svc.key))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def verify(client: FlaskClient, token: str, audience: str, issuer: str) -> dict[str, Any]:
    """Verify like a resource server: RS256 against the published JWKS, with ``aud`` and ``iss`` checks."""
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks").get_json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer))
