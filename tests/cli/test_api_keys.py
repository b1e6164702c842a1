"""`idp api-keys create | list | revoke` (SPEC §4, §6): secrets shown once, listed never."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from idp.models import ApiKey
from tests.cli.support import API_KEY, fresh, ok_json

LISTED = {"id", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"}


@pytest.fixture
def client_id(cli):
    return ok_json(cli("clients", "create", "--name", "svc", "--json"))["client_id"]


def test_create_prints_the_key_once_in_the_documented_shape(cli, app, client_id):
    before = datetime.now(UTC)
    data = ok_json(cli("api-keys", "create", client_id, "--name", "deploy 2026", "--expires-in", "90d", "--json"))

    assert set(data) == {"id", "client_id", "name", "prefix", "key", "expires_at"}
    match = API_KEY.match(data["key"])
    assert match and match.group(1) == data["id"]
    assert data["prefix"] == f"idp_{data['id']}"
    assert data["key"].startswith(data["prefix"] + "_")
    assert (data["client_id"], data["name"]) == (client_id, "deploy 2026")
    expires_at = datetime.fromisoformat(data["expires_at"])
    assert before + timedelta(days=90) <= expires_at <= datetime.now(UTC) + timedelta(days=90)

    row = fresh(ApiKey, data["id"])
    assert (row.client_id, row.name, row.expires_at) == (client_id, "deploy 2026", expires_at)
    assert row.digest == hashlib.sha256(data["key"].encode()).hexdigest()


def test_key_without_options_is_named_default_and_never_expires(cli, app, client_id):
    data = ok_json(cli("api-keys", "create", client_id, "--json"))

    assert data["name"] == "default"
    assert data["expires_at"] is None
    assert fresh(ApiKey, data["id"]).expires_at is None


def test_every_key_is_different(cli, client_id):
    keys = [ok_json(cli("api-keys", "create", client_id, "--json"))["key"] for _ in range(3)]

    assert len({API_KEY.match(k).group(1) for k in keys}) == 3
    assert len({API_KEY.match(k).group(2) for k in keys}) == 3


def test_list_shows_every_key_of_the_client_and_never_a_secret(cli, client_id):
    first = ok_json(cli("api-keys", "create", client_id, "--name", "blue", "--json"))
    second = ok_json(cli("api-keys", "create", client_id, "--name", "green", "--expires-in", "30d", "--json"))
    other_client = ok_json(cli("clients", "create", "--name", "other", "--json"))

    result = cli("api-keys", "list", client_id, "--json")
    listed = ok_json(result)

    assert len(listed) == 3
    assert all(set(row) == LISTED for row in listed)
    by_id = {row["id"]: row for row in listed}
    # The client's first key, made by `clients create`.
    default_key_id = next(k for k in by_id if k not in (first["id"], second["id"]))
    assert by_id[default_key_id]["name"] == "default"
    assert by_id[first["id"]]["name"] == "blue" and by_id[first["id"]]["expires_at"] is None
    assert by_id[second["id"]]["expires_at"] == second["expires_at"]
    assert all(row["prefix"] == f"idp_{row['id']}" and row["revoked_at"] is None for row in listed)
    assert other_client["api_key_id"] not in by_id
    for key in (first["key"], second["key"]):
        assert API_KEY.match(key).group(2) not in result.output


def test_revoke_stops_one_key_and_leaves_the_others(cli, app, client_id):
    doomed = ok_json(cli("api-keys", "create", client_id, "--name", "old", "--json"))
    kept = ok_json(cli("api-keys", "create", client_id, "--name", "new", "--json"))

    revoked = ok_json(cli("api-keys", "revoke", doomed["id"], "--json"))

    assert revoked["id"] == doomed["id"] and revoked["revoked_at"] is not None
    assert "key" not in revoked
    assert fresh(ApiKey, doomed["id"]).revoked_at == datetime.fromisoformat(revoked["revoked_at"])
    assert fresh(ApiKey, kept["id"]).revoked_at is None
    listed = {row["id"]: row for row in ok_json(cli("api-keys", "list", client_id, "--json"))}
    assert listed[doomed["id"]]["revoked_at"] == revoked["revoked_at"]
    assert listed[kept["id"]]["revoked_at"] is None
