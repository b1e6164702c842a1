"""SPEC §10 headers on every HTML page: a CSP with ``frame-ancestors 'none'``, ``X-Frame-Options: DENY``,
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``; pages are never cached; no HSTS over http."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from idp.models import User
from tests.pages.support import PASSWORD, Browser, WebApp, auth_params, authorize_url


def login_page(browser: Browser, web: WebApp) -> Any:
    return browser.client.get("/login", query_string={"return_to": authorize_url(auth_params(web))})


def failed_login_page(browser: Browser, web: WebApp) -> Any:
    return browser.submit(login_page(browser, web), username="alice", password="wrong")


def consent_page(browser: Browser, web: WebApp) -> Any:
    response = browser.get(browser.sign_in(browser.authorize(auth_params(web))).location)
    return browser.get(response.location)


def authorize_error_page(browser: Browser, web: WebApp) -> Any:
    return browser.authorize(auth_params(web, redirect_uri="https://evil.example/cb"))


def csrf_error_page(browser: Browser, web: WebApp) -> Any:
    return browser.client.post("/login", data={"username": "alice", "password": PASSWORD})


def logout_confirmation_page(browser: Browser, web: WebApp) -> Any:
    browser.code_flow(auth_params(web))
    return browser.client.get("/logout")


def signed_out_page(browser: Browser, web: WebApp) -> Any:
    return browser.client.get("/logout")


def signed_in_page(browser: Browser, web: WebApp) -> Any:
    browser.submit(browser.client.get("/login"), username="alice", password=PASSWORD)
    return browser.client.get("/login/done")


PAGES: dict[str, Callable[[Browser, WebApp], Any]] = {
    "login": login_page,
    "login-failed": failed_login_page,
    "consent": consent_page,
    "authorize-error": authorize_error_page,
    "csrf-error": csrf_error_page,
    "logout-confirmation": logout_confirmation_page,
    "signed-out": signed_out_page,
    "signed-in": signed_in_page,
}


def csp_directives(response: Any) -> dict[str, str]:
    directives = [d.strip() for d in response.headers["Content-Security-Policy"].split(";") if d.strip()]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in directives}


@pytest.mark.parametrize("make_page", PAGES.values(), ids=PAGES.keys())
def test_html_pages_carry_the_security_headers(
    browser: Browser, web: WebApp, alice: User, make_page: Callable[[Browser, WebApp], Any]
) -> None:
    response = make_page(browser, web)
    assert response.mimetype == "text/html" and response.status_code in (200, 400)
    csp = csp_directives(response)
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert csp["base-uri"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("make_page", PAGES.values(), ids=PAGES.keys())
def test_pages_run_no_inline_script(
    browser: Browser, web: WebApp, alice: User, make_page: Callable[[Browser, WebApp], Any]
) -> None:
    text = make_page(browser, web).get_data(as_text=True)
    assert "<script" not in text and " on" + "click=" not in text


def test_redirects_carry_nosniff_and_no_store(browser: Browser, web: WebApp) -> None:
    response = browser.authorize(auth_params(web))
    assert response.status_code == 302
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_flask_session_cookie_is_httponly_and_samesite_lax(browser: Browser, web: WebApp) -> None:
    response = login_page(browser, web)
    [cookie] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("idp=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie and "Domain" not in cookie
