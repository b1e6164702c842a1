"""Token introspection (RFC 7662): the caller authenticates as a confidential client; an inactive, foreign,
forged, expired or revoked token is exactly ``{"active": false}`` (§2.2)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.services.clients import ClientSpec, create_client
from tests.oauth_support import API, Service, assert_error, assert_no_store, b64url, basic, issue, service

INACTIVE = {"active": False}


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


@pytest.fixture
def resource_server(app: Flask) -> Service:
    """Another confidential client, as an API that introspects the tokens presented to it."""
    return service(name="resource-server")


def introspect(client: FlaskClient, caller: Service, token: str, **extra: str) -> Any:
    response = client.post("/introspect", data={"token": token, **extra}, headers=basic(caller.client_id, caller.key))
    assert response.status_code == 200, response.get_json()
    assert_no_store(response)
    return response.get_json()


def our_claims(app: Flask, svc: Service, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": app.config["IDP_ISSUER"],
        "sub": svc.client_id,
        "aud": API,
        "client_id": svc.client_id,
        "iat": now,
        "exp": now + 300,
        "jti": "forged-jti",
    }
    claims.update(overrides)
    return claims


def test_active_token_introspects_with_its_claims(
    client: FlaskClient, app: Flask, svc: Service, resource_server: Service
) -> None:
    token = issue(client, svc, scope="read")
    body = introspect(client, resource_server, token)
    assert body["active"] is True
    assert body["client_id"] == body["sub"] == svc.client_id
    assert body["aud"] == API
    assert body["iss"] == app.config["IDP_ISSUER"]
    assert body["scope"] == "read"
    assert body["token_type"] == "Bearer"
    assert body["exp"] > time.time() >= body["iat"]
    assert isinstance(body["jti"], str)


def test_token_type_hint_is_accepted(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    assert introspect(client, svc, token, token_type_hint="access_token")["active"] is True
    assert introspect(client, svc, token, token_type_hint="something_else")["active"] is True


def test_revoked_token_is_exactly_inactive(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    assert client.post("/revoke", data={"token": token}, headers=basic(svc.client_id, svc.key)).status_code == 200
    assert introspect(client, svc, token) == INACTIVE


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "e30.e30.e30", "x" * 9000, "eyJhbGciOiJSUzI1NiJ9." + "A" * 5000 + ".sig"],
    ids=["word", "three-parts", "empty-json", "huge", "huge-payload"],
)
def test_garbage_token_is_exactly_inactive(client: FlaskClient, svc: Service, token: str) -> None:
    assert introspect(client, svc, token) == INACTIVE


def test_token_signed_by_a_foreign_key_with_our_kid_is_inactive(client: FlaskClient, app: Flask, svc: Service) -> None:
    kid = app.extensions["idp.keyring"].current().active_kid
    stranger = RSAKey.generate_key(2048)
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": kid}, our_claims(app, svc), stranger)
    assert introspect(client, svc, token) == INACTIVE


def test_unsigned_token_is_inactive(client: FlaskClient, app: Flask, svc: Service) -> None:
    kid = app.extensions["idp.keyring"].current().active_kid
    token = f"{b64url({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64url(our_claims(app, svc))}."
    assert introspect(client, svc, token) == INACTIVE


def test_hs256_token_keyed_with_our_public_key_is_inactive(client: FlaskClient, app: Flask, svc: Service) -> None:
    view = app.extensions["idp.keyring"].current()
    header = {"alg": "HS256", "typ": "at+jwt", "kid": view.active_kid}
    signing_input = f"{b64url(header)}.{b64url(our_claims(app, svc))}"
    for public in (view.signing_key.as_pem(private=False), client.get("/jwks").data):
        signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        assert introspect(client, svc, f"{signing_input}.{b64url(signature)}") == INACTIVE


@pytest.mark.parametrize(
    ("typ", "overrides"),
    [
        ("JWT", {}),
        ("at+jwt", {"iss": "https://other-issuer.example.com"}),
        ("at+jwt", {"exp": int(time.time()) - 5}),
        ("at+jwt", {"jti": None}),
    ],
    ids=["id-token-typ", "other-issuer", "just-expired", "no-jti"],
)
def test_our_signature_on_a_token_that_is_not_our_access_token_is_inactive(
    client: FlaskClient, app: Flask, svc: Service, typ: str, overrides: dict[str, Any]
) -> None:
    claims = {k: v for k, v in our_claims(app, svc, **overrides).items() if v is not None}
    token = app.extensions["idp.keyring"].current().sign(claims, typ=typ)
    assert introspect(client, svc, token) == INACTIVE


def test_introspection_without_client_authentication_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    assert_error(client.post("/introspect", data={"token": token}), 401, "invalid_client")


def test_introspection_with_a_wrong_key_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    headers = basic(svc.client_id, "idp_0123456789abcdef_" + "A" * 43)
    assert_error(client.post("/introspect", data={"token": token}, headers=headers), 401, "invalid_client")


def test_public_client_cannot_introspect(client: FlaskClient, app: Flask, svc: Service) -> None:
    public, _ = create_client(ClientSpec(name="spa", public=True, redirect_uris=["http://127.0.0.1/cb"]))
    response = client.post("/introspect", data={"token": issue(client, svc), "client_id": public.id})
    assert_error(response, 401, "invalid_client")


def test_missing_token_is_invalid_request(client: FlaskClient, svc: Service) -> None:
    response = client.post("/introspect", data={}, headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "invalid_request")


def test_get_introspect_is_405(client: FlaskClient, svc: Service) -> None:
    assert client.get("/introspect", headers=basic(svc.client_id, svc.key)).status_code == 405
