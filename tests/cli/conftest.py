"""Fixtures of the CLI tests: the stored state, and a small installation to refuse commands against."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp.extensions import db
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.cli.support import ok_json, stored_state
from tests.conftest import Cli, base_settings, copy_sqlite


@pytest.fixture
def state(app: Flask, settings: dict[str, str]) -> Callable[[], dict[str, Any]]:
    """Call it before and after a command: equal results mean the command changed nothing."""
    return lambda: stored_state(db.engine, settings)


def install(cli: Cli) -> dict[str, str]:
    """A service client with one live and one revoked key, a public web client, and users alice and älice."""
    svc = ok_json(cli("clients", "create", "--name", "svc", "--audience", "https://api.example.com", "--json"))
    old = ok_json(cli("api-keys", "create", svc["client_id"], "--name", "old", "--json"))
    ok_json(cli("api-keys", "revoke", old["id"], "--json"))
    spa = ok_json(
        cli("clients", "create", "--name", "spa", "--public", "--redirect-uri", "https://app.example.com/cb", "--json")
    )
    ok_json(cli("users", "create", "--username", "alice", "--password-stdin", "--json", input="pw-alice\n"))
    ok_json(cli("users", "create", "--username", "ÄliCe", "--password-stdin", "--json", input="pw-aelice\n"))
    return {"svc": svc["client_id"], "spa": spa["client_id"], "revoked": old["id"], "live": svc["api_key_id"]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> tuple[Path, dict[str, str]]:
    """The installation, built once per module through the CLI (argon2 and RSA are slow) and copied per test."""
    root = tmp_path_factory.mktemp("installation")
    settings = base_settings(root)
    copy_sqlite(migrated_sqlite, root / "idp.db")
    init_keyring(KeyStore(settings["IDP_KEYS_DIR"]), 2048)
    with pytest.MonkeyPatch.context() as patch:
        # The same isolation as the autouse fixture, which runs only per test.
        patch.chdir(root)
        for name in [n for n in os.environ if n.startswith("IDP_") and not n.startswith("IDP_TEST_")]:
            patch.delenv(name)
        ids = install(Cli(settings))
    return root, ids


@pytest.fixture
def installation(installed: tuple[Path, dict[str, str]], settings: dict[str, str]) -> dict[str, str]:
    """This test's copy of the installation, in its own database and keys directory; returns the ids in it.

    Request it before ``app`` or ``state``, so that no connection to the replaced database is open yet.
    """
    root, ids = installed
    copy_sqlite(root / "idp.db", Path(settings["IDP_DATABASE_URL"].removeprefix("sqlite:///")))
    shutil.rmtree(settings["IDP_KEYS_DIR"])
    shutil.copytree(root / "keys", settings["IDP_KEYS_DIR"])
    return ids
