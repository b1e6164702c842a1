"""SPEC §10 under an https issuer: both cookies are ``Secure`` with the ``__Host-`` prefix (so host-only, Path=/),
still ``HttpOnly`` and ``SameSite=Lax``; HSTS on every answer; logout deletes the cookie in a way browsers obey."""

from __future__ import annotations

from typing import Any

import pytest

from idp.models import User
from tests.pages.support import PASSWORD, Browser, WebApp, auth_params, authorize_url

ISSUER = "https://id.example.com"


@pytest.fixture
def settings(settings: dict[str, str]) -> dict[str, str]:
    return {**settings, "IDP_ISSUER": ISSUER}


def cookie_header(response: Any, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` header for ``name`` (lower-cased names; flags map to "")."""
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    attributes = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        attributes[key.lower()] = value
    return attributes


def assert_host_cookie(attributes: dict[str, str]) -> None:
    """RFC 6265bis §4.1.3.2: a ``__Host-`` cookie is Secure, has Path=/ and no Domain."""
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["path"] == "/" and "domain" not in attributes
    assert attributes["samesite"] == "Lax"


def sign_in(browser: Browser, web: WebApp) -> Any:
    page = browser.client.get("/login", query_string={"return_to": authorize_url(auth_params(web))})
    return browser.submit(page, username="alice", password=PASSWORD)


def test_login_cookie_is_a_secure_host_cookie(browser: Browser, web: WebApp, alice: User) -> None:
    response = sign_in(browser, web)
    assert response.status_code == 303
    assert_host_cookie(cookie_header(response, "__Host-idp_session"))
    assert not any(h.startswith("idp_session=") for h in response.headers.getlist("Set-Cookie"))


def test_flask_session_cookie_is_a_secure_host_cookie(browser: Browser, web: WebApp) -> None:
    response = browser.client.get("/login")
    assert_host_cookie(cookie_header(response, "__Host-idp"))


def test_hsts_on_pages_and_redirects(browser: Browser, web: WebApp) -> None:
    for response in (browser.client.get("/login"), browser.authorize(auth_params(web))):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert int(response.headers["Strict-Transport-Security"].split("=")[1].split(";")[0]) >= 31536000


def test_flow_works_and_redirects_carry_the_https_issuer(browser: Browser, web: WebApp, alice: User) -> None:
    assert browser.code_flow(auth_params(web))["iss"] == ISSUER


def test_logout_deletes_the_host_cookie_with_its_secure_attribute(browser: Browser, web: WebApp, alice: User) -> None:
    browser.code_flow(auth_params(web))
    page = browser.client.get("/logout")
    response = browser.submit(page)
    attributes = cookie_header(response, "__Host-idp_session")
    assert_host_cookie(attributes)
    assert attributes.get("max-age") == "0" or "1970" in attributes.get("expires", "")
