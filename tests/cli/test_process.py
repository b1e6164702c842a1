"""The real `idp` process: with `--json`, stdout is exactly one JSON document; log lines go to stderr only.

In-process runs cannot show this: the log handler holds the stderr of the process that first built an app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from argon2 import PasswordHasher

from idp.models import User
from tests.cli.support import API_KEY, fresh

PASSWORD = "correct horse battery staple"


def idp(settings: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idp.cli", *args],
        env={**os.environ, **settings},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def audit_lines(stderr: str) -> list[dict]:
    """Every stderr line must be one JSON audit log record (IDP_LOG_FORMAT=json)."""
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all(r["logger"] == "idp.audit" for r in records)
    return [r["audit"] for r in records]


def test_stdout_is_one_json_document_and_audit_lines_go_to_stderr_without_secrets(settings):
    created = idp(settings, "clients", "create", "--name", "svc", "--json")

    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    secret = API_KEY.match(data["client_secret"]).group(2)
    assert [a["event"] for a in audit_lines(created.stderr)] == ["client.created", "api_key.created"]
    assert secret not in created.stderr

    user = idp(settings, "users", "create", "--username", "alice", "--password-stdin", "--json", stdin=PASSWORD)

    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["username"] == "alice"
    assert [a["event"] for a in audit_lines(user.stderr)] == ["user.created"]
    assert PASSWORD not in user.stderr

    listed = idp(settings, "api-keys", "list", data["client_id"], "--json")

    assert listed.returncode == 0 and listed.stderr == ""
    assert [k["id"] for k in json.loads(listed.stdout)] == [data["api_key_id"]]
    assert secret not in listed.stdout


def test_a_refusal_is_one_error_line_on_stderr(settings):
    result = idp(settings, "clients", "create", "--name", "web", "--redirect-uri", "http://example.com/cb", "--json")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def test_a_migration_refusal_is_one_error_line_on_stderr(settings):
    # Alembic's refusals used to come out through Flask-Migrate's logger, in its own format.
    result = idp(settings, "db", "upgrade", "deadbeef")

    assert result.returncode == 1
    assert result.stderr == "error: Can't locate revision identified by 'deadbeef'\n"


def test_password_stdin_drops_a_crlf_line_ending(settings, app):
    result = idp(settings, "users", "create", "--username", "win", "--password-stdin", "--json", stdin="pa ss \r\n")

    assert result.returncode == 0, result.stderr
    password_hash = fresh(User, json.loads(result.stdout)["id"]).password_hash
    assert PasswordHasher().verify(password_hash, "pa ss ")
