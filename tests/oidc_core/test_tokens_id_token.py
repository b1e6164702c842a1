"""ID tokens from the code flow (OIDC Core §2, §3.1.3.6, §3.1.3.7, SPEC §7): RS256 with the active key's
``kid``, the required claims, ``nonce`` echoed only when sent, ``at_hash`` of the access token issued with it,
``sid`` and ``amr`` of the login, and standard claims by scope (§5.4). No ``openid``, no ID token."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import current_app
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.models import LoginSession, User
from idp.services.tokens import signing_keyring
from tests.oidc_support import (
    at_hash,
    decode,
    refresh,
    sign_in_and_redeem,
)
from tests.pages.support import WebApp

ISSUER = "http://127.0.0.1:5000"


def id_token(client: FlaskClient, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return decode(client.get("/jwks").get_json(), body["id_token"])


def test_id_token_carries_the_required_claims(client: FlaskClient, web: WebApp, alice: User) -> None:
    before = int(time.time())
    body = sign_in_and_redeem(client, web, nonce="n-0S6_WzA2Mj")
    header, claims = id_token(client, body)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["kid"] == signing_keyring().active_kid
    login = db.session.scalars(select(LoginSession)).one()
    assert claims["iss"] == ISSUER
    assert claims["sub"] == alice.id
    assert claims["aud"] == web.client_id
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == current_app.config["IDP_ID_TOKEN_TTL"]
    assert claims["auth_time"] == int(login.auth_time.timestamp())
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == at_hash(body["access_token"])
    assert claims["sid"] == login.id
    assert claims["amr"] == ["pwd"]


def test_nonce_is_absent_when_not_sent(client: FlaskClient, web: WebApp, alice: User) -> None:
    _, claims = id_token(client, sign_in_and_redeem(client, web, nonce=None))
    assert "nonce" not in claims


def test_nonce_is_echoed_exactly(client: FlaskClient, web: WebApp, alice: User) -> None:
    nonce = "ünïcode & spaces / +=?" + "x" * 200
    _, claims = id_token(client, sign_in_and_redeem(client, web, nonce=nonce))
    assert claims["nonce"] == nonce


@pytest.mark.parametrize(
    ("scope", "present", "absent"),
    [
        ("openid", set(), {"name", "preferred_username", "email", "email_verified", "updated_at"}),
        ("openid profile", {"name", "preferred_username", "updated_at"}, {"email", "email_verified"}),
        ("openid email", {"email", "email_verified"}, {"name", "preferred_username", "updated_at"}),
        ("openid profile email", {"name", "preferred_username", "email", "email_verified", "updated_at"}, set()),
    ],
)
def test_standard_claims_follow_the_scopes(
    client: FlaskClient, web: WebApp, alice: User, scope: str, present: set[str], absent: set[str]
) -> None:
    body = sign_in_and_redeem(client, web, scope=scope)
    assert body["scope"] == scope
    _, claims = id_token(client, body)
    assert present <= set(claims) and not absent & set(claims)
    expected = {"name": alice.name, "preferred_username": alice.username, "email": alice.email, "email_verified": False}
    assert {k: claims[k] for k in present if k in expected} == {k: v for k, v in expected.items() if k in present}


def test_no_id_token_without_openid(client: FlaskClient, web: WebApp, alice: User) -> None:
    body = sign_in_and_redeem(client, web, scope="profile email")
    assert "id_token" not in body
    assert body["scope"] == "profile email"


def test_access_token_is_an_rfc9068_jwt_bound_to_the_same_login(client: FlaskClient, web: WebApp, alice: User) -> None:
    body = sign_in_and_redeem(client, web)
    jwks = client.get("/jwks").get_json()
    header, claims = decode(jwks, body["access_token"])
    _, id_claims = decode(jwks, body["id_token"])
    assert header["typ"] == "at+jwt" and header["kid"] == signing_keyring().active_kid
    assert claims["iss"] == ISSUER and claims["sub"] == alice.id and claims["client_id"] == web.client_id
    assert claims["aud"] == f"{ISSUER}/userinfo"
    assert claims["scope"] == body["scope"] == "openid profile email offline_access"
    assert claims["auth_time"] == id_claims["auth_time"] and claims["sid"] == id_claims["sid"]
    assert claims["exp"] - claims["iat"] == body["expires_in"] == current_app.config["IDP_ACCESS_TOKEN_TTL"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_refreshed_id_token_keeps_the_authentication(client: FlaskClient, web: WebApp, alice: User) -> None:
    """OIDC Core §12.2: same ``iss``, ``sub``, ``aud``, ``auth_time``; a fresh ``at_hash``."""
    body = sign_in_and_redeem(client, web)
    _, first = id_token(client, body)
    refreshed = refresh(client, web, body["refresh_token"]).get_json()
    _, second = id_token(client, refreshed)
    for name in ("iss", "sub", "aud", "auth_time", "sid", "amr"):
        assert second[name] == first[name], name
    assert second["at_hash"] == at_hash(refreshed["access_token"]) != first["at_hash"]
