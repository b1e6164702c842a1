"""``/authorize`` once client and redirect URI are trusted (RFC 6749 §4.1.2.1, RFC 9207, RFC 7636 §4.4.1,
OIDC Core §3.1.2.6, OAuth 2.0 Form Post Response Mode): every error goes back to the client with ``error``,
``error_description``, ``state`` and ``iss``; optional parameters are accepted, unknown ones ignored."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.pages.support import (
    ISSUER,
    Browser,
    WebApp,
    assert_redirect_error,
    auth_params,
    page_form,
    web_app,
)


def assert_goes_to_login(response: Any) -> None:
    """The request was accepted: the browser is sent on to sign in."""
    assert response.status_code == 302, (response.status_code, response.headers.get("Location"))
    assert response.location.startswith("/login?return_to=%2Fauthorize%3F")


ERRORS = {
    "no-response-type": ({"response_type": None}, "invalid_request"),
    "token": ({"response_type": "token"}, "unsupported_response_type"),
    "id-token": ({"response_type": "id_token"}, "unsupported_response_type"),
    "hybrid": ({"response_type": "code id_token"}, "unsupported_response_type"),
    "scope-not-allowed": ({"scope": "openid admin"}, "invalid_scope"),
    "no-scope": ({"scope": None}, "invalid_scope"),
    "malformed-scope": ({"scope": 'openid "profile'}, "invalid_scope"),
    "blank-scope": ({"scope": "   "}, "invalid_scope"),
    "no-challenge": ({"code_challenge": None}, "invalid_request"),
    "no-method": ({"code_challenge_method": None}, "invalid_request"),
    "plain": ({"code_challenge_method": "plain"}, "invalid_request"),
    "unknown-method": ({"code_challenge_method": "S512"}, "invalid_request"),
    "lowercase-method": ({"code_challenge_method": "s256"}, "invalid_request"),
    "short-challenge": ({"code_challenge": "a" * 42}, "invalid_request"),
    "long-challenge": ({"code_challenge": "a" * 44}, "invalid_request"),
    "padded-challenge": ({"code_challenge": "a" * 42 + "="}, "invalid_request"),
    "challenge-charset": ({"code_challenge": "a" * 42 + "+"}, "invalid_request"),
    "prompt-unknown": ({"prompt": "bogus"}, "invalid_request"),
    "prompt-none-and-login": ({"prompt": "none login"}, "invalid_request"),
    "max-age-negative": ({"max_age": "-1"}, "invalid_request"),
    "max-age-text": ({"max_age": "soon"}, "invalid_request"),
    "max-age-fraction": ({"max_age": "1.5"}, "invalid_request"),
    "max-age-huge": ({"max_age": "9" * 30}, "invalid_request"),
    "response-mode-fragment": ({"response_mode": "fragment"}, "invalid_request"),
    "response-mode-jwt": ({"response_mode": "query.jwt"}, "invalid_request"),
    "nul-in-nonce": ({"nonce": "a\x00b"}, "invalid_request"),
    "oversized-nonce": ({"nonce": "n" * 5000}, "invalid_request"),
    "request-object": ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    "request-uri": ({"request_uri": "https://app.example.com/request.jwt"}, "request_uri_not_supported"),
    "registration": ({"registration": "{}"}, "registration_not_supported"),
    "invalid-id-token-hint": ({"id_token_hint": "not-a-jwt"}, "invalid_request"),
}


@pytest.mark.parametrize("change, error", ERRORS.values(), ids=ERRORS.keys())
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_errors_redirect_with_error_description_state_and_iss(
    browser: Browser, web: WebApp, change: dict[str, str | None], error: str, method: str
) -> None:
    params = auth_params(web, **change)
    response = browser.authorize(params, method=method)
    assert response.status_code == (303 if method == "POST" else 302)
    query = assert_redirect_error(response, web.redirect_uri, error, params["state"])
    assert response.headers["Cache-Control"] == "no-store"
    # RFC 6749 §4.1.2.1: error_description is printable ASCII without '"' and '\'.
    assert re.fullmatch(r"[\x20\x21\x23-\x5b\x5d-\x7e]+", query["error_description"])


@pytest.mark.parametrize("name", ["response_type", "scope", "state", "code_challenge", "nonce", "prompt", "max_age"])
def test_repeated_parameter_is_invalid_request(client: FlaskClient, web: WebApp, name: str) -> None:
    params = auth_params(web, prompt="login", max_age="60")
    response = client.get("/authorize", query_string=[*params.items(), (name, params[name])])
    query = assert_redirect_error(response, web.redirect_uri, "invalid_request", params["state"])
    assert name in query["error_description"]


def test_client_without_the_code_grant_is_unauthorized_client(browser: Browser) -> None:
    service = web_app(name="Service", grant_types=["client_credentials"], scope="openid")
    params = auth_params(service)
    assert_redirect_error(browser.authorize(params), service.redirect_uri, "unauthorized_client", params["state"])


def test_error_without_state_carries_no_state(browser: Browser, web: WebApp) -> None:
    response = browser.authorize(auth_params(web, state=None, response_type="token"))
    assert_redirect_error(response, web.redirect_uri, "unsupported_response_type", None)


def test_state_is_echoed_exactly(browser: Browser, web: WebApp) -> None:
    state = "a&b=c#d %+/?é\u2603\r\nSet-Cookie: x=1"
    params = auth_params(web, state=state, response_type="token")
    response = browser.authorize(params)
    assert "\r" not in response.location and "\n" not in response.location
    assert_redirect_error(response, web.redirect_uri, "unsupported_response_type", state)
    assert not any("x=1" in h for h in response.headers.getlist("Set-Cookie"))


def test_nonce_is_required_when_the_client_registered_so(browser: Browser) -> None:
    strict = web_app(name="Strict", require_nonce=True)
    params = auth_params(strict, nonce=None)
    query = assert_redirect_error(browser.authorize(params), strict.redirect_uri, "invalid_request", params["state"])
    assert "nonce" in query["error_description"]
    assert_goes_to_login(browser.authorize(auth_params(strict)))


def test_nonce_is_optional_otherwise(browser: Browser, web: WebApp) -> None:
    assert_goes_to_login(browser.authorize(auth_params(web, nonce=None)))


@pytest.mark.parametrize(
    "extra",
    [
        {"display": "page"},
        {"display": "popup"},
        {"ui_locales": "de-CH fr en"},
        {"claims_locales": "de en"},
        {"login_hint": "alice@example.com"},
        {"acr_values": "urn:mace:incommon:iap:silver"},
        {"claims": '{"userinfo": {"email": null}}'},
        {"prompt": "login consent"},
        {"prompt": "select_account"},
        {"max_age": "0"},
        {"response_mode": "query"},
        {"response_mode": "form_post"},
        {"unknown_parameter": "whatever"},
        {"resource": "https://api.example.com"},
        {"state": ""},
    ],
    ids=lambda extra: "-".join(f"{k}={v}"[:30] for k, v in extra.items()),
)
def test_optional_and_unknown_parameters_are_accepted(browser: Browser, web: WebApp, extra: dict[str, str]) -> None:
    assert_goes_to_login(browser.authorize(auth_params(web, **extra)))


def test_unknown_parameters_may_repeat(client: FlaskClient, web: WebApp) -> None:
    params = [*auth_params(web).items(), ("foo", "1"), ("foo", "2"), ("resource", "a"), ("resource", "b")]
    assert_goes_to_login(client.get("/authorize", query_string=params))


def test_undecodable_query_is_answered_without_a_server_error(client: FlaskClient, web: WebApp) -> None:
    params = auth_params(web, state=None, nonce=None)
    query = "&".join(f"{k}={v}" for k, v in params.items()) + "&state=%ff%fe&nonce=%zz&x=%C0%80"
    assert_goes_to_login(client.get("/authorize?" + query))


# --- response_mode=form_post ------------------------------------------------------------------------------


def assert_form_post(response: Any, redirect_uri: str, form_action_source: str) -> dict[str, str]:
    """An auto-submitting form to the client whose CSP allows exactly that form action and the nonce'd script."""
    assert response.status_code == 200 and "Location" not in response.headers
    assert response.mimetype == "text/html" and response.headers["Cache-Control"] == "no-store"
    form = page_form(response)
    assert form["method"] == "post" and form["action"] == redirect_uri
    csp = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", csp["script-src"])
    assert nonce is not None, csp
    assert csp["default-src"] == "'none'" and csp["form-action"] == form_action_source
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    scripts = re.findall(r"<script([^>]*)>", response.text)
    assert scripts == [f' nonce="{nonce.group(1)}"']
    assert response.headers["X-Frame-Options"] == "DENY"
    fields: dict[str, str] = form["fields"]
    assert fields["iss"] == ISSUER
    return fields


def test_form_post_error_is_a_form_posting_to_the_redirect_uri(browser: Browser, web: WebApp) -> None:
    params = auth_params(web, response_mode="form_post", code_challenge_method="plain")
    fields = assert_form_post(browser.authorize(params), web.redirect_uri, "https://app.example.com")
    assert fields["error"] == "invalid_request" and fields["state"] == params["state"]
    assert fields["error_description"]


def test_form_post_escapes_the_state(browser: Browser, web: WebApp) -> None:
    state = '"><script>alert(1)</script><input name="code" value="'
    params = auth_params(web, response_mode="form_post", response_type="token", state=state)
    fields = assert_form_post(browser.authorize(params), web.redirect_uri, "https://app.example.com")
    assert fields["state"] == state and "code" not in fields


def test_form_post_to_a_port_and_to_a_private_use_scheme(browser: Browser) -> None:
    app = web_app(name="Ports", redirect_uris=["https://app.example.com:8443/cb", "com.example.app:/oauth/cb"])
    params = auth_params(app, response_mode="form_post", response_type="token")
    assert_form_post(browser.authorize(params), app.redirect_uri, "https://app.example.com:8443")
    params = auth_params(
        app, response_mode="form_post", response_type="token", redirect_uri="com.example.app:/oauth/cb"
    )
    assert_form_post(browser.authorize(params), "com.example.app:/oauth/cb", "com.example.app:")


def test_repeated_response_mode_is_reported_in_the_first_mode(client: FlaskClient, web: WebApp) -> None:
    params = auth_params(web, response_mode="form_post")
    response = client.get("/authorize", query_string=[*params.items(), ("response_mode", "query")])
    fields = assert_form_post(response, web.redirect_uri, "https://app.example.com")
    assert fields["error"] == "invalid_request"
