"""``private_key_jwt`` client authentication (RFC 7523 §2.2, §3; OIDC Core §9) with a registered JWKS file.

The client signs an assertion with ``iss`` = ``sub`` = its client id, ``aud`` = the token endpoint (or the
issuer), a short ``exp`` and a ``jti`` that is accepted once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select

from idp.extensions import db
from idp.models import UsedAssertion
from idp.services.clients import ClientSpec, create_client
from tests.oauth_support import API, CC, assert_error, assert_no_store, b64url, basic, service

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class FromNow:
    """A time claim relative to when the assertion is signed: parametrize values are built at collection, which
    may be many minutes before the test runs."""

    seconds: int


class JwtClient:
    """A registered ``private_key_jwt`` client holding its private key, as a service would."""

    def __init__(self, client_id: str, key: RSAKey, issuer: str) -> None:
        self.client_id = client_id
        self.key = key
        self.issuer = issuer

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": f"{self.issuer}/token",
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        claims.update({k: now + v.seconds if isinstance(v, FromNow) else v for k, v in overrides.items()})
        return {k: v for k, v in claims.items() if v is not None}

    def assertion(self, key: RSAKey | None = None, alg: str = "RS256", **overrides: Any) -> str:
        signer = key or self.key
        return jwt.encode({"alg": alg, "kid": self.key.kid}, self.claims(**overrides), signer, algorithms=[alg])

    def form(self, assertion: str, **extra: str) -> dict[str, str]:
        return {**CC, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **extra}


@pytest.fixture
def jwt_client(app: Flask, tmp_path: Path) -> JwtClient:
    key = RSAKey.generate_key(2048, auto_kid=True)
    jwks_file = tmp_path / "client-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client, api_key = create_client(
        ClientSpec(
            name="signer",
            grant_types=["client_credentials"],
            token_endpoint_auth_method="private_key_jwt",
            jwks_file=str(jwks_file),
            audiences=[API],
            scope="read",
        )
    )
    assert api_key is None  # a private_key_jwt client holds no API key
    return JwtClient(client.id, key, app.config["IDP_ISSUER"])


@pytest.mark.parametrize(
    "aud",
    ["{issuer}/token", "{issuer}", ["https://elsewhere.example.com", "{issuer}/token"]],
    ids=["token-endpoint", "issuer", "list"],
)
def test_valid_assertion_gets_a_token(client: FlaskClient, jwt_client: JwtClient, aud: Any) -> None:
    aud = (
        [a.format(issuer=jwt_client.issuer) for a in aud]
        if isinstance(aud, list)
        else aud.format(issuer=jwt_client.issuer)
    )
    response = client.post(
        "/token", data=jwt_client.form(jwt_client.assertion(aud=aud), client_id=jwt_client.client_id)
    )
    assert response.status_code == 200, response.get_json()
    assert_no_store(response)
    assert response.get_json()["scope"] == "read"
    assert "refresh_token" not in response.get_json()


def test_client_id_parameter_is_optional(client: FlaskClient, jwt_client: JwtClient) -> None:
    """RFC 7523 §3: the client is identified by the assertion's ``sub`` when ``client_id`` is absent."""
    response = client.post("/token", data=jwt_client.form(jwt_client.assertion()))
    assert response.status_code == 200, response.get_json()


def test_fractional_exp_is_a_valid_numeric_date(client: FlaskClient, jwt_client: JwtClient) -> None:
    """RFC 7519 §2: NumericDate may be non-integer."""
    response = client.post("/token", data=jwt_client.form(jwt_client.assertion(exp=time.time() + 60.5)))
    assert response.status_code == 200, response.get_json()


def test_replayed_assertion_is_invalid_client(client: FlaskClient, jwt_client: JwtClient) -> None:
    form = jwt_client.form(jwt_client.assertion())
    assert client.post("/token", data=form).status_code == 200
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_jti_is_remembered_as_long_as_the_assertion_would_be_accepted(
    client: FlaskClient, jwt_client: JwtClient
) -> None:
    exp = int(time.time()) + 60
    assert client.post("/token", data=jwt_client.form(jwt_client.assertion(exp=exp, jti="once"))).status_code == 200
    row = db.session.scalars(select(UsedAssertion).where(UsedAssertion.jti == "once")).one()
    assert row.expires_at.timestamp() >= exp + 30  # the clock leeway the assertion was accepted with


def test_same_jti_in_a_fresh_assertion_is_invalid_client(client: FlaskClient, jwt_client: JwtClient) -> None:
    assert client.post("/token", data=jwt_client.form(jwt_client.assertion(jti="fixed"))).status_code == 200
    again = jwt_client.form(jwt_client.assertion(jti="fixed", iat=int(time.time()) + 1))
    assert_error(client.post("/token", data=again), 401, "invalid_client")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://elsewhere.example.com/token"},
        {"aud": "{issuer}/introspect-not"},
        {"aud": None},
        {"exp": FromNow(-120)},
        {"exp": FromNow(3600)},
        {"exp": None},
        {"exp": "soon"},
        {"exp": float("nan")},
        {"exp": True},
        {"nbf": FromNow(600)},
        {"jti": None},
        {"jti": "x" * 256},
        {"iss": "someone-else"},
        {"sub": "someone-else"},
    ],
    ids=[
        "wrong-aud",
        "near-miss-aud",
        "no-aud",
        "expired",
        "too-long-lived",
        "no-exp",
        "string-exp",
        "nan-exp",
        "bool-exp",
        "not-yet-valid",
        "no-jti",
        "huge-jti",
        "wrong-iss",
        "wrong-sub",
    ],
)
def test_assertion_with_bad_claims_is_invalid_client(
    client: FlaskClient, jwt_client: JwtClient, overrides: dict[str, Any]
) -> None:
    if isinstance(overrides.get("aud"), str):
        overrides = {"aud": overrides["aud"].format(issuer=jwt_client.issuer)}
    form = jwt_client.form(jwt_client.assertion(**overrides), client_id=jwt_client.client_id)
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_assertion_signed_by_another_key_is_invalid_client(client: FlaskClient, jwt_client: JwtClient) -> None:
    stranger = RSAKey.generate_key(2048)
    assert_error(client.post("/token", data=jwt_client.form(jwt_client.assertion(key=stranger))), 401, "invalid_client")


def test_unsigned_assertion_is_invalid_client(client: FlaskClient, jwt_client: JwtClient) -> None:
    header = {"alg": "none", "kid": jwt_client.key.kid, "typ": "JWT"}
    assertion = f"{b64url(header)}.{b64url(jwt_client.claims())}."
    assert_error(client.post("/token", data=jwt_client.form(assertion)), 401, "invalid_client")


def test_hs256_assertion_keyed_with_the_public_key_is_invalid_client(
    client: FlaskClient, jwt_client: JwtClient
) -> None:
    """The algorithm-confusion attack: HMAC keyed with the (public) RSA key the server holds."""
    header = {"alg": "HS256", "kid": jwt_client.key.kid, "typ": "JWT"}
    signing_input = f"{b64url(header)}.{b64url(jwt_client.claims())}"
    public_pem = jwt_client.key.as_pem(private=False)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assertion = f"{signing_input}.{b64url(signature)}"
    assert_error(client.post("/token", data=jwt_client.form(assertion)), 401, "invalid_client")


@pytest.mark.parametrize("assertion", ["", "not-a-jwt", "a.b.c", "e30.e30.e30"])
def test_malformed_assertion_is_invalid_client(client: FlaskClient, jwt_client: JwtClient, assertion: str) -> None:
    form = jwt_client.form(assertion, client_id=jwt_client.client_id)
    if not assertion:
        form["client_assertion"] = "x"  # an empty value counts as omitted; send junk instead
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_wrong_assertion_type_is_invalid_client(client: FlaskClient, jwt_client: JwtClient) -> None:
    form = jwt_client.form(jwt_client.assertion(), client_assertion_type="urn:ietf:params:oauth:saml2-bearer")
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_client_id_parameter_must_match_the_assertion(client: FlaskClient, jwt_client: JwtClient) -> None:
    other = service()
    form = jwt_client.form(jwt_client.assertion(), client_id=other.client_id)
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_api_key_client_cannot_authenticate_with_an_assertion(client: FlaskClient, jwt_client: JwtClient) -> None:
    """A client authenticates only with the method it registered."""
    svc = service()
    claims = {"iss": svc.client_id, "sub": svc.client_id}
    form = jwt_client.form(jwt_client.assertion(**claims), client_id=svc.client_id)
    assert_error(client.post("/token", data=form), 401, "invalid_client")


def test_private_key_jwt_client_cannot_use_basic(client: FlaskClient, jwt_client: JwtClient) -> None:
    response = client.post("/token", data=CC, headers=basic(jwt_client.client_id, "idp_0123456789abcdef_" + "A" * 43))
    assert_error(response, 401, "invalid_client")


def test_assertion_authenticates_at_introspection_with_the_issuer_as_audience(
    client: FlaskClient, jwt_client: JwtClient
) -> None:
    token = client.post("/token", data=jwt_client.form(jwt_client.assertion())).get_json()["access_token"]
    form = {
        "token": token,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt_client.assertion(aud=jwt_client.issuer),
    }
    response = client.post("/introspect", data=form)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["active"] is True
