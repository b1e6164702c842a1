"""`idp clients create | list | show | update | delete` (SPEC §4, §6)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from idp.extensions import db
from idp.models import ApiKey, AuditEvent, Client
from tests.cli.support import API_KEY, assert_one_error_line, fresh, ok_json

METADATA = {
    "client_id",
    "name",
    "public",
    "token_endpoint_auth_method",
    "grant_types",
    "redirect_uris",
    "post_logout_redirect_uris",
    "scope",
    "audiences",
    "access_token_ttl",
    "skip_consent",
    "require_nonce",
    "jwks_uri",
    "has_jwks",
    "logo_uri",
    "created_at",
}


def create_service(cli, *extra):
    return ok_json(
        cli(
            "clients",
            "create",
            "--name",
            "billing",
            "--audience",
            "https://api.example.com",
            "--scope",
            "invoices:read invoices:write",
            *extra,
            "--json",
        )
    )


def test_confidential_client_gets_its_first_api_key_and_the_stored_metadata(cli, app):
    data = create_service(cli)

    assert set(data) == METADATA | {"client_secret", "api_key_id"}
    match = API_KEY.match(data["client_secret"])
    assert match and match.group(1) == data["api_key_id"]
    assert data["name"] == "billing"
    assert data["public"] is False
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["grant_types"] == ["client_credentials"]
    assert data["scope"] == "invoices:read invoices:write"
    assert data["audiences"] == ["https://api.example.com"]
    assert data["redirect_uris"] == []

    client = fresh(Client, data["client_id"])
    assert client.name == "billing" and not client.is_public
    assert client.scopes == ["invoices:read", "invoices:write"]
    assert client.audiences == ["https://api.example.com"]
    assert client.grant_types == ["client_credentials"]
    key = fresh(ApiKey, data["api_key_id"])
    assert key.client_id == client.id and key.name == "default" and key.revoked_at is None


def test_public_client_gets_no_secret_and_no_api_key(cli, app):
    data = ok_json(
        cli("clients", "create", "--name", "spa", "--public", "--redirect-uri", "https://app.example.com/cb", "--json")
    )

    assert set(data) == METADATA
    assert data["public"] is True
    assert data["token_endpoint_auth_method"] == "none"
    assert data["grant_types"] == ["authorization_code"]
    assert data["redirect_uris"] == ["https://app.example.com/cb"]
    assert fresh(Client, data["client_id"]).is_public
    assert db.session.scalars(select(ApiKey).where(ApiKey.client_id == data["client_id"])).all() == []


@pytest.mark.parametrize("kind", ["--public", "--confidential"])
def test_code_flow_client_without_scope_gets_openid_profile_email(cli, app, kind):
    data = ok_json(
        cli(
            "clients",
            "create",
            "--name",
            "web",
            kind,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--json",
        )
    )

    assert data["scope"] == "openid profile email"
    assert data["grant_types"] == ["authorization_code", "refresh_token"]
    assert fresh(Client, data["client_id"]).scopes == ["openid", "profile", "email"]


@pytest.mark.parametrize(
    "uri", ["https://app.example.com/cb", "http://127.0.0.1:8080/cb", "http://[::1]/cb", "com.example.app:/cb"]
)
def test_https_loopback_http_and_private_use_redirect_uris_are_accepted(cli, app, uri):
    data = ok_json(cli("clients", "create", "--name", "native", "--public", "--redirect-uri", uri, "--json"))

    assert data["redirect_uris"] == [uri]
    assert fresh(Client, data["client_id"]).redirect_uris == [uri]


def test_list_shows_every_client_and_no_secret(cli):
    first = create_service(cli)
    second = ok_json(
        cli("clients", "create", "--name", "spa", "--public", "--redirect-uri", "https://app.example.com/cb", "--json")
    )

    result = cli("clients", "list", "--json")
    listed = ok_json(result)

    assert [c["client_id"] for c in listed] == [first["client_id"], second["client_id"]]
    assert all(set(c) == METADATA for c in listed)
    assert first["client_secret"] not in result.output
    assert API_KEY.match(first["client_secret"]).group(2) not in result.output


def test_show_prints_the_stored_metadata_without_the_secret(cli):
    created = create_service(cli)

    shown = ok_json(cli("clients", "show", created["client_id"], "--json"))

    assert shown == {k: v for k, v in created.items() if k not in ("client_secret", "api_key_id")}


def test_update_changes_only_the_options_given(cli, app):
    created = ok_json(
        cli(
            "clients",
            "create",
            "--name",
            "web",
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--json",
        )
    )

    updated = ok_json(
        cli(
            "clients",
            "update",
            created["client_id"],
            "--name",
            "web (renamed)",
            "--scope",
            "openid email",
            "--audience",
            "https://api.example.com",
            "--access-token-ttl",
            "300",
            "--skip-consent",
            "--json",
        )
    )

    assert updated["name"] == "web (renamed)"
    assert updated["scope"] == "openid email"
    assert updated["audiences"] == ["https://api.example.com"]
    assert updated["access_token_ttl"] == 300
    assert updated["skip_consent"] is True
    for unchanged in ("redirect_uris", "grant_types", "token_endpoint_auth_method", "public", "created_at"):
        assert updated[unchanged] == created[unchanged]
    client = fresh(Client, created["client_id"])
    assert (client.name, client.scopes, client.access_token_ttl, client.skip_consent) == (
        "web (renamed)",
        ["openid", "email"],
        300,
        True,
    )
    assert fresh(ApiKey, created["api_key_id"]).revoked_at is None
    events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.client_id == created["client_id"])).all()
    assert events == ["client.created", "api_key.created", "client.updated"]


def test_delete_removes_the_client_and_its_keys(cli, app):
    created = create_service(cli)
    extra = ok_json(cli("api-keys", "create", created["client_id"], "--json"))

    deleted = ok_json(cli("clients", "delete", created["client_id"], "--json"))

    assert deleted == {"client_id": created["client_id"], "deleted": True}
    assert fresh(Client, created["client_id"]) is None
    assert fresh(ApiKey, created["api_key_id"]) is None
    assert fresh(ApiKey, extra["id"]) is None
    assert_one_error_line(cli("clients", "show", created["client_id"]))
    assert db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()[-1] == "client.deleted"


def test_a_client_id_starting_with_a_dash_is_taken_as_the_id(cli, app):
    # One generated id in 64 starts with "-"; click must not read it as an unknown option.
    created = ok_json(
        cli("clients", "create", "--name", "spa", "--public", "--redirect-uri", "https://app.example.com/cb", "--json")
    )
    db.session.execute(update(Client).where(Client.id == created["client_id"]).values(id="-dashed_id"))
    db.session.commit()

    assert ok_json(cli("clients", "show", "-dashed_id", "--json"))["name"] == "spa"
    assert ok_json(cli("clients", "update", "-dashed_id", "--name", "renamed", "--json"))["name"] == "renamed"
    assert ok_json(cli("api-keys", "list", "-dashed_id", "--json")) == []
    assert ok_json(cli("clients", "delete", "-dashed_id", "--json"))["deleted"] is True
    assert fresh(Client, "-dashed_id") is None


def test_logo_uri_is_stored_shown_and_removed_by_an_empty_value(cli, app):
    """RFC 7591 §2 ``logo_uri``: shown on the consent page; ``--logo-uri ''`` takes it away again."""
    logo = "https://app.example.com/logo.png"
    data = ok_json(
        cli(
            "clients",
            "create",
            "--name",
            "web",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--logo-uri",
            logo,
            "--json",
        )
    )
    assert data["logo_uri"] == logo and fresh(Client, data["client_id"]).logo_uri == logo

    kept = ok_json(cli("clients", "update", data["client_id"], "--name", "web 2", "--json"))
    assert kept["logo_uri"] == logo

    removed = ok_json(cli("clients", "update", data["client_id"], "--logo-uri", "", "--json"))
    assert removed["logo_uri"] is None and fresh(Client, data["client_id"]).logo_uri is None
