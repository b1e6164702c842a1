"""`idp db prune` (issue 7, housekeeping): deletes exactly the rows that have outlived their use — expired codes,
refresh tokens, access-token records, grants, login sessions, denylist entries (RFC 7009 §2.2), used client
assertions (RFC 7523 §3) and audit events past the retention — and keeps the spent credentials whose replay must
still revoke a grant (RFC 6749 §4.1.2, RFC 9700 §4.14.2). Safe to run on several nodes at once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp import create_app
from idp.cli import actor
from idp.extensions import db
from idp.models import (
    AuditEvent,
    AuthorizationCode,
    Grant,
    GrantAccessToken,
    LoginSession,
    RefreshToken,
    RevokedToken,
    UsedAssertion,
    User,
)
from idp.models.base import utcnow
from idp.protocol.digests import sha256_hex
from idp.services import housekeeping
from idp.services.retention import DEFAULT_BATCH_SIZE, delete_batch
from tests.cli.support import ok_json, run_on_nodes, table_rows
from tests.conftest import Cli, base_settings, migrate, requires_postgres
from tests.oauth_support import assert_error
from tests.oidc_support import is_active, refresh, sign_in_and_redeem
from tests.pages.fixtures import alice, web
from tests.pages.support import WebApp, audit_events, user, web_app

__all__ = ["alice", "web"]

# The tables `idp db prune` visits, in its order, with their models.
PRUNED = {
    "authorization_codes": AuthorizationCode,
    "refresh_tokens": RefreshToken,
    "grant_access_tokens": GrantAccessToken,
    "grants": Grant,
    "login_sessions": LoginSession,
    "revoked_tokens": RevokedToken,
    "used_assertions": UsedAssertion,
    "audit_events": AuditEvent,
}
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass
class Seed:
    """Rows added for a test, each marked as one that prune must delete (``doomed``) or keep."""

    client_id: str
    user_id: str
    now: datetime = field(default_factory=utcnow)
    doomed: dict[str, set[Any]] = field(default_factory=lambda: {name: set() for name in PRUNED})
    kept: dict[str, set[Any]] = field(default_factory=lambda: {name: set() for name in PRUNED})

    def add(self, table: str, row: Any, key: Any, *, deleted: bool) -> None:
        db.session.add(row)
        (self.doomed if deleted else self.kept)[table].add(key)

    def grant(self, grant_id: str, expires_in: timedelta, deleted: bool, revoked_ago: timedelta | None = None) -> None:
        row = Grant(
            id=grant_id,
            client_id=self.client_id,
            user_id=self.user_id,
            scope="openid offline_access",
            auth_time=self.now - 40 * DAY,
            created_at=self.now - 40 * DAY,
            expires_at=self.now + expires_in,
            revoked_at=None if revoked_ago is None else self.now - revoked_ago,
        )
        self.add("grants", row, grant_id, deleted=deleted)

    def refresh_token(
        self,
        name: str,
        grant_id: str,
        idle_in: timedelta,
        deleted: bool,
        rotated_ago: timedelta | None = None,
        revoked_ago: timedelta | None = None,
    ) -> None:
        row = RefreshToken(
            digest=name,
            grant_id=grant_id,
            client_id=self.client_id,
            scope="openid offline_access",
            created_at=self.now - 40 * DAY,
            idle_expires_at=self.now + idle_in,
            rotated_at=None if rotated_ago is None else self.now - rotated_ago,
            revoked_at=None if revoked_ago is None else self.now - revoked_ago,
        )
        self.add("refresh_tokens", row, name, deleted=deleted)

    def access_token(self, jti: str, grant_id: str, expires_in: timedelta, deleted: bool) -> None:
        row = GrantAccessToken(jti=jti, grant_id=grant_id, expires_at=self.now + expires_in)
        self.add("grant_access_tokens", row, jti, deleted=deleted)

    def code(self, name: str, expires_in: timedelta, deleted: bool, grant_id: str | None = None) -> None:
        row = AuthorizationCode(
            digest=name,
            client_id=self.client_id,
            user_id=self.user_id,
            redirect_uri="https://app.example.com/cb",
            scope="openid",
            code_challenge="x" * 43,
            code_challenge_method="S256",
            auth_time=self.now - HOUR,
            created_at=self.now + expires_in - MINUTE,
            expires_at=self.now + expires_in,
            consumed_at=None if grant_id is None else self.now + expires_in - MINUTE,
            grant_id=grant_id,
        )
        self.add("authorization_codes", row, name, deleted=deleted)

    def session(self, sid: str, expires_in: timedelta, deleted: bool, ended_ago: timedelta | None = None) -> None:
        row = LoginSession(
            id=sid,
            cookie_digest=sha256_hex(sid),
            user_id=self.user_id,
            auth_time=self.now - HOUR,
            created_at=self.now - HOUR,
            expires_at=self.now + expires_in,
            ended_at=None if ended_ago is None else self.now - ended_ago,
        )
        self.add("login_sessions", row, sid, deleted=deleted)


def seed_every_kind(client_id: str, user_id: str) -> Seed:
    """For every table, rows just past their end next to rows still in use, and the spent credentials that are
    kept while replaying them must still revoke a grant."""
    s = Seed(client_id, user_id)
    # A live family: its current token, a rotated one long idle-expired (kept: its reuse revokes the family),
    # and the used code that created it (kept: a second redemption revokes the grant).
    s.grant("g-live", 20 * DAY, deleted=False)
    s.refresh_token("rt-current", "g-live", 7 * DAY, deleted=False)
    s.refresh_token("rt-rotated", "g-live", -3 * DAY, deleted=False, rotated_ago=10 * DAY)
    s.code("code-used-live-grant", -10 * DAY, deleted=False, grant_id="g-live")
    s.access_token("jti-live", "g-live", 5 * MINUTE, deleted=False)
    s.access_token("jti-expired", "g-live", -SECOND, deleted=True)
    # A family whose current token went idle: the token goes, the grant stays until its absolute expiry.
    s.grant("g-idle", 20 * DAY, deleted=False)
    s.refresh_token("rt-idle", "g-idle", -SECOND, deleted=True)
    # Revoked families: tokens revoked a day ago go, freshly revoked ones stay.
    s.grant("g-revoked-long-ago", 20 * DAY, deleted=False, revoked_ago=2 * DAY)
    s.refresh_token("rt-revoked-long-ago", "g-revoked-long-ago", 5 * DAY, deleted=True, revoked_ago=2 * DAY)
    s.grant("g-revoked-now", 20 * DAY, deleted=False, revoked_ago=MINUTE)
    s.refresh_token("rt-revoked-now", "g-revoked-now", 5 * DAY, deleted=False, revoked_ago=MINUTE)
    # A family past its absolute expiry: every token, its access-token records, its code, then the grant go.
    s.grant("g-ended", -HOUR, deleted=True)
    s.refresh_token("rt-ended-rotated", "g-ended", -2 * DAY, deleted=True, rotated_ago=3 * DAY)
    s.refresh_token("rt-ended-current", "g-ended", -HOUR, deleted=True)
    s.access_token("jti-ended", "g-ended", -50 * MINUTE, deleted=True)
    s.code("code-used-ended-grant", -30 * DAY, deleted=True, grant_id="g-ended")
    # Just past its absolute expiry (a request may still be finishing with it), or with an access token still
    # live: the grant stays for now.
    s.grant("g-just-ended", -MINUTE, deleted=False)
    s.refresh_token("rt-just-ended", "g-just-ended", -MINUTE, deleted=True)
    s.grant("g-ended-token-live", -HOUR, deleted=False)
    s.access_token("jti-outliving-grant", "g-ended-token-live", 5 * MINUTE, deleted=False)
    # Unused codes.
    s.code("code-expired", -SECOND, deleted=True)
    s.code("code-live", MINUTE, deleted=False)
    # Login sessions.
    s.session("sid-live", HOUR, deleted=False)
    s.session("sid-expired", -SECOND, deleted=True)
    s.session("sid-ended", HOUR, deleted=True, ended_ago=SECOND)
    # The access-token denylist and used client assertions.
    for jti, expires_in, deleted in (("denied-expired", -SECOND, True), ("denied-live", MINUTE, False)):
        s.add("revoked_tokens", RevokedToken(jti=jti, expires_at=s.now + expires_in), jti, deleted=deleted)
    for jti, expires_in, deleted in (("assertion-expired", -SECOND, True), ("assertion-live", MINUTE, False)):
        row = UsedAssertion(client_id=client_id, jti=jti, expires_at=s.now + expires_in)
        s.add("used_assertions", row, (client_id, jti), deleted=deleted)
    # Audit events past the default retention (90 days) and within it.
    old = AuditEvent(event="login.failed", actor=None, details={}, created_at=s.now - 91 * DAY)
    recent = AuditEvent(event="login.failed", actor=None, details={}, created_at=s.now - 89 * DAY)
    db.session.add_all([old, recent])
    db.session.flush()
    s.doomed["audit_events"].add(old.id)
    s.kept["audit_events"].add(recent.id)
    db.session.commit()
    return s


def stored_keys() -> dict[str, set[Any]]:
    """The primary key of every row of every pruned table, as the database holds them now."""
    db.session.rollback()
    keys: dict[str, set[Any]] = {}
    for name, model in PRUNED.items():
        columns = model.__mapper__.primary_key
        rows = db.session.execute(select(*columns)).all()
        keys[name] = {tuple(row) if len(columns) > 1 else row[0] for row in rows}
    return keys


def unpruned_tables() -> dict[str, Any]:
    """Every row of every table prune must never touch."""
    return {name: rows for name, rows in table_rows(db.engine).items() if name not in PRUNED}


def counts(seed: Seed) -> dict[str, int]:
    return {name: len(keys) for name, keys in seed.doomed.items()}


@pytest.fixture
def seeded(app: Flask) -> Seed:
    client = web_app()
    return seed_every_kind(client.client_id, user("bob").id)


def test_prune_deletes_exactly_the_expired_rows_and_nothing_else(cli: Cli, seeded: Seed) -> None:
    before, untouched = stored_keys(), unpruned_tables()

    result = ok_json(cli("db", "prune", "--batch-size", "2", "--json"))

    assert result == {"deleted": counts(seeded), "total": sum(counts(seeded).values())}
    after = stored_keys()
    for table in PRUNED:
        if table != "audit_events":  # prune records its own events
            assert after[table] == before[table] - seeded.doomed[table], table
    assert seeded.kept["audit_events"] <= after["audit_events"]
    assert not seeded.doomed["audit_events"] & after["audit_events"]
    assert unpruned_tables() == untouched


def test_prune_is_audited_as_db_pruned_with_the_counts(cli: Cli, seeded: Seed) -> None:
    ok_json(cli("db", "prune", "--json"))

    [event] = audit_events("db.pruned")
    assert event.actor == actor() and event.client_id is None
    assert event.details == counts(seeded)
    [cut] = audit_events("audit.pruned")
    assert cut.details["deleted"] == 1


def test_a_second_prune_deletes_nothing_and_records_nothing(cli: Cli, seeded: Seed) -> None:
    ok_json(cli("db", "prune", "--json"))
    state = table_rows(db.engine)

    again = ok_json(cli("db", "prune", "--json"))

    assert again == {"deleted": dict.fromkeys(PRUNED, 0), "total": 0}
    assert table_rows(db.engine) == state
    assert len(audit_events("db.pruned")) == 1


def test_json_output_has_a_count_per_table_in_order_and_the_total(cli: Cli, app: Flask) -> None:
    result = ok_json(cli("db", "prune", "--json"))
    assert list(result) == ["deleted", "total"]
    assert list(result["deleted"]) == list(PRUNED)
    assert all(isinstance(count, int) for count in result["deleted"].values())


def test_text_output_lists_each_table_with_its_count(cli: Cli, seeded: Seed) -> None:
    result = cli("db", "prune")

    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split() for line in lines[:-1]] == [[name, str(n)] for name, n in counts(seeded).items()]
    assert lines[-1] == f"deleted {sum(counts(seeded).values())} row(s)"


def test_rotated_refresh_token_of_a_live_grant_is_kept_and_its_reuse_still_revokes_the_family(
    cli: Cli, client: FlaskClient, web: WebApp, alice: User
) -> None:
    first = sign_in_and_redeem(client, web)
    refreshed = refresh(client, web, first["refresh_token"])
    assert refreshed.status_code == 200
    second = refreshed.get_json()
    rotated = sha256_hex(first["refresh_token"])
    # Long rotated and long idle-expired, but its grant is within its absolute lifetime.
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.digest == rotated)
        .values(rotated_at=utcnow() - 10 * DAY, idle_expires_at=utcnow() - 3 * DAY)
    )
    db.session.commit()

    result = ok_json(cli("db", "prune", "--json"))

    assert result["deleted"]["refresh_tokens"] == 0 and result["deleted"]["grants"] == 0
    assert rotated in stored_keys()["refresh_tokens"]
    body = assert_error(refresh(client, web, first["refresh_token"]), 400, "invalid_grant")
    assert "revoked" in body["error_description"]
    assert len(audit_events("refresh_token.reused")) == 1
    assert_error(refresh(client, web, second["refresh_token"]), 400, "invalid_grant")
    assert not is_active(client, web, second["access_token"])
    db.session.rollback()
    assert all(grant.revoked_at is not None for grant in db.session.scalars(select(Grant)))


@requires_postgres
def test_concurrent_prunes_on_postgresql_delete_each_row_once(pg_url: str, tmp_path: Path) -> None:
    """Three nodes pruning one database at once: none fails, every expired row is deleted by exactly one of them
    (their counts add up to the totals), every live row stays, and a later prune finds nothing left."""
    settings = base_settings(tmp_path, pg_url)
    migrate(settings)
    application = create_app(settings)
    with application.app_context():
        owner = web_app()
        bob = user("bob")
        seed = seed_every_kind(owner.client_id, bob.id)
        expected = counts(seed)
        now = utcnow()
        expired = now - HOUR
        rows: dict[Any, list[dict[str, Any]]] = {
            Grant: [
                {"id": f"g{i}", "client_id": owner.client_id, "user_id": bob.id, "scope": "openid"}
                | {"auth_time": expired, "expires_at": expired}
                for i in range(150)
            ],
            RefreshToken: [
                {"digest": f"rt{i}", "grant_id": f"g{i // 2}", "client_id": owner.client_id, "scope": "openid"}
                | {"idle_expires_at": expired, **({"rotated_at": expired} if i % 2 else {})}
                for i in range(300)
            ],
            GrantAccessToken: [{"jti": f"at{i}", "grant_id": f"g{i}", "expires_at": expired} for i in range(150)],
            AuthorizationCode: [
                {"digest": f"c{i}", "client_id": owner.client_id, "user_id": bob.id, "redirect_uri": "https://a/cb"}
                | {"scope": "openid", "code_challenge": "x", "code_challenge_method": "S256"}
                | {"auth_time": expired, "expires_at": expired}
                for i in range(300)
            ],
            LoginSession: [
                {"id": f"s{i}", "cookie_digest": f"s{i}", "user_id": bob.id, "auth_time": expired}
                | {"expires_at": expired}
                for i in range(300)
            ],
            RevokedToken: [{"jti": f"r{i}", "expires_at": expired} for i in range(300)],
            UsedAssertion: [{"client_id": owner.client_id, "jti": f"a{i}", "expires_at": expired} for i in range(300)],
            AuditEvent: [{"event": "login.failed", "created_at": now - 100 * DAY, "details": {}}] * 300,
        }
        for model, values in rows.items():
            db.session.execute(sa.insert(model), values)
            expected[model.__table__.name] += len(values)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()

    results = run_on_nodes(settings, "db", "prune", "--batch-size", "10", "--json")

    assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
    reports = [json.loads(r.stdout) for r in results]
    assert {table: sum(r["deleted"][table] for r in reports) for table in PRUNED} == expected
    assert sum(r["total"] for r in reports) == sum(expected.values())
    with application.app_context():
        after = stored_keys()
        for table in PRUNED:
            if table != "audit_events":  # each node that deleted something recorded it
                assert after[table] == seed.kept[table], table
        assert seed.kept["audit_events"] <= after["audit_events"]
        db.session.remove()
        db.engine.dispose()
    assert json.loads(run_on_nodes(settings, "db", "prune", "--json", nodes=1)[0].stdout)["total"] == 0


def unindexed_scans(plan: dict[str, Any]) -> list[str]:
    """The scans in an ``EXPLAIN (FORMAT JSON)`` plan node that read a table or an index in full: a sequential
    scan, or an index scan with no index condition (walking the whole index, filtering as it goes)."""
    found = []
    if plan["Node Type"] == "Seq Scan" or (plan["Node Type"].endswith("Index Scan") and "Index Cond" not in plan):
        found.append(f"{plan['Node Type']} of {plan.get('Index Name') or plan['Relation Name']}: {plan.get('Filter')}")
    for child in plan.get("Plans", []):
        found += unindexed_scans(child)
    return found


@requires_postgres
def test_every_prune_deletion_on_postgresql_reads_only_through_index_conditions(pg_url: str, tmp_path: Path) -> None:
    """Each deletion pass of ``idp db prune`` has a plan in which every table is read through an index condition,
    so a prune reads the rows it deletes, not whole tables. The planner is kept from the alternatives (sequential
    scans, and the hash and merge joins that would read an index in full) so that, on an empty database with no
    statistics, it still shows whether such a plan exists: it does only when every condition has its index."""
    settings = base_settings(tmp_path, pg_url)
    migrate(settings)
    application = create_app(settings)
    with application.app_context():
        plans: dict[str, Any] = {}
        with db.engine.connect() as connection:
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                connection.exec_driver_sql(f"SET {setting} = off")
            for table, (model, conditions) in housekeeping.expired(utcnow()).items():
                for number, condition in enumerate(conditions, 1):
                    compiled = delete_batch(model, condition, DEFAULT_BATCH_SIZE).compile(connection)
                    explain = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params)
                    plans[f"{table} pass {number}"] = explain.scalar_one()[0]["Plan"]
        db.engine.dispose()

    assert len(plans) == 9  # refresh tokens go in three passes, every other table in one
    assert {name: scans for name, plan in plans.items() if (scans := unindexed_scans(plan))} == {}
