"""When the user must sign in or consent again (OIDC Core §3.1.2.1, §3.1.2.3-§3.1.2.6): ``prompt``, ``max_age``,
``id_token_hint`` and remembered consent, observed as the browser and the client see them."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask import current_app

from idp.extensions import db
from idp.models import AuthorizationCode, LoginSession, User
from idp.models.base import utcnow
from idp.services.codes import digest
from tests.pages.support import (
    Browser,
    WebApp,
    assert_redirect_error,
    assert_redirect_to,
    auth_params,
    authorize_url,
    foreign_jwt,
    id_token_claims,
    id_token_for,
    login_sessions,
    sign_jwt,
    user,
    web_app,
)


@pytest.fixture
def signed_in(browser: Browser, web: WebApp, alice: User) -> Browser:
    """A browser in which alice has signed in and consented to ``openid profile`` for the web app."""
    browser.code_flow(auth_params(web))
    return browser


def goes_to(response: Any, page: str) -> bool:
    return response.status_code in (302, 303) and response.location.startswith(f"/{page}?")


def age_session(seconds: int) -> None:
    """Move every login session's ``auth_time`` into the past, as if the user signed in ``seconds`` ago."""
    for row in login_sessions():
        row.auth_time = utcnow() - timedelta(seconds=seconds)
    db.session.commit()


def code_row(query: dict[str, str]) -> AuthorizationCode:
    db.session.expire_all()
    row = db.session.get(AuthorizationCode, digest(query["code"]))
    assert row is not None
    return row


# --- prompt=none ------------------------------------------------------------------------------------------


def test_prompt_none_without_session_is_login_required_with_a_long_state_intact(browser: Browser, web: WebApp) -> None:
    state = secrets.token_urlsafe(96)
    assert len(state) == 128
    params = auth_params(web, prompt="none", state=state)
    response = browser.authorize(params)
    assert_redirect_error(response, web.redirect_uri, "login_required", state)


def test_prompt_none_with_session_but_no_consent_is_consent_required(signed_in: Browser, alice: User) -> None:
    other = web_app(name="Other App")
    params = auth_params(other, prompt="none")
    assert_redirect_error(signed_in.authorize(params), other.redirect_uri, "consent_required", params["state"])


def test_prompt_none_with_session_and_consent_answers_with_a_code(signed_in: Browser, web: WebApp) -> None:
    params = auth_params(web, prompt="none")
    query = assert_redirect_to(signed_in.authorize(params), web.redirect_uri)
    assert query["code"] and query["state"] == params["state"]


def test_prompt_none_for_more_scopes_is_consent_required(signed_in: Browser, web: WebApp) -> None:
    params = auth_params(web, prompt="none", scope="openid profile email")
    assert_redirect_error(signed_in.authorize(params), web.redirect_uri, "consent_required", params["state"])


def test_prompt_none_with_form_post_error_is_a_form(browser: Browser, web: WebApp) -> None:
    response = browser.authorize(auth_params(web, prompt="none", response_mode="form_post"))
    assert response.status_code == 200 and "login_required" in response.text


# --- prompt=login and max_age -----------------------------------------------------------------------------


def test_prompt_login_asks_again_and_then_completes(signed_in: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web, prompt="login")
    response = signed_in.authorize(params)
    assert goes_to(response, "login")
    response = signed_in.sign_in(response)
    query = assert_redirect_to(signed_in.get(response.location), web.redirect_uri)
    old, new = login_sessions()
    assert old.ended_at is not None and code_row(query).session_id == new.id


def test_prompt_login_is_satisfied_only_by_the_login_it_caused(signed_in: Browser, web: WebApp) -> None:
    params = auth_params(web, prompt="login")
    signed_in.code_flow(params)
    # The same request again, and another one, each need their own login.
    assert goes_to(signed_in.authorize(params), "login")
    assert goes_to(signed_in.authorize(auth_params(web, prompt="login")), "login")


def test_a_login_for_one_request_does_not_satisfy_another(signed_in: Browser, web: WebApp) -> None:
    first, second = auth_params(web, prompt="login"), auth_params(web, prompt="login")
    response = signed_in.sign_in(signed_in.authorize(first))
    assert response.location == authorize_url(first)
    assert goes_to(signed_in.authorize(second), "login")


def test_max_age_exceeded_forces_login(signed_in: Browser, web: WebApp) -> None:
    age_session(30)
    params = auth_params(web, max_age="10")
    response = signed_in.authorize(params)
    assert goes_to(response, "login")
    query = assert_redirect_to(signed_in.run(response), web.redirect_uri)
    assert query["code"]
    auth_time = code_row(query).auth_time
    assert utcnow() - auth_time < timedelta(seconds=10)


def test_max_age_one_after_a_second_forces_login(signed_in: Browser, web: WebApp) -> None:
    time.sleep(1.1)
    assert goes_to(signed_in.authorize(auth_params(web, max_age="1")), "login")


def test_max_age_not_exceeded_needs_no_login(signed_in: Browser, web: WebApp) -> None:
    age_session(30)
    query = assert_redirect_to(signed_in.authorize(auth_params(web, max_age="3600")), web.redirect_uri)
    assert query["code"]


def test_max_age_zero_forces_login_once_without_a_loop(signed_in: Browser, web: WebApp) -> None:
    response = signed_in.authorize(auth_params(web, max_age="0"))
    assert goes_to(response, "login")
    assert assert_redirect_to(signed_in.run(response), web.redirect_uri)["code"]


def test_max_age_exceeded_with_prompt_none_is_login_required(signed_in: Browser, web: WebApp) -> None:
    age_session(30)
    params = auth_params(web, max_age="10", prompt="none")
    assert_redirect_error(signed_in.authorize(params), web.redirect_uri, "login_required", params["state"])


def test_id_token_carries_the_auth_time_of_the_forced_login(signed_in: Browser, web: WebApp) -> None:
    age_session(600)
    before = int(time.time())
    token = id_token_for(signed_in, web, max_age="60")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["auth_time"] >= before - 1


def test_ended_session_needs_a_new_login(signed_in: Browser, web: WebApp) -> None:
    [row] = login_sessions()
    row.ended_at = utcnow()
    db.session.commit()
    params = auth_params(web, prompt="none")
    assert_redirect_error(signed_in.authorize(params), web.redirect_uri, "login_required", params["state"])


def test_expired_session_needs_a_new_login(signed_in: Browser, web: WebApp) -> None:
    [row] = login_sessions()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert goes_to(signed_in.authorize(auth_params(web)), "login")


# --- prompt=consent and remembered consent -----------------------------------------------------------------


def test_prompt_consent_asks_again_even_when_remembered_and_then_completes(signed_in: Browser, web: WebApp) -> None:
    params = auth_params(web, prompt="consent")
    response = signed_in.authorize(params)
    assert goes_to(response, "consent")
    response = signed_in.consent(response)
    query = assert_redirect_to(signed_in.get(response.location), web.redirect_uri)
    assert query["code"] and query["state"] == params["state"]
    assert goes_to(signed_in.authorize(params), "consent")


def test_prompt_login_consent_asks_for_both(signed_in: Browser, web: WebApp) -> None:
    response = signed_in.authorize(auth_params(web, prompt="login consent"))
    assert goes_to(response, "login")
    response = signed_in.get(signed_in.sign_in(response).location)
    assert goes_to(response, "consent")
    assert assert_redirect_to(signed_in.run(response), web.redirect_uri)["code"]


def test_remembered_consent_skips_the_page(signed_in: Browser, web: WebApp) -> None:
    assert assert_redirect_to(signed_in.authorize(auth_params(web)), web.redirect_uri)["code"]


def test_more_scopes_show_the_page_again(signed_in: Browser, web: WebApp) -> None:
    assert goes_to(signed_in.authorize(auth_params(web, scope="openid profile offline_access")), "consent")


def test_skip_consent_client_skips_the_page(browser: Browser, alice: User) -> None:
    portal = web_app(name="Portal", skip_consent=True)
    response = browser.run(browser.authorize(auth_params(portal)), decision="deny")
    assert assert_redirect_to(response, portal.redirect_uri)["code"]


def test_deny_redirects_access_denied_with_state(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web)
    response = browser.run(browser.authorize(params), decision="deny")
    assert_redirect_error(response, web.redirect_uri, "access_denied", params["state"])


# --- id_token_hint ----------------------------------------------------------------------------------------


def test_hint_of_another_user_with_prompt_none_is_login_required(signed_in: Browser, web: WebApp) -> None:
    bob = user("bob")
    params = auth_params(web, prompt="none", id_token_hint=sign_jwt(id_token_claims(bob.id, web.client_id)))
    assert_redirect_error(signed_in.authorize(params), web.redirect_uri, "login_required", params["state"])


def test_hint_of_the_signed_in_user_with_prompt_none_answers(signed_in: Browser, web: WebApp) -> None:
    hint = id_token_for(signed_in, web)
    query = assert_redirect_to(
        signed_in.authorize(auth_params(web, prompt="none", id_token_hint=hint)), web.redirect_uri
    )
    assert query["code"]


def test_expired_hint_of_the_signed_in_user_is_accepted(signed_in: Browser, web: WebApp, alice: User) -> None:
    hint = sign_jwt(id_token_claims(alice.id, web.client_id, lifetime=-3600))
    query = assert_redirect_to(
        signed_in.authorize(auth_params(web, prompt="none", id_token_hint=hint)), web.redirect_uri
    )
    assert query["code"]


def test_hint_of_another_user_asks_to_sign_in_as_that_user(signed_in: Browser, web: WebApp) -> None:
    bob = user("bob")
    params = auth_params(web, id_token_hint=sign_jwt(id_token_claims(bob.id, web.client_id)))
    response = signed_in.authorize(params)
    assert goes_to(response, "login")
    response = signed_in.run(response, username="bob")
    assert assert_redirect_to(response, web.redirect_uri)["code"]


def test_signing_in_as_someone_else_than_the_hint_is_login_required_not_a_loop(signed_in: Browser, web: WebApp) -> None:
    bob = user("bob")
    params = auth_params(web, id_token_hint=sign_jwt(id_token_claims(bob.id, web.client_id)))
    response = signed_in.run(signed_in.authorize(params), username="alice")
    assert_redirect_error(response, web.redirect_uri, "login_required", params["state"])


@pytest.mark.parametrize("forge", ["other-key", "other-issuer", "access-token-typ", "alg-none"])
def test_hint_we_did_not_issue_is_invalid_request(signed_in: Browser, web: WebApp, alice: User, forge: str) -> None:
    claims = id_token_claims(alice.id, web.client_id)
    if forge == "other-key":
        hint = foreign_jwt(claims)
    elif forge == "other-issuer":
        hint = sign_jwt({**claims, "iss": "https://evil.example"})
    elif forge == "access-token-typ":
        hint = current_app.extensions["idp.keyring"].current().sign(claims, typ="at+jwt")
    else:
        hint = jwt.encode(claims, key=None, algorithm="none")
    params = auth_params(web, prompt="none", id_token_hint=hint)
    assert_redirect_error(signed_in.authorize(params), web.redirect_uri, "invalid_request", params["state"])


def test_code_is_bound_to_the_session_that_answered(signed_in: Browser, web: WebApp) -> None:
    query = assert_redirect_to(signed_in.authorize(auth_params(web)), web.redirect_uri)
    [row] = login_sessions()
    code = code_row(query)
    assert code.session_id == row.id and code.user_id == row.user_id
    assert isinstance(db.session.get(LoginSession, code.session_id), LoginSession)
