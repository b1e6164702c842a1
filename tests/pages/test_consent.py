"""The consent page (OIDC Core §3.1.2.4, SPEC §5): what it shows, allow and deny, remembered consent, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from idp.extensions import db
from idp.models import AuthorizationCode, Consent, User
from tests.pages.support import (
    Browser,
    WebApp,
    assert_error_page,
    assert_redirect_error,
    assert_redirect_to,
    audit_events,
    auth_params,
    authorize_url,
    page_form,
    user,
    web_app,
)


def consents() -> list[Consent]:
    db.session.expire_all()
    return list(db.session.scalars(select(Consent)))


def codes_issued() -> int:
    return int(db.session.scalar(select(func.count()).select_from(AuthorizationCode)) or 0)


def consent_page(browser: Browser, params: dict[str, str]) -> Any:
    """Sign in for ``params`` and stop at the consent page."""
    response = browser.sign_in(browser.authorize(params))
    response = browser.get(response.location)
    assert response.status_code == 302 and response.location.startswith("/consent?"), response.location
    page = browser.get(response.location)
    assert page.status_code == 200
    return page


def test_consent_page_names_the_client_the_scopes_and_the_user(browser: Browser, web: WebApp, alice: User) -> None:
    page = consent_page(browser, auth_params(web, scope="openid email offline_access"))
    text = page.text
    assert "Allow Web App?" in text and "alice" in text
    assert "See your email address" in text and "Stay connected" in text and "See your name" not in text
    form = page_form(page)
    assert form["action"] == "/consent" and form["method"] == "post"
    assert {"csrf_token", "return_to", "decision"} <= set(form["fields"])
    assert 'value="allow"' in text and 'value="deny"' in text


def test_allow_answers_with_a_code_and_remembers_the_scopes(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web, scope="openid email")
    response = browser.submit(consent_page(browser, params), decision="allow")
    assert response.status_code == 303 and response.location == authorize_url(params)
    query = assert_redirect_to(browser.get(response.location), web.redirect_uri)
    assert query["code"] and query["state"] == params["state"]
    [row] = consents()
    assert (row.user_id, row.client_id, sorted(row.scopes)) == (alice.id, web.client_id, ["email", "openid"])
    [event] = audit_events("consent.granted")
    assert (event.actor, event.client_id, event.details["scope"]) == (alice.id, web.client_id, "openid email")


def test_deny_redirects_access_denied_with_state_and_remembers_nothing(
    browser: Browser, web: WebApp, alice: User
) -> None:
    params = auth_params(web)
    response = browser.submit(consent_page(browser, params), decision="deny")
    assert response.status_code == 303
    assert_redirect_error(response, web.redirect_uri, "access_denied", params["state"])
    assert consents() == [] and codes_issued() == 0
    [event] = audit_events("consent.denied")
    assert (event.actor, event.client_id, event.details["scope"]) == (alice.id, web.client_id, "openid profile")
    assert audit_events("consent.granted") == []


def test_deny_with_form_post_answers_with_a_form(browser: Browser, web: WebApp, alice: User) -> None:
    params = auth_params(web, response_mode="form_post")
    response = browser.submit(consent_page(browser, params), decision="deny")
    form = page_form(response)
    assert response.status_code == 200 and form["action"] == web.redirect_uri
    assert form["fields"]["error"] == "access_denied" and form["fields"]["state"] == params["state"]


def test_remembered_consent_for_the_same_scopes_skips_the_page(browser: Browser, web: WebApp, alice: User) -> None:
    browser.code_flow(auth_params(web, scope="openid profile email"))
    for scope in ("openid profile email", "openid email"):
        response = browser.authorize(auth_params(web, scope=scope))
        assert_redirect_to(response, web.redirect_uri)["code"]
    assert len(audit_events("consent.granted")) == 1


def test_asking_for_more_scopes_asks_again_and_remembers_the_union(browser: Browser, web: WebApp, alice: User) -> None:
    browser.code_flow(auth_params(web, scope="openid"))
    response = browser.authorize(auth_params(web, scope="openid email"))
    assert response.status_code == 302 and response.location.startswith("/consent?")
    browser.run(response)
    [row] = consents()
    assert sorted(row.scopes) == ["email", "openid"]


def test_consent_is_per_user(new_browser: Callable[[], Browser], web: WebApp, alice: User) -> None:
    user("bob")
    new_browser().code_flow(auth_params(web))
    bob = new_browser()
    response = bob.get(bob.sign_in(bob.authorize(auth_params(web)), username="bob").location)
    assert response.status_code == 302 and response.location.startswith("/consent?")


def test_skip_consent_client_never_shows_the_page(browser: Browser, alice: User) -> None:
    first_party = web_app(name="Portal", skip_consent=True)
    response = browser.sign_in(browser.authorize(auth_params(first_party)))
    query = assert_redirect_to(browser.get(response.location), first_party.redirect_uri)
    assert query["code"]
    assert consents() == [] and audit_events("consent.granted") == []


def test_consent_without_csrf_token_is_refused(browser: Browser, web: WebApp, alice: User) -> None:
    page = consent_page(browser, auth_params(web))
    return_to = page_form(page)["fields"]["return_to"]
    response = browser.client.post("/consent", data={"return_to": return_to, "decision": "allow"})
    assert_error_page(response)
    assert consents() == [] and audit_events("consent.granted") == []


def test_consent_with_another_browsers_csrf_token_is_refused(
    new_browser: Callable[[], Browser], browser: Browser, web: WebApp, alice: User
) -> None:
    victim_page = consent_page(browser, auth_params(web))
    attacker = new_browser()
    attacker_page = consent_page(attacker, auth_params(web))
    token = page_form(attacker_page)["fields"]["csrf_token"]
    response = browser.submit(victim_page, csrf_token=token, decision="allow")
    assert_error_page(response)
    assert consents() == []


def test_consent_without_a_session_sends_the_browser_to_login(browser: Browser, web: WebApp) -> None:
    params = auth_params(web)
    response = browser.client.get("/consent", query_string={"return_to": authorize_url(params)})
    assert response.status_code == 302 and response.location.startswith("/login?")


def test_consent_for_a_request_that_is_not_ours_is_an_error_page(browser: Browser, alice: User) -> None:
    for return_to in ("https://evil.example/authorize?x=1", "/authorize?client_id=unknown&redirect_uri=x"):
        assert_error_page(browser.client.get("/consent", query_string={"return_to": return_to}))


def test_a_decision_other_than_allow_or_deny_changes_nothing(browser: Browser, web: WebApp, alice: User) -> None:
    response = browser.submit(consent_page(browser, auth_params(web)), decision="maybe")
    assert_error_page(response)
    assert consents() == [] and codes_issued() == 0


def test_consent_page_escapes_the_client_name(browser: Browser, alice: User) -> None:
    hostile = web_app(name='Evil <img src=x onerror="alert(1)">')
    page = consent_page(browser, auth_params(hostile))
    text = page.text
    assert "<img" not in text and "&lt;img src=x" in text
