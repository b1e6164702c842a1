"""Key files on disk and key ids (SPEC §8): PEM files are mode 0600 and ``kid`` is the RFC 7638 thumbprint."""

from __future__ import annotations

import json
import stat

from tests.keys.conftest import (
    PRIVATE_MEMBERS,
    kid_in,
    load_pem,
    manifest_entries,
    rfc7638_thumbprint,
    thumbprint_of,
)

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
    "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQv"
    "RL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnq"
    "DKgw"
)


def test_thumbprint_helper_reproduces_the_rfc7638_example():
    assert rfc7638_thumbprint("AQAB", RFC7638_N) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_pem_files_are_mode_0600_and_named_by_their_kid(cli, keys_dir):
    assert cli("keys", "retire", kid_in("active", keys_dir)).exit_code == 0  # a third key, made by the CLI
    entries = manifest_entries(keys_dir)
    assert len(entries) == 3
    for entry in entries:
        path = keys_dir / entry["file"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, entry["file"]
        assert entry["file"] == f"{entry['kid']}.pem"


def test_kid_is_the_rfc7638_thumbprint_of_the_key(cli, keys_dir):
    assert cli("keys", "retire", kid_in("active", keys_dir)).exit_code == 0
    for entry in manifest_entries(keys_dir):
        assert entry["kid"] == thumbprint_of(load_pem(keys_dir / entry["file"]).public_key())


def test_published_kids_are_the_thumbprints_of_the_published_keys(client, keys_dir):
    keys = client.get("/jwks").json["keys"]
    assert {jwk["kid"] for jwk in keys} == {e["kid"] for e in manifest_entries(keys_dir)}
    for jwk in keys:
        assert jwk["kid"] == rfc7638_thumbprint(jwk["e"], jwk["n"])
        assert not PRIVATE_MEMBERS & set(jwk)


def test_the_manifest_holds_no_key_material(keys_dir):
    text = (keys_dir / "keyring.json").read_text()
    assert "PRIVATE KEY" not in text
    for entry in json.loads(text)["keys"]:
        assert set(entry) == {"kid", "state", "file", "created_at", "activated_at", "retired_at"}
