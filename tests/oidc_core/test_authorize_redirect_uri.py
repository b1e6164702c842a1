"""``/authorize`` before the redirect URI is trusted (RFC 6749 §3.1.2, §4.1.2.1; RFC 9700 §2.1, §4.1; RFC 8252 §7.3):
every error is an HTML page (400) and nothing is sent to any URI; exact string matching, loopback ports aside."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.pages.support import (
    REDIRECT_URI,
    Browser,
    WebApp,
    assert_error_page,
    assert_redirect_error,
    auth_params,
    web_app,
)

NATIVE_URIS = ["http://127.0.0.1/cb", "http://[::1]/cb"]


@pytest.fixture
def native(app: Flask) -> WebApp:
    """A public native app with loopback redirect URIs registered without a port (RFC 8252 §7.3)."""
    return web_app(name="CLI", public=True, redirect_uris=NATIVE_URIS, post_logout_redirect_uris=[])


def assert_no_redirect(response: Any) -> None:
    text = assert_error_page(response)
    assert "evil" not in text and 'href="http' not in text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/cb/",
        "https://app.example.com/cb?extra=1",
        "https://app.example.com/cb?",
        "https://app.example.com:8443/cb",
        "https://app.example.com:443/cb",
        "https://app.example.com/cb@evil.example",
        "https://evil.example#@app.example.com/cb",
        "https://evil.example?@app.example.com/cb",
        "https://app.example.com@evil.example/cb",
        "https://user@app.example.com/cb",
        "https://app.example.com.evil.example/cb",
        "https://APP.example.com/cb",
        "https://app.example.com/CB",
        "HTTPS://app.example.com/cb",
        "http://app.example.com/cb",
        "https://app.example.com/cb#fragment",
        "https://app.example.com/%63b",
        "https://app.example.com/x/../cb",
        " https://app.example.com/cb",
        "https://app.example.com/cb ",
        "https://app.example.com/cb\x00",
        "https://evil.example/cb",
        "/cb",
    ],
)
def test_redirect_uri_near_miss_is_an_error_page(browser: Browser, web: WebApp, redirect_uri: str) -> None:
    assert_no_redirect(browser.authorize(auth_params(web, redirect_uri=redirect_uri)))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unregistered_redirect_uri_is_an_error_page_even_when_other_parameters_are_wrong(
    browser: Browser, web: WebApp, method: str
) -> None:
    params = auth_params(web, redirect_uri="https://evil.example/cb", response_type="token", code_challenge=None)
    assert_no_redirect(browser.authorize(params, method=method))


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": None},
        {"client_id": "no-such-client"},
        {"client_id": "x" * 5000},
        {"client_id": "bad\x00id"},
        {"redirect_uri": None},
        {"redirect_uri": ""},
    ],
    ids=["no-client", "unknown-client", "oversized-client", "nul-client", "no-redirect-uri", "empty-redirect-uri"],
)
def test_client_and_redirect_uri_problems_are_error_pages(
    browser: Browser, web: WebApp, change: dict[str, str | None]
) -> None:
    assert_no_redirect(browser.authorize(auth_params(web, **change)))


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
def test_repeated_client_id_or_redirect_uri_is_an_error_page(client: FlaskClient, web: WebApp, name: str) -> None:
    params = list(auth_params(web).items())
    value = dict(params)[name]
    response = client.get("/authorize", query_string=[*params, (name, value)])
    assert_no_redirect(response)


def test_redirect_uri_of_another_client_is_an_error_page(browser: Browser, web: WebApp) -> None:
    other = web_app(name="Other", redirect_uris=["https://other.example.com/cb"])
    assert_no_redirect(browser.authorize(auth_params(web, redirect_uri=other.redirect_uri)))


def test_non_form_post_is_an_error_page(client: FlaskClient, web: WebApp) -> None:
    response = client.post("/authorize", json=auth_params(web))
    assert_no_redirect(response)


def test_registered_redirect_uri_is_used_exactly(browser: Browser, web: WebApp) -> None:
    params = auth_params(web, prompt="none")
    response = browser.authorize(params)
    assert response.location.startswith(REDIRECT_URI + "?")
    assert_redirect_error(response, REDIRECT_URI, "login_required", params["state"])


def test_registered_redirect_uri_with_a_query_keeps_it(browser: Browser) -> None:
    app = web_app(name="Query", redirect_uris=["https://app.example.com/cb?tenant=a"])
    params = auth_params(app, prompt="none")
    response = browser.authorize(params)
    assert response.location.startswith("https://app.example.com/cb?tenant=a&")
    assert_redirect_error(response, "https://app.example.com/cb", "login_required", params["state"])


# --- RFC 8252 §7.3: loopback IP redirect URIs may use any port -------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:54321/cb", "http://127.0.0.1:1/cb", "http://127.0.0.1/cb", "http://[::1]:54321/cb"],
)
def test_loopback_redirect_uri_accepts_any_port(browser: Browser, native: WebApp, redirect_uri: str) -> None:
    params = auth_params(native, redirect_uri=redirect_uri, prompt="none")
    assert_redirect_error(browser.authorize(params), redirect_uri, "login_required", params["state"])


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost:54321/cb",
        "http://127.0.0.1:54321/cb2",
        "http://127.0.0.1:54321/cb/",
        "http://127.0.0.1:54321/cb?x=1",
        "http://127.0.0.1:54321/cb#x",
        "http://user@127.0.0.1:54321/cb",
        "http://127.0.0.1:054321/cb",
        "http://127.0.0.1:99999/cb",
        "http://127.0.0.2:54321/cb",
        "https://127.0.0.1:54321/cb",
        "http://[::1]:54321/cb2",
        "http://127.0.0.1:54321@evil.example/cb",
    ],
)
def test_loopback_port_rule_changes_nothing_but_the_port(browser: Browser, native: WebApp, redirect_uri: str) -> None:
    assert_no_redirect(browser.authorize(auth_params(native, redirect_uri=redirect_uri)))


def test_localhost_registration_gets_no_port_freedom(browser: Browser) -> None:
    app = web_app(name="Localhost", public=True, redirect_uris=["http://localhost/cb"], post_logout_redirect_uris=[])
    assert_no_redirect(browser.authorize(auth_params(app, redirect_uri="http://localhost:54321/cb")))
