"""No API key and no password is stored in a recoverable form (SPEC §6, §10).

Reads every column of every row as a thief with a copy of the database would, after the CLI has made clients,
API keys and users.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import select

from idp.extensions import db
from idp.models import ApiKey, User
from tests.cli.support import API_KEY, fresh, ok_json, stored_text

PASSWORDS = {"alice": "correct horse battery staple", "bob": "Tr0ub4dor&3"}
OLD_PASSWORD = "bob's first password"


@pytest.mark.product_password_cost
def test_database_holds_only_digests_of_api_keys_and_argon2id_hashes_of_passwords(cli, app):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--audience", "https://api.example.com", "--json"))
    rotation = ok_json(cli("api-keys", "create", svc["client_id"], "--name", "next", "--expires-in", "90d", "--json"))
    web = ok_json(
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
    ok_json(cli("api-keys", "revoke", svc["api_key_id"], "--json"))
    keys = {
        svc["api_key_id"]: svc["client_secret"],
        rotation["id"]: rotation["key"],
        web["api_key_id"]: web["client_secret"],
    }
    users = {}
    for username, password in PASSWORDS.items():
        stdin = (OLD_PASSWORD if username == "bob" else password) + "\n"
        users[username] = ok_json(
            cli("users", "create", "--username", username, "--password-stdin", "--json", input=stdin)
        )
    ok_json(cli("users", "set-password", "bob", "--password-stdin", "--json", input=PASSWORDS["bob"] + "\n"))

    stored = stored_text(db.engine)

    # The dump does see the public parts, so not finding the secret parts means something.
    assert set(keys) <= set(stored)
    assert {"alice", "bob"} <= set(stored)
    for key in keys.values():
        secret = API_KEY.match(key).group(2)
        assert not [value for value in stored if key in value or secret in value]
    for password in [*PASSWORDS.values(), OLD_PASSWORD]:
        assert not [value for value in stored if password in value]

    rows = db.session.scalars(select(ApiKey)).all()
    assert {row.id for row in rows} == set(keys)
    for row in rows:
        assert row.digest == hashlib.sha256(keys[row.id].encode()).hexdigest()

    for username, password in PASSWORDS.items():
        password_hash = fresh(User, users[username]["id"]).password_hash
        assert password_hash.startswith("$argon2id$")
        assert PasswordHasher().verify(password_hash, password)
        # SPEC §10: at least OWASP's argon2id parameters (19 MiB, t=2, p=1).
        params = dict(p.split("=") for p in re.search(r"\$m=[^$]+", password_hash).group(0)[1:].split(","))
        assert int(params["m"]) >= 19 * 1024 and int(params["t"]) >= 2 and int(params["p"]) >= 1
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(fresh(User, users["bob"]["id"]).password_hash, OLD_PASSWORD)
