"""`idp init` and `idp db` (SPEC §4): init is idempotent; the schema follows the Alembic migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from idp.app_setup import MIGRATIONS_DIR
from tests.cli.support import file_digests, ok_json
from tests.conftest import Cli, base_settings


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head
    return head


@pytest.fixture
def blank(tmp_path: Path) -> dict[str, str]:
    """Settings of a machine idp has never run on: no database, no keys, no secret key."""
    settings = base_settings(tmp_path / "blank")
    del settings["IDP_SECRET_KEY"]
    return settings


def test_init_creates_everything_once_and_then_nothing(blank):
    cli = Cli(blank)
    secret_file = Path(blank["IDP_INSTANCE_DIR"]) / "secret_key"

    first = ok_json(cli("init", "--json"))

    assert first["schema"] == "current"
    assert first["secret_key_created"] is True
    assert set(first["keys_created"]) == {"active", "next"}
    assert ok_json(cli("db", "current", "--json")) == {"revision": head_revision()}
    keys = file_digests(blank["IDP_KEYS_DIR"])
    secret = secret_file.read_bytes()
    assert len(secret.strip()) >= 32
    assert oct(secret_file.stat().st_mode & 0o777) == oct(0o600)

    second = ok_json(cli("init", "--json"))

    assert second == {"schema": "current", "secret_key_created": False, "keys_created": {}}
    assert file_digests(blank["IDP_KEYS_DIR"]) == keys
    assert secret_file.read_bytes() == secret
    listed = ok_json(cli("keys", "list", "--json"))
    assert {k["state"]: k["kid"] for k in listed} == first["keys_created"]
    created = ok_json(cli("audit", "tail", "--event", "key.created", "--json"))
    assert [e["details"] for e in created] == [first["keys_created"]]


def test_init_keeps_existing_data(cli, settings):
    client = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    keys = file_digests(settings["IDP_KEYS_DIR"])

    assert ok_json(cli("init", "--json"))["keys_created"] == {}

    assert ok_json(cli("clients", "show", client["client_id"], "--json"))["name"] == "svc"
    assert file_digests(settings["IDP_KEYS_DIR"]) == keys


def test_db_current_names_the_head_revision(cli):
    assert ok_json(cli("db", "current", "--json")) == {"revision": head_revision()}


def test_db_downgrade_and_upgrade_round_trip(cli):
    assert ok_json(cli("db", "downgrade", "base", "--json")) == {"revision": None}
    assert ok_json(cli("db", "current", "--json")) == {"revision": None}

    assert ok_json(cli("db", "upgrade", "--json")) == {"revision": head_revision()}
    assert ok_json(cli("db", "downgrade", "-1", "--json"))["revision"] != head_revision()
    assert ok_json(cli("db", "upgrade", "head", "--json")) == {"revision": head_revision()}
