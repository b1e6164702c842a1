"""The database is unreachable (SPEC §9, issue 7): endpoints that need it answer a retryable 503, never a 500;
discovery, JWKS and liveness are still served from memory; readiness fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.extensions import db
from tests.conftest import free_port
from tests.oauth_support import CC, basic


@pytest.fixture
def unreachable(settings: dict[str, str]) -> Iterator[FlaskClient]:
    """An installation whose PostgreSQL is not there (nothing listens on the port)."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/idp?connect_timeout=2"
    application: Flask = create_app({**settings, "IDP_DATABASE_URL": url})
    yield application.test_client()
    with application.app_context():
        db.engine.dispose()


def assert_unavailable(response: object) -> None:
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert response.get_json()["error"] == "temporarily_unavailable"  # type: ignore[attr-defined]
    assert response.headers["Retry-After"].isdigit()  # type: ignore[attr-defined]
    assert response.headers["Cache-Control"] == "no-store"  # type: ignore[attr-defined]


def test_token_request_is_a_retryable_503(unreachable: FlaskClient) -> None:
    assert_unavailable(unreachable.post("/token", data=CC, headers=basic("some-client", "idp_0123456789abcdef_x")))


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_introspection_and_revocation_are_retryable_503s(unreachable: FlaskClient, path: str) -> None:
    response = unreachable.post(path, data={"token": "x"}, headers=basic("some-client", "idp_0123456789abcdef_x"))
    assert_unavailable(response)


def test_userinfo_is_a_retryable_503_or_a_bearer_refusal(unreachable: FlaskClient) -> None:
    response = unreachable.get("/userinfo", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code in (401, 503)  # a malformed token is refused before the database is needed


@pytest.mark.parametrize("path", ["/jwks", "/.well-known/openid-configuration", "/healthz"])
def test_public_documents_and_liveness_are_still_served(unreachable: FlaskClient, path: str) -> None:
    assert unreachable.get(path).status_code == 200


def test_readiness_fails_with_retry_after(unreachable: FlaskClient) -> None:
    response = unreachable.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "unavailable"
    assert response.headers["Retry-After"].isdigit()
