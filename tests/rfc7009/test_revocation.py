"""Token revocation (RFC 7009): a client revokes its own access tokens (their ``jti`` is denied until ``exp``);
unknown tokens and ``token_type_hint`` values are answered 200 (§2.2); another client's token is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import AuditEvent, RevokedToken
from idp.services.clients import ClientSpec, create_client
from tests.oauth_support import Service, assert_error, assert_no_store, basic, issue, service


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


def revoke(client: FlaskClient, caller: Service, token: str, **extra: str) -> Any:
    return client.post("/revoke", data={"token": token, **extra}, headers=basic(caller.client_id, caller.key))


def is_active(client: FlaskClient, caller: Service, token: str) -> bool:
    response = client.post("/introspect", data={"token": token}, headers=basic(caller.client_id, caller.key))
    return bool(response.get_json()["active"])


def test_revoked_token_becomes_inactive_until_its_exp(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    response = revoke(client, svc, token)
    assert response.status_code == 200
    assert_no_store(response)
    assert not is_active(client, svc, token)
    row = db.session.scalars(select(RevokedToken)).one()
    assert row.client_id == svc.client_id
    assert row.expires_at.timestamp() > time.time()


def test_revoking_does_not_touch_the_clients_other_tokens(client: FlaskClient, svc: Service) -> None:
    first, second = issue(client, svc), issue(client, svc)
    assert revoke(client, svc, first).status_code == 200
    assert is_active(client, svc, second)


def test_client_cannot_revoke_another_clients_token(client: FlaskClient, app: Flask, svc: Service) -> None:
    token = issue(client, svc)
    intruder = service(name="intruder")
    assert_error(revoke(client, intruder, token), 400, "unauthorized_client")
    assert is_active(client, svc, token)


@pytest.mark.parametrize("token", ["unknown-opaque-token", "a.b.c", "x" * 9000])
def test_unknown_token_is_answered_200(client: FlaskClient, svc: Service, token: str) -> None:
    response = revoke(client, svc, token)
    assert response.status_code == 200
    assert_no_store(response)


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "made_up"])
def test_any_token_type_hint_is_answered_200_and_the_token_revoked(
    client: FlaskClient, svc: Service, hint: str
) -> None:
    """RFC 7009 §2.1: a wrong hint only means the server looks further; an unknown one is ignored (SPEC §9)."""
    token = issue(client, svc)
    assert revoke(client, svc, token, token_type_hint=hint).status_code == 200
    assert not is_active(client, svc, token)


def test_revoking_twice_is_200_and_recorded_once(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    assert revoke(client, svc, token).status_code == 200
    assert revoke(client, svc, token).status_code == 200
    assert not is_active(client, svc, token)
    revoked = select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "token.revoked")
    assert db.session.scalar(revoked) == 1


def test_public_client_may_revoke_but_not_someone_elses_token(client: FlaskClient, app: Flask, svc: Service) -> None:
    """RFC 7009 §2.1: public clients may call the endpoint, identified by ``client_id``."""
    public, _ = create_client(ClientSpec(name="spa", public=True, redirect_uris=["http://127.0.0.1/cb"]))
    token = issue(client, svc)
    response = client.post("/revoke", data={"token": token, "client_id": public.id})
    assert_error(response, 400, "unauthorized_client")
    assert client.post("/revoke", data={"token": "unknown", "client_id": public.id}).status_code == 200


def test_revocation_without_client_authentication_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    assert_error(client.post("/revoke", data={"token": token}), 401, "invalid_client")
    assert is_active(client, svc, token)


def test_revocation_with_a_wrong_key_is_invalid_client(client: FlaskClient, svc: Service) -> None:
    token = issue(client, svc)
    headers = basic(svc.client_id, "idp_0123456789abcdef_" + "A" * 43)
    assert_error(client.post("/revoke", data={"token": token}, headers=headers), 401, "invalid_client")
    assert is_active(client, svc, token)


def test_missing_token_is_invalid_request(client: FlaskClient, svc: Service) -> None:
    assert_error(client.post("/revoke", data={}, headers=basic(svc.client_id, svc.key)), 400, "invalid_request")
