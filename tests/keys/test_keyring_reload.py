"""The per-process keyring (SPEC §8): private keys parsed once, changes noticed within seconds, and a broken
manifest never takes down serving."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, replace
from datetime import timedelta

import pytest
from joserfc.jwk import RSAKey

from idp.services.keyring import Keyring
from idp.services.keys import rotate
from idp.services.keystore import MANIFEST, KeyRecord, KeyringError, KeyStore
from tests.keys.conftest import kid_in, rotatable_at, verify_with_jwks, wait_until


def _rotate_now(store: KeyStore) -> dict[str, str]:
    upcoming = next(r for r in store.read_manifest() if r.state == "next")
    return rotate(store, 2048, 0, now=rotatable_at(upcoming) + timedelta(seconds=1)).kids


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each kid's PEM was parsed in this process."""
    counts: Counter[str] = Counter()
    original = KeyStore.load_private

    def spy(self: KeyStore, record: KeyRecord) -> RSAKey:
        counts[record.kid] += 1
        return original(self, record)

    monkeypatch.setattr(KeyStore, "load_private", spy)
    return counts


def test_private_keys_are_parsed_once_per_process(store, keys_dir, parses):
    keyring = Keyring(str(keys_dir), check_interval=0)  # check the manifest on every call
    first = {kid_in("active", keys_dir), kid_in("next", keys_dir)}
    for _ in range(100):
        keyring.current().sign({"sub": "x"})
    assert parses == dict.fromkeys(first, 1)

    change = _rotate_now(store)
    for _ in range(100):
        assert keyring.current().active_kid == change["active"]
    assert parses == dict.fromkeys(first | {change["next"]}, 1)


def test_requests_never_parse_a_key(client, parses):
    assert client.get("/jwks").status_code == 200
    after_first = dict(parses)  # at most the app's own start-up parse, whatever the fixture order
    for _ in range(20):
        assert client.get("/jwks").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert parses == after_first
    assert all(count == 1 for count in parses.values())


def test_keyring_picks_up_a_manifest_change(store, keys_dir):
    keyring = Keyring(str(keys_dir), check_interval=0.05)
    before = keyring.current()
    change = _rotate_now(store)
    assert wait_until(lambda: keyring.current().active_kid == change["active"], timeout=2)
    after = keyring.current()
    assert after.jwks_etag != before.jwks_etag
    assert change["next"] in {jwk["kid"] for jwk in json.loads(after.jwks_body)["keys"]}


def _corrupt(store: KeyStore, how: str) -> None:
    """An operator's mistake, written straight over the manifest (not atomically, as an editor might)."""
    path = store.directory / MANIFEST
    records = store.read_manifest()
    if how == "garbage":
        path.write_bytes(b"\x00{ this is not json")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "no-active-key":
        path.write_text(json.dumps({"version": 1, "keys": [asdict(r) for r in records if r.state != "active"]}))
    elif how == "missing-pem":
        # e.g. a manifest copied from another node without its key files
        broken = [replace(r, kid="unknown", file="unknown.pem") if r.state == "next" else r for r in records]
        path.write_text(json.dumps({"version": 1, "keys": [asdict(r) for r in broken]}))
    elif how == "garbage-pem":
        # A PEM that does not parse: the armour of a key generated now around a body cut to four characters.
        lines = RSAKey.generate_key(2048, private=True).as_pem(private=True).splitlines()
        (store.directory / "bad.pem").write_bytes(b"\n".join([lines[0], lines[1][:4], lines[-1], b""]))
        extra = replace(records[0], kid="bad", file="bad.pem", state="retired", retired_at=records[0].created_at)
        path.write_text(json.dumps({"version": 1, "keys": [asdict(r) for r in [*records, extra]]}))
    elif how == "bad-timestamp":
        broken = [replace(r, created_at="yesterday") if r.state == "next" else r for r in records]
        path.write_text(json.dumps({"version": 1, "keys": [asdict(r) for r in broken]}))
    else:
        raise AssertionError(how)


CORRUPTIONS = ["garbage", "empty", "no-active-key", "missing-pem", "garbage-pem", "bad-timestamp"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupted_manifest_keeps_the_previous_keys_and_is_logged(store, keys_dir, caplog, monkeypatch, how):
    monkeypatch.setattr(logging.getLogger("idp"), "propagate", True)  # let caplog see idp's records
    keyring = Keyring(str(keys_dir), check_interval=0.05)
    view = keyring.current()
    _corrupt(store, how)
    time.sleep(0.1)
    with caplog.at_level(logging.ERROR, logger="idp.services.keyring"):
        assert keyring.current() is view
    assert any("keyring reload failed" in r.getMessage() for r in caplog.records), caplog.text
    token = keyring.current().sign({"sub": "still-serving"})
    assert verify_with_jwks(token, json.loads(view.jwks_body)).claims["sub"] == "still-serving"
    # A process starting now refuses the keyring with one line instead of a traceback.
    with pytest.raises(KeyringError) as refused:
        Keyring(str(keys_dir)).load()
    assert "\n" not in str(refused.value)


def test_serving_continues_over_http_while_the_manifest_is_broken(client, store):
    good = client.get("/jwks")
    _corrupt(store, "garbage")
    time.sleep(1.1)  # past the app keyring's 1 s check interval
    again = client.get("/jwks")
    assert again.status_code == 200
    assert again.data == good.data and again.headers["ETag"] == good.headers["ETag"]
    assert client.get("/readyz").status_code == 200


def test_a_repaired_manifest_is_picked_up_again(store, keys_dir):
    keyring = Keyring(str(keys_dir), check_interval=0.05)
    view = keyring.current()
    backup = (keys_dir / MANIFEST).read_bytes()
    _corrupt(store, "garbage")
    time.sleep(0.1)
    assert keyring.current() is view
    (keys_dir / MANIFEST).write_bytes(backup)  # the operator puts the good manifest back
    change = _rotate_now(store)
    assert wait_until(lambda: keyring.current().active_kid == change["active"], timeout=2)
