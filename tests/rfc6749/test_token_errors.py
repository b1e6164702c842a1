"""The token endpoint's error matrix (RFC 6749 §5.2, RFC 8707 §2, SPEC §9): status, ``error`` and headers.

Every answer, error or not, carries ``Cache-Control: no-store`` and ``Pragma: no-cache``; every 401 carries a
``WWW-Authenticate: Basic`` challenge; nothing a client sends yields a 500.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from idp.extensions import db
from idp.models import ApiKey
from idp.models.base import utcnow
from idp.services.api_keys import create_api_key, revoke_api_key
from idp.services.clients import ClientSpec, create_client
from tests.oauth_support import API, CC, OTHER_API, Service, assert_error, b64url, basic, issue, service


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


def post_token(client: FlaskClient, svc: Service, **params: str) -> Any:
    return client.post("/token", data={**CC, **params}, headers=basic(svc.client_id, svc.key))


# --- client authentication: 401 invalid_client ---------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "not-an-api-key",
        "idp_0123456789abcdef_" + "A" * 43,  # well-formed, unknown key id
        "",
    ],
    ids=["malformed", "unknown-key-id", "empty"],
)
def test_wrong_key_is_invalid_client(client: FlaskClient, svc: Service, secret: str) -> None:
    response = client.post("/token", data=CC, headers=basic(svc.client_id, secret))
    assert_error(response, 401, "invalid_client")


def test_right_key_id_with_wrong_secret_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    forged = svc.key[: -len("A" * 43)] + "A" * 43
    assert_error(client.post("/token", data=CC, headers=basic(svc.client_id, forged)), 401, "invalid_client")


def test_key_of_another_client_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    other = service(name="other")
    assert_error(client.post("/token", data=CC, headers=basic(svc.client_id, other.key)), 401, "invalid_client")


def test_unknown_client_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    assert_error(client.post("/token", data=CC, headers=basic("no-such-client", svc.key)), 401, "invalid_client")


def test_revoked_key_is_refused_at_once_in_this_process(client: FlaskClient, svc: Service) -> None:
    issue(client, svc)  # the key is now cached
    revoke_api_key(svc.key_id)
    assert_error(post_token(client, svc), 401, "invalid_client")


def test_expired_key_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    issue(client, svc)
    row = db.session.get(ApiKey, svc.key_id)
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert_error(post_token(client, svc), 401, "invalid_client")


def test_one_revoked_key_leaves_the_other_keys_working(client: FlaskClient, svc: Service) -> None:
    second = create_api_key(svc.client_id, "second")
    revoke_api_key(svc.key_id)
    response = client.post("/token", data=CC, headers=basic(svc.client_id, second.key))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":secret-without-id").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer some-token",
    ],
    ids=["no-credentials", "not-base64", "no-colon", "empty-id", "not-utf8", "other-scheme"],
)
def test_malformed_basic_header_is_invalid_client(client: FlaskClient, svc: Service, header: str) -> None:
    assert_error(client.post("/token", data=CC, headers={"Authorization": header}), 401, "invalid_client")


@pytest.mark.parametrize(
    "client_id",
    ["x" * 10_240, "' OR 1=1 --", "'; DROP TABLE clients; --", "%00admin", "\u202eevil"],
    ids=["10kB", "sql-or", "sql-drop", "nul-escape", "bidi"],
)
@pytest.mark.parametrize("method", ["basic", "post"])
def test_hostile_client_id_is_invalid_client(client: FlaskClient, svc: Service, client_id: str, method: str) -> None:
    if method == "basic":
        response = client.post("/token", data=CC, headers=basic(client_id, svc.key))
    else:
        response = client.post("/token", data={**CC, "client_id": client_id, "client_secret": svc.key})
    assert_error(response, 401, "invalid_client")


def test_client_id_with_nul_in_basic_header_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    """``%00`` decodes to NUL (RFC 6749 §2.3.1 form-encoding), which PostgreSQL refuses as a parameter."""
    response = client.post("/token", data=CC, headers=basic(f"{svc.client_id}%00", svc.key))
    assert_error(response, 401, "invalid_client")


def test_no_client_authentication_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    assert_error(client.post("/token", data=CC), 401, "invalid_client")


def test_confidential_client_without_a_secret_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    assert_error(client.post("/token", data={**CC, "client_id": svc.client_id}), 401, "invalid_client")


@pytest.mark.parametrize(
    ("registered", "used"),
    [("client_secret_basic", "post"), ("client_secret_post", "basic")],
)
def test_method_other_than_the_registered_one_is_invalid_client(
    client: FlaskClient, app: Flask, registered: str, used: str
) -> None:
    svc = service(token_endpoint_auth_method=registered)
    if used == "basic":
        response = client.post("/token", data=CC, headers=basic(svc.client_id, svc.key))
    else:
        response = client.post("/token", data={**CC, "client_id": svc.client_id, "client_secret": svc.key})
    assert_error(response, 401, "invalid_client")


def test_deeply_nested_assertion_is_invalid_client_not_a_crash(client: FlaskClient, svc: Service) -> None:
    """The assertion's ``sub`` is read before verification to find the client; hostile JSON must not crash it."""
    assertion = f"{b64url({'alg': 'RS256'})}.{b64url(b'[' * 40_000)}.{b64url(b'sig')}"
    response = client.post(
        "/token",
        data={
            **CC,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert_error(response, 401, "invalid_client")


# --- the grant: 400 unauthorized_client / invalid_scope / invalid_target ---------------------------------------


def test_public_client_asking_for_client_credentials_is_unauthorized_client(client: FlaskClient, app: Flask) -> None:
    public, key = create_client(ClientSpec(name="spa", public=True, redirect_uris=["http://127.0.0.1/cb"]))
    assert key is None
    response = client.post("/token", data={**CC, "client_id": public.id})
    assert_error(response, 400, "unauthorized_client")


def test_client_not_registered_for_the_grant_is_unauthorized_client(client: FlaskClient, app: Flask) -> None:
    web = service(grant_types=["authorization_code"], redirect_uris=["https://app.example.com/cb"])
    assert_error(post_token(client, web), 400, "unauthorized_client")


@pytest.mark.parametrize("scope", ["admin", "read admin", "read write delete"])
def test_scope_not_allowed_is_invalid_scope(client: FlaskClient, svc: Service, scope: str) -> None:
    assert_error(post_token(client, svc, scope=scope), 400, "invalid_scope")


@pytest.mark.parametrize("scope", ['read "write"', "read\\write", "   "])
def test_malformed_scope_is_invalid_scope(client: FlaskClient, svc: Service, scope: str) -> None:
    assert_error(post_token(client, svc, scope=scope), 400, "invalid_scope")


@pytest.mark.parametrize("parameter", ["resource", "audience"])
@pytest.mark.parametrize(
    "target",
    ["https://evil.example.com", "https://api.example.com/", "https://api.example.com#frag", "not a uri"],
    ids=["other-host", "trailing-slash", "fragment", "not-a-uri"],
)
def test_audience_not_allowed_is_invalid_target(client: FlaskClient, svc: Service, parameter: str, target: str) -> None:
    assert_error(post_token(client, svc, **{parameter: target}), 400, "invalid_target")


def test_two_different_resources_are_invalid_target(client: FlaskClient, svc: Service) -> None:
    response = client.post(
        "/token",
        data=MultiDict([("grant_type", "client_credentials"), ("resource", API), ("resource", OTHER_API)]),
        headers=basic(svc.client_id, svc.key),
    )
    assert_error(response, 400, "invalid_target")


def test_resource_and_audience_naming_different_targets_are_invalid_target(client: FlaskClient, svc: Service) -> None:
    assert_error(post_token(client, svc, resource=API, audience=OTHER_API), 400, "invalid_target")


def test_client_without_any_audience_is_invalid_target(client: FlaskClient, app: Flask) -> None:
    bare = service(audiences=[])
    assert_error(post_token(client, bare), 400, "invalid_target")


# --- the request itself: 400 invalid_request / unsupported_grant_type, 405, 413 ---------------------------------


def test_get_token_is_405_with_a_json_error(client: FlaskClient, svc: Service) -> None:
    response = client.get("/token", query_string=CC, headers=basic(svc.client_id, svc.key))
    assert response.status_code == 405
    assert response.get_json()["error"] == "invalid_request"
    assert "POST" in response.headers["Allow"]


def test_json_body_is_invalid_request(client: FlaskClient, svc: Service) -> None:
    response = client.post(
        "/token", data=json.dumps(CC), content_type="application/json", headers=basic(svc.client_id, svc.key)
    )
    assert_error(response, 400, "invalid_request")


def test_parameters_in_the_query_string_are_invalid_request(client: FlaskClient, svc: Service) -> None:
    response = client.post("/token", query_string={"scope": "read"}, data=CC, headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("data", [{}, {"grant_type": ""}, {"scope": "read"}], ids=["empty", "blank", "absent"])
def test_missing_grant_type_is_invalid_request(client: FlaskClient, svc: Service, data: dict[str, str]) -> None:
    response = client.post("/token", data=data, headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "grant_type", ["password", "urn:ietf:params:oauth:grant-type:device_code", "client_credentials ", "x" * 5000]
)
def test_unknown_grant_type_is_unsupported_grant_type(client: FlaskClient, svc: Service, grant_type: str) -> None:
    response = client.post("/token", data={"grant_type": grant_type}, headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "extra",
    [
        {"client_secret": "whatever"},
        {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": "a.b.c",
        },
    ],
    ids=["basic+post", "basic+assertion"],
)
def test_two_authentication_methods_together_are_invalid_request(
    client: FlaskClient, svc: Service, extra: dict[str, str]
) -> None:
    response = client.post("/token", data={**CC, **extra}, headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "invalid_request")


def test_basic_with_a_different_client_id_in_the_body_is_invalid_request(client: FlaskClient, svc: Service) -> None:
    assert_error(post_token(client, svc, client_id="someone-else"), 400, "invalid_request")


@pytest.mark.parametrize("name", ["grant_type", "scope", "audience", "client_id"])
def test_repeated_parameter_is_invalid_request(client: FlaskClient, svc: Service, name: str) -> None:
    values = {"grant_type": "client_credentials", "scope": "read", "audience": API, "client_id": svc.client_id}
    data = [("grant_type", "client_credentials"), (name, values[name]), (name, values[name])]
    if name == "grant_type":
        data = data[1:]
    response = client.post("/token", data=MultiDict(data), headers=basic(svc.client_id, svc.key))
    assert_error(response, 400, "invalid_request")


def test_oversized_body_is_413_with_a_json_error(client: FlaskClient, svc: Service) -> None:
    response = client.post("/token", data={**CC, "scope": "read " * 20_000}, headers=basic(svc.client_id, svc.key))
    assert_error(response, 413, "invalid_request")


def test_parameter_with_an_empty_value_counts_as_omitted(client: FlaskClient, svc: Service) -> None:
    """RFC 6749 §3.1 (applied to the token endpoint by §3.2): ``client_secret=`` next to Basic is not a second
    authentication method, and ``scope=`` means the client's registered scopes."""
    response = post_token(client, svc, client_secret="", scope="", audience="")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "read write"
