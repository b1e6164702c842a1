"""Rotation, publication and the keyring's lifecycle (SPEC §8): ``next`` → ``active`` → ``retired`` → pruned."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests
from joserfc import jws

from idp.services.clients import ClientSpec, create_client
from idp.services.keys import RELOAD_INTERVAL_SECONDS, KeyChange, prune, retire, rotate
from idp.services.keystore import KeyringError, KeyStore
from tests.conftest import Cli, LiveServer
from tests.keys.conftest import (
    PRIVATE_MEMBERS,
    age_key,
    assert_one_error_line,
    disk_snapshot,
    kid_in,
    kids_by_state,
    make_rotatable,
    rotatable_at,
    verify_with_jwks,
    wait_until,
)


def _kids(jwks: dict) -> set[str]:
    return {jwk["kid"] for jwk in jwks["keys"]}


def _states(cli: Cli) -> dict[str, str]:
    result = cli("keys", "list", "--json")
    assert result.exit_code == 0, result.output
    return {entry["kid"]: entry["state"] for entry in json.loads(result.stdout)}


def _publishes(server: LiveServer, kids: set[str]) -> Callable[[], bool]:
    return lambda: _kids(requests.get(server.url + "/jwks", timeout=1).json()) == kids


def _wait_for_rotatable_next(store: KeyStore) -> None:
    upcoming = next(r for r in store.read_manifest() if r.state == "next")
    time.sleep(max(0.0, (rotatable_at(upcoming) - datetime.now(UTC)).total_seconds()) + 0.05)


# --- rotate ------------------------------------------------------------------------------------------------


def test_two_rotations_publish_every_signing_key_before_it_signs(cli, app, client, store):
    keyring = app.extensions["idp.keyring"]
    for _ in range(2):
        _wait_for_rotatable_next(store)  # IDP_JWKS_MAX_AGE=0: only the reload interval to wait out
        before = client.get("/jwks")
        etag = before.headers["ETag"]
        assert client.get("/jwks", headers={"If-None-Match": etag}).status_code == 304

        result = cli("keys", "rotate", "--json")
        assert result.exit_code == 0, result.output
        change = json.loads(result.stdout)

        assert wait_until(lambda: client.get("/jwks").headers["ETag"] != etag, timeout=3)  # noqa: B023
        assert client.get("/jwks", headers={"If-None-Match": etag}).status_code == 200
        new_etag = client.get("/jwks").headers["ETag"]
        assert client.get("/jwks", headers={"If-None-Match": new_etag}).status_code == 304
        # The key that signs after the rotation was in the JWKS a verifier fetched before it.
        signer = jws.extract_compact(keyring.current().sign({"sub": "after"}).encode()).headers()["kid"]
        assert signer == change["active"]
        assert signer in _kids(before.json)
        assert change["next"] not in _kids(before.json)

    jwks = client.get("/jwks").json
    states = _states(cli)
    assert _kids(jwks) == set(states)
    assert sorted(states.values()) == ["active", "next", "retired", "retired"]
    for jwk in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk["kid"]
    # Tokens signed by every key still verify with the published set.
    assert verify_with_jwks(keyring.current().sign({"sub": "x"}), jwks).claims["sub"] == "x"


def test_rotate_is_refused_while_next_is_younger_than_max_age_plus_reload(cli, keys_dir):
    before = disk_snapshot(keys_dir)
    line = assert_one_error_line(cli("keys", "rotate"))  # the fixture made the next key moments ago
    assert "IDP_JWKS_MAX_AGE" in line and "rotate again in" in line
    assert disk_snapshot(keys_dir) == before


def test_rotate_honours_the_configured_max_age(settings, store, keys_dir):
    cli = Cli({**settings, "IDP_JWKS_MAX_AGE": "300"})
    age_key(store, kid_in("next", keys_dir), created_at=300 + RELOAD_INTERVAL_SECONDS - 5)
    before = disk_snapshot(keys_dir)
    assert "rotate again in" in assert_one_error_line(cli("keys", "rotate"))
    assert disk_snapshot(keys_dir) == before

    age_key(store, kid_in("next", keys_dir), created_at=300 + RELOAD_INTERVAL_SECONDS + 1)
    assert cli("keys", "rotate").exit_code == 0


def test_rotate_boundary_is_max_age_plus_reload_interval(store):
    upcoming = next(r for r in store.read_manifest() if r.state == "next")
    ready = rotatable_at(upcoming, jwks_max_age=300)
    with pytest.raises(KeyringError, match="rotate again in"):
        rotate(store, 2048, 300, now=ready - timedelta(milliseconds=1))
    assert rotate(store, 2048, 300, now=ready).kids["active"] == upcoming.kid


def test_a_rotation_that_waited_for_the_lock_is_stamped_when_it_ran(store):
    make_rotatable(store)
    done: dict[str, KeyChange] = {}
    worker = threading.Thread(target=lambda: done.update(change=rotate(store, 2048, 0)))
    with store.locked():  # another `idp keys` command holds the keyring
        worker.start()
        time.sleep(0.5)
        released = datetime.now(UTC)
    worker.join(10)
    change = done["change"]
    records = {r.kid: r for r in store.read_manifest()}
    retired_at = records[change.kids["retired"]].retired_at or ""
    created_at = records[change.kids["next"]].created_at
    assert datetime.fromisoformat(retired_at) >= released
    assert datetime.fromisoformat(created_at) >= released


def test_a_running_server_sees_a_cli_rotation_without_restart(settings, cli, store, live_server):
    second = LiveServer(settings)
    try:
        servers = [live_server, second]
        before = [_kids(requests.get(s.url + "/jwks", timeout=2).json()) for s in servers]
        assert before[0] == before[1]
        make_rotatable(store)
        result = cli("keys", "rotate", "--json")
        assert result.exit_code == 0, result.output
        expected = before[0] | {json.loads(result.stdout)["next"]}
        started = time.monotonic()
        for server in servers:
            remaining = 5 - (time.monotonic() - started)
            assert wait_until(_publishes(server, expected), timeout=max(remaining, 0), interval=0.1), server.url
        assert live_server.process.poll() is None and second.process.poll() is None  # neither restarted
    finally:
        second.stop()


# --- retire ------------------------------------------------------------------------------------------------


def test_retiring_the_active_key_promotes_next_at_once_and_makes_a_new_next(cli, app, keys_dir):
    old_active, old_next = kid_in("active", keys_dir), kid_in("next", keys_dir)
    result = cli("keys", "retire", old_active, "--json")  # no waiting: the emergency path ignores the age
    assert result.exit_code == 0, result.output
    change = json.loads(result.stdout)
    assert change == {"retired": old_active, "active": old_next, "next": change["next"]}
    assert change["next"] not in (old_active, old_next)
    assert _states(cli) == {
        old_active: "retired",
        old_next: "active",
        change["next"]: "next",
    }
    keyring = app.extensions["idp.keyring"]
    assert wait_until(lambda: keyring.current().active_kid == old_next, timeout=3)


def test_retiring_the_next_key_replaces_it(cli, keys_dir):
    active, old_next = kid_in("active", keys_dir), kid_in("next", keys_dir)
    change = json.loads(cli("keys", "retire", old_next, "--json").stdout)
    assert change == {"retired": old_next, "next": change["next"]}
    assert kids_by_state(keys_dir) == {"active": [active], "next": [change["next"]], "retired": [old_next]}


def test_retiring_an_unknown_kid_fails_with_one_line(cli, keys_dir):
    before = disk_snapshot(keys_dir)
    assert "no key with kid" in assert_one_error_line(cli("keys", "retire", "no-such-kid"))
    assert disk_snapshot(keys_dir) == before


def test_retiring_a_retired_key_fails(cli, keys_dir):
    retired = kid_in("active", keys_dir)
    assert cli("keys", "retire", retired).exit_code == 0
    before = disk_snapshot(keys_dir)
    assert "already retired" in assert_one_error_line(cli("keys", "retire", retired))
    assert disk_snapshot(keys_dir) == before


def test_retiring_active_without_a_next_key_changes_nothing(store, keys_dir):
    with store.locked():
        store.write_manifest([r for r in store.read_manifest() if r.state != "next"])
    before = disk_snapshot(keys_dir)
    with pytest.raises(KeyringError, match="no next key"):
        retire(store, kid_in("active", keys_dir), 2048)
    assert disk_snapshot(keys_dir) == before  # no orphan PEM either


# --- prune -------------------------------------------------------------------------------------------------


def test_prune_removes_only_retired_keys_past_the_longest_token_lifetime(store, keys_dir):
    upcoming = next(r for r in store.read_manifest() if r.state == "next")
    t0 = rotatable_at(upcoming) + timedelta(seconds=1)
    first = rotate(store, 2048, 0, now=t0).kids["retired"]
    second = rotate(store, 2048, 0, now=t0 + timedelta(seconds=100)).kids["retired"]
    lifetime = 600
    horizon = timedelta(seconds=lifetime + RELOAD_INTERVAL_SECONDS)

    assert prune(store, lifetime, now=t0 + horizon - timedelta(seconds=1)).kids == {}
    assert kids_by_state(keys_dir)["retired"] == [first, second]

    assert prune(store, lifetime, now=t0 + horizon + timedelta(seconds=1)).kids == {first: "pruned"}
    assert kids_by_state(keys_dir)["retired"] == [second]
    assert not (keys_dir / f"{first}.pem").exists()
    assert (keys_dir / f"{second}.pem").exists()

    # Active and next are never pruned, however old they are.
    far = t0 + timedelta(days=3650)
    assert prune(store, lifetime, now=far).kids == {second: "pruned"}
    assert sorted(e for e, kids in kids_by_state(keys_dir).items() if kids) == ["active", "next"]


@pytest.mark.parametrize(
    ("overrides", "client_ttl"),
    [
        ({"IDP_ACCESS_TOKEN_TTL": "900", "IDP_ID_TOKEN_TTL": "60"}, None),
        ({"IDP_ACCESS_TOKEN_TTL": "60", "IDP_ID_TOKEN_TTL": "900"}, None),
        ({"IDP_ACCESS_TOKEN_TTL": "60", "IDP_ID_TOKEN_TTL": "60"}, 900),
    ],
    ids=["access-token-ttl", "id-token-ttl", "client-access-token-ttl"],
)
def test_prune_cli_keeps_retired_keys_a_live_token_may_need(settings, app, store, keys_dir, overrides, client_ttl):
    if client_ttl:
        create_client(ClientSpec(name="svc", grant_types=["client_credentials"], access_token_ttl=client_ttl))
    cli = Cli({**settings, **overrides})
    old = kid_in("active", keys_dir)
    assert cli("keys", "retire", old).exit_code == 0
    recent = kid_in("active", keys_dir)
    assert cli("keys", "retire", recent).exit_code == 0
    # The longest lifetime is 900 s, so the horizon is 902 s.
    age_key(store, old, retired_at=1000)
    age_key(store, recent, retired_at=500)

    result = cli("keys", "prune", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"pruned": [old]}
    assert kids_by_state(keys_dir)["retired"] == [recent]
    assert not (keys_dir / f"{old}.pem").exists()
    assert (keys_dir / f"{recent}.pem").exists()


# --- list --------------------------------------------------------------------------------------------------


def test_keys_list_json_has_exactly_the_documented_fields(cli, keys_dir):
    assert cli("keys", "retire", kid_in("active", keys_dir)).exit_code == 0
    result = cli("keys", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert isinstance(listed, list) and len(listed) == 3
    for entry in listed:
        assert set(entry) == {"kid", "state", "created_at", "activated_at", "retired_at"}
        datetime.fromisoformat(entry["created_at"])
    by_state = {entry["state"]: entry for entry in listed}
    assert by_state["next"]["activated_at"] is None and by_state["next"]["retired_at"] is None
    assert by_state["active"]["activated_at"] is not None and by_state["active"]["retired_at"] is None
    assert by_state["retired"]["retired_at"] is not None
