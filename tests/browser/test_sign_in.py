"""A person signs in, consents or denies, mistypes a password and signs out, in a real browser, with JavaScript
enabled and disabled (SPEC §5). Fields and buttons are found by their labels and roles, so every step also
proves that the page exposes them to assistive technology.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.support import (
    CLIENT_ORIGIN,
    Callbacks,
    Installation,
    authorization_request,
    decide,
    fill_login,
    id_token,
    logout_url,
    sign_in_and_allow,
)
from tests.pages.support import LOGOUT_URI, PASSWORD


def test_person_signs_in_and_allows_and_the_client_gets_a_code(
    page: Page, site: Installation, callbacks: Callbacks
) -> None:
    """RFC 6749 §4.1.2 / RFC 9207: the callback carries a code, the client's ``state`` and ``iss``; the code
    is redeemable (§4.1.3). The password is submitted with Enter (the deny flow clicks the button)."""
    username = site.new_user()
    request = authorization_request(site.url, site.webapp)
    page.goto(request.url)
    expect(page.get_by_text("to continue to Web App")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    fill_login(page, username, PASSWORD, submit="enter")
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()
    decide(page, "Allow")

    query = callbacks.arrived(page, site.webapp.redirect_uri)
    assert query["state"] == request.state
    assert query["iss"] == site.url
    assert query["code"] and "error" not in query
    assert id_token(site, {**query, "verifier": request.verifier})


def test_person_denies_and_the_client_gets_access_denied(page: Page, site: Installation, callbacks: Callbacks) -> None:
    """OIDC Core §3.1.2.6 / RFC 6749 §4.1.2.1: Deny → ``error=access_denied`` with the ``state``, no code."""
    username = site.new_user()
    request = authorization_request(site.url, site.webapp)
    page.goto(request.url)
    fill_login(page, username, PASSWORD, submit="click")
    decide(page, "Deny")

    query = callbacks.arrived(page, site.webapp.redirect_uri)
    assert query["error"] == "access_denied"
    assert query["state"] == request.state
    assert "code" not in query


def test_mistyped_password_shows_a_message_tied_to_the_fields_then_sign_in_succeeds(
    page: Page, site: Installation, callbacks: Callbacks
) -> None:
    """SPEC §10: one message for unknown user and wrong password, announced (``role=alert``) and referenced by
    the fields (``aria-describedby``); the username is kept, the password is not, and focus waits in it."""
    username = site.new_user()
    request = authorization_request(site.url, site.webapp)
    page.goto(request.url)
    fill_login(page, username, "correct horse battery stable")

    expect(page).to_have_title("Error: Sign in · idp")
    expect(page.get_by_role("alert")).to_have_text("Incorrect username or password.")
    password = page.get_by_label("Password")
    expect(password).to_have_accessible_description("Incorrect username or password.")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_value("")
    expect(password).to_be_focused()
    expect(page.get_by_label("Username")).to_have_value(username)
    assert callbacks.urls == []

    fill_login(page, username, PASSWORD)
    decide(page, "Allow")
    query = callbacks.arrived(page, site.webapp.redirect_uri)
    assert query["state"] == request.state and query["code"]


def test_rp_initiated_logout_signs_the_person_out(page: Page, site: Installation, callbacks: Callbacks) -> None:
    """OIDC RP-Initiated Logout 1.0 §2-§3: with an ``id_token_hint`` and a registered
    ``post_logout_redirect_uri`` the browser lands there with the ``state``; the next authorization request asks
    for the password again."""
    callback = sign_in_and_allow(page, site, callbacks, site.new_user())
    hint = id_token(site, callback)

    callbacks.links["Sign out"] = logout_url(
        site.url, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI, state="bye-1"
    )
    page.goto(CLIENT_ORIGIN + "/")
    page.get_by_role("link", name="Sign out").click()
    if page.get_by_role("heading", name="Sign out?").is_visible():
        page.get_by_role("button", name="Sign out").click()
    assert callbacks.arrived(page, LOGOUT_URI) == {"state": "bye-1"}

    page.goto(authorization_request(site.url, site.webapp).url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_logout_without_a_hint_asks_first_then_signs_out(page: Page, site: Installation, callbacks: Callbacks) -> None:
    """RP-Initiated Logout §2: a logout the OP cannot tie to the signed-in user is confirmed by the person."""
    sign_in_and_allow(page, site, callbacks, site.new_user())

    page.goto(logout_url(site.url))
    expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()

    page.goto(authorization_request(site.url, site.webapp).url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_keyboard_reaches_fields_and_button_in_order_with_a_visible_focus(page: Page, site: Installation) -> None:
    """WCAG 2.2 §2.4.3 focus order and §2.4.7 focus visible: Tab goes username → password → Sign in, and the
    focused control draws an outline."""
    page.goto(authorization_request(site.url, site.webapp).url)
    expect(page.get_by_label("Username")).to_be_focused()
    for target in (page.get_by_label("Password"), page.get_by_role("button", name="Sign in")):
        page.keyboard.press("Tab")
        expect(target).to_be_focused()
        style = target.evaluate("e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }")
        assert style[0] != "none" and style[1] != "0px", style
