"""PKCE at the token endpoint (RFC 7636 §4.5-§4.6, RFC 9700 §2.1.1, SPEC §9): S256 only, the verifier checked
for its §4.1 form and compared in constant time; a missing or wrong verifier and a downgrade are
``invalid_grant``, and none of them consumes the code."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.extensions import db
from idp.models import AuthorizationCode
from idp.protocol import rfc7636
from idp.services.codes import digest
from tests.oauth_support import assert_error
from tests.oidc_support import (
    FULL_SCOPE,
    Authorization,
    FlaskBrowser,
    authorization_url,
    new_verifier,
    public_app,
    redeem,
    s256,
    sign_in,
)
from tests.pages.support import WebApp, user, web_app

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.fixture(params=["confidential", "public"])
def webapp(request: pytest.FixtureRequest, app: Flask) -> WebApp:
    user()
    return web_app() if request.param == "confidential" else public_app()


def code_for(client: FlaskClient, webapp: WebApp, challenge: str, verifier: str = "") -> Authorization:
    """A code issued for ``challenge`` (whatever verifier it was computed from)."""
    location = sign_in(FlaskBrowser(client), authorization_url(webapp, challenge, FULL_SCOPE, "st", None))
    callback = parse_qs(urlsplit(location).query)
    assert "code" in callback, location
    return Authorization(callback["code"][0], verifier, "st", None)


def assert_unconsumed(code: str) -> None:
    db.session.expire_all()
    row = db.session.get(AuthorizationCode, digest(code))
    assert row is not None and row.consumed_at is None


def test_rfc_example_verifier_matches_its_challenge() -> None:
    assert rfc7636.s256(RFC_VERIFIER) == RFC_CHALLENGE == s256(RFC_VERIFIER)
    assert rfc7636.verify(RFC_VERIFIER, RFC_CHALLENGE)


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "=", "a" * 42 + " ", "a" * 42 + "é", "a" * 43 + "\n", ""],
)
def test_malformed_verifier_fails_even_against_its_own_challenge(verifier: str) -> None:
    """§4.1: 43-128 unreserved characters. The challenge computed from a malformed verifier does not help."""
    own_challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert not rfc7636.is_valid_verifier(verifier)
    assert not rfc7636.verify(verifier, own_challenge)


@pytest.mark.parametrize("challenge", [RFC_CHALLENGE + "\n", RFC_CHALLENGE[:-1], RFC_CHALLENGE + "A", "+" * 43])
def test_malformed_challenge_is_refused(challenge: str) -> None:
    assert not rfc7636.is_valid_challenge(challenge)


def test_correct_verifier_redeems(client: FlaskClient, webapp: WebApp) -> None:
    verifier = new_verifier()
    auth = code_for(client, webapp, s256(verifier), verifier)
    assert redeem(client, webapp, auth).status_code == 200


def test_missing_verifier_is_invalid_grant(client: FlaskClient, webapp: WebApp) -> None:
    """The downgrade: the code was issued with a challenge, the token request leaves the verifier out."""
    verifier = new_verifier()
    auth = code_for(client, webapp, s256(verifier), verifier)
    body = assert_error(redeem(client, webapp, auth, code_verifier=None), 400, "invalid_grant")
    assert "code_verifier" in body["error_description"]
    assert_unconsumed(auth.code)


def test_wrong_verifier_is_invalid_grant_and_does_not_consume_the_code(client: FlaskClient, webapp: WebApp) -> None:
    verifier = new_verifier()
    auth = code_for(client, webapp, s256(verifier), verifier)
    assert_error(redeem(client, webapp, auth, code_verifier=new_verifier()), 400, "invalid_grant")
    assert_unconsumed(auth.code)
    assert redeem(client, webapp, auth).status_code == 200


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "=", "a" * 42 + "%", "a" * 43 + "\n"],
    ids=["too-short", "too-long", "plus", "equals", "percent", "trailing-newline"],
)
def test_malformed_verifier_is_invalid_grant(client: FlaskClient, webapp: WebApp, verifier: str) -> None:
    """Even when the challenge was computed from exactly that malformed verifier."""
    auth = code_for(client, webapp, s256(verifier), verifier)
    assert_error(redeem(client, webapp, auth), 400, "invalid_grant")
    assert_unconsumed(auth.code)


def test_plain_method_does_not_work_at_the_token_endpoint(client: FlaskClient, webapp: WebApp) -> None:
    """A client that sent ``challenge = verifier`` (the ``plain`` transform) labelled S256 cannot redeem."""
    verifier = new_verifier()[:43]
    auth = code_for(client, webapp, verifier, verifier)
    assert_error(redeem(client, webapp, auth), 400, "invalid_grant")


def test_verifier_without_a_challenge_is_invalid_grant(client: FlaskClient, webapp: WebApp) -> None:
    """The other downgrade: a code stored without a challenge (none can be issued so; forced here) is refused."""
    verifier = new_verifier()
    auth = code_for(client, webapp, s256(verifier), verifier)
    db.session.execute(update(AuthorizationCode).values(code_challenge=""))
    db.session.commit()
    assert_error(redeem(client, webapp, auth), 400, "invalid_grant")
    assert_unconsumed(auth.code)


@pytest.mark.parametrize("method", ["plain", "S512", None])
def test_authorization_without_s256_is_refused_before_any_code(
    client: FlaskClient, webapp: WebApp, method: str | None
) -> None:
    verifier = new_verifier()
    url = authorization_url(webapp, s256(verifier), FULL_SCOPE, "st", None)
    url = url.replace("code_challenge_method=S256", f"code_challenge_method={method}" if method else "")
    response = client.get(url)
    assert response.status_code == 302
    callback = parse_qs(urlsplit(response.headers["Location"]).query)
    assert callback["error"] == ["invalid_request"] and "code" not in callback
