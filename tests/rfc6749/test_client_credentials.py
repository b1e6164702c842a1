"""Client credentials grant (RFC 6749 §4.4) issuing RFC 9068 access tokens, in-process.

Audience selection follows RFC 8707 §2 and SPEC §7: ``resource`` or ``audience`` within the client's allowed
audiences, else the client's first (default) audience.
"""

from __future__ import annotations

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.services.api_keys import create_api_key
from tests.oauth_support import API, CC, OTHER_API, Service, assert_no_store, basic, issue, service, verify


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


def test_response_is_a_bearer_token_without_refresh_token(client: FlaskClient, app: Flask, svc: Service) -> None:
    response = client.post("/token", data=CC, headers=basic(svc.client_id, svc.key))
    assert response.status_code == 200
    assert_no_store(response)
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.config["IDP_ACCESS_TOKEN_TTL"]
    assert body["scope"] == "read write"


def test_token_is_an_rfc9068_jwt_signed_by_the_active_key(client: FlaskClient, app: Flask, svc: Service) -> None:
    token = issue(client, svc)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] == app.extensions["idp.keyring"].current().active_kid
    claims = verify(client, token, API, app.config["IDP_ISSUER"])
    assert claims["sub"] == claims["client_id"] == svc.client_id
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == app.config["IDP_ACCESS_TOKEN_TTL"]
    assert set(claims) == {"iss", "sub", "aud", "client_id", "scope", "iat", "exp", "jti"}


def test_client_secret_post_works_for_a_client_registered_for_it(client: FlaskClient, app: Flask) -> None:
    svc = service(token_endpoint_auth_method="client_secret_post")
    response = client.post("/token", data={**CC, "client_id": svc.client_id, "client_secret": svc.key})
    assert response.status_code == 200, response.get_json()


def test_basic_credentials_are_form_decoded(client: FlaskClient, svc: Service) -> None:
    """RFC 6749 §2.3.1: clients may form-encode id and secret before Base64 (Authlib does)."""
    encoded_id = "".join(f"%{b:02X}" for b in svc.client_id.encode())
    response = client.post("/token", data=CC, headers=basic(encoded_id, svc.key))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("parameter", ["resource", "audience"])
def test_resource_or_audience_selects_the_audience(
    client: FlaskClient, app: Flask, svc: Service, parameter: str
) -> None:
    token = issue(client, svc, **{parameter: OTHER_API})
    assert verify(client, token, OTHER_API, app.config["IDP_ISSUER"])["aud"] == OTHER_API


def test_resource_and_audience_naming_the_same_target_are_accepted(
    client: FlaskClient, app: Flask, svc: Service
) -> None:
    token = issue(client, svc, resource=OTHER_API, audience=OTHER_API)
    assert verify(client, token, OTHER_API, app.config["IDP_ISSUER"])["aud"] == OTHER_API


def test_default_audience_is_the_clients_first(client: FlaskClient, app: Flask) -> None:
    svc = service(audiences=[OTHER_API, API])
    assert verify(client, issue(client, svc), OTHER_API, app.config["IDP_ISSUER"])["aud"] == OTHER_API


def test_requested_scope_narrows_the_token(client: FlaskClient, app: Flask, svc: Service) -> None:
    response = client.post("/token", data={**CC, "scope": "read"}, headers=basic(svc.client_id, svc.key))
    assert response.get_json()["scope"] == "read"
    claims = verify(client, response.get_json()["access_token"], API, app.config["IDP_ISSUER"])
    assert claims["scope"] == "read"


def test_per_client_ttl_sets_exp_and_expires_in(client: FlaskClient, app: Flask) -> None:
    svc = service(access_token_ttl=120)
    response = client.post("/token", data=CC, headers=basic(svc.client_id, svc.key))
    assert response.get_json()["expires_in"] == 120
    claims = verify(client, response.get_json()["access_token"], API, app.config["IDP_ISSUER"])
    assert claims["exp"] - claims["iat"] == 120


def test_every_token_has_its_own_jti(client: FlaskClient, app: Flask, svc: Service) -> None:
    jtis = {verify(client, issue(client, svc), API, app.config["IDP_ISSUER"])["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_all_active_keys_of_a_client_work(client: FlaskClient, svc: Service) -> None:
    second = create_api_key(svc.client_id, "rotation")
    for key in (svc.key, second.key):
        assert client.post("/token", data=CC, headers=basic(svc.client_id, key)).status_code == 200
