"""CORS (Fetch standard §3.2; SPEC §10): only token, userinfo, revocation, JWKS and discovery, and for the first
three only from the exact origin of a registered redirect URI; never credentials mode; never on ``/authorize``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.services.cors import CACHE_SECONDS
from tests.oauth_support import CC, basic, service
from tests.pages.support import WebApp, auth_params, authorize_url, web_app

ORIGIN = "https://app.example.com"
SPA_ORIGIN = "https://spa.example.com:8443"
BY_ORIGIN = [("POST", "/token"), ("POST", "/revoke"), ("GET", "/userinfo"), ("POST", "/userinfo")]
PUBLIC = ["/jwks", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
NEAR_MISSES = [
    "https://app.example.com:8443",  # another port
    "http://app.example.com",  # http instead of https
    "https://app.example.com.evil.test",  # suffix trick
    "https://evilapp.example.com",
    "https://app.example.co",
    "https://spa.example.com",  # the registered port left out
    "null",
]
NEVER = [("GET", "/authorize"), ("GET", "/login"), ("POST", "/login"), ("GET", "/consent"), ("POST", "/introspect")]


@pytest.fixture
def spa(app: Flask) -> WebApp:
    """Two registered clients: one at the default https port, a public SPA at an explicit port."""
    web_app()
    return web_app(public=True, name="SPA", redirect_uris=[SPA_ORIGIN + "/callback"])


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def send(client: FlaskClient, method: str, path: str, origin: str, **kwargs: Any) -> Any:
    return client.open(path, method=method, headers={"Origin": origin, **kwargs.pop("headers", {})}, **kwargs)


def preflight(client: FlaskClient, path: str, origin: str, method: str = "POST") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


@pytest.mark.parametrize(("method", "path"), BY_ORIGIN)
@pytest.mark.parametrize("origin", [ORIGIN, SPA_ORIGIN])
def test_a_registered_origin_is_allowed_by_name_without_credentials(
    client: FlaskClient, spa: WebApp, method: str, path: str, origin: str
) -> None:
    response = send(client, method, path, origin)  # errors too: the page must be able to read them
    headers = cors_headers(response)
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Origin" in response.headers.get("Vary", "")


def test_a_token_response_to_a_spa_carries_the_headers(client: FlaskClient, spa: WebApp) -> None:
    svc = service()
    response = client.post("/token", data=CC, headers={**basic(svc.client_id, svc.key), "Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "WWW-Authenticate" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("origin", NEAR_MISSES)
@pytest.mark.parametrize(("method", "path"), BY_ORIGIN)
def test_a_near_miss_origin_gets_no_cors_headers(
    client: FlaskClient, spa: WebApp, method: str, path: str, origin: str
) -> None:
    response = send(client, method, path, origin)
    assert cors_headers(response) == {}
    assert "Origin" in response.headers.get("Vary", "")  # caches must not reuse another origin's answer
    assert cors_headers(preflight(client, path, origin, method)) == {}


@pytest.mark.parametrize("path", ["/token", "/revoke", "/userinfo"])
def test_preflight_from_a_registered_origin_is_answered_204(client: FlaskClient, spa: WebApp, path: str) -> None:
    response = preflight(client, path, ORIGIN)
    assert response.status_code == 204
    assert response.get_data() == b""
    headers = cors_headers(response)
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("path", PUBLIC)
def test_public_documents_answer_any_origin_with_a_star(client: FlaskClient, path: str) -> None:
    response = send(client, "GET", path, "https://anywhere.example.net")
    assert response.status_code == 200
    assert cors_headers(response) == {"Access-Control-Allow-Origin": "*"}
    pre = preflight(client, path, "https://anywhere.example.net", "GET")
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET"


@pytest.mark.parametrize(("method", "path"), NEVER)
def test_browser_pages_and_introspection_never_carry_cors_headers(
    client: FlaskClient, spa: WebApp, method: str, path: str
) -> None:
    response = send(client, method, path, ORIGIN)
    assert cors_headers(response) == {}
    assert cors_headers(preflight(client, path, ORIGIN, method)) == {}


def test_a_real_authorization_request_from_a_registered_origin_gets_no_cors_headers(
    client: FlaskClient, spa: WebApp
) -> None:
    response = send(client, "GET", authorize_url(auth_params(spa)), SPA_ORIGIN)
    assert response.status_code in (302, 303)
    assert cors_headers(response) == {}


def test_a_new_clients_origin_is_allowed_within_the_cache_lifetime(client: FlaskClient, spa: WebApp) -> None:
    origin = "https://late.example.com"
    assert cors_headers(preflight(client, "/token", origin)) == {}
    web_app(name="Late", redirect_uris=[origin + "/cb"])
    deadline = time.monotonic() + CACHE_SECONDS + 2
    while cors_headers(preflight(client, "/token", origin)) == {}:
        assert time.monotonic() < deadline, "the new origin was not allowed in time"
        time.sleep(0.5)
