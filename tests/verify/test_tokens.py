"""``TokenVerifier.verify`` against a live idp: what it accepts and every way a token is refused (SPEC §11).

Accepted: RFC 9068 access tokens from the live server's ``/token``. Refused, each as :class:`InvalidToken` with an
RFC 6750 §3 ``invalid_token`` challenge: another audience or issuer, expiry (RFC 7519 §4.1.4), ``alg=none`` and
HS256 with our public key as the secret (RFC 8725 §2.1, §3.1), an ID token, key-locating headers (RFC 8725 §3.10),
another key under our ``kid`` or an unknown one. A missing scope is :class:`InsufficientScope` (403).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from flask import Flask

from idp.models import User
from idp.verify import InsufficientScope, InvalidToken, VerificationError
from tests.oauth_support import Service, service
from tests.oidc_support import LiveBrowser, authorize, live_redeem
from tests.pages.support import WebApp, user, web_app
from tests.verify.support import (
    API,
    OTHER_API,
    TIMEOUT,
    Idp,
    attacker_key,
    b64url,
    hs256,
    rs256,
    segments,
    unverified,
)


@pytest.fixture
def idp(shared_idp: Idp) -> Idp:
    return shared_idp


@pytest.fixture
def svc(shared_svc: Service) -> Service:
    return shared_svc


@pytest.fixture
def app(shared_app: Flask) -> Flask:
    return shared_app


def assert_invalid(idp: Idp, token: str, description: str | None = None, **options: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        idp.verifier(**options).verify(token)
    challenge = caught.value.www_authenticate()
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert caught.value.status_code == 401
    if description is not None:
        assert caught.value.description == description
    assert token not in challenge and token.split(".")[1] not in str(caught.value)
    return caught.value


def claims_now(idp: Idp, svc: Service, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": idp.issuer,
        "sub": svc.client_id,
        "aud": API,
        "client_id": svc.client_id,
        "scope": "items:read",
        "iat": now,
        "exp": now + 300,
        "jti": "forged-" + str(now),
    }
    return {k: v for k, v in {**claims, **overrides}.items() if v is not None}


def forged(idp: Idp, svc: Service, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A token signed with the server's real active key: only the forged part can be what is refused."""
    kid, key = idp.signing_key()
    return rs256(key, {"typ": "at+jwt", "kid": kid, **(header or {})}, claims_now(idp, svc, **claims))


# --- accepted -----------------------------------------------------------------------------------------------


def test_a_token_from_the_server_is_accepted_with_its_claims(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key, scope="items:read")
    claims = idp.verifier().verify(token, required_scopes=["items:read"])
    assert claims == unverified(token)[1]
    assert claims["iss"] == idp.issuer and claims["aud"] == API
    assert claims["sub"] == claims["client_id"] == svc.client_id
    assert claims["scope"] == "items:read"


def test_every_required_scope_must_be_granted(idp: Idp, svc: Service) -> None:
    verifier = idp.verifier()
    both = idp.token(svc.client_id, svc.key)  # without scope: all of the client's
    assert verifier.verify(both, ["items:read", "items:write"])["scope"] == "items:read items:write"
    assert verifier.verify(both, "items:write items:read")["jti"]
    read_only = idp.token(svc.client_id, svc.key, scope="items:read")
    with pytest.raises(InsufficientScope) as caught:
        verifier.verify(read_only, ["items:read", "items:write"])
    assert caught.value.status_code == 403
    assert caught.value.www_authenticate() == (
        'Bearer error="insufficient_scope", error_description="the token lacks a required scope", '
        'scope="items:read items:write"'
    )
    assert isinstance(caught.value, VerificationError) and not isinstance(caught.value, InvalidToken)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_is_compared_case_insensitively_with_or_without_the_application_prefix(
    idp: Idp, svc: Service, typ: str
) -> None:
    """RFC 9068 §4 and RFC 7515 §4.1.9."""
    assert idp.verifier().verify(forged(idp, svc, {"typ": typ}))["sub"] == svc.client_id


def test_audience_may_be_a_list_and_the_verifier_may_accept_several(idp: Idp, svc: Service) -> None:
    listed = forged(idp, svc, aud=["https://a.example", API])
    assert idp.verifier().verify(listed)["aud"] == ["https://a.example", API]
    other = idp.token(svc.client_id, svc.key, resource=OTHER_API)
    assert idp.verifier(audience=[API, OTHER_API]).verify(other)["aud"] == OTHER_API
    assert_invalid(idp, forged(idp, svc, aud=["https://a.example"]), "the token is meant for another audience")


# --- refused: claims ----------------------------------------------------------------------------------------


def test_a_token_for_another_audience_is_refused(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key, resource=OTHER_API)
    assert_invalid(idp, token, "the token is meant for another audience")


def test_a_token_from_another_issuer_is_refused_even_signed_by_our_key(idp: Idp, svc: Service) -> None:
    assert_invalid(idp, forged(idp, svc, iss="https://evil.example"), "the token was issued by another issuer")
    assert_invalid(idp, forged(idp, svc, iss=idp.issuer + "/"), "the token was issued by another issuer")


def test_an_expired_token_from_the_server_is_refused(idp: Idp, app: Any) -> None:
    short = service(scope="items:read", access_token_ttl=1)
    token = idp.token(short.client_id, short.key)
    claims = unverified(token)[1]
    assert claims["exp"] == claims["iat"] + 1
    assert idp.verifier(leeway=0).verify(token)["jti"] == claims["jti"]
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.1)
    assert_invalid(idp, token, "the token has expired", leeway=0)


def test_leeway_bounds_exp_nbf_and_iat(idp: Idp, svc: Service) -> None:
    now = int(time.time())
    just_expired = forged(idp, svc, iat=now - 100, exp=now - 10)
    assert idp.verifier(leeway=30).verify(just_expired)
    assert_invalid(idp, just_expired, "the token has expired", leeway=5)
    not_yet = forged(idp, svc, nbf=now + 10)
    assert idp.verifier(leeway=30).verify(not_yet)
    assert_invalid(idp, not_yet, "the token is not valid yet", leeway=5)
    from_the_future = forged(idp, svc, iat=now + 60, exp=now + 600)
    assert_invalid(idp, from_the_future, "the token was issued in the future", leeway=30)


@pytest.mark.parametrize("claim", ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
def test_each_claim_rfc_9068_requires_must_be_present(idp: Idp, svc: Service, claim: str) -> None:
    """RFC 9068 §2.2."""
    assert_invalid(idp, forged(idp, svc, **{claim: None}), f"the token lacks the {claim} claim")


@pytest.mark.parametrize(
    "claims",
    [{"exp": "never"}, {"exp": True}, {"iat": None, "nbf": "soon"}, {"aud": {"x": API}}, {"scope": ["items:read"]}],
    ids=["exp-string", "exp-bool", "nbf-string", "aud-object", "scope-list"],
)
def test_malformed_claim_values_are_refused(idp: Idp, svc: Service, claims: dict[str, Any]) -> None:
    assert_invalid(idp, forged(idp, svc, **claims))


# --- refused: header and signature --------------------------------------------------------------------------


def test_alg_none_is_refused(idp: Idp, svc: Service) -> None:
    """RFC 8725 §2.1: an unsecured JWS must not be accepted, whatever its signature part holds."""
    token = idp.token(svc.client_id, svc.key)
    header, claims = unverified(token)
    signature = token.split(".")[2]
    for alg in ("none", "None", "NONE"):
        unsigned = segments({**header, "alg": alg}, claims)
        assert_invalid(idp, unsigned + ".", "the token is not a signed JWT")
        assert_invalid(idp, unsigned + "." + signature, "the token's algorithm is not accepted")


def test_hs256_signed_with_our_public_key_is_refused(idp: Idp, svc: Service) -> None:
    """RFC 8725 §3.1 algorithm confusion: the public key, in every encoding an HMAC library might be given."""
    header, claims = unverified(idp.token(svc.client_id, svc.key))
    jwks = requests.get(idp.server.url + "/jwks", timeout=TIMEOUT).json()
    (published,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public = idp.signing_key()[1].public_key()
    secrets = [
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(published).encode(),
        base64.urlsafe_b64decode(published["n"] + "=="),
    ]
    for secret in secrets:
        assert_invalid(idp, hs256(secret, header, claims), "the token's algorithm is not accepted")


@pytest.mark.parametrize("alg", ["HS256", "RS384", "RS512", "PS256", "ES256", "rs256", ""])
def test_any_algorithm_but_rs256_is_refused(idp: Idp, svc: Service, alg: str) -> None:
    header, claims = unverified(idp.token(svc.client_id, svc.key))
    _, key = idp.signing_key()
    token = rs256(key, {}, claims).split(".")
    token[0] = b64url(json.dumps({**header, "alg": alg}).encode())
    assert_invalid(idp, ".".join(token), "the token's algorithm is not accepted")


def test_an_id_token_presented_as_an_access_token_is_refused(idp: Idp, app: Any) -> None:
    """RFC 9068 §4 ``typ`` check: an ID token is refused even by a verifier whose audience is the RP's id."""
    webapp: WebApp = web_app()
    alice: User = user("alice")
    auth = authorize(LiveBrowser(idp.server.url), webapp)
    response = live_redeem(idp.server.url, webapp, auth)
    assert response.status_code == 200, response.text
    id_token, access_token = response.json()["id_token"], response.json()["access_token"]
    assert unverified(id_token)[1]["sub"] == alice.id

    assert_invalid(idp, id_token, "the token is not an access token", audience=webapp.client_id)
    assert_invalid(idp, id_token, "the token is not an access token")
    # The access token of the same response is what a resource server accepts.
    user_claims = idp.verifier(audience=unverified(access_token)[1]["aud"]).verify(access_token)
    assert user_claims["sub"] == alice.id


@pytest.mark.parametrize("parameter", ["jku", "x5u", "jwk", "x5c"])
def test_a_key_locating_header_is_refused_and_never_followed(idp: Idp, svc: Service, parameter: str) -> None:
    """RFC 8725 §3.10: even a token our own key signed is refused when it names a key by URL or inline."""
    rogue = attacker_key()
    kid, _ = idp.signing_key()
    jwk = {"kty": "RSA", "kid": kid, "n": b64url(rogue.public_key().public_numbers().n.to_bytes(256, "big"))}
    values = {
        "jku": idp.front.url + "/attacker-jwks",
        "x5u": idp.front.url + "/attacker-cert",
        "jwk": {**jwk, "e": "AQAB"},
        "x5c": ["MIIB"],
    }
    ours = forged(idp, svc, {parameter: values[parameter]})
    assert_invalid(idp, ours, "the token carries a header parameter that is not accepted")
    theirs = rs256(rogue, {"typ": "at+jwt", "kid": kid, parameter: values[parameter]}, claims_now(idp, svc))
    assert_invalid(idp, theirs, "the token carries a header parameter that is not accepted")
    assert idp.front.requests["/attacker-jwks"] == idp.front.requests["/attacker-cert"] == 0


def test_crit_header_is_refused(idp: Idp, svc: Service) -> None:
    """RFC 7515 §4.1.11: we understand no extension, so any ``crit`` makes the token invalid."""
    assert_invalid(idp, forged(idp, svc, {"crit": ["exp"]}))


def test_a_token_signed_by_another_key_under_our_kid_is_refused(idp: Idp, svc: Service) -> None:
    kid, _ = idp.signing_key()
    token = rs256(attacker_key(), {"typ": "at+jwt", "kid": kid}, claims_now(idp, svc))
    assert_invalid(idp, token, "the token's signature is invalid")


def test_a_token_signed_by_another_key_under_an_unknown_kid_is_refused(idp: Idp, svc: Service) -> None:
    verifier = idp.verifier()
    before = idp.front.jwks_fetches
    verifier.verify(idp.token(svc.client_id, svc.key))
    token = rs256(attacker_key(), {"typ": "at+jwt", "kid": "attacker"}, claims_now(idp, svc))
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.description == "the token's key is not published by the issuer"
    assert idp.front.jwks_fetches == before + 1  # fetched less than 30 s ago: no refetch for the unknown kid
    assert verifier.jwks_fetches == 1


def test_a_tampered_payload_is_refused(idp: Idp, svc: Service) -> None:
    header, payload, signature = idp.token(svc.client_id, svc.key, scope="items:read").split(".")
    claims = unverified(f"{header}.{payload}.{signature}")[1]
    widened = b64url(json.dumps({**claims, "scope": "items:read items:write"}).encode())
    assert_invalid(idp, f"{header}.{widened}.{signature}", "the token's signature is invalid")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.",
        "!!!.e30.e30",
        "eyJhbGciOiJSUzI1NiJ9.e30.sig with space",
        "W10.e30.AAAA",  # header is a JSON array
        b64url(b'{"alg":"RS256","alg":"none"}') + ".e30.AAAA",  # duplicate header member
        "x" * 20000,
        b64url(b"[" * 5000) + ".e30.eA",  # nested deeper than the JSON parser's recursion limit
        b64url(b'{"alg":"RS256","typ":"at+jwt","kid":"k"}') + "." + b64url(b'{"a":' * 5000) + ".eA",
    ],
    ids=[
        "empty",
        "one-part",
        "two-parts",
        "four-parts",
        "no-signature",
        "bad-chars",
        "space",
        "array",
        "dup",
        "huge",
        "deep-header",
        "deep-claims",
    ],
)
def test_malformed_tokens_are_invalid_token_never_another_exception(idp: Idp, token: str) -> None:
    verifier = idp.verifier()
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert verifier.jwks_fetches == 0  # nothing fetched for a token that cannot be one
