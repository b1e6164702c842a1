"""The browser's walk through the code flow (RFC 6749 §4.1.1-§4.1.2, OIDC Core §3.1.2, RFC 9207): authorize →
login → consent → back to the client with ``code``, ``state`` and ``iss``; GET and POST requests, ``query`` and
``form_post`` responses, loopback clients; and the code row that the token endpoint will redeem."""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuthorizationCode, User
from idp.protocol.rfc7636 import s256
from idp.services.codes import digest
from tests.pages.support import (
    ISSUER,
    PASSWORD,
    Browser,
    WebApp,
    assert_redirect_to,
    auth_params,
    authorize_url,
    id_token_for,
    login_sessions,
    page_form,
    pkce_pair,
    web_app,
)


def test_first_sign_in_walks_login_then_consent_then_returns_a_code(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web)
    response = browser.authorize(params)
    assert response.status_code == 302
    assert response.location == "/login?" + urlencode({"return_to": authorize_url(params)})
    login = browser.get(response.location)
    assert page_form(login)["fields"]["return_to"] == authorize_url(params)
    response = browser.submit(login, username="alice", password=PASSWORD)
    assert response.status_code == 303 and response.location == authorize_url(params)
    response = browser.get(response.location)
    assert response.status_code == 302 and response.location.startswith("/consent?")
    consent = browser.get(response.location)
    response = browser.submit(consent, decision="allow")
    assert response.status_code == 303 and response.location == authorize_url(params)
    query = assert_redirect_to(browser.get(response.location), web.redirect_uri)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == params["state"] and query["iss"] == ISSUER and len(query["code"]) >= 43


def test_code_row_is_bound_to_the_request(browser: Browser, web: WebApp, alice: User) -> None:
    verifier, challenge = pkce_pair()
    params = auth_params(web, code_challenge=challenge, scope="openid email")
    query = browser.code_flow(params)
    row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.digest == digest(query["code"])))
    [session_row] = login_sessions()
    assert row is not None and row.consumed_at is None
    assert (row.client_id, row.user_id, row.session_id) == (web.client_id, alice.id, session_row.id)
    assert (row.redirect_uri, row.scope, row.nonce) == (web.redirect_uri, "openid email", params["nonce"])
    assert (row.code_challenge, row.code_challenge_method) == (s256(verifier), "S256")
    assert row.amr == ["pwd"] and row.auth_time == session_row.auth_time
    # The code itself is never stored.
    assert query["code"] not in repr([(c.name, getattr(row, c.name)) for c in AuthorizationCode.__table__.columns])


def test_each_answer_is_a_new_code(browser: Browser, web: WebApp, alice: User) -> None:
    first = browser.code_flow(auth_params(web))
    second = assert_redirect_to(browser.authorize(auth_params(web)), web.redirect_uri)
    assert first["code"] != second["code"]


def test_authorization_request_by_post(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web)
    response = browser.authorize(params, method="POST")
    assert response.status_code == 303 and response.location.startswith("/login?")
    query = assert_redirect_to(browser.run(response), web.redirect_uri)
    assert query["state"] == params["state"] and query["code"]


def test_form_post_answers_with_a_self_submitting_form(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web, response_mode="form_post")
    response = browser.run(browser.authorize(params))
    assert response.status_code == 200 and "Location" not in response.headers
    form = page_form(response)
    assert form["action"] == web.redirect_uri and form["method"] == "post"
    assert set(form["fields"]) == {"code", "state", "iss"}
    assert form["fields"]["state"] == params["state"] and form["fields"]["iss"] == ISSUER


def test_answer_without_state_has_no_state(browser: Browser, web: WebApp, alice: User) -> None:
    response = browser.run(browser.authorize(auth_params(web, state=None)))
    assert set(assert_redirect_to(response, web.redirect_uri)) == {"code", "iss"}


def test_loopback_client_gets_its_code_on_the_port_it_asked_for(browser: Browser, alice: User) -> None:
    native = web_app(name="CLI", public=True, redirect_uris=["http://127.0.0.1/cb"], post_logout_redirect_uris=[])
    params = auth_params(native, redirect_uri="http://127.0.0.1:54321/cb")
    query = assert_redirect_to(browser.run(browser.authorize(params)), "http://127.0.0.1:54321/cb")
    assert query["code"]


def test_code_is_redeemable_for_an_id_token_with_the_nonce(browser: Browser, web: WebApp, alice: User) -> None:
    token = id_token_for(browser, web, nonce="n-0S6_WzA2Mj")
    claims = jwt.decode(token, options={"verify_signature": False})
    [session_row] = login_sessions()
    assert (claims["sub"], claims["aud"], claims["nonce"], claims["sid"]) == (
        alice.id,
        web.client_id,
        "n-0S6_WzA2Mj",
        session_row.id,
    )
