"""Helpers shared by the token-side OIDC tests: PKCE values, a browser that walks authorize → login → consent →
callback (in-process or against a live server), token, refresh and JWT checks, and the concurrency checks.

Web apps, the user and ``audit_events`` are those of ``tests/pages/support.py`` (and the ``web`` and ``alice``
fixtures); the browser here also drives a live server, so the races and the end-to-end test can use it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp import create_app
from idp.extensions import db
from idp.models import Grant, GrantAccessToken, RefreshToken, RevokedToken
from tests.conftest import IsolatedClient
from tests.oauth_support import basic
from tests.pages.support import PASSWORD, WebApp, audit_events, web_app

OTHER_REDIRECT_URI = "https://app.example.com/other-cb"
FULL_SCOPE = "openid profile email offline_access"
TIMEOUT = 10
_FIELD = re.compile(r'<input[^>]*\bname="(csrf_token|return_to)"[^>]*\bvalue="([^"]*)"')


def public_app(**spec: Any) -> WebApp:
    """A public client (no secret, ``token_endpoint_auth_method=none``) that may refresh."""
    return web_app(public=True, name="Native App", **spec)


def token_auth(app: WebApp, data: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Body and headers of a token request: RFC 6749 §2.3.1 ``client_secret_basic``, or for a public client
    §2.1 ``client_id`` in the body."""
    if app.key is None:
        return {**data, "client_id": app.client_id}, {}
    return data, basic(app.client_id, app.key)


def s256(verifier: str) -> str:
    """RFC 7636 §4.2, computed here independently of idp."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6 for RS256, computed here independently of idp."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


@contextmanager
def app_with(settings: dict[str, str], **overrides: str) -> Iterator[tuple[Flask, FlaskClient]]:
    """Like the ``app`` and ``client`` fixtures, on the same installation with some settings overridden."""
    application = create_app({**settings, **overrides})
    application.test_client_class = IsolatedClient
    with application.app_context():
        try:
            yield application, application.test_client()
        finally:
            db.session.remove()
            db.engine.dispose()


# --- the browser part of the flow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    status: int
    location: str | None
    text: str


class Browser(Protocol):
    def get(self, url: str) -> Page: ...
    def post(self, url: str, data: dict[str, str]) -> Page: ...


class FlaskBrowser:
    """The Flask test client as a browser (it keeps cookies); never follows redirects."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def get(self, url: str) -> Page:
        response = self.client.get(url)
        return Page(response.status_code, response.headers.get("Location"), response.get_data(as_text=True))

    def post(self, url: str, data: dict[str, str]) -> Page:
        response = self.client.post(url, data=data)
        return Page(response.status_code, response.headers.get("Location"), response.get_data(as_text=True))


class LiveBrowser:
    """A ``requests.Session`` against a live server as a browser; never follows redirects."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url
        self.session = session or requests.Session()

    def get(self, url: str) -> Page:
        response = self.session.get(urljoin(self.base_url, url), allow_redirects=False, timeout=TIMEOUT)
        return Page(response.status_code, response.headers.get("Location"), response.text)

    def post(self, url: str, data: dict[str, str]) -> Page:
        response = self.session.post(urljoin(self.base_url, url), data=data, allow_redirects=False, timeout=TIMEOUT)
        return Page(response.status_code, response.headers.get("Location"), response.text)


def form_fields(page_html: str) -> dict[str, str]:
    """The hidden ``csrf_token`` and ``return_to`` of a login or consent form."""
    found = {name: html.unescape(value) for name, value in _FIELD.findall(page_html)}
    assert set(found) == {"csrf_token", "return_to"}, page_html[:2000]
    return found


def sign_in(browser: Browser, authorize_url: str, username: str = "alice", password: str = PASSWORD) -> str:
    """Walk from the authorization request through login and consent (allow) to the redirect to the client;
    return that redirect's ``Location`` without following it."""
    location = authorize_url
    for _ in range(8):
        path = urlsplit(location).path
        if path not in ("/authorize", "/login", "/consent"):
            return location
        page = browser.get(location)
        if path == "/authorize":
            assert page.status in (302, 303), (page.status, page.text[:500])
            assert page.location is not None
            location = page.location
            continue
        assert page.status == 200, (page.status, page.text[:500])
        fields = form_fields(page.text)
        if path == "/login":
            answer = browser.post("/login", {**fields, "username": username, "password": password})
        else:
            answer = browser.post("/consent", {**fields, "decision": "allow"})
        assert answer.status == 303 and answer.location, (answer.status, answer.text[:500])
        location = answer.location
    raise AssertionError(f"the flow did not reach the client: {location}")


@dataclass(frozen=True)
class Authorization:
    """What the client holds after the callback: the code and the values it must send or check with it."""

    code: str
    verifier: str
    state: str
    nonce: str | None
    callback: dict[str, list[str]] = field(default_factory=dict)


def authorization_url(app: WebApp, challenge: str, scope: str, state: str, nonce: str | None, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **({"nonce": nonce} if nonce is not None else {}),
        **extra,
    }
    return "/authorize?" + urlencode(params)


def authorize(
    browser: Browser, app: WebApp, scope: str = FULL_SCOPE, nonce: str | None = "n-0S6_WzA2Mj", **extra: str
) -> Authorization:
    """A code for ``app``, signing in and consenting as needed."""
    verifier, state = new_verifier(), secrets.token_urlsafe(12)
    location = sign_in(browser, authorization_url(app, s256(verifier), scope, state, nonce, **extra))
    assert location.startswith(app.redirect_uri + "?"), location
    callback = parse_qs(urlsplit(location).query)
    assert callback["state"] == [state], callback
    return Authorization(callback["code"][0], verifier, state, nonce, callback)


# --- the token endpoint -----------------------------------------------------------------------------------


def token_request(client: FlaskClient, app: WebApp, data: dict[str, str]) -> Any:
    body, headers = token_auth(app, data)
    return client.post("/token", data=body, headers=headers)


def redeem(client: FlaskClient, app: WebApp, auth: Authorization, **overrides: str | None) -> Any:
    """RFC 6749 §4.1.3 token request; an override of ``None`` leaves the parameter out."""
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": auth.code,
        "redirect_uri": app.redirect_uri,
        "code_verifier": auth.verifier,
        **overrides,
    }
    return token_request(client, app, {k: v for k, v in data.items() if v is not None})


def sign_in_and_redeem(client: FlaskClient, app: WebApp, **authorize_args: Any) -> dict[str, Any]:
    """The whole code flow; the token response body."""
    auth = authorize(FlaskBrowser(client), app, **authorize_args)
    response = redeem(client, app, auth)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def refresh(client: FlaskClient, app: WebApp, refresh_token: str, **extra: str) -> Any:
    return token_request(client, app, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def is_active(client: FlaskClient, app: WebApp, token: str) -> bool:
    """RFC 7662 introspection by the (confidential) client itself."""
    assert app.key is not None
    response = client.post("/introspect", data={"token": token}, headers=basic(app.client_id, app.key))
    assert response.status_code == 200, response.get_json()
    return bool(response.get_json()["active"])


def userinfo_status(client: FlaskClient, access_token: str) -> int:
    return int(client.get("/userinfo", headers=bearer(access_token)).status_code)


# --- JWTs -------------------------------------------------------------------------------------------------


def published_keys(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(jwks)  # type: ignore[arg-type]


def decode(jwks: dict[str, Any], token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of an RS256 JWT verified with joserfc against the published JWKS (signature only)."""
    decoded = jwt.decode(token, published_keys(jwks), algorithms=["RS256"])
    return dict(decoded.header), dict(decoded.claims)


# --- against a live server ----------------------------------------------------------------------------------


def post_token(base_url: str, app: WebApp, data: dict[str, str], http: requests.Session | None = None) -> Any:
    body, headers = token_auth(app, data)
    return (http or requests).post(f"{base_url}/token", data=body, headers=headers, timeout=TIMEOUT)


def live_redeem(base_url: str, app: WebApp, auth: Authorization, http: requests.Session | None = None) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": auth.code,
        "redirect_uri": app.redirect_uri,
        "code_verifier": auth.verifier,
    }
    return post_token(base_url, app, data, http)


def live_refresh(base_url: str, app: WebApp, refresh_token: str, http: requests.Session | None = None) -> Any:
    return post_token(base_url, app, {"grant_type": "refresh_token", "refresh_token": refresh_token}, http)


def live_is_active(base_url: str, app: WebApp, token: str) -> bool:
    assert app.key is not None
    response = requests.post(
        f"{base_url}/introspect", data={"token": token}, auth=(app.client_id, app.key), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["active"])


def race(base_url: str, count: int, send: Callable[[requests.Session], Any]) -> list[Any]:
    """``count`` threads, each on its own already-open keep-alive connection, send at the same moment."""
    barrier = threading.Barrier(count)

    def run(http: requests.Session) -> Any:
        http.get(f"{base_url}/healthz", timeout=TIMEOUT).raise_for_status()  # the connection is open before
        barrier.wait(timeout=TIMEOUT)
        return send(http)

    sessions = [requests.Session() for _ in range(count)]
    try:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(run, sessions))
    finally:
        for http in sessions:
            http.close()


def one_winner(responses: list[Any]) -> dict[str, Any]:
    """Exactly one 200; every other answer ``invalid_grant``, never a 5xx. The winner's body."""
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (len(responses) - 1), [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store"
        if response.status_code == 400:
            assert response.json()["error"] == "invalid_grant", response.text
    return dict(next(r for r in responses if r.status_code == 200).json())


def check_concurrent_code_redemption(base_url: str, app: WebApp, count: int = 8, rounds: int = 3) -> None:
    """SPEC §7: of ``count`` concurrent redemptions of one code exactly one gets tokens; every loser's
    attempt is a second redemption, so the winner's tokens end up revoked and each loser is audited."""
    browser = LiveBrowser(base_url)
    for done in range(rounds):
        auth = authorize(browser, app)
        winner = one_winner(race(base_url, count, lambda http, a=auth: live_redeem(base_url, app, a, http)))
        assert not live_is_active(base_url, app, winner["access_token"])
        refused = live_refresh(base_url, app, winner["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert len(audit_events("authorization_code.reused")) == (done + 1) * (count - 1)
    db.session.expire_all()
    grants = db.session.scalars(select(Grant)).all()
    assert len(grants) == rounds and all(g.revoked_at is not None for g in grants)
    issued = set(db.session.scalars(select(GrantAccessToken.jti)))
    assert len(issued) == rounds and issued <= set(db.session.scalars(select(RevokedToken.jti)))


def check_concurrent_refresh(base_url: str, app: WebApp, grace: bool, count: int = 8, rounds: int = 3) -> None:
    """SPEC §7: of ``count`` concurrent refreshes with one token exactly one succeeds. Without a grace period
    the losers presented a rotated token, so the family is revoked; within it, the winner's tokens live on."""
    browser = LiveBrowser(base_url)
    for _ in range(rounds):
        auth = authorize(browser, app)
        first = live_redeem(base_url, app, auth)
        assert first.status_code == 200, first.text
        token = first.json()["refresh_token"]
        winner = one_winner(race(base_url, count, lambda http, t=token: live_refresh(base_url, app, t, http)))
        assert winner["refresh_token"] != token
        after = live_refresh(base_url, app, winner["refresh_token"])
        if grace:
            assert after.status_code == 200, after.text
            assert live_is_active(base_url, app, winner["access_token"])
        else:
            assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
            assert not live_is_active(base_url, app, winner["access_token"])
    reused = audit_events("refresh_token.reused")
    db.session.expire_all()
    grants = db.session.scalars(select(Grant)).all()
    assert len(grants) == rounds
    if grace:
        assert reused == [] and all(g.revoked_at is None for g in grants)
    else:
        assert {e.details["grant_id"] for e in reused} == {g.id for g in grants}
        assert all(g.revoked_at is not None for g in grants)
        assert all(t.revoked_at is not None for t in db.session.scalars(select(RefreshToken)))
