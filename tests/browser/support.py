"""What the real-browser tests share: one installation served by a live ``idp serve``, the client's site faked
inside the browser, and the steps a person takes on the pages, found by their labels and roles.

The client's redirect URIs (``https://app.example.com/...``) are no real server: the browser context answers
navigations to them itself with a tiny page and records the URL, so a test reads the ``code`` or ``error``
exactly where the client would (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import html
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize, expect

from idp import create_app
from idp.extensions import db
from tests.conftest import REPO, LiveServer
from tests.oidc_support import FULL_SCOPE, Authorization, authorization_url, live_redeem, new_verifier, s256
from tests.pages.support import PASSWORD, WebApp, user, web_app

OUTPUT = REPO / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
AXE_PREFIX = OUTPUT / "node"
AXE_SCRIPT = AXE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
CLIENT_ORIGIN = "https://app.example.com"
CLIENT_HEADING = "Back at the client"
TIMEOUT_MS = 10_000
VIEWPORTS: dict[str, ViewportSize] = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
_names = itertools.count(1)


@dataclass
class Installation:
    """A fresh idp (database, keys) served by a live process, plus an app to register users and clients in it."""

    app: Flask
    server: LiveServer
    webapp: WebApp

    @property
    def url(self) -> str:
        return self.server.url

    def new_user(self) -> str:
        """A user of its own for each flow, so no earlier consent or failed login changes what the page shows."""
        username = f"person{next(_names)}"
        with self.app.app_context():
            user(username)
            db.session.remove()
        return username


def installation(settings: dict[str, str], **webapp: Any) -> Installation:
    """``webapp``: registration fields of the web app other than the defaults of ``web_app``."""
    app = create_app(settings)
    with app.app_context():
        registered = web_app(**webapp)
        db.session.remove()
    return Installation(app, LiveServer(settings), registered)


def new_context(chromium: Browser, **options: bool) -> BrowserContext:
    """A fresh browser profile (no cookies) at desktop size; ``options`` such as ``java_script_enabled``."""
    context = chromium.new_context(viewport=VIEWPORTS["desktop"], **options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    return context


@dataclass
class Callbacks:
    """The client's site inside the browser: every navigation to ``CLIENT_ORIGIN`` is recorded and answered with
    a page that says so and offers the client's ``links`` (a relying party's "Sign out" link, say).

    Playwright answers a redirect to the client only when a click or a form started the navigation, not
    ``page.goto`` (Chromium does not pause those redirects for interception). So a test that needs idp to
    redirect to the client straight away goes to the client first and follows its link, as a person would.
    """

    urls: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)

    def intercept(self, context: BrowserContext) -> Callbacks:
        context.route(CLIENT_ORIGIN + "/**", self._answer)
        return self

    def _answer(self, route: Route) -> None:
        self.urls.append(route.request.url)
        anchors = "".join(
            f'<p><a href="{html.escape(url)}">{html.escape(text)}</a></p>' for text, url in self.links.items()
        )
        body = f"<!doctype html><html lang='en'><title>Client</title><main><h1>{CLIENT_HEADING}</h1>{anchors}</main>"
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body)

    def arrived(self, page: Page, uri: str) -> dict[str, str]:
        """Wait until the page shows the client's answer, then return the query of the latest callback, which
        must be to exactly ``uri``, one value per parameter."""
        expect(page.get_by_role("heading", name=CLIENT_HEADING)).to_be_visible()
        assert self.urls, "the browser never reached the client"
        parts = urlsplit(self.urls[-1])
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == uri, self.urls[-1]
        query = parse_qs(parts.query, keep_blank_values=True)
        assert all(len(values) == 1 for values in query.values()), query
        return {name: values[0] for name, values in query.items()}


@dataclass(frozen=True)
class Request:
    """An authorization request as the client built it: the URL and what it keeps to check the answer."""

    url: str
    state: str
    verifier: str


def authorization_request(base_url: str, webapp: WebApp, **extra: str) -> Request:
    """RFC 6749 §4.1.1 with PKCE S256 (RFC 7636 §4.3) and an OIDC nonce, as in the end-to-end tests."""
    verifier, state = new_verifier(), secrets.token_urlsafe(12)
    path = authorization_url(webapp, s256(verifier), FULL_SCOPE, state, "n-" + secrets.token_urlsafe(8), **extra)
    return Request(base_url + path, state, verifier)


def fill_login(page: Page, username: str, password: str, submit: str = "enter") -> None:
    """Type into the fields found by their labels, then press Enter in the password field or click the button."""
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if submit == "enter":
        page.get_by_label("Password").press("Enter")
    else:
        page.get_by_role("button", name="Sign in").click()


def decide(page: Page, decision: str) -> None:
    """Press Allow or Deny on the consent page."""
    expect(page.get_by_role("heading", name="Allow Web App?")).to_be_visible()
    page.get_by_role("button", name=decision, exact=True).click()


def sign_in_and_allow(page: Page, site: Installation, callbacks: Callbacks, username: str) -> dict[str, str]:
    """A whole sign-in ending at the client's callback with a code; returns the callback's query."""
    request = authorization_request(site.url, site.webapp)
    page.goto(request.url)
    fill_login(page, username, PASSWORD)
    decide(page, "Allow")
    query = callbacks.arrived(page, site.webapp.redirect_uri)
    assert query["state"] == request.state and query["code"], query
    query["verifier"] = request.verifier
    return query


def id_token(site: Installation, callback: dict[str, str]) -> str:
    """Redeem the callback's code as the client does (RFC 6749 §4.1.3) and return the ID token."""
    auth = Authorization(callback["code"], callback["verifier"], callback["state"], None)
    response = live_redeem(site.url, site.webapp, auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


def logout_url(base_url: str, **params: str) -> str:
    return f"{base_url}/logout?" + urlencode(params)


def tour(page: Page, site: Installation, callbacks: Callbacks, visit: Callable[[str], None]) -> None:
    """Walk every page a person can meet and call ``visit`` with its name while it is shown: login, login with
    an error, consent, logout confirmation, signed out, signed in (no application), and the error page."""
    username = site.new_user()
    page.goto(authorization_request(site.url, site.webapp).url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    visit("login")
    fill_login(page, username, "not the password")
    expect(page.get_by_role("alert")).to_be_visible()
    visit("login-error")
    fill_login(page, username, PASSWORD)
    expect(page.get_by_role("heading", name="Allow Web App?")).to_be_visible()
    visit("consent")
    decide(page, "Allow")
    callbacks.arrived(page, site.webapp.redirect_uri)
    page.goto(logout_url(site.url))
    expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    visit("logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    visit("signed-out")
    page.goto(f"{site.url}/login")
    fill_login(page, username, PASSWORD, submit="click")
    expect(page.get_by_role("heading", name="You are signed in")).to_be_visible()
    visit("signed-in")
    page.goto(f"{site.url}/authorize?" + urlencode({"client_id": "no-such-client", "response_type": "code"}))
    expect(page.get_by_role("heading", name="We can't continue")).to_be_visible()
    visit("error")


def screenshot_path(shot: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{shot}.png"
