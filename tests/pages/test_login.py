"""The login page (SPEC §5, §10): CSRF, identical failures, session rotation, rehash, audit, safe ``return_to``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db
from idp.models import User
from idp.services import login as login_service
from idp.services.users import delete_user, password_hasher, set_disabled
from tests.pages.support import (
    PASSWORD,
    Browser,
    WebApp,
    assert_error_page,
    assert_redirect_error,
    audit_events,
    auth_params,
    authorize_url,
    login_sessions,
    page_form,
    without_csrf,
)


def login_page(browser: Browser, params: dict[str, str] | None = None) -> Any:
    query = {"return_to": authorize_url(params)} if params else {}
    response = browser.client.get("/login", query_string=query)
    assert response.status_code == 200
    return response


def set_cookie_headers(response: Any, name: str) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]


# --- a successful login -----------------------------------------------------------------------------------


def test_login_page_names_the_client_and_prefills_login_hint(browser: Browser, web: WebApp) -> None:
    page = login_page(browser, auth_params(web, login_hint="Alice@Example"))
    form = page_form(page)
    assert "Web App" in page.text
    assert form["fields"]["username"] == "Alice@Example"
    assert set(form["fields"]) == {"csrf_token", "return_to", "username", "password"}
    assert form["action"] == "/login" and form["method"] == "post"


def test_login_answers_303_back_to_the_authorization_request(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web)
    response = browser.submit(login_page(browser, params), username="alice", password=PASSWORD)
    assert response.status_code == 303
    assert response.location == authorize_url(params)
    [row] = login_sessions()
    assert row.user_id == alice.id and row.ended_at is None and row.amr == ["pwd"]
    assert browser.session_cookie() not in (None, row.id, row.cookie_digest)


def test_login_without_an_authorization_request_ends_on_a_signed_in_page(browser: Browser, alice: User) -> None:
    response = browser.submit(login_page(browser), username="alice", password=PASSWORD)
    assert response.status_code == 303 and response.location == "/login/done"
    assert "You are signed in" in browser.get(response.location).text


def test_username_is_case_folded_and_password_compared_exactly(browser: Browser, alice: User) -> None:
    assert browser.submit(login_page(browser), username="ALICE", password=PASSWORD + " ").status_code == 200
    assert browser.submit(login_page(browser), username="ALICE", password=PASSWORD).status_code == 303


def test_session_cookie_is_httponly_and_samesite_lax(browser: Browser, alice: User) -> None:
    response = browser.submit(login_page(browser), username="alice", password=PASSWORD)
    [cookie] = set_cookie_headers(response, "idp_session")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path"} <= attributes and "secure" not in attributes
    assert "SameSite=Lax" in cookie and "Path=/" in cookie and "Domain" not in cookie


def test_login_rotates_the_session_id(browser: Browser, web: WebApp, alice: User) -> None:
    browser.submit(login_page(browser), username="alice", password=PASSWORD)
    first_cookie = browser.session_cookie()
    browser.submit(login_page(browser), username="alice", password=PASSWORD)
    second_cookie = browser.session_cookie()
    old, new = login_sessions()
    assert first_cookie and second_cookie and first_cookie != second_cookie
    assert old.id != new.id and old.cookie_digest != new.cookie_digest
    assert old.ended_at is not None and new.ended_at is None
    succeeded = audit_events("login.succeeded")
    assert [e.details["sid"] for e in succeeded] == [old.id, new.id]
    assert all(e.actor == alice.id for e in succeeded)


def test_login_replaces_the_flask_session_and_its_csrf_token(browser: Browser, alice: User) -> None:
    before = login_page(browser)
    browser.submit(before, username="alice", password=PASSWORD)
    # The form fetched before the login carries the old session's token: no longer accepted.
    response = browser.submit(before, username="alice", password=PASSWORD)
    assert_error_page(response)
    assert len(login_sessions()) == 1


def test_successful_login_is_audited(browser: Browser, alice: User) -> None:
    browser.submit(login_page(browser), username="alice", password=PASSWORD)
    [event] = audit_events("login.succeeded")
    [row] = login_sessions()
    assert event.actor == alice.id and event.details["sid"] == row.id and event.ip == "127.0.0.1"
    assert event.request_id


# --- CSRF ---------------------------------------------------------------------------------------------------


def test_login_without_csrf_token_is_refused_and_starts_no_session(browser: Browser, alice: User) -> None:
    login_page(browser)
    response = browser.client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert_error_page(response)
    assert login_sessions() == [] and browser.session_cookie() is None
    assert set_cookie_headers(response, "idp_session") == []
    assert audit_events("login.succeeded") == []


def test_csrf_token_of_another_browser_is_refused(
    new_browser: Callable[[], Browser], browser: Browser, alice: User
) -> None:
    victim = new_browser()
    token = page_form(login_page(victim))["fields"]["csrf_token"]
    login_page(browser)  # the attacker's own session, with its own token
    response = browser.client.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    assert_error_page(response)
    assert login_sessions() == [] and browser.session_cookie() is None


def test_forged_csrf_token_is_refused(browser: Browser, alice: User) -> None:
    page = login_page(browser)
    response = browser.submit(page, csrf_token="forged.token.value", username="alice", password=PASSWORD)
    assert_error_page(response)
    assert login_sessions() == []


# --- failures --------------------------------------------------------------------------------------------


def failed_login(new_browser: Callable[[], Browser], username: str, password: str) -> Any:
    """A failed login in a fresh browser, so each failure page is rendered from the same starting point."""
    browser = new_browser()
    response = browser.submit(login_page(browser), username=username, password=password)
    assert response.status_code == 200
    return response


def test_wrong_password_unknown_user_and_disabled_user_get_the_same_page(
    new_browser: Callable[[], Browser], alice: User
) -> None:
    wrong_password = failed_login(new_browser, "alice", "not-the-password")
    set_disabled("alice", True)
    disabled = failed_login(new_browser, "alice", PASSWORD)
    delete_user("alice")
    unknown = failed_login(new_browser, "alice", "not-the-password")
    pages = [r.get_data(as_text=True) for r in (wrong_password, disabled, unknown)]
    assert "Incorrect username or password." in pages[0]
    assert without_csrf(pages[0]) == without_csrf(pages[1]) == without_csrf(pages[2])
    assert {tuple(sorted(r.headers.keys())) for r in (wrong_password, disabled, unknown)} == {
        tuple(sorted(wrong_password.headers.keys()))
    }
    assert login_sessions() == []


def test_unknown_user_costs_one_password_verification_like_a_wrong_password(
    new_browser: Callable[[], Browser], alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    class CountingHasher:
        def __getattr__(self, name: str) -> Any:
            return getattr(password_hasher, name)

        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return bool(password_hasher.verify(stored, password))

    monkeypatch.setattr(login_service, "password_hasher", CountingHasher())
    failed_login(new_browser, "alice", "not-the-password")
    failed_login(new_browser, "nobody", "not-the-password")
    failed_login(new_browser, "not a valid username", "not-the-password")
    assert len(calls) == 3
    # The stand-in hash has the same parameters as a real one, so it costs the same.
    assert calls[1].rsplit("$", 2)[0] == calls[0].rsplit("$", 2)[0]


def test_failed_logins_are_audited_without_the_password(new_browser: Callable[[], Browser], alice: User) -> None:
    failed_login(new_browser, "alice", "secret-guess-1")
    failed_login(new_browser, "mallory", "secret-guess-2")
    events = audit_events("login.failed")
    assert [(e.actor, e.details["reason"]) for e in events] == [
        (alice.id, "wrong_password"),
        (None, "unknown_username"),
    ]
    assert all(e.ip == "127.0.0.1" and e.request_id for e in events)
    assert "secret-guess" not in repr([(e.actor, e.details) for e in events])


def test_an_unknown_username_is_audited_only_as_a_keyed_digest(new_browser: Callable[[], Browser], alice: User) -> None:
    """A password pasted into the username field must not land in the audit trail (SPEC §10); repeated guesses
    at one name still correlate, case-folded like usernames (RFC 8265)."""
    pasted = "Tr0ub4dor&3-pasted"
    failed_login(new_browser, pasted, "x")
    failed_login(new_browser, pasted.upper(), "y")
    failed_login(new_browser, "someone-else", "z")
    first, again, other = audit_events("login.failed")
    assert first.actor is None and first.details["username_hmac"] == again.details["username_hmac"]
    assert other.details["username_hmac"] != first.details["username_hmac"]
    assert len(first.details["username_hmac"]) == 16
    assert pasted.lower() not in repr([(e.actor, e.details) for e in (first, again, other)]).lower()


def test_right_password_of_a_disabled_user_is_audited_as_disabled(
    new_browser: Callable[[], Browser], alice: User
) -> None:
    set_disabled("alice", True)
    failed_login(new_browser, "alice", PASSWORD)
    [event] = audit_events("login.failed")
    assert (event.actor, event.details) == (alice.id, {"reason": "disabled"})


def test_disabled_user_cannot_sign_in(browser: Browser, web: WebApp, alice: User) -> None:
    set_disabled("alice", True)
    params = auth_params(web)
    response = browser.submit(login_page(browser, params), username="alice", password=PASSWORD)
    assert response.status_code == 200 and "Incorrect username or password." in response.text
    assert login_sessions() == [] and audit_events("login.succeeded") == []


def test_disabling_a_user_ends_the_effect_of_their_session(browser: Browser, web: WebApp, alice: User) -> None:
    browser.code_flow(auth_params(web))
    set_disabled("alice", True)
    params = auth_params(web, prompt="none")
    assert_redirect_error(browser.authorize(params), web.redirect_uri, "login_required", params["state"])


# --- password hashes -------------------------------------------------------------------------------------


def test_password_hash_is_upgraded_at_login_when_parameters_change(browser: Browser, alice: User) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    alice.password_hash = weak
    db.session.commit()
    assert password_hasher.check_needs_rehash(weak)
    assert browser.submit(login_page(browser), username="alice", password=PASSWORD).status_code == 303
    db.session.expire_all()
    upgraded = db.session.get(User, alice.id)
    assert upgraded is not None and upgraded.password_hash != weak
    assert upgraded.password_hash.startswith("$argon2id$")
    assert not password_hasher.check_needs_rehash(upgraded.password_hash)
    assert password_hasher.verify(upgraded.password_hash, PASSWORD)


def test_current_hash_is_left_alone_at_login(browser: Browser, alice: User) -> None:
    stored = alice.password_hash
    browser.submit(login_page(browser), username="alice", password=PASSWORD)
    db.session.expire_all()
    assert db.session.get(User, alice.id).password_hash == stored  # type: ignore[union-attr]


# --- return_to -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/authorize?client_id=x",
        "//evil.example/authorize?client_id=x",
        "/\\evil.example/authorize?client_id=x",
        "/authorize/../logout?client_id=x",
        "/authorize",
        "/consent?return_to=/authorize?x=1",
        "javascript:alert(1)//authorize?x",
    ],
    ids=["absolute", "scheme-relative", "backslash", "dot-dot", "no-query", "other-page", "javascript"],
)
def test_return_to_other_than_a_relative_authorize_url_is_not_followed(
    browser: Browser, alice: User, return_to: str
) -> None:
    page = browser.client.get("/login", query_string={"return_to": return_to})
    assert page_form(page)["fields"]["return_to"] == ""
    response = browser.submit(page, return_to=return_to, username="alice", password=PASSWORD)
    assert response.status_code == 303 and response.location == "/login/done"


def test_return_to_with_a_header_break_is_rebuilt_not_echoed(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web, state="a\r\nSet-Cookie: injected=1")
    return_to = "/authorize?" + "&".join(f"{k}={v}" for k, v in params.items())
    response = browser.submit(login_page(browser), return_to=return_to, username="alice", password=PASSWORD)
    assert response.status_code == 303 and response.location.startswith("/authorize?client_id=")
    assert "\r" not in response.location and "\n" not in response.location
    assert all("injected" not in h for h in response.headers.getlist("Set-Cookie"))


def test_login_page_escapes_what_it_echoes(browser: Browser, web: WebApp) -> None:
    payload = '"><script>alert(1)</script>'
    page = login_page(browser, auth_params(web, login_hint=payload))
    assert "<script>" not in page.text
    assert page_form(page)["fields"]["username"] == payload


def test_login_page_escapes_the_client_name(app: Flask, browser: Browser) -> None:
    from tests.pages.support import web_app

    hostile = web_app(name="<script>alert('name')</script>")
    page = login_page(browser, auth_params(hostile))
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_get_login_with_a_foreign_client_id_shows_no_name(client: FlaskClient) -> None:
    page = client.get("/login", query_string={"return_to": "/authorize?client_id=unknown"})
    assert page.status_code == 200 and "to continue to" not in page.text
