"""The audit trail of the `idp` command (SPEC §4, §10): every change an operator makes is an event named
`subject.verb` with its actor, client and time, never with a secret; `idp audit tail` shows them and `idp audit
prune` deletes those past `IDP_AUDIT_RETENTION` in bounded batches."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from idp import create_app
from idp.cli import actor
from idp.extensions import db
from idp.models import AuditEvent
from idp.services import audit
from idp.services.keystore import KeyStore
from tests.cli.support import API_KEY, assert_one_error_line, ok_json, run_on_nodes
from tests.conftest import base_settings, migrate, requires_postgres
from tests.keys.conftest import age_key, make_rotatable

PASSWORD = "correct horse battery staple"
README = Path(__file__).resolve().parents[2] / "README.md"


def events(cli: Any, *args: str) -> list[dict[str, Any]]:
    return list(ok_json(cli("audit", "tail", "--limit", "10000", "--json", *args)))


def only(cli: Any, name: str) -> dict[str, Any]:
    """The single event of that name."""
    [event] = events(cli, "--event", name)
    return event


def assert_cli_event(event: dict[str, Any], client_id: str | None, details: dict[str, Any]) -> None:
    """The fields every CLI event carries: its actor (``cli:<os user>``), client, time and exact details."""
    assert event["actor"] == actor() and event["actor"].startswith("cli")
    assert event["client_id"] == client_id
    assert event["ip"] is None and event["request_id"] is None
    created = datetime.fromisoformat(event["created_at"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert event["details"] == details


# --- one test per event ------------------------------------------------------------------------------------


def test_client_created_updated_and_deleted_are_recorded(cli):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    ok_json(cli("clients", "update", svc["client_id"], "--scope", "read", "--json"))
    ok_json(cli("clients", "delete", svc["client_id"], "--json"))

    assert_cli_event(only(cli, "client.created"), svc["client_id"], {})
    assert_cli_event(only(cli, "client.updated"), svc["client_id"], {})
    assert_cli_event(only(cli, "client.deleted"), svc["client_id"], {})


def test_api_key_created_and_revoked_are_recorded_by_prefix(cli):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    extra = ok_json(cli("api-keys", "create", svc["client_id"], "--name", "rotation", "--json"))
    ok_json(cli("api-keys", "revoke", extra["id"], "--json"))

    first, second = events(cli, "--event", "api_key.created")
    assert_cli_event(first, svc["client_id"], {"key_id": svc["api_key_id"], "prefix": f"idp_{svc['api_key_id']}"})
    assert_cli_event(second, svc["client_id"], {"key_id": extra["id"], "prefix": extra["prefix"]})
    assert_cli_event(only(cli, "api_key.revoked"), svc["client_id"], {"key_id": extra["id"], "prefix": extra["prefix"]})


@pytest.mark.parametrize(
    ("command", "event"),
    [
        (["disable"], "user.disabled"),
        (["enable"], "user.enabled"),
        (["set-password", "--password-stdin"], "user.password_changed"),
        (["delete"], "user.deleted"),
    ],
)
def test_user_changes_are_recorded(cli, command, event):
    alice = ok_json(cli("users", "create", "--username", "alice", "--password-stdin", "--json", input=PASSWORD))
    ok_json(cli("users", command[0], "alice", *command[1:], "--json", input="another long passphrase\n"))

    assert_cli_event(only(cli, "user.created"), None, {"user_id": alice["id"]})
    assert_cli_event(only(cli, event), None, {"user_id": alice["id"]})


@pytest.fixture
def rotatable(settings: dict[str, str]) -> dict[str, str]:
    """An installation whose ``next`` key may be promoted now (IDP_JWKS_MAX_AGE=0, key aged past the reload)."""
    make_rotatable(KeyStore(settings["IDP_KEYS_DIR"]))
    return {**settings, "IDP_JWKS_MAX_AGE": "0"}


def test_key_rotated_retired_and_pruned_are_recorded_with_their_kids(cli, rotatable):
    cli.env = rotatable
    store = KeyStore(rotatable["IDP_KEYS_DIR"])
    rotated = ok_json(cli("keys", "rotate", "--json"))
    retired = ok_json(cli("keys", "retire", rotated["next"], "--json"))
    age_key(store, rotated["retired"], retired_at=86400)
    age_key(store, retired["retired"], retired_at=86400)
    pruned = ok_json(cli("keys", "prune", "--json"))

    assert_cli_event(only(cli, "key.rotated"), None, rotated)
    assert_cli_event(only(cli, "key.retired"), None, retired)
    assert sorted(pruned["pruned"]) == sorted([rotated["retired"], retired["retired"]])
    assert_cli_event(only(cli, "key.pruned"), None, {"kids": pruned["pruned"]})


def test_a_refused_command_records_nothing(cli):
    before = events(cli)
    assert_one_error_line(cli("clients", "delete", "no-such-client"))
    assert_one_error_line(cli("users", "disable", "nobody"))
    assert events(cli) == before


# --- tail ----------------------------------------------------------------------------------------------------


def test_tail_shows_what_the_cli_did_and_no_secret(cli):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    extra = ok_json(cli("api-keys", "create", svc["client_id"], "--name", "rotation", "--json"))
    ok_json(cli("api-keys", "revoke", extra["id"], "--json"))
    ok_json(cli("users", "create", "--username", "alice", "--password-stdin", "--json", input=PASSWORD))

    as_json = cli("audit", "tail", "--json")
    as_text = cli("audit", "tail")

    assert [e["event"] for e in ok_json(as_json)] == [
        "client.created",
        "api_key.created",
        "api_key.created",
        "api_key.revoked",
        "user.created",
    ]
    assert as_text.exit_code == 0 and len(as_text.stdout.splitlines()) == 5
    for output in (as_json.stdout, as_text.stdout):
        for key in (svc["client_secret"], extra["key"]):
            match = API_KEY.match(key)
            assert match is not None and match.group(2) not in output
        assert PASSWORD not in output


def test_tail_filters_by_event_age_actor_and_client_and_limits(cli, app):
    db.session.add(AuditEvent(event="user.created", actor="someone", created_at=datetime.now(UTC) - timedelta(days=2)))
    db.session.commit()
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    other = ok_json(cli("clients", "create", "--name", "other", "--json"))
    ok_json(cli("api-keys", "revoke", svc["api_key_id"], "--json"))

    revoked = events(cli, "--event", "api_key.revoked")
    assert [(e["event"], e["details"]["key_id"]) for e in revoked] == [("api_key.revoked", svc["api_key_id"])]
    assert len(events(cli, "--since", "1h")) == 5
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert len(events(cli, "--since", yesterday)) == 5
    assert [e["actor"] for e in events(cli, "--actor", "someone")] == ["someone"]
    assert {e["client_id"] for e in events(cli, "--client", other["client_id"])} == {other["client_id"]}
    assert len(events(cli, "--client", other["client_id"])) == 2
    limited = ok_json(cli("audit", "tail", "--limit", "2", "--json"))
    assert [e["event"] for e in limited] == ["api_key.created", "api_key.revoked"]
    assert events(cli, "--event", "user.deleted") == []


def test_tail_refuses_a_since_that_is_neither_a_duration_nor_a_time(cli):
    result = cli("audit", "tail", "--since", "last tuesday")
    assert result.exit_code == 2 and "neither a duration" in result.stderr


# --- prune ---------------------------------------------------------------------------------------------------


def add_events(ages_in_days: list[float]) -> None:
    now = datetime.now(UTC)
    db.session.add_all(
        AuditEvent(event="token.issued", actor="svc", created_at=now - timedelta(days=age)) for age in ages_in_days
    )
    db.session.commit()


def stored_ages() -> list[int]:
    db.session.expire_all()
    now = datetime.now(UTC)
    rows = db.session.scalars(select_events("token.issued")).all()
    return sorted(round((now - r.created_at) / timedelta(days=1)) for r in rows)


def select_events(name: str) -> sa.Select[Any]:
    return sa.select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)


def test_prune_deletes_events_past_the_retention_in_batches_and_records_the_cut(cli, app):
    add_events([200, 120, 91, 89, 10, 0])
    cli.env = {**cli.env, "IDP_AUDIT_RETENTION": "90d"}

    result = ok_json(cli("audit", "prune", "--batch-size", "2", "--json"))

    assert result["deleted"] == 3
    before = datetime.fromisoformat(result["before"])
    assert abs(datetime.now(UTC) - timedelta(days=90) - before) < timedelta(minutes=1)
    assert stored_ages() == [0, 10, 89]
    assert_cli_event(only(cli, "audit.pruned"), None, {"deleted": 3, "before": before.isoformat()})


def test_prune_with_nothing_to_delete_records_nothing(cli, app):
    add_events([1])
    assert ok_json(cli("audit", "prune", "--json"))["deleted"] == 0
    assert events(cli, "--event", "audit.pruned") == []
    assert stored_ages() == [1]


def test_older_than_overrides_the_retention_and_zero_retention_keeps_everything(cli, app):
    add_events([400, 40, 4])
    cli.env = {**cli.env, "IDP_AUDIT_RETENTION": "0"}

    kept = ok_json(cli("audit", "prune", "--json"))
    assert kept == {"deleted": 0, "before": None}
    assert stored_ages() == [4, 40, 400]

    assert ok_json(cli("audit", "prune", "--older-than", "30d", "--json"))["deleted"] == 2
    assert stored_ages() == [4]


def test_retention_setting_is_validated_at_start_up(cli):
    cli.env = {**cli.env, "IDP_AUDIT_RETENTION": "ninety days"}
    result = cli("audit", "prune")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: IDP_AUDIT_RETENTION: ") and result.stderr.count("\n") == 1


def test_prune_is_a_service_other_commands_can_call(app: Flask):
    """``idp db prune`` (codes, tokens) will call the same function with the app's retention."""
    add_events([100, 1])
    pruned = audit.prune(actor="cli:cron")
    assert pruned.deleted == 1 and stored_ages() == [1]
    [event] = db.session.scalars(select_events("audit.pruned")).all()
    assert event.actor == "cli:cron" and event.details["deleted"] == 1


@requires_postgres
def test_concurrent_prunes_on_several_nodes_split_the_work(pg_url: str, tmp_path: Path):
    """Several nodes pruning the same PostgreSQL database at once: every old row is deleted exactly once, none
    fails, and the newer rows stay (``FOR UPDATE SKIP LOCKED`` batches)."""
    settings = {**base_settings(tmp_path, pg_url), "IDP_AUDIT_RETENTION": "30d"}
    migrate(settings)
    application = create_app(settings)
    old = datetime.now(UTC) - timedelta(days=60)
    with application.app_context():
        rows = [{"event": "token.issued", "actor": "svc", "created_at": old, "details": {}}] * 3000
        db.session.execute(sa.insert(AuditEvent), rows)
        add_events([1])
        db.session.remove()
        db.engine.dispose()

    results = run_on_nodes(settings, "audit", "prune", "--batch-size", "100", "--json")

    assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
    assert sum(json.loads(r.stdout)["deleted"] for r in results) == 3000
    with application.app_context():
        assert stored_ages() == [1]
        db.session.remove()
        db.engine.dispose()


# --- the registry of events -------------------------------------------------------------------------------


def test_every_event_is_listed_in_the_readme():
    text = README.read_text("utf-8")
    section = text[text.index("## Audit log") :]
    section = section[: section.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", section, re.MULTILINE))
    assert listed == set(audit.EVENTS)


def test_unknown_events_and_secret_bearing_details_are_refused(app: Flask):
    with pytest.raises(ValueError, match="unknown audit event"):
        audit.record("token.leaked", actor=None)
    for name in ("password", "client_secret", "refresh_token", "code", "csrf_token"):
        with pytest.raises(ValueError, match="must not carry"):
            details: dict[str, Any] = {name: "x"}
            audit.record("login.failed", actor=None, **details)
    db.session.rollback()
    assert db.session.scalars(sa.select(AuditEvent)).all() == []


def test_log_line_of_every_cli_event_is_json_with_the_row_fields(settings: dict[str, str]):
    """The real process: one JSON log line per event on stderr, with the same fields as the row."""
    env = {**os.environ, **settings}
    created = subprocess.run(
        [sys.executable, "-m", "idp.cli", "clients", "create", "--name", "svc", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in created.stderr.splitlines()]
    client_id = json.loads(created.stdout)["client_id"]
    assert [(r["logger"], r["audit"]["event"], r["audit"]["client_id"]) for r in lines] == [
        ("idp.audit", "client.created", client_id),
        ("idp.audit", "api_key.created", client_id),
    ]
    assert all(r["audit"]["actor"] == actor() for r in lines)
