"""The UserInfo endpoint (OIDC Core §5.3) behind Bearer tokens (RFC 6750): GET and POST with the header, POST
with the form parameter, one method at a time; ``insufficient_scope`` without ``openid``; ``invalid_token`` for
anything but a live access token that we issued to a user; the bare challenge when no token came."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.models import User
from idp.services.tokens import signing_keyring
from idp.services.users import set_disabled
from tests.oauth_support import API, b64url, basic, issue, service
from tests.oidc_support import (
    bearer,
    sign_in_and_redeem,
)
from tests.pages.support import WebApp


@pytest.fixture
def tokens(client: FlaskClient, web: WebApp, alice: User) -> dict[str, Any]:
    return sign_in_and_redeem(client, web)


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from joserfc.jws import extract_compact

    compact = extract_compact(token.encode())
    return dict(compact.protected), json.loads(compact.payload)


def assert_challenge(response: Any, status: int, error: str | None) -> str:
    """RFC 6750 §3: the status, ``WWW-Authenticate: Bearer`` with ``error`` when a token was presented, and
    never cached."""
    assert response.status_code == status, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if error is None:
        assert challenge == 'Bearer realm="idp"'
    else:
        assert f'error="{error}"' in challenge
        assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    return str(challenge)


def assert_alice(response: Any, alice: User) -> None:
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["sub"] == alice.id
    assert body["name"] == alice.name and body["preferred_username"] == alice.username and body["email"] == alice.email


def test_get_with_bearer_header(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    assert_alice(client.get("/userinfo", headers=bearer(tokens["access_token"])), alice)


def test_post_with_bearer_header(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    assert_alice(client.post("/userinfo", headers=bearer(tokens["access_token"])), alice)


def test_post_with_form_parameter(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    assert_alice(client.post("/userinfo", data={"access_token": tokens["access_token"]}), alice)


def test_sub_matches_the_id_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    _, id_claims = unverified(tokens["id_token"])
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).get_json()["sub"] == id_claims["sub"]


def test_claims_follow_the_tokens_scopes(client: FlaskClient, web: WebApp, alice: User) -> None:
    body = sign_in_and_redeem(client, web, scope="openid email")
    info = client.get("/userinfo", headers=bearer(body["access_token"])).get_json()
    assert info == {"sub": alice.id, "email": alice.email, "email_verified": False}


def test_token_without_openid_is_insufficient_scope(client: FlaskClient, web: WebApp, alice: User) -> None:
    body = sign_in_and_redeem(client, web, scope="profile email")
    challenge = assert_challenge(
        client.get("/userinfo", headers=bearer(body["access_token"])), 403, "insufficient_scope"
    )
    assert 'scope="openid"' in challenge


def test_missing_token_gets_the_bare_challenge(client: FlaskClient, alice: User) -> None:
    assert_challenge(client.get("/userinfo"), 401, None)
    assert_challenge(client.post("/userinfo", data={}), 401, None)


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   ", "Token abc"])
def test_other_schemes_get_the_bare_challenge(client: FlaskClient, alice: User, header: str) -> None:
    """RFC 6750 §3.1: no error code when the request carries no Bearer token at all."""
    assert_challenge(client.get("/userinfo", headers={"Authorization": header}), 401, None)


def test_header_and_body_together_are_invalid_request(client: FlaskClient, tokens: dict[str, Any]) -> None:
    """RFC 6750 §2: a client MUST NOT use more than one method."""
    token = tokens["access_token"]
    response = client.post("/userinfo", headers=bearer(token), data={"access_token": token})
    assert_challenge(response, 400, "invalid_request")


def test_repeated_form_token_is_invalid_request(client: FlaskClient, tokens: dict[str, Any]) -> None:
    token = tokens["access_token"]
    response = client.post(
        "/userinfo", data=f"access_token={token}&access_token={token}", content_type="application/x-www-form-urlencoded"
    )
    assert_challenge(response, 400, "invalid_request")


def test_revoked_token_is_invalid_token(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    assert web.key is not None
    token = tokens["access_token"]
    assert client.post("/revoke", data={"token": token}, headers=basic(web.client_id, web.key)).status_code == 200
    assert_challenge(client.get("/userinfo", headers=bearer(token)), 401, "invalid_token")


def test_token_of_a_revoked_grant_is_invalid_token(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    assert web.key is not None
    revoke = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    assert client.post("/revoke", data=revoke, headers=basic(web.client_id, web.key)).status_code == 200
    assert_challenge(client.get("/userinfo", headers=bearer(tokens["access_token"])), 401, "invalid_token")


def resigned(token: str, **changes: Any) -> str:
    """The same token's claims, changed and signed again with our active key."""
    header, claims = unverified(token)
    return signing_keyring().sign({**claims, **changes}, typ=header["typ"])


def test_resigned_token_is_accepted(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    """The control for the forgeries below: re-signing unchanged claims with our key yields a good token."""
    assert_alice(client.get("/userinfo", headers=bearer(resigned(tokens["access_token"]))), alice)


def test_expired_token_is_invalid_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    expired = resigned(tokens["access_token"], iat=int(time.time()) - 700, exp=int(time.time()) - 100)
    assert_challenge(client.get("/userinfo", headers=bearer(expired)), 401, "invalid_token")


def test_token_signed_by_another_key_is_invalid_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    header, claims = unverified(tokens["access_token"])
    other = RSAKey.generate_key(2048)
    forged = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": header["kid"]}, claims, other, algorithms=["RS256"])
    assert_challenge(client.get("/userinfo", headers=bearer(forged)), 401, "invalid_token")


def test_unsigned_token_is_invalid_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    header, claims = unverified(tokens["access_token"])
    for alg in ("none", "None", "NONE"):
        unsigned = f"{b64url({**header, 'alg': alg})}.{b64url(claims)}."
        assert_challenge(client.get("/userinfo", headers=bearer(unsigned)), 401, "invalid_token")


def test_hs256_with_our_public_key_as_secret_is_invalid_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    """The RS256/HS256 confusion: an HMAC keyed with the published public key (PEM and JWK forms)."""
    header, claims = unverified(tokens["access_token"])
    public = signing_keyring().signing_key
    for secret in (public.as_pem(private=False), json.dumps(public.as_dict(private=False)).encode()):
        signing_input = f"{b64url({**header, 'alg': 'HS256'})}.{b64url(claims)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        forged = f"{signing_input}.{b64url(mac)}"
        assert_challenge(client.get("/userinfo", headers=bearer(forged)), 401, "invalid_token")


def test_tampered_claims_are_invalid_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    head, _, signature = tokens["access_token"].split(".")
    _, claims = unverified(tokens["access_token"])
    tampered = f"{head}.{b64url({**claims, 'sub': 'someone-else'})}.{signature}"
    assert_challenge(client.get("/userinfo", headers=bearer(tampered)), 401, "invalid_token")


def test_id_token_is_not_an_access_token(client: FlaskClient, tokens: dict[str, Any]) -> None:
    assert_challenge(client.get("/userinfo", headers=bearer(tokens["id_token"])), 401, "invalid_token")


@pytest.mark.parametrize("junk", ["x", "a.b.c", "x" * 9000, "eyJ.eyJ.sig"])
def test_junk_is_invalid_token(client: FlaskClient, alice: User, junk: str) -> None:
    assert_challenge(client.get("/userinfo", headers=bearer(junk)), 401, "invalid_token")


def test_client_credentials_token_is_invalid_token(client: FlaskClient, alice: User) -> None:
    """A service's token names no user, even when the service may ask for ``openid``."""
    svc = service(scope="openid read")
    token = issue(client, svc, scope="openid read")
    _, claims = unverified(token)
    assert claims["scope"] == "openid read" and claims["aud"] == API
    assert_challenge(client.get("/userinfo", headers=bearer(token)), 401, "invalid_token")


def test_disabled_users_token_is_invalid_token(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    set_disabled(alice.id, True)
    assert_challenge(client.get("/userinfo", headers=bearer(tokens["access_token"])), 401, "invalid_token")
