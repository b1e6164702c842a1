"""The OpenID Connect code flow end to end against a real ``idp serve`` process, driven by a third-party client.

Authlib's ``OAuth2Session`` (PKCE S256) builds the authorization request and redeems the code; a plain
``requests.Session`` plays the browser (login and consent forms, redirects read, never followed to the client);
joserfc verifies the ID token against ``/jwks`` like a relying party would.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from idp.models import User
from tests.conftest import LiveServer
from tests.oidc_support import FULL_SCOPE, TIMEOUT, LiveBrowser, at_hash, sign_in
from tests.pages.support import WebApp, user, web_app


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live server listens on http://127.0.0.1; Authlib insists on https otherwise."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def alice(app: Flask) -> User:
    return user("alice")


@pytest.fixture
def webapp(app: Flask) -> WebApp:
    return web_app()


def verify_id_token(
    server: LiveServer, token: str, client_id: str, nonce: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """RS256 against the published JWKS, then ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` and (from the
    authorization request's ID token) ``nonce``."""
    jwks = requests.get(f"{server.url}/jwks", timeout=TIMEOUT).json()
    keys = KeySet.import_key_set(jwks)
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": server.url},
        aud={"essential": True, "value": client_id},
        **({"nonce": {"essential": True, "value": nonce}} if nonce is not None else {}),
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
    )
    registry.validate(decoded.claims)
    header = dict(decoded.header)
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    return header, dict(decoded.claims)


def refresh_error(server: LiveServer, webapp: WebApp, refresh_token: str) -> str:
    assert webapp.key is not None
    response = requests.post(
        f"{server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(webapp.client_id, webapp.key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 400, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return str(response.json()["error"])


def test_code_flow_with_authlib_client(live_server: LiveServer, webapp: WebApp, alice: User) -> None:
    server = live_server
    client = OAuth2Session(
        webapp.client_id,
        webapp.key,
        scope=FULL_SCOPE,
        redirect_uri=webapp.redirect_uri,
        code_challenge_method="S256",
    )
    with client:
        verifier, nonce = generate_token(48), generate_token(20)
        url, state = client.create_authorization_url(f"{server.url}/authorize", code_verifier=verifier, nonce=nonce)
        assert "code_challenge=" in url and "code_challenge_method=S256" in url

        callback = sign_in(LiveBrowser(server.url), url)
        assert callback.startswith(webapp.redirect_uri + "?")
        assert f"state={state}" in callback

        token = client.fetch_token(
            f"{server.url}/token", authorization_response=callback, code_verifier=verifier, state=state, timeout=TIMEOUT
        )
        assert token["token_type"] == "Bearer" and token["scope"] == FULL_SCOPE
        header, claims = verify_id_token(server, token["id_token"], webapp.client_id, nonce)
        assert header["alg"] == "RS256"
        assert claims["sub"] == alice.id
        assert claims["at_hash"] == at_hash(token["access_token"])

        info = client.get(f"{server.url}/userinfo", timeout=TIMEOUT)
        assert info.status_code == 200, info.text
        assert info.headers["Cache-Control"] == "no-store"
        assert info.json()["sub"] == claims["sub"]

        old_refresh = token["refresh_token"]
        renewed = client.refresh_token(f"{server.url}/token", refresh_token=old_refresh, timeout=TIMEOUT)
        assert renewed["refresh_token"] != old_refresh
        assert renewed["access_token"] != token["access_token"]
        _, renewed_claims = verify_id_token(server, renewed["id_token"], webapp.client_id, None)
        assert renewed_claims["sub"] == claims["sub"] and renewed_claims["auth_time"] == claims["auth_time"]
        assert renewed_claims["at_hash"] == at_hash(renewed["access_token"])
        assert client.get(f"{server.url}/userinfo", timeout=TIMEOUT).status_code == 200

        # The rotated token presented again fails and takes the whole family with it.
        assert refresh_error(server, webapp, old_refresh) == "invalid_grant"
        assert refresh_error(server, webapp, renewed["refresh_token"]) == "invalid_grant"
        revoked = client.get(f"{server.url}/userinfo", timeout=TIMEOUT)
        assert revoked.status_code == 401
        assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
