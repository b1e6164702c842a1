"""RP-Initiated Logout 1.0 (``end_session_endpoint``, SPEC §5): the hint is verified (our key, our issuer; expired
is fine), only a registered ``post_logout_redirect_uri`` is followed, ``state`` is echoed, the session ends and a
later ``prompt=none`` gets ``login_required``. Without a hint the user confirms with a CSRF-protected form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from idp.models import User
from tests.pages.support import (
    LOGOUT_URI,
    Browser,
    WebApp,
    assert_error_page,
    assert_redirect_error,
    audit_events,
    auth_params,
    foreign_jwt,
    id_token_claims,
    id_token_for,
    location_query,
    login_sessions,
    page_form,
    sign_jwt,
    user,
    web_app,
)


@pytest.fixture
def id_token(browser: Browser, web: WebApp, alice: User) -> str:
    """Alice signed in to the web app in ``browser``; the ID token the app got."""
    return id_token_for(browser, web)


def logout(browser: Browser, method: str = "GET", **params: str) -> Any:
    if method == "POST":
        return browser.client.post("/logout", data=params)
    return browser.client.get("/logout", query_string=params)


def assert_session_live(browser: Browser, web: WebApp) -> None:
    [row] = login_sessions()
    assert row.ended_at is None
    response = browser.authorize(auth_params(web, prompt="none"))
    assert "code=" in response.location, response.location


def assert_signed_out(browser: Browser, web: WebApp) -> None:
    assert all(row.ended_at is not None for row in login_sessions())
    params = auth_params(web, prompt="none")
    assert_redirect_error(browser.authorize(params), web.redirect_uri, "login_required", params["state"])


def assert_cookie_deleted(response: Any, name: str = "idp_session") -> None:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    assert header.startswith(f"{name}=;") and ("Max-Age=0" in header or "1970" in header)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_logout_with_hint_redirects_to_the_registered_uri_with_state(
    browser: Browser, web: WebApp, alice: User, id_token: str, method: str
) -> None:
    [session_row] = login_sessions()
    response = logout(
        browser, method, id_token_hint=id_token, post_logout_redirect_uri=LOGOUT_URI, state="bye & see you"
    )
    assert response.status_code == 303
    assert response.location.split("?")[0] == LOGOUT_URI
    assert location_query(response) == {"state": "bye & see you"}
    assert response.headers["Cache-Control"] == "no-store"
    assert_cookie_deleted(response)
    [event] = audit_events("session.ended")
    assert (event.actor, event.client_id, event.details["sid"]) == (alice.id, web.client_id, session_row.id)
    assert_signed_out(browser, web)


def test_logout_with_hint_and_no_redirect_uri_shows_signed_out(browser: Browser, web: WebApp, id_token: str) -> None:
    response = logout(browser, id_token_hint=id_token)
    assert response.status_code == 200 and "You are signed out" in response.text
    assert "Location" not in response.headers
    assert_signed_out(browser, web)


def test_state_is_not_sent_without_a_redirect_uri(browser: Browser, web: WebApp, id_token: str) -> None:
    response = logout(browser, id_token_hint=id_token, state="s")
    assert response.status_code == 200 and "Location" not in response.headers


def test_redirect_uri_keeps_its_registered_query(browser: Browser, alice: User) -> None:
    app = web_app(name="Q", post_logout_redirect_uris=["https://app.example.com/bye?lang=de"])
    token = id_token_for(browser, app)
    response = logout(browser, id_token_hint=token, post_logout_redirect_uri="https://app.example.com/bye?lang=de")
    assert response.status_code == 303 and location_query(response) == {"lang": "de"}


def test_expired_hint_is_accepted(browser: Browser, web: WebApp, alice: User, id_token: str) -> None:
    expired = sign_jwt(id_token_claims(alice.id, web.client_id, lifetime=-86400))
    response = logout(browser, id_token_hint=expired, post_logout_redirect_uri=LOGOUT_URI, state="s")
    assert response.status_code == 303 and location_query(response) == {"state": "s"}
    assert_signed_out(browser, web)


@pytest.mark.parametrize(
    "params",
    [
        {"post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": LOGOUT_URI + "/"},
        {"post_logout_redirect_uri": LOGOUT_URI + "?x=1"},
        {"post_logout_redirect_uri": "https://app.example.com/cb"},
        {"post_logout_redirect_uri": LOGOUT_URI, "client_id": "another-client"},
    ],
    ids=["foreign", "trailing-slash", "added-query", "login-redirect-uri", "client-mismatch"],
)
def test_unregistered_redirect_uri_is_an_error_page(
    browser: Browser, web: WebApp, id_token: str, params: dict[str, str]
) -> None:
    assert_error_page(logout(browser, id_token_hint=id_token, state="s", **params))
    assert_session_live(browser, web)


def test_redirect_uri_of_another_client_is_an_error_page(browser: Browser, web: WebApp, id_token: str) -> None:
    other = web_app(name="Other", post_logout_redirect_uris=["https://other.example.com/bye"])
    response = logout(browser, id_token_hint=id_token, post_logout_redirect_uri="https://other.example.com/bye")
    assert_error_page(response)
    response = logout(browser, client_id=other.client_id, id_token_hint=id_token)
    assert_error_page(response)
    assert_session_live(browser, web)


def test_redirect_uri_without_hint_or_client_id_is_an_error_page(browser: Browser, web: WebApp, alice: User) -> None:
    assert_error_page(logout(browser, post_logout_redirect_uri=LOGOUT_URI))


@pytest.mark.parametrize("forge", ["other-key", "other-key-our-kid", "other-issuer", "garbage", "tampered"])
def test_hint_we_did_not_issue_is_an_error_page(
    browser: Browser, web: WebApp, alice: User, id_token: str, forge: str
) -> None:
    claims = id_token_claims(alice.id, web.client_id)
    hint = {
        "other-key": lambda: foreign_jwt(claims),
        "other-key-our-kid": lambda: foreign_jwt(claims, kid=jwt.get_unverified_header(id_token)["kid"]),
        "other-issuer": lambda: sign_jwt({**claims, "iss": "https://evil.example"}),
        "garbage": lambda: "not.a.jwt",
        "tampered": lambda: id_token[:-4] + ("AAAA" if not id_token.endswith("AAAA") else "BBBB"),
    }[forge]()
    assert_error_page(logout(browser, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI, state="s"))
    assert_session_live(browser, web)


def test_repeated_parameter_is_an_error_page(client: FlaskClient, browser: Browser, web: WebApp, id_token: str) -> None:
    response = client.get("/logout", query_string=[("id_token_hint", id_token), ("state", "a"), ("state", "b")])
    assert_error_page(response)
    assert_session_live(browser, web)


# --- confirmation when the request does not name the signed-in user --------------------------------------


def test_logout_without_hint_asks_for_confirmation(browser: Browser, web: WebApp, alice: User, id_token: str) -> None:
    page = logout(browser, client_id=web.client_id, post_logout_redirect_uri=LOGOUT_URI, state="s")
    assert page.status_code == 200 and "Sign out?" in page.text and "alice" in page.text
    assert_session_live(browser, web)
    form = page_form(page)
    assert form["action"] == "/logout" and form["method"] == "post"
    assert form["fields"]["confirm"] == "yes" and form["fields"]["csrf_token"]
    response = browser.submit(page)
    assert response.status_code == 303 and response.location.split("?")[0] == LOGOUT_URI
    assert location_query(response) == {"state": "s"}
    assert_cookie_deleted(response)
    assert len(audit_events("session.ended")) == 1
    assert_signed_out(browser, web)


def test_bare_logout_confirms_then_shows_signed_out(browser: Browser, web: WebApp, id_token: str) -> None:
    page = logout(browser)
    assert page.status_code == 200 and "Sign out?" in page.text
    response = browser.submit(page)
    assert response.status_code == 200 and "You are signed out" in response.text
    assert_signed_out(browser, web)


def test_hint_of_another_user_asks_for_confirmation(browser: Browser, web: WebApp, id_token: str) -> None:
    bob = user("bob")
    page = logout(browser, id_token_hint=sign_jwt(id_token_claims(bob.id, web.client_id)))
    assert page.status_code == 200 and "Sign out?" in page.text
    assert_session_live(browser, web)


def test_confirmation_without_csrf_token_is_refused(browser: Browser, web: WebApp, id_token: str) -> None:
    response = browser.client.post("/logout", data={"confirm": "yes"})
    assert_error_page(response)
    assert_session_live(browser, web)
    assert audit_events("session.ended") == []


def test_confirmation_with_another_browsers_csrf_token_is_refused(
    new_browser: Callable[[], Browser], browser: Browser, web: WebApp, id_token: str
) -> None:
    attacker = new_browser()
    token = page_form(attacker.client.get("/login"))["fields"]["csrf_token"]
    response = browser.client.post("/logout", data={"confirm": "yes", "csrf_token": token})
    assert_error_page(response)
    assert_session_live(browser, web)


def test_logout_without_a_session_needs_no_confirmation(browser: Browser, web: WebApp, alice: User) -> None:
    response = logout(browser, client_id=web.client_id, post_logout_redirect_uri=LOGOUT_URI, state="s")
    assert response.status_code == 303 and location_query(response) == {"state": "s"}
    assert audit_events("session.ended") == []
    response = logout(browser)
    assert response.status_code == 200 and "You are signed out" in response.text


def test_logout_ends_only_this_browsers_session(
    new_browser: Callable[[], Browser], browser: Browser, web: WebApp, id_token: str
) -> None:
    other = new_browser()
    other.code_flow(auth_params(web))
    logout(browser, id_token_hint=id_token)
    ended, live = sorted(login_sessions(), key=lambda row: row.ended_at is None)
    assert ended.ended_at is not None and live.ended_at is None
    assert "code=" in other.authorize(auth_params(web, prompt="none")).location
