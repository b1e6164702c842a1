"""Discovery, JWKS and health endpoints (SPEC §5, §8)."""

from __future__ import annotations

import pytest

PRIVATE = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery_documents_name_issuer_and_jwks(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json["issuer"] == "http://127.0.0.1:5000"
    assert response.json["jwks_uri"] == "http://127.0.0.1:5000/jwks"
    assert response.headers["Cache-Control"] == "public, max-age=300"


def test_both_metadata_documents_are_the_same_bytes(client):
    oidc = client.get("/.well-known/openid-configuration")
    oauth = client.get("/.well-known/oauth-authorization-server")
    assert oidc.data == oauth.data
    assert oidc.headers["ETag"] == oauth.headers["ETag"]


@pytest.mark.parametrize("path", ["/jwks", "/.well-known/openid-configuration"])
def test_strong_etag_and_304_on_if_none_match(client, path):
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    other = client.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_jwks_publishes_active_and_next_public_keys_only(client):
    keys = client.get("/jwks").json["keys"]
    assert len(keys) == 2
    for jwk in keys:
        assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"
        assert not PRIVATE & set(jwk)
        assert len(jwk["kid"]) == 43


def test_jwks_rejects_other_methods_with_json(client):
    response = client.post("/jwks")
    assert response.status_code == 405
    assert response.json == {"error": "invalid_request", "error_description": "method not allowed"}
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS" or "GET" in response.headers["Allow"]


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "keys": "ok"}


def test_readyz_fails_without_a_keyring(tmp_path, migrated_sqlite):
    from idp import create_app
    from tests.conftest import base_settings, copy_sqlite

    settings = base_settings(tmp_path)
    copy_sqlite(migrated_sqlite, tmp_path / "idp.db")
    app = create_app(settings)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["keys"] == "unavailable"
    assert app.test_client().get("/jwks").status_code == 503
