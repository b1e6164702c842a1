"""Single-use codes and rotating refresh tokens on PostgreSQL (SPEC §7, READ COMMITTED), against live servers
with two worker processes.

The races: many threads redeem one code or refresh with one token at the same moment; exactly one wins. The
lock waits, made deterministic: another transaction holds the row (as the winner or a family revocation does
mid-flight), the server's request is seen waiting on that lock, the holder commits, and the request's answer
and its effects are checked.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from joserfc.jws import extract_compact
from sqlalchemy import select

from idp.extensions import db
from idp.models import Grant, RefreshToken
from tests.conftest import LiveServer, requires_postgres
from tests.oidc_support import (
    TIMEOUT,
    LiveBrowser,
    authorize,
    check_concurrent_code_redemption,
    check_concurrent_refresh,
    live_is_active,
    live_redeem,
    live_refresh,
)
from tests.pages.support import WebApp, audit_events, user, web_app

pytestmark = requires_postgres
StartServer = Callable[..., LiveServer]


@pytest.fixture
def webapp(pg_app: Flask) -> WebApp:
    user()
    return web_app()


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- races ------------------------------------------------------------------------------------------------


def test_one_of_concurrent_code_redemptions_wins_across_processes(webapp: WebApp, pg_server: StartServer) -> None:
    check_concurrent_code_redemption(pg_server().url, webapp, count=12)


def test_one_of_concurrent_refreshes_wins_across_processes(webapp: WebApp, pg_server: StartServer) -> None:
    check_concurrent_refresh(pg_server().url, webapp, grace=False, count=12)


def test_one_of_concurrent_refreshes_wins_within_grace_across_processes(webapp: WebApp, pg_server: StartServer) -> None:
    check_concurrent_refresh(pg_server(IDP_REFRESH_TOKEN_REUSE_GRACE="30").url, webapp, grace=True, count=12)


# --- lock waits -------------------------------------------------------------------------------------------


@contextmanager
def held(pg_url: str, *statements: tuple[str, dict[str, Any]]) -> Iterator[Callable[[], None]]:
    """Run ``statements`` in a transaction left open (its row locks held); yield the function that commits it."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            for sql, params in statements:
                conn.execute(sa.text(sql), params)
            yield conn.commit
    finally:
        engine.dispose()


def wait_until_blocked(pg_url: str, future: Future[Any]) -> None:
    """Until some backend of the test database waits for a lock (the server's request behind our holder)."""
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                assert not future.done(), f"answered without waiting: {future.result().text}"
                if conn.execute(query).scalar_one() > 0:
                    return
                time.sleep(0.02)
        raise AssertionError("the request never waited for the held row lock")
    finally:
        engine.dispose()


def signed_in(server: LiveServer, webapp: WebApp) -> tuple[LiveBrowser, dict[str, Any]]:
    browser = LiveBrowser(server.url)
    response = live_redeem(server.url, webapp, authorize(browser, webapp))
    assert response.status_code == 200, response.text
    return browser, dict(response.json())


def grant_of(refresh_token: str) -> Grant:
    db.session.expire_all()
    row = db.session.get(RefreshToken, digest(refresh_token))
    assert row is not None
    grant = db.session.get(Grant, row.grant_id)
    assert grant is not None
    return grant


def test_code_redemption_waiting_on_the_winner_revokes_the_winners_grant(
    webapp: WebApp, pg_server: StartServer, pg_url: str
) -> None:
    """The loser read the code unused, then its consuming UPDATE waited on the winner's row lock; after the
    winner commits, the UPDATE changes nothing, and the loser revokes the grant the winner created."""
    server = pg_server()
    browser, winner = signed_in(server, webapp)
    winners_grant = grant_of(winner["refresh_token"])
    auth = authorize(browser, webapp)
    consume = (
        "UPDATE authorization_codes SET consumed_at = now(), grant_id = :grant WHERE digest = :digest",
        {"grant": winners_grant.id, "digest": digest(auth.code)},
    )
    with ThreadPoolExecutor(1) as pool, held(pg_url, consume) as commit:
        future = pool.submit(live_redeem, server.url, webapp, auth)
        wait_until_blocked(pg_url, future)
        commit()
    response = future.result(timeout=TIMEOUT)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text
    assert not live_is_active(server.url, webapp, winner["access_token"])
    assert live_refresh(server.url, webapp, winner["refresh_token"]).json()["error"] == "invalid_grant"
    assert grant_of(winner["refresh_token"]).revoked_at is not None
    assert [e.details["grant_id"] for e in audit_events("authorization_code.reused")] == [winners_grant.id]
    assert db.session.scalars(select(Grant.id)).all() == [winners_grant.id]  # the loser's grant rolled back


@pytest.mark.parametrize("grace", ["0", "30"])
def test_refresh_waiting_on_a_rotation_is_reuse(
    webapp: WebApp, pg_server: StartServer, pg_url: str, grace: str
) -> None:
    """The loser's rotating UPDATE waited on the winner's; afterwards it finds the token rotated: reuse, which
    revokes the family unless within the grace period."""
    server = pg_server(IDP_REFRESH_TOKEN_REUSE_GRACE=grace)
    _, tokens = signed_in(server, webapp)
    rotate = (
        "UPDATE refresh_tokens SET rotated_at = now() WHERE digest = :digest",
        {"digest": digest(tokens["refresh_token"])},
    )
    with ThreadPoolExecutor(1) as pool, held(pg_url, rotate) as commit:
        future = pool.submit(live_refresh, server.url, webapp, tokens["refresh_token"])
        wait_until_blocked(pg_url, future)
        commit()
    response = future.result(timeout=TIMEOUT)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text
    revoked = grace == "0"
    assert (grant_of(tokens["refresh_token"]).revoked_at is not None) is revoked
    assert live_is_active(server.url, webapp, tokens["access_token"]) is not revoked
    assert len(audit_events("refresh_token.reused")) == int(revoked)


def test_refresh_waiting_on_a_family_revocation_is_refused_as_revoked(
    webapp: WebApp, pg_server: StartServer, pg_url: str
) -> None:
    """A refresh that read the family live but whose rotation waited on a revocation of it is refused, and is
    not mistaken for reuse (no ``refresh_token.reused``, no second revocation)."""
    server = pg_server()
    _, tokens = signed_in(server, webapp)
    grant = grant_of(tokens["refresh_token"])
    revoke = [
        ("UPDATE grants SET revoked_at = now() WHERE id = :grant", {"grant": grant.id}),
        ("UPDATE refresh_tokens SET revoked_at = now() WHERE grant_id = :grant", {"grant": grant.id}),
    ]
    with ThreadPoolExecutor(1) as pool, held(pg_url, *revoke) as commit:
        future = pool.submit(live_refresh, server.url, webapp, tokens["refresh_token"])
        wait_until_blocked(pg_url, future)
        commit()
    response = future.result(timeout=TIMEOUT)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text
    assert "revoked" in response.json()["error_description"]
    assert audit_events("refresh_token.reused") == []
    db.session.expire_all()
    assert db.session.scalars(select(RefreshToken.rotated_at)).all() == [None]


def test_family_revocation_racing_an_access_token_revocation_succeeds(
    webapp: WebApp, pg_server: StartServer, pg_url: str
) -> None:
    """``/revoke`` of the refresh token denies the grant's access tokens while another transaction is denying
    one of them (``/revoke`` of that access token): the duplicate denylist entry is ignored, not a 500."""
    server = pg_server()
    _, tokens = signed_in(server, webapp)

    jti = json.loads(extract_compact(tokens["access_token"].encode()).payload)["jti"]
    deny = (
        "INSERT INTO revoked_tokens (jti, client_id, revoked_at, expires_at) "
        "VALUES (:jti, :client, now(), now() + interval '10 minutes')",
        {"jti": jti, "client": webapp.client_id},
    )
    assert webapp.key is not None
    auth = (webapp.client_id, webapp.key)

    def revoke_refresh_token() -> requests.Response:
        data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
        return requests.post(f"{server.url}/revoke", data=data, auth=auth, timeout=TIMEOUT)

    with ThreadPoolExecutor(1) as pool, held(pg_url, deny) as commit:
        future = pool.submit(revoke_refresh_token)
        wait_until_blocked(pg_url, future)
        commit()
    response = future.result(timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert grant_of(tokens["refresh_token"]).revoked_at is not None
    assert not live_is_active(server.url, webapp, tokens["access_token"])
