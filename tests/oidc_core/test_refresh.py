"""Refresh tokens (RFC 6749 §6, RFC 9700 §4.14, SPEC §7): rotated on every use; a rotated token presented
again revokes the whole family (every refresh and access token of the grant), except within
``IDP_REFRESH_TOKEN_REUSE_GRACE`` of its rotation; idle and absolute expiry; narrowing the scope is allowed,
widening is not; bound to the client; revocable at ``/revoke`` together with the grant."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.extensions import db
from idp.models import Grant, GrantAccessToken, RefreshToken, RevokedToken, User
from idp.models.base import utcnow
from tests.oauth_support import assert_error, assert_no_store, basic
from tests.oidc_support import (
    app_with,
    decode,
    is_active,
    public_app,
    refresh,
    sign_in_and_redeem,
    userinfo_status,
)
from tests.pages.support import WebApp, audit_events, user, web_app


@pytest.fixture
def tokens(client: FlaskClient, web: WebApp, alice: User) -> dict[str, Any]:
    return sign_in_and_redeem(client, web)


def _digest(token: str) -> str:
    """SPEC §7: refresh tokens are stored as their SHA-256 digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def refreshed(client: FlaskClient, web: WebApp, token: str, **extra: str) -> dict[str, Any]:
    response = refresh(client, web, token, **extra)
    assert response.status_code == 200, response.get_json()
    assert_no_store(response)
    return dict(response.get_json())


def token_row(token: str) -> RefreshToken:
    db.session.expire_all()
    row = db.session.get(RefreshToken, _digest(token))
    assert row is not None
    return row


def assert_family_revoked(client: FlaskClient, web: WebApp, bodies: list[dict[str, Any]]) -> None:
    """Every refresh token and every access token of the grant is dead, in the database and to clients."""
    for body in bodies:
        assert_error(refresh(client, web, body["refresh_token"]), 400, "invalid_grant")
        assert not is_active(client, web, body["access_token"])
        assert userinfo_status(client, body["access_token"]) == 401
    db.session.expire_all()
    assert all(row.revoked_at is not None for row in db.session.scalars(select(RefreshToken)))
    assert all(row.revoked_at is not None for row in db.session.scalars(select(Grant)))
    issued = set(db.session.scalars(select(GrantAccessToken.jti)))
    assert len(issued) == len(bodies) and issued <= set(db.session.scalars(select(RevokedToken.jti)))


def test_every_refresh_rotates_the_token(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    chain = [tokens]
    for _ in range(3):
        chain.append(refreshed(client, web, chain[-1]["refresh_token"]))
    refresh_tokens = [body["refresh_token"] for body in chain]
    assert len(set(refresh_tokens)) == 4
    assert len({body["access_token"] for body in chain}) == 4
    rows = [token_row(token) for token in refresh_tokens]
    assert len({row.grant_id for row in rows}) == 1
    assert all(row.rotated_at is not None for row in rows[:-1]) and rows[-1].rotated_at is None
    assert all(row.revoked_at is None for row in rows)
    assert userinfo_status(client, chain[-1]["access_token"]) == 200
    assert {"access_token", "id_token", "refresh_token", "expires_in", "scope"} <= set(chain[-1])


def test_stored_as_digest_only(client: FlaskClient, tokens: dict[str, Any]) -> None:
    stored = [row.digest for row in db.session.scalars(select(RefreshToken))]
    assert stored == [_digest(tokens["refresh_token"])]
    assert len(tokens["refresh_token"]) >= 43


def test_reused_refresh_token_revokes_the_family(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    second = refreshed(client, web, tokens["refresh_token"])
    third = refreshed(client, web, second["refresh_token"])
    assert userinfo_status(client, third["access_token"]) == 200

    body = assert_error(refresh(client, web, tokens["refresh_token"]), 400, "invalid_grant")
    assert "revoked" in body["error_description"]

    assert_family_revoked(client, web, [tokens, second, third])
    [event] = audit_events("refresh_token.reused")
    assert event.client_id == web.client_id and event.ip == "127.0.0.1" and event.request_id
    assert event.details["grant_id"] == token_row(tokens["refresh_token"]).grant_id
    assert tokens["refresh_token"] not in str(event.details)


def test_reuse_leaves_other_grants_alone(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    other = sign_in_and_redeem(client, web)
    refreshed(client, web, tokens["refresh_token"])
    assert refresh(client, web, tokens["refresh_token"]).status_code == 400
    assert is_active(client, web, other["access_token"])
    assert refresh(client, web, other["refresh_token"]).status_code == 200


def test_reuse_within_grace_is_refused_without_revoking(settings: dict[str, str]) -> None:
    """Parallel tabs: the old token is refused, the newest one (and its access token) keeps working."""
    with app_with(settings, IDP_REFRESH_TOKEN_REUSE_GRACE="30") as (_, http):
        user()
        web = web_app()
        first = sign_in_and_redeem(http, web)
        second = refreshed(http, web, first["refresh_token"])

        body = assert_error(refresh(http, web, first["refresh_token"]), 400, "invalid_grant")
        assert "already used" in body["error_description"]
        assert audit_events("refresh_token.reused") == []
        assert is_active(http, web, second["access_token"])
        assert userinfo_status(http, second["access_token"]) == 200
        third = refreshed(http, web, second["refresh_token"])

        # Past the grace period the same presentation is reuse.
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.digest == _digest(first["refresh_token"]))
            .values(rotated_at=utcnow() - timedelta(seconds=31))
        )
        db.session.commit()
        assert_error(refresh(http, web, first["refresh_token"]), 400, "invalid_grant")
        assert len(audit_events("refresh_token.reused")) == 1
        assert_family_revoked(http, web, [first, second, third])


def test_idle_expiry(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    row = token_row(tokens["refresh_token"])
    db.session.execute(update(RefreshToken).where(RefreshToken.digest == row.digest).values(idle_expires_at=utcnow()))
    db.session.commit()
    body = assert_error(refresh(client, web, tokens["refresh_token"]), 400, "invalid_grant")
    assert "expired" in body["error_description"]
    assert token_row(tokens["refresh_token"]).rotated_at is None
    assert audit_events("refresh_token.reused") == []


def test_idle_ttl_setting_is_applied_and_renewed_by_each_refresh(settings: dict[str, str]) -> None:
    with app_with(settings, IDP_REFRESH_TOKEN_IDLE_TTL="1h") as (_, http):
        user()
        web = web_app()
        first = sign_in_and_redeem(http, web)
        row = token_row(first["refresh_token"])
        assert row.idle_expires_at - utcnow() == pytest.approx(timedelta(hours=1), abs=timedelta(seconds=5))
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.digest == row.digest)
            .values(idle_expires_at=utcnow() + timedelta(seconds=5))
        )
        db.session.commit()
        second = refreshed(http, web, first["refresh_token"])
        renewed = token_row(second["refresh_token"]).idle_expires_at - utcnow()
        assert renewed == pytest.approx(timedelta(hours=1), abs=timedelta(seconds=5))


def test_absolute_expiry(settings: dict[str, str]) -> None:
    """``IDP_REFRESH_TOKEN_TTL`` bounds the family: no token outlives the grant, however often it is used."""
    with app_with(settings, IDP_REFRESH_TOKEN_TTL="2h", IDP_REFRESH_TOKEN_IDLE_TTL="7d") as (_, http):
        user()
        web = web_app()
        first = sign_in_and_redeem(http, web)
        grant = db.session.get(Grant, token_row(first["refresh_token"]).grant_id)
        assert grant is not None
        assert grant.expires_at - utcnow() == pytest.approx(timedelta(hours=2), abs=timedelta(seconds=5))
        second = refreshed(http, web, first["refresh_token"])
        assert token_row(second["refresh_token"]).idle_expires_at == grant.expires_at

        db.session.execute(update(Grant).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        body = assert_error(refresh(http, web, second["refresh_token"]), 400, "invalid_grant")
        assert "expired" in body["error_description"]


def test_scope_can_be_narrowed(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    narrow = refreshed(client, web, tokens["refresh_token"], scope="openid email")
    assert narrow["scope"] == "openid email"
    jwks = client.get("/jwks").get_json()
    _, access = decode(jwks, narrow["access_token"])
    assert access["scope"] == "openid email"
    _, id_claims = decode(jwks, narrow["id_token"])
    assert "email" in id_claims and "name" not in id_claims
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {narrow['access_token']}"}).get_json()
    assert "email" in info and "name" not in info
    # RFC 6749 §6: the new refresh token carries the original grant, so the full scope can come back.
    full = refreshed(client, web, narrow["refresh_token"])
    assert full["scope"] == tokens["scope"]


def test_narrowing_away_openid_gives_no_id_token(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    narrow = refreshed(client, web, tokens["refresh_token"], scope="profile")
    assert narrow["scope"] == "profile" and "id_token" not in narrow
    assert userinfo_status(client, narrow["access_token"]) == 403


@pytest.mark.parametrize("scope", ["openid profile email offline_access admin", "admin", "openid\x7fx"])
def test_scope_cannot_be_widened(client: FlaskClient, web: WebApp, alice: User, scope: str) -> None:
    body = sign_in_and_redeem(client, web, scope="openid email offline_access")
    assert_error(refresh(client, web, body["refresh_token"], scope=scope), 400, "invalid_scope")
    assert token_row(body["refresh_token"]).rotated_at is None


def test_widening_to_a_scope_the_client_has_but_the_grant_lacks(client: FlaskClient, web: WebApp, alice: User) -> None:
    body = sign_in_and_redeem(client, web, scope="openid email offline_access")
    assert_error(refresh(client, web, body["refresh_token"], scope="openid profile"), 400, "invalid_scope")
    assert refresh(client, web, body["refresh_token"]).status_code == 200


def test_refresh_by_another_client_is_invalid_grant(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    other = web_app(name="Other")
    assert_error(refresh(client, other, tokens["refresh_token"]), 400, "invalid_grant")
    assert token_row(tokens["refresh_token"]).rotated_at is None
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("token", ["unknown", "x" * 300, "a.b.c"])
def test_unknown_refresh_token_is_invalid_grant(client: FlaskClient, web: WebApp, token: str) -> None:
    assert_error(refresh(client, web, token), 400, "invalid_grant")


def test_missing_refresh_token_is_invalid_request(client: FlaskClient, web: WebApp) -> None:
    assert web.key is not None
    response = client.post("/token", data={"grant_type": "refresh_token"}, headers=basic(web.client_id, web.key))
    assert_error(response, 400, "invalid_request")


def test_access_token_is_not_a_refresh_token(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    assert_error(refresh(client, web, tokens["access_token"]), 400, "invalid_grant")


def test_revoking_the_refresh_token_revokes_the_grant(client: FlaskClient, web: WebApp, tokens: dict[str, Any]) -> None:
    assert web.key is not None
    second = refreshed(client, web, tokens["refresh_token"])
    response = client.post(
        "/revoke",
        data={"token": second["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic(web.client_id, web.key),
    )
    assert response.status_code == 200
    assert_no_store(response)
    assert_family_revoked(client, web, [tokens, second])
    [event] = audit_events("token.revoked")
    assert event.details["token_type"] == "refresh_token" and event.ip == "127.0.0.1"
    assert audit_events("refresh_token.reused") == []


def test_revoking_with_a_wrong_hint_still_revokes_the_grant(
    client: FlaskClient, web: WebApp, tokens: dict[str, Any]
) -> None:
    assert web.key is not None
    data = {"token": tokens["refresh_token"], "token_type_hint": "access_token"}
    assert client.post("/revoke", data=data, headers=basic(web.client_id, web.key)).status_code == 200
    assert_family_revoked(client, web, [tokens])


def test_another_client_cannot_revoke_the_refresh_token(
    client: FlaskClient, web: WebApp, tokens: dict[str, Any]
) -> None:
    other = web_app(name="Other")
    assert other.key is not None
    response = client.post(
        "/revoke", data={"token": tokens["refresh_token"]}, headers=basic(other.client_id, other.key)
    )
    assert_error(response, 400, "unauthorized_client")
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200


def test_public_client_refreshes_with_rotation(client: FlaskClient, alice: User) -> None:
    native = public_app()
    first = sign_in_and_redeem(client, native)
    second = refreshed(client, native, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert refresh(client, native, first["refresh_token"]).status_code == 400
    assert refresh(client, native, second["refresh_token"]).status_code == 400


def test_no_refresh_token_without_offline_access_or_the_grant(client: FlaskClient, alice: User) -> None:
    plain = web_app(grant_types=["authorization_code"])
    assert "refresh_token" not in sign_in_and_redeem(client, plain, scope="openid profile")
    offline = sign_in_and_redeem(client, plain, scope="openid offline_access")
    assert "refresh_token" in offline
    assert refresh(client, plain, offline["refresh_token"]).status_code == 200
