"""Authorization-code redemption at the token endpoint (RFC 6749 §4.1.3, SPEC §7): single use, and a second
presentation revokes what the first issued (RFC 6749 §4.1.2, RFC 9700 §4.5); bound to the client, the redirect
URI and its lifetime; public clients redeem with PKCE alone."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.extensions import db
from idp.models import AuthorizationCode, Grant, GrantAccessToken, RefreshToken, RevokedToken, User
from idp.models.base import utcnow
from idp.services.codes import digest
from tests.oauth_support import assert_error, assert_no_store, service
from tests.oidc_support import (
    OTHER_REDIRECT_URI,
    Authorization,
    FlaskBrowser,
    app_with,
    authorize,
    bearer,
    is_active,
    public_app,
    redeem,
    refresh,
)
from tests.pages.support import REDIRECT_URI, WebApp, audit_events, user, web_app


@pytest.fixture
def auth(client: FlaskClient, web: WebApp, alice: User) -> Authorization:
    return authorize(FlaskBrowser(client), web)


def code_row(code: str) -> AuthorizationCode:
    db.session.expire_all()
    row = db.session.get(AuthorizationCode, digest(code))
    assert row is not None
    return row


def test_code_redeems_once_for_tokens_and_records_the_grant(
    client: FlaskClient, web: WebApp, auth: Authorization
) -> None:
    response = redeem(client, web, auth)
    assert response.status_code == 200, response.get_json()
    assert_no_store(response)
    body = response.get_json()
    assert {"access_token", "id_token", "refresh_token", "expires_in"} <= set(body)
    assert body["token_type"] == "Bearer"
    row = code_row(auth.code)
    assert row.consumed_at is not None and row.grant_id is not None
    grant = db.session.get(Grant, row.grant_id)
    assert grant is not None and grant.client_id == web.client_id and grant.revoked_at is None
    assert db.session.scalars(select(RefreshToken.grant_id)).all() == [grant.id]
    assert db.session.scalars(select(GrantAccessToken.grant_id)).all() == [grant.id]


def test_code_used_twice_fails_and_revokes_the_first_redemptions_tokens(
    client: FlaskClient, web: WebApp, auth: Authorization
) -> None:
    first = redeem(client, web, auth).get_json()
    assert is_active(client, web, first["access_token"])

    second = redeem(client, web, auth)
    assert_error(second, 400, "invalid_grant")

    assert not is_active(client, web, first["access_token"])
    info = client.get("/userinfo", headers=bearer(first["access_token"]))
    assert info.status_code == 401
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]
    assert_error(refresh(client, web, first["refresh_token"]), 400, "invalid_grant")
    grant_id = code_row(auth.code).grant_id
    grant = db.session.get(Grant, grant_id)
    assert grant is not None and grant.revoked_at is not None
    assert all(t.revoked_at is not None for t in db.session.scalars(select(RefreshToken)))
    assert db.session.scalars(select(RevokedToken.jti)).all() == db.session.scalars(select(GrantAccessToken.jti)).all()
    [event] = audit_events("authorization_code.reused")
    assert event.client_id == web.client_id and event.ip == "127.0.0.1" and event.request_id
    assert event.details["grant_id"] == grant_id
    assert auth.code not in str(event.details)


def test_code_reused_after_its_ttl_still_revokes(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    first = redeem(client, web, auth).get_json()
    db.session.execute(
        update(AuthorizationCode).values(expires_at=utcnow() - timedelta(minutes=5), consumed_at=utcnow())
    )
    db.session.commit()
    assert_error(redeem(client, web, auth), 400, "invalid_grant")
    assert not is_active(client, web, first["access_token"])
    assert len(audit_events("authorization_code.reused")) == 1


def test_code_used_by_another_client_is_refused_and_stays_usable(
    client: FlaskClient, web: WebApp, auth: Authorization
) -> None:
    intruder = web_app(name="Intruder")
    assert_error(redeem(client, intruder, auth), 400, "invalid_grant")
    assert code_row(auth.code).consumed_at is None
    assert audit_events("authorization_code.reused") == []
    assert redeem(client, web, auth).status_code == 200


def test_code_after_its_ttl_is_refused(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.digest == digest(auth.code))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    body = assert_error(redeem(client, web, auth), 400, "invalid_grant")
    assert "expired" in body["error_description"]
    assert code_row(auth.code).consumed_at is None


def test_code_ttl_setting_is_applied(settings: dict[str, str]) -> None:
    """``IDP_AUTH_CODE_TTL=1``: a real second later the code is refused."""
    with app_with(settings, IDP_AUTH_CODE_TTL="1") as (_, http):
        user()
        web = web_app()
        auth = authorize(FlaskBrowser(http), web)
        row = code_row(auth.code)
        assert (row.expires_at - row.created_at).total_seconds() == pytest.approx(1, abs=0.01)
        time.sleep(1.1)
        assert_error(redeem(http, web, auth), 400, "invalid_grant")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        OTHER_REDIRECT_URI,
        "https://app.example.com/cb/",
        "https://app.example.com/cb?x=1",
        "HTTPS://app.example.com/cb",
    ],
)
def test_redirect_uri_must_match_the_authorization_request(
    client: FlaskClient, alice: User, redirect_uri: str | None
) -> None:
    """RFC 6749 §4.1.3: present and identical to the authorization request's, even when the other one is
    registered for the client too."""
    app = web_app(redirect_uris=[REDIRECT_URI, OTHER_REDIRECT_URI])
    auth = authorize(FlaskBrowser(client), app)
    assert_error(redeem(client, app, auth, redirect_uri=redirect_uri), 400, "invalid_grant")
    assert code_row(auth.code).consumed_at is None


def test_unknown_code_is_invalid_grant(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    for code in ("x" * 43, "y" * 300, auth.code[:-1]):
        assert_error(redeem(client, web, auth, code=code), 400, "invalid_grant")


def test_missing_code_is_invalid_request(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    assert_error(redeem(client, web, auth, code=None), 400, "invalid_request")


def test_client_without_the_code_grant_is_unauthorized(client: FlaskClient, auth: Authorization) -> None:
    svc = service()
    assert_error(redeem(client, WebApp(svc.client_id, svc.key, REDIRECT_URI), auth), 400, "unauthorized_client")


def test_wrong_client_secret_is_invalid_client(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    impostor = WebApp(web.client_id, "idp_wrong_" + "x" * 43, web.redirect_uri)
    assert_error(redeem(client, impostor, auth), 401, "invalid_client")
    assert code_row(auth.code).consumed_at is None


def test_public_client_redeems_with_pkce_and_client_id_in_the_body(client: FlaskClient, alice: User) -> None:
    native = public_app()
    assert native.key is None
    auth = authorize(FlaskBrowser(client), native)
    response = redeem(client, native, auth)
    assert response.status_code == 200, response.get_json()
    assert_no_store(response)
    assert {"access_token", "id_token", "refresh_token"} <= set(response.get_json())
    assert redeem(client, native, auth).status_code == 400


def test_public_client_cannot_redeem_without_the_verifier(client: FlaskClient, alice: User) -> None:
    native = public_app()
    auth = authorize(FlaskBrowser(client), native)
    assert_error(redeem(client, native, auth, code_verifier=None), 400, "invalid_grant")


def test_public_client_sending_a_secret_is_invalid_client(client: FlaskClient, alice: User) -> None:
    native = public_app()
    auth = authorize(FlaskBrowser(client), native)
    data = {"grant_type": "authorization_code", "code": auth.code, "redirect_uri": native.redirect_uri}
    response = client.post(
        "/token", data={**data, "code_verifier": auth.verifier, "client_id": native.client_id, "client_secret": "x"}
    )
    assert_error(response, 401, "invalid_client")


def test_bad_audience_leaves_the_code_unused(client: FlaskClient, web: WebApp, auth: Authorization) -> None:
    """Every check runs before the code is consumed: a refused request does not burn the code."""
    assert_error(redeem(client, web, auth, resource="https://not-allowed.example"), 400, "invalid_target")
    assert code_row(auth.code).consumed_at is None
    assert redeem(client, web, auth).status_code == 200
