"""Hostile input, case by case (SPEC §9; issue 5): oversized bodies, malformed forms, long ``state``/``nonce``,
and JWT header tricks presented as access tokens.

- A body over 64 KiB is ``413`` with a JSON ``invalid_request`` (RFC 6749 §5.2) on every OAuth endpoint.
- A form body with a malformed percent-escape, invalid UTF-8, NUL or a repeated parameter is ``400
  invalid_request`` (RFC 6749 §3.2, RFC 6750 §3.1), never a guess at what was meant.
- ``/authorize`` parameters are limited to 4096 characters: ``state`` up to the limit travels intact through
  login and consent; above it, or a ``nonce`` above it, the client gets ``invalid_request`` at its redirect URI
  with its ``state`` exactly as sent (RFC 6749 §4.1.2.1).
- Only RS256 signatures by our published keys count (RFC 8725 §2.1, §3.1-§3.2, §3.11; RFC 9068 §4): ``kid``
  naming no key (or a path, or SQL), ``jku``/``x5u`` (never fetched), an embedded ``jwk``, ``alg=none``, HS256
  keyed with our public key, another ``typ`` and an ID token are all refused at userinfo (401 ``invalid_token``,
  RFC 6750 §3.1) and inactive at introspection (RFC 7662 §2.2).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey

from idp.models import User
from tests.oauth_support import API, b64url, basic, service
from tests.oidc_support import bearer, sign_in_and_redeem
from tests.pages.support import Browser, WebApp, assert_redirect_error, auth_params

FORM = "application/x-www-form-urlencoded"
LIMIT = 4096
OVERSIZED = b"token=" + b"x" * (64 * 1024)


@pytest.fixture
def tokens(client: FlaskClient, web: WebApp, alice: User) -> dict[str, Any]:
    """A real access token and ID token of alice, through the code flow."""
    return sign_in_and_redeem(client, web)


def post_form(client: FlaskClient, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(path, data=body, content_type=FORM, headers=headers or {})


def assert_invalid_request(response: Any, status: int = 400) -> dict[str, Any]:
    """RFC 6749 §5.2: a JSON ``invalid_request`` with the status SPEC §9 pins."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["error"] == "invalid_request", body
    return body


# --- request bodies ----------------------------------------------------------------------------------------


@pytest.fixture
def credentials(app: Flask, web: WebApp) -> dict[str, str]:
    """Valid client authentication, so that only the body can be at fault."""
    assert web.key is not None
    return basic(web.client_id, web.key)


BACK_CHANNEL = ["/token", "/introspect", "/revoke"]


@pytest.mark.parametrize("path", [*BACK_CHANNEL, "/userinfo"])
def test_body_over_64_kib_is_413_invalid_request(client: FlaskClient, credentials: dict[str, str], path: str) -> None:
    assert_invalid_request(post_form(client, path, OVERSIZED, credentials), 413)


@pytest.mark.parametrize("path", ["/authorize", "/login", "/consent", "/logout"])
def test_body_over_64_kib_at_a_page_is_413_not_a_crash(client: FlaskClient, path: str) -> None:
    assert_invalid_request(post_form(client, path, OVERSIZED), 413)


MALFORMED_BODIES = {
    "bad-escape": b"token=abc%zz",
    "truncated-escape": b"token=abc%f",
    "lone-percent": b"token=%",
    "invalid-utf8": b"token=%ff%fe",
    "overlong-utf8": b"token=%c0%80",
    "encoded-surrogate": b"token=%ed%a0%80",
    "raw-non-ascii": b"token=\xff",
    "nul": b"token=a%00b",
    "repeated": b"token=a&token=b",
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
@pytest.mark.parametrize("path", BACK_CHANNEL)
def test_malformed_form_is_400_invalid_request(
    client: FlaskClient, credentials: dict[str, str], path: str, body: bytes
) -> None:
    """RFC 6749 §3.2: the endpoint reads a form; one it cannot read exactly is refused, not guessed at."""
    if path == "/token":
        body = b"grant_type=client_credentials&" + body
    assert_invalid_request(post_form(client, path, body, credentials))


def test_malformed_form_at_userinfo_is_400_invalid_request_with_a_bearer_challenge(
    client: FlaskClient, tokens: dict[str, Any]
) -> None:
    """RFC 6750 §3.1: a malformed request is ``invalid_request`` (400), even when it holds a good token."""
    token = tokens["access_token"].encode()
    answers = {}
    for name, body in MALFORMED_BODIES.items():
        body = body.replace(b"token=a", b"token=" + token, 1).replace(b"token=", b"access_token=")
        response = post_form(client, "/userinfo", body)
        challenge = response.headers["WWW-Authenticate"].split(", error_description")[0]
        answers[name] = (response.status_code, response.get_json()["error"], challenge)
    refusal = (400, "invalid_request", 'Bearer realm="idp", error="invalid_request"')
    assert answers == dict.fromkeys(MALFORMED_BODIES, refusal)


def test_valid_form_token_at_userinfo_still_works(client: FlaskClient, tokens: dict[str, Any], alice: User) -> None:
    response = post_form(client, "/userinfo", f"access_token={tokens['access_token']}&other=1".encode())
    assert response.status_code == 200 and response.get_json()["sub"] == alice.id


def test_more_than_64_fields_is_400_invalid_request(client: FlaskClient, credentials: dict[str, str]) -> None:
    body = "grant_type=client_credentials&" + "&".join(f"f{i}=1" for i in range(100))
    assert_invalid_request(post_form(client, "/token", body.encode(), credentials))


def test_hostile_form_leaves_the_service_working(client: FlaskClient, app: Flask) -> None:
    """After every refusal above, a well-formed request in the same process is served as usual."""
    svc = service()
    for body in MALFORMED_BODIES.values():
        post_form(client, "/token", b"grant_type=client_credentials&" + body, basic(svc.client_id, svc.key))
    response = post_form(
        client, "/token", f"grant_type=client_credentials&resource={API}".encode(), basic(svc.client_id, svc.key)
    )
    assert response.status_code == 200, response.get_json()


# --- long state and nonce at /authorize --------------------------------------------------------------------


def test_state_at_the_limit_travels_intact_through_login_and_consent(
    browser: Browser, web: WebApp, alice: User
) -> None:
    state = "s" * (LIMIT - 10) + "~!*()'-._"
    query = browser.code_flow(auth_params(web, state=state, nonce="n" * LIMIT))
    assert query["state"] == state


@pytest.mark.parametrize("size", [LIMIT + 1, 10_000])
def test_state_over_the_limit_is_invalid_request_with_the_state_as_sent(
    browser: Browser, web: WebApp, size: int
) -> None:
    state = "s" * size
    query = assert_redirect_error(
        browser.authorize(auth_params(web, state=state)), web.redirect_uri, "invalid_request", state
    )
    assert query["error_description"] == f"parameter state is longer than {LIMIT} characters"


def test_a_request_too_large_to_carry_through_login_is_refused_at_the_redirect_uri(
    browser: Browser, web: WebApp
) -> None:
    """Each parameter within its limit, together more than the login page can carry back (``return_to``): a clear
    ``invalid_request`` at the client, not a user stranded after signing in."""
    state = "s" * LIMIT
    params = auth_params(web, state=state, nonce="é" * LIMIT, login_hint="ü" * LIMIT)
    query = assert_redirect_error(browser.authorize(params), web.redirect_uri, "invalid_request", state)
    assert query["error_description"] == "the authorization request is too large"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nonce_over_the_limit_is_invalid_request(browser: Browser, web: WebApp, method: str) -> None:
    params = auth_params(web, nonce="n" * 10_000)
    query = assert_redirect_error(
        browser.authorize(params, method), web.redirect_uri, "invalid_request", params["state"]
    )
    assert query["error_description"] == f"parameter nonce is longer than {LIMIT} characters"


# --- JWT header tricks -------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Serves the attacker's JWKS and certificate, and remembers every request (there must be none)."""

    documents: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.documents.get(self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class Attacker:
    """A key pair of our own making, published where a naive verifier might look (``jku``, ``x5u``)."""

    def __init__(self, base_url: str, documents: dict[str, bytes]) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = RSAKey.import_key(self.private.public_key())
        self.jwk = {**public.as_dict(private=False), "kid": "attacker", "alg": "RS256", "use": "sig"}
        self.jku = f"{base_url}/jwks.json"
        self.x5u = f"{base_url}/cert.pem"
        documents["/jwks.json"] = json.dumps({"keys": [self.jwk]}).encode()
        documents["/cert.pem"] = self._certificate().public_bytes(serialization.Encoding.PEM)

    def _certificate(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.private, hashes.SHA256())
        )

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        signing_input = f"{b64url(header)}.{b64url(claims)}".encode()
        signature = self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{b64url(signature)}"


@pytest.fixture
def attacker() -> Iterator[tuple[Attacker, list[str]]]:
    documents: dict[str, bytes] = {}
    hits: list[str] = []
    handler = type("Handler", (_Recorder,), {"documents": documents, "hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Attacker(f"http://127.0.0.1:{server.server_address[1]}", documents), hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _json_part(header), _json_part(payload)


def _json_part(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def forged_tokens(app: Flask, client: FlaskClient, attacker: Attacker, tokens: dict[str, Any]) -> dict[str, str]:
    """Each trick applied to the claims of alice's real, live access token (so only the header is wrong)."""
    header, claims = _parts(tokens["access_token"])
    real_signature = tokens["access_token"].rsplit(".", 1)[1]
    view = app.extensions["idp.keyring"].current()
    ours = {"alg": "RS256", "typ": "at+jwt", "kid": view.active_kid}
    public_pem = view.signing_key.as_pem(private=False)
    public_jwk = json.dumps(next(k for k in client.get("/jwks").get_json()["keys"] if k["kid"] == view.active_kid))
    return {
        "kid-unknown": attacker.sign({**ours, "kid": "no-such-key"}, claims),
        "kid-our-key-other-signer": attacker.sign(ours, claims),
        "kid-path-traversal": attacker.sign({**ours, "kid": "../../../../etc/passwd"}, claims),
        "kid-sql": attacker.sign({**ours, "kid": "' OR '1'='1' --"}, claims),
        "jku": attacker.sign({**ours, "kid": "attacker", "jku": attacker.jku}, claims),
        "jku-with-our-kid": attacker.sign({**ours, "jku": attacker.jku}, claims),
        "x5u": attacker.sign({**ours, "kid": "attacker", "x5u": attacker.x5u}, claims),
        "embedded-jwk": attacker.sign({**ours, "kid": "attacker", "jwk": attacker.jwk}, claims),
        "embedded-jwk-with-our-kid": attacker.sign({**ours, "jwk": attacker.jwk}, claims),
        "alg-none": f"{b64url({**ours, 'alg': 'none'})}.{b64url(claims)}.",
        "alg-None-with-signature": f"{b64url({**ours, 'alg': 'None'})}.{b64url(claims)}.{real_signature}",
        "hs256-public-pem": _hs256({**ours, "alg": "HS256"}, claims, public_pem),
        "hs256-public-jwk": _hs256({**ours, "alg": "HS256"}, claims, public_jwk.encode()),
        "hs256-jwks-document": _hs256({**ours, "alg": "HS256"}, claims, client.get("/jwks").data),
        "typ-jwt": view.sign(claims, typ="JWT"),
        "typ-missing": view.sign(claims, typ=""),
        "typ-application-jwt": view.sign(claims, typ="application/jwt"),
        "id-token": tokens["id_token"],
        "original-header-other-signer": attacker.sign(header, claims),
    }


TRICKS = [
    "kid-unknown",
    "kid-our-key-other-signer",
    "kid-path-traversal",
    "kid-sql",
    "jku",
    "jku-with-our-kid",
    "x5u",
    "embedded-jwk",
    "embedded-jwk-with-our-kid",
    "alg-none",
    "alg-None-with-signature",
    "hs256-public-pem",
    "hs256-public-jwk",
    "hs256-jwks-document",
    "typ-jwt",
    "typ-missing",
    "typ-application-jwt",
    "id-token",
    "original-header-other-signer",
]


def test_the_real_token_is_accepted_so_the_refusals_below_mean_something(
    client: FlaskClient, web: WebApp, tokens: dict[str, Any]
) -> None:
    assert web.key is not None
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    introspection = post_form(
        client, "/introspect", f"token={tokens['access_token']}".encode(), basic(web.client_id, web.key)
    )
    assert introspection.get_json()["active"] is True


def _userinfo_refusal(client: FlaskClient, token: str) -> str | None:
    """What is wrong with userinfo's answer to ``token``, or ``None`` if it is the RFC 6750 §3.1 refusal."""
    for response in (
        client.get("/userinfo", headers=bearer(token)),
        post_form(client, "/userinfo", f"access_token={token}".encode()),
    ):
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.startswith('Bearer realm="idp", error="invalid_token"'):
            return f"{response.status_code} {challenge!r} {response.get_data(as_text=True)[:200]}"
        if response.get_json()["error"] != "invalid_token":
            return response.get_data(as_text=True)
    return None


def test_jwt_header_tricks_are_invalid_token_at_userinfo_and_inactive_at_introspection(
    app: Flask, client: FlaskClient, web: WebApp, tokens: dict[str, Any], attacker: tuple[Attacker, list[str]]
) -> None:
    """Every forged token of :func:`forged_tokens`, at both endpoints; the report names each trick that worked."""
    assert web.key is not None
    forged = forged_tokens(app, client, attacker[0], tokens)
    assert sorted(forged) == sorted(TRICKS)
    accepted: dict[str, str] = {}
    for trick, token in forged.items():
        problem = _userinfo_refusal(client, token)
        if problem:
            accepted[f"userinfo {trick}"] = problem
        introspection = post_form(client, "/introspect", f"token={token}".encode(), basic(web.client_id, web.key))
        if introspection.status_code != 200 or introspection.get_json() != {"active": False}:
            accepted[f"introspect {trick}"] = introspection.get_data(as_text=True)[:200]
    assert accepted == {}
    assert attacker[1] == [], "a token header made idp fetch a URL"
