"""The client-credentials hot path (issue 3): no database write, and within the cache window no query at all;
no key is parsed. ``last_used_at`` and the audit rows are written later by the background writer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from idp.extensions import db
from idp.models import ApiKey
from idp.services import client_auth
from idp.services.background import writer
from idp.services.keystore import KeyStore
from tests.oauth_support import CC, Service, basic, service

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


@pytest.fixture
def request_statements(app: Flask) -> Iterator[list[str]]:
    """SQL run by this thread (the test client serves requests in it), not by the background writer."""
    statements: list[str] = []
    me = threading.get_ident()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me:
            statements.append(statement.lstrip().upper())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def no_key_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any) -> Any:
        raise AssertionError("a signing key was parsed on the request path")

    monkeypatch.setattr(KeyStore, "load_private", refuse)


def post_token(client: FlaskClient, svc: Service) -> None:
    response = client.post("/token", data=CC, headers=basic(svc.client_id, svc.key))
    assert response.status_code == 200, response.get_json()


def test_warm_request_runs_no_sql_and_parses_no_key(
    client: FlaskClient, svc: Service, request_statements: list[str], no_key_parsing: None
) -> None:
    post_token(client, svc)  # warm-up: client and key rows are now cached
    request_statements.clear()
    for _ in range(5):
        post_token(client, svc)
    assert request_statements == []


def test_cold_request_only_reads(client: FlaskClient, svc: Service, request_statements: list[str]) -> None:
    post_token(client, svc)
    client_auth.forget(svc.client_id, svc.key_id)  # as if the cache window had passed
    db.session.expire_all()
    request_statements.clear()
    post_token(client, svc)
    assert request_statements, "expected the client and key to be read again"
    assert not [s for s in request_statements if s.startswith(WRITES)]


def test_last_used_at_and_audit_are_written_off_the_request_path(app: Flask, client: FlaskClient, svc: Service) -> None:
    post_token(client, svc)
    writer(app).flush()
    db.session.expire_all()
    key = db.session.get(ApiKey, svc.key_id)
    assert key is not None and key.last_used_at is not None
