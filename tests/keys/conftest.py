"""Keyring fixtures and the checks every keyring test shares (SPEC §8).

``settings`` is overridden with ``IDP_JWKS_MAX_AGE=0`` so a ``next`` key may be promoted as soon as the 2 s
reload interval has passed. Helpers compute RFC 7638 thumbprints independently (``cryptography`` + ``hashlib``)
and verify signatures with joserfc against the *published* JWKS only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.services.keyring import Keyring, KeyringView
from idp.services.keys import RELOAD_INTERVAL_SECONDS
from idp.services.keystore import MANIFEST, KeyRecord, KeyStore

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.fixture
def settings(settings: dict[str, str]) -> dict[str, str]:
    return {**settings, "IDP_JWKS_MAX_AGE": "0"}


@pytest.fixture
def keys_dir(settings: dict[str, str]) -> Path:
    return Path(settings["IDP_KEYS_DIR"])


@pytest.fixture
def store(keys_dir: Path) -> KeyStore:
    return KeyStore(keys_dir)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_uint(value: int) -> str:
    """RFC 7518 §6.3.1: the unsigned big-endian value in the fewest octets, base64url without padding."""
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rfc7638_thumbprint(e: str, n: str) -> str:
    """RFC 7638 §3: SHA-256 of the required members in lexicographic order, no whitespace, base64url."""
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def thumbprint_of(public_key: RSAPublicKey) -> str:
    numbers = public_key.public_numbers()
    return rfc7638_thumbprint(b64url_uint(numbers.e), b64url_uint(numbers.n))


def load_pem(path: Path) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, RSAPrivateKey)
    return key


def manifest_entries(keys_dir: Path) -> list[dict[str, Any]]:
    """The manifest as plain JSON, read without the code under test."""
    document = json.loads((keys_dir / MANIFEST).read_bytes())
    return list(document["keys"])


def kids_by_state(keys_dir: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for entry in manifest_entries(keys_dir):
        found[entry["state"]].append(entry["kid"])
    return found


def kid_in(state: str, keys_dir: Path) -> str:
    (kid,) = kids_by_state(keys_dir)[state]
    return kid


def disk_snapshot(keys_dir: Path) -> dict[str, bytes]:
    """Every file of the keys directory and its bytes (the lock file carries no state)."""
    return {p.name: p.read_bytes() for p in sorted(keys_dir.iterdir()) if p.name != ".lock"}


def age_key(store: KeyStore, kid: str, **seconds_ago: float) -> None:
    """Rewrite the manifest as if the key's events happened that long ago, e.g. ``created_at=3600``."""
    now = datetime.now(UTC)
    with store.locked():
        records = store.read_manifest()
        stamps = {field: (now - timedelta(seconds=ago)).isoformat() for field, ago in seconds_ago.items()}
        store.write_manifest([replace(r, **stamps) if r.kid == kid else r for r in records])


def make_rotatable(store: KeyStore) -> None:
    """Let ``rotate`` (with IDP_JWKS_MAX_AGE=0) promote ``next`` now, without sleeping out the reload interval."""
    upcoming = next(r for r in store.read_manifest() if r.state == "next")
    age_key(store, upcoming.kid, created_at=RELOAD_INTERVAL_SECONDS + 1)


def rotatable_at(record: KeyRecord, jwks_max_age: int = 0) -> datetime:
    """The first moment ``rotate`` accepts ``record`` (state ``next``) as the new active key."""
    return datetime.fromisoformat(record.created_at) + timedelta(seconds=jwks_max_age + RELOAD_INTERVAL_SECONDS)


def verify_with_jwks(token: str, jwks: dict[str, Any]) -> jwt.Token:
    """Verify ``token`` against a published JWKS, choosing the key by the header's ``kid`` (RFC 7515 §4.1.4)."""
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])  # type: ignore[arg-type]


def assert_keyring_usable(keys_dir: Path) -> KeyringView:
    """The crash-safety invariant: a valid manifest with exactly one active key whose PEM exists and parses, and a
    fresh process can load the keyring and sign a JWT that verifies with the key it publishes."""
    entries = manifest_entries(keys_dir)
    active = [e for e in entries if e["state"] == "active"]
    assert len(active) == 1, entries
    assert thumbprint_of(load_pem(keys_dir / active[0]["file"]).public_key()) == active[0]["kid"]
    view = Keyring(str(keys_dir)).load()
    jwks = json.loads(view.jwks_body)
    assert {jwk["kid"] for jwk in jwks["keys"]} == {e["kid"] for e in entries}
    token = verify_with_jwks(view.sign({"sub": "probe"}), jwks)
    assert token.header["kid"] == active[0]["kid"]
    assert token.claims["sub"] == "probe"
    return view


def assert_no_leftovers(keys_dir: Path) -> None:
    """Only the manifest, the lock and the PEM files the manifest names remain."""
    named = {e["file"] for e in manifest_entries(keys_dir)}
    assert {p.name for p in keys_dir.iterdir()} == named | {MANIFEST, ".lock"}


def assert_one_error_line(result: Result) -> str:
    """SPEC §4: a failed command exits non-zero with exactly one ``error:`` line on stderr."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
