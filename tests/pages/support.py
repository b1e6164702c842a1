"""What the browser-side tests share: a registered web app, a user, and a browser that walks the sign-in pages.

Everything is observed the way a browser or a relying party would: status codes, the ``Location`` header and
its query, forms on the pages, cookies, and the rows left in the database.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import current_app
from flask.testing import FlaskClient
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, LoginSession, User
from idp.services.clients import ClientSpec, create_client
from idp.services.users import create_user

ISSUER = "http://127.0.0.1:5000"
REDIRECT_URI = "https://app.example.com/cb"
LOGOUT_URI = "https://app.example.com/signed-out"
PASSWORD = "correct horse battery staple"
MAX_STEPS = 10


@dataclass(frozen=True)
class WebApp:
    """A registered code-flow client and its first API key (``None`` for a public client)."""

    client_id: str
    key: str | None
    redirect_uri: str


def web_app(**spec: Any) -> WebApp:
    """A confidential web app allowed ``openid profile email offline_access`` with one redirect URI."""
    defaults = ClientSpec(
        name="Web App",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[LOGOUT_URI],
        scope="openid profile email offline_access",
    )
    client, key = create_client(dataclasses.replace(defaults, **spec))
    return WebApp(client.id, key.key if key else None, client.redirect_uris[0])


def user(username: str = "alice", password: str = PASSWORD) -> User:
    return create_user(username, password, f"{username}@example.com", username.title())


def pkce_pair() -> tuple[str, str]:
    """RFC 7636 §4.1-§4.2: a verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def auth_params(app: WebApp, **overrides: str | None) -> dict[str, str]:
    """A valid authorization request of ``app``; an override of ``None`` leaves that parameter out."""
    _, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "response_type": "code",
        "scope": "openid profile",
        "state": "state-" + secrets.token_urlsafe(8),
        "nonce": "nonce-" + secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def location_query(response: Any) -> dict[str, str]:
    """The single-valued query of a redirect (repeated parameters would fail the comparison in the caller)."""
    query = parse_qs(urlsplit(response.headers["Location"]).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {name: values[0] for name, values in query.items()}


def assert_redirect_to(response: Any, redirect_uri: str) -> dict[str, str]:
    """A redirect to exactly ``redirect_uri`` (plus query) that carries RFC 9207 ``iss``; returns its query."""
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:500])
    location = response.headers["Location"]
    assert location.split("?", 1)[0] == redirect_uri, location
    query = location_query(response)
    assert query["iss"] == current_app.config["IDP_ISSUER"]
    return query


def assert_redirect_error(response: Any, redirect_uri: str, error: str, state: str | None) -> dict[str, str]:
    """RFC 6749 §4.1.2.1 with RFC 9207: ``error``, a description, the ``state`` as sent, and ``iss``."""
    query = assert_redirect_to(response, redirect_uri)
    assert query["error"] == error, query
    assert query.get("error_description"), query
    assert query.get("state") == state
    assert "code" not in query
    return query


def assert_error_page(response: Any, status: int = 400) -> str:
    """An HTML error page that sends the browser nowhere."""
    assert response.status_code == status, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    text: str = response.get_data(as_text=True)
    assert "We can't continue" in text or "We can&#39;t continue" in text, text[:500]
    return text


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs and buttons (attribute values unescaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action"), "method": values.get("method"), "fields": {}})
        elif tag in ("input", "button") and self.forms and "name" in values:
            self.forms[-1]["fields"].setdefault(values["name"], values.get("value", ""))


def page_form(response: Any) -> dict[str, Any]:
    """The one form of a page."""
    parser = _Forms()
    parser.feed(response.get_data(as_text=True))
    assert len(parser.forms) == 1, parser.forms
    return parser.forms[0]


class Browser:
    """A browser on the sign-in pages: follows redirects on idp, fills the login and consent forms, and stops at
    the first answer that leaves idp (the client's redirect URI) or is a page it was not asked to fill."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def authorize(self, params: dict[str, str], method: str = "GET") -> Any:
        if method == "POST":
            return self.client.post("/authorize", data=params)
        return self.client.get("/authorize", query_string=params)

    def get(self, location: str) -> Any:
        assert location.startswith("/"), location
        return self.client.get(location)

    def submit(self, page: Any, **fields: str) -> Any:
        """Submit the page's form (hidden fields and CSRF token included) with ``fields`` filled in."""
        form = page_form(page)
        data = {name: value for name, value in form["fields"].items() if name != "decision"}
        data.update(fields)
        assert form["method"] == "post"
        return self.client.post(form["action"], data=data)

    def sign_in(self, response: Any, username: str = "alice", password: str = PASSWORD) -> Any:
        """From a redirect to ``/login``: fill the form; returns the answer to the POST."""
        assert response.status_code in (302, 303) and response.location.startswith("/login?"), response.location
        return self.submit(self.get(response.location), username=username, password=password)

    def consent(self, response: Any, decision: str = "allow") -> Any:
        """From a redirect to ``/consent``: press Allow or Deny; returns the answer to the POST."""
        assert response.status_code in (302, 303) and response.location.startswith("/consent?"), response.location
        return self.submit(self.get(response.location), decision=decision)

    def run(self, response: Any, username: str = "alice", password: str = PASSWORD, decision: str = "allow") -> Any:
        """Follow idp's redirects, signing in and consenting when asked, until the answer leaves idp. A flow that
        keeps coming back (a redirect loop) fails after ``MAX_STEPS``."""
        for _ in range(MAX_STEPS):
            location = response.headers.get("Location", "")
            if response.status_code not in (302, 303) or not location.startswith("/"):
                return response
            if location.startswith("/login?"):
                response = self.sign_in(response, username, password)
            elif location.startswith("/consent?"):
                response = self.consent(response, decision)
            else:
                response = self.get(location)
        raise AssertionError(f"no answer after {MAX_STEPS} steps: a redirect loop (last: {location})")

    def code_flow(self, params: dict[str, str], **run: str) -> dict[str, str]:
        """A whole sign-in that must end with a code at the client; returns the callback's query."""
        query = assert_redirect_to(self.run(self.authorize(params), **run), params["redirect_uri"])
        assert "error" not in query, query
        assert query["state"] == params["state"] and query["code"]
        return query

    def session_cookie(self, name: str = "idp_session") -> str | None:
        cookie = self.client.get_cookie(name)
        return cookie.value if cookie is not None else None


def id_token_for(browser: Browser, app: WebApp, **params: str) -> str:
    """An ID token through the code flow and ``/token`` (client_secret_basic), as a relying party gets one."""
    verifier, challenge = pkce_pair()
    query = browser.code_flow(auth_params(app, code_challenge=challenge, **params))
    assert app.key is not None
    response = browser.client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": app.redirect_uri,
            "code_verifier": verifier,
        },
        headers={"Authorization": "Basic " + base64.b64encode(f"{app.client_id}:{app.key}".encode()).decode()},
    )
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["id_token"])


def sign_jwt(claims: dict[str, Any]) -> str:
    """A JWT signed with idp's own active key, as idp signs ID tokens (``typ=JWT``)."""
    return str(current_app.extensions["idp.keyring"].current().sign(claims, typ="JWT"))


def foreign_jwt(claims: dict[str, Any], kid: str = "attacker") -> str:
    """A JWT that looks like ours (RS256, ``typ=JWT``, any ``kid``) but is signed with someone else's key."""
    key = RSAKey.generate_key(2048, parameters={"kid": kid})
    return jose_jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid}, claims, key)


def id_token_claims(subject: str, audience: str, lifetime: int = 600, issuer: str = ISSUER) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + lifetime, "auth_time": now}


def login_sessions() -> list[LoginSession]:
    """Every login-session row, oldest first, read fresh from the database."""
    db.session.expire_all()
    return list(db.session.scalars(select(LoginSession).order_by(LoginSession.created_at)))


def audit_events(event: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)))


def without_csrf(html: str) -> str:
    """A page with its CSRF token value blanked out (the token is signed with a timestamp, so it varies)."""
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', html)


def authorize_url(params: dict[str, str]) -> str:
    return "/authorize?" + urlencode(params)
