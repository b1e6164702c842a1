"""A granian worker killed with SIGKILL in the middle of a load of mixed requests (issue 7 fault test).

Threads keep issuing client-credentials tokens (RFC 6749 §4.4), redeeming codes (§4.1.3) that a browser thread
keeps authorizing, rotating refresh tokens (§6, RFC 9700 §4.14.2), introspecting (RFC 7662 §2) and revoking
access tokens and whole grants (RFC 7009 §2.1) against ``idp serve`` with two workers on PostgreSQL. The kill is
aimed: one refresh is held mid-rotation (its rotating UPDATE done, its inserts waiting on a row lock the test
holds on the grant) and the worker serving it is the one killed; granian respawns it. Then:

1. nothing a client received as committed is missing: every refresh token received exists and is the family's
   live one unless the client itself rotated it later; every access token received introspects as active unless
   it (or its grant) was revoked, and a revoked one as inactive;
2. no refresh family is half-rotated (SPEC §7): every grant has exactly one live refresh token, or is revoked
   with all of them; the rotation cut mid-flight left the token it was rotating live and nothing else;
3. the only failures a client saw are dropped connections of requests in flight when the worker died (or sent to it
   while the kernel tore it down), never an error status from the surviving worker, and once the new worker
   serves, every request succeeds;
4. the server log holds no traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from joserfc.jws import extract_compact
from sqlalchemy import select

from idp.extensions import db
from idp.models import Grant, GrantAccessToken, RefreshToken
from tests.conftest import LiveServer, requires_postgres
from tests.oauth_support import CC, Service, basic, service
from tests.oidc_support import (
    TIMEOUT,
    Authorization,
    LiveBrowser,
    authorize,
    live_is_active,
    live_redeem,
    live_refresh,
    token_auth,
)
from tests.pages.support import WebApp, user, web_app

pytestmark = requires_postgres

DRIVERS = 5  # load threads, plus one browser thread authorizing codes
OPERATIONS = {
    "authorize",
    "redeem",
    "refresh",
    "client_credentials",
    "introspect",
    "revoke_access_token",
    "revoke_grant",
}
WARM_UP = 1.5  # seconds of load before the kill
AFTER_RESPAWN = 1.5  # seconds of load at least once the new worker answers, and until every operation was sent
RECONNECT_EVERY = 8  # requests per keep-alive connection, so that connections reach both workers
# A request sent just after the kill may still meet the dying worker's sockets before the kernel closes them.
KILL_SLACK = 1.0
DROPPED = {"ConnectionError", "ChunkedEncodingError"}  # what requests raises when the connection goes away
StartServer = Callable[..., LiveServer]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def jti_of(token: str) -> str:
    return str(json.loads(extract_compact(token.encode()).payload)["jti"])


# --- what the clients observed ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request: when it was sent and answered, its status (``None``: no answer) or the exception."""

    operation: str
    started: float
    ended: float
    status: int | None
    failure: str | None = None


@dataclass
class Chain:
    """One grant as its client knows it: the refresh tokens it received, oldest first."""

    tokens: list[str]
    cut: bool = False  # a refresh presenting the last token got no answer: rotated or not, the client can't tell
    revocation: str = "none"  # "done" when /revoke of it answered 200, "unknown" when it got no answer


@dataclass
class AccessToken:
    token: str
    chain: Chain | None  # None: a client-credentials token
    revocation: str = "none"

    @property
    def expectation(self) -> str:
        """``active``, ``inactive`` or ``unknown`` (a revocation of it or of its grant got no answer)."""
        states = {self.revocation, self.chain.revocation if self.chain else "none"}
        if "unknown" in states:
            return "unknown"
        return "inactive" if "done" in states else "active"


@dataclass
class Load:
    """Driver threads and a browser thread against ``url``; everything they observed, under one lock."""

    url: str
    webapp: WebApp
    service: Service
    outcomes: list[Outcome] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    access_tokens: list[AccessToken] = field(default_factory=list)
    codes: queue.Queue[Authorization] = field(default_factory=queue.Queue)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self, operation: str, call: Callable[[], requests.Response], valid: Callable[[Any], bool] = lambda _: True
    ) -> requests.Response | None:
        """Send one request; the response if it is a 200 whose body is ``valid``, else ``None`` (recorded)."""
        started = time.monotonic()
        try:
            response = call()
        except requests.RequestException as exc:
            self.record(Outcome(operation, started, time.monotonic(), None, type(exc).__name__))
            return None
        ok = response.status_code == 200 and valid(response.json())
        failure = None if ok else f"{response.status_code} {response.text[:300]}"
        self.record(Outcome(operation, started, time.monotonic(), response.status_code, failure))
        return response if ok else None

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def issued(self, token: str, chain: Chain | None) -> AccessToken:
        received = AccessToken(token, chain)
        with self.lock:
            self.access_tokens.append(received)
        return received

    def operations_since(self, moment: float) -> set[str]:
        with self.lock:
            return {o.operation for o in self.outcomes if o.started >= moment}

    def new_chain(self, refresh_token: str) -> Chain:
        chain = Chain([refresh_token])
        with self.lock:
            self.chains.append(chain)
        return chain

    def authorize_codes(self) -> None:
        """The browser thread: a signed-in user's browser keeps getting codes for the drivers to redeem."""
        browser = LiveBrowser(self.url)
        while not self.stopping.is_set():
            if self.codes.qsize() >= 2 * DRIVERS:
                time.sleep(0.02)
                continue
            started = time.monotonic()
            try:
                self.codes.put(authorize(browser, self.webapp))
                self.record(Outcome("authorize", started, time.monotonic(), 200))
            except requests.RequestException as exc:
                self.record(Outcome("authorize", started, time.monotonic(), None, type(exc).__name__))
            except AssertionError as exc:  # an unexpected page
                self.record(Outcome("authorize", started, time.monotonic(), None, f"AssertionError {exc}"))


class Driver:
    """One load thread: a service's tokens and one web-app grant at a time, in a fixed cycle of operations."""

    def __init__(self, load: Load, chain: Chain) -> None:
        self.load = load
        self.chain: Chain | None = chain
        self.to_revoke: list[Chain] = []
        self.service_token: AccessToken | None = None
        self.latest: AccessToken | None = None
        self.retired = 0

    def run(self) -> None:
        operations = [
            self.client_credentials,
            self.refresh,
            self.introspect,
            self.revoke_access_token,
            self.redeem,
            self.refresh,
            self.revoke_grant,
        ]
        sent = 0
        http = requests.Session()
        while not self.load.stopping.is_set():
            for operation in operations:
                if sent % RECONNECT_EVERY == 0:
                    http.close()
                    http = requests.Session()
                sent += 1
                operation(http)
        http.close()

    def client_credentials(self, http: requests.Session) -> None:
        svc, url = self.load.service, self.load.url
        headers = basic(svc.client_id, svc.key)
        response = self.load.send(
            "client_credentials", lambda: http.post(f"{url}/token", data=CC, headers=headers, timeout=TIMEOUT)
        )
        if response is not None:
            self.service_token = self.latest = self.load.issued(response.json()["access_token"], None)

    def refresh(self, http: requests.Session) -> None:
        chain = self.chain
        if chain is None:
            return
        response = self.load.send(
            "refresh", lambda: live_refresh(self.load.url, self.load.webapp, chain.tokens[-1], http)
        )
        if response is None:
            chain.cut, self.chain = True, None
            return
        body = response.json()
        chain.tokens.append(body["refresh_token"])
        self.latest = self.load.issued(body["access_token"], chain)

    def introspect(self, http: requests.Session) -> None:
        """RFC 7662 §2.2: a token this thread just received, and did not revoke, is active."""
        token = self.latest
        if token is None:
            return
        svc, url = self.load.service, self.load.url
        self.load.send(
            "introspect",
            lambda: http.post(
                f"{url}/introspect", data={"token": token.token}, auth=(svc.client_id, svc.key), timeout=TIMEOUT
            ),
            valid=lambda body: body["active"] is True,
        )

    def revoke_access_token(self, http: requests.Session) -> None:
        token = self.service_token
        if token is None:
            return
        self.service_token = None
        if self.latest is token:
            self.latest = None
        svc, url = self.load.service, self.load.url
        response = self.load.send(
            "revoke_access_token",
            lambda: http.post(
                f"{url}/revoke", data={"token": token.token}, auth=(svc.client_id, svc.key), timeout=TIMEOUT
            ),
        )
        token.revocation = "done" if response is not None else "unknown"

    def redeem(self, http: requests.Session) -> None:
        """A new grant replaces the current one; every second grant replaced is revoked later, the others are
        left live."""
        try:
            auth = self.load.codes.get_nowait()
        except queue.Empty:
            return
        response = self.load.send("redeem", lambda: live_redeem(self.load.url, self.load.webapp, auth, http))
        if response is None:
            return
        body = response.json()
        chain = self.load.new_chain(body["refresh_token"])
        self.latest = self.load.issued(body["access_token"], chain)
        if self.chain is not None:
            self.retired += 1
            if self.retired % 2:
                self.to_revoke.append(self.chain)
        self.chain = chain

    def revoke_grant(self, http: requests.Session) -> None:
        """RFC 7009 §2.1: revoking the refresh token revokes the grant, its refresh and access tokens."""
        if not self.to_revoke:
            return
        chain = self.to_revoke.pop(0)
        app, url = self.load.webapp, self.load.url
        assert app.key is not None
        credentials = (app.client_id, app.key)
        data = {"token": chain.tokens[-1], "token_type_hint": "refresh_token"}
        response = self.load.send(
            "revoke_grant", lambda: http.post(f"{url}/revoke", data=data, auth=credentials, timeout=TIMEOUT)
        )
        chain.revocation = "done" if response is not None else "unknown"


@contextmanager
def running(load: Load, chains: list[Chain]) -> Iterator[Load]:
    threads = [threading.Thread(target=Driver(load, chain).run, daemon=True) for chain in chains]
    threads.append(threading.Thread(target=load.authorize_codes, daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        load.stopping.set()
        for thread in threads:
            thread.join(TIMEOUT + 5)


# --- the server's processes ---------------------------------------------------------------------------------


def workers(server: LiveServer) -> set[int]:
    """The granian worker processes: the children of the server process (``idp serve`` execs granian)."""
    pid = server.process.pid
    return {int(child) for path in Path(f"/proc/{pid}/task").glob("*/children") for child in path.read_text().split()}


def serving_worker(server: LiveServer, client_port: int) -> int:
    """The worker holding the server end of the TCP connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
        if (local, remote) == (server.port, client_port):
            inode = fields[9]
    assert inode is not None, "the connection is not in /proc/net/tcp"
    for pid in workers(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError("no worker holds the connection")


def wait_for_respawn(server: LiveServer, known: set[int], metrics_dir: Path) -> float:
    """Until a new worker has answered a request (it then has Prometheus sample files of its own, named by pid,
    in the multiprocess directory); the time it was first seen answering. ``known`` holds every worker that ran
    before the kill, the killed one included: until granian reaps it, the killed worker is still listed as a
    child, with sample files of its own."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for pid in workers(server) - known:
            if any(metrics_dir.glob(f"*_{pid}.db")):
                return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"no respawned worker answered within 20 s: {server.log()[-2000:]}")


# --- the aimed kill -----------------------------------------------------------------------------------------


def blocked_statement(engine: sa.Engine, holder: int) -> str | None:
    query = sa.text("SELECT query FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))")
    with engine.connect() as conn:
        return conn.execute(query, {"holder": holder}).scalar()


def send_refresh(conn: http.client.HTTPConnection, webapp: WebApp, refresh_token: str) -> int:
    body, headers = token_auth(webapp, {"grant_type": "refresh_token", "refresh_token": refresh_token})
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request("POST", "/token", body=urlencode(body), headers=headers)
    return conn.getresponse().status


def kill_mid_rotation(
    server: LiveServer, webapp: WebApp, victim: Chain, grant_id: str, pg_url: str
) -> tuple[int, float]:
    """Refresh ``victim`` while the test holds its grant row ``FOR UPDATE``: the rotating UPDATE goes through,
    then the inserts of the new tokens wait (their foreign-key check needs a share lock on the grant). The worker
    serving that request is killed with SIGKILL, the lock released; the client gets no answer. Returns the pid
    and the time of the kill."""
    engine = sa.create_engine(pg_url)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        with engine.connect() as holder, ThreadPoolExecutor(1) as pool:
            holder.execute(sa.text("SELECT id FROM grants WHERE id = :id FOR UPDATE"), {"id": grant_id})
            holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            conn.connect()
            assert conn.sock is not None
            client_port = conn.sock.getsockname()[1]
            answer = pool.submit(send_refresh, conn, webapp, victim.tokens[-1])
            deadline = time.monotonic() + TIMEOUT
            while (statement := blocked_statement(engine, holder_pid)) is None:
                assert not answer.done(), f"answered without waiting: {answer.result()}"
                assert time.monotonic() < deadline, "the refresh never waited for the grant row"
                time.sleep(0.02)
            assert statement.startswith("INSERT"), statement  # past the rotating UPDATE, before the commit
            worker = serving_worker(server, client_port)
            killed_at = time.monotonic()
            os.kill(worker, signal.SIGKILL)
            holder.rollback()
            with pytest.raises(ConnectionError):  # http.client's RemoteDisconnected or a reset
                answer.result(TIMEOUT)
            victim.cut = True
            return worker, killed_at
    finally:
        conn.close()
        engine.dispose()


# --- the test -----------------------------------------------------------------------------------------------


def new_chain(server: LiveServer, webapp: WebApp, browser: LiveBrowser) -> Chain:
    response = live_redeem(server.url, webapp, authorize(browser, webapp))
    assert response.status_code == 200, response.text
    return Chain([response.json()["refresh_token"]])


def test_killing_a_worker_under_load_loses_no_committed_data(
    pg_app: Flask, pg_server: StartServer, pg_url: str, tmp_path: Path
) -> None:
    user()
    webapp, svc = web_app(), service()
    metrics_dir = tmp_path / "metrics"
    server = pg_server(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    browser = LiveBrowser(server.url)
    chains = [new_chain(server, webapp, browser) for _ in range(DRIVERS + 1)]
    victim = chains.pop()
    victim_row = db.session.get(RefreshToken, digest(victim.tokens[-1]))
    assert victim_row is not None
    victim_grant = victim_row.grant_id
    load = Load(server.url, webapp, svc, chains=list(chains))

    with running(load, chains):
        time.sleep(WARM_UP)
        before = workers(server)
        killed, killed_at = kill_mid_rotation(server, webapp, victim, victim_grant, pg_url)
        assert killed in before
        respawned_at = wait_for_respawn(server, before, metrics_dir)
        time.sleep(AFTER_RESPAWN)
        deadline = time.monotonic() + TIMEOUT
        while load.operations_since(respawned_at) != OPERATIONS and time.monotonic() < deadline:
            time.sleep(0.1)
    log = server.log()

    # (3) only the killed worker's requests in flight failed, with a dropped connection (before the status line,
    # or in the body: requests' ChunkedEncodingError); then everything worked.
    failed = [o for o in load.outcomes if o.failure is not None]
    assert all(o.status is None and o.failure in DROPPED for o in failed), failed
    # Not only the requests in flight at the kill: until the kernel has torn the killed worker down (milliseconds,
    # longer on a busy machine), a connection opened meanwhile can still be accepted by it and reset. So failures are
    # bounded in time, not counted per thread.
    assert all(o.started <= killed_at + KILL_SLACK and o.ended >= killed_at for o in failed), (killed_at, failed)
    after = [o for o in load.outcomes if o.started >= respawned_at]
    assert all(o.failure is None for o in after), after
    assert {o.operation for o in after} == OPERATIONS

    # (2) every family has exactly one live refresh token, or is revoked whole.
    db.session.expire_all()
    grants = {g.id: g for g in db.session.scalars(select(Grant))}
    rows = {t.digest: t for t in db.session.scalars(select(RefreshToken))}
    families: dict[str, list[RefreshToken]] = defaultdict(list)
    for row in rows.values():
        families[row.grant_id].append(row)
    half_rotated: dict[str, Any] = {}
    for grant in grants.values():
        live_rows = [t for t in families[grant.id] if t.rotated_at is None and t.revoked_at is None]
        unrevoked = [t for t in families[grant.id] if t.revoked_at is None]
        if (grant.revoked_at is None and len(live_rows) != 1) or (grant.revoked_at is not None and unrevoked):
            half_rotated[grant.id] = (grant.revoked_at, [(t.rotated_at, t.revoked_at) for t in families[grant.id]])
    assert half_rotated == {}
    # The rotation cut mid-flight left nothing: its token is still the live one, and no other was added.
    victim_family = families[victim_grant]
    assert [(t.digest, t.rotated_at, t.revoked_at) for t in victim_family] == [(digest(victim.tokens[-1]), None, None)]

    # (1) every refresh token received is stored; the last one is live unless revoked or cut.
    known_grants = set()
    for chain in [*load.chains, victim]:
        received = [rows.get(digest(token)) for token in chain.tokens]
        assert all(row is not None for row in received), "a refresh token a client received is missing"
        stored = [row for row in received if row is not None]
        (grant_id,) = {row.grant_id for row in stored}
        known_grants.add(grant_id)
        assert all(row.rotated_at is not None for row in stored[:-1])
        if chain.revocation != "unknown":
            assert (grants[grant_id].revoked_at is not None) is (chain.revocation == "done")
        if chain.revocation == "none" and not chain.cut:
            assert stored[-1].rotated_at is None and stored[-1].revoked_at is None
    cut_redemptions = sum(1 for o in failed if o.operation == "redeem")
    assert len(set(grants) - known_grants) <= cut_redemptions  # grants whose tokens never reached the client

    # (1) every access token received is recorded and introspects as its revocations say.
    user_jtis = {jti_of(t.token) for t in load.access_tokens if t.chain is not None}
    assert user_jtis <= set(db.session.scalars(select(GrantAccessToken.jti)))
    checked = [t for t in load.access_tokens if t.expectation != "unknown"]
    with ThreadPoolExecutor(4) as pool:
        actives = list(pool.map(lambda t: live_is_active(server.url, webapp, t.token), checked))
    wrong = [
        (jti_of(t.token), t.expectation)
        for t, active in zip(checked, actives, strict=True)
        if active != (t.expectation == "active")
    ]
    assert wrong == []

    # (1) the live refresh tokens work (the victim's too: its rotation never committed).
    live_tokens = [c.tokens[-1] for c in load.chains if c.revocation == "none" and not c.cut] + [victim.tokens[-1]]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda token: live_refresh(server.url, webapp, token), live_tokens))
    assert [a.status_code for a in answers] == [200] * len(live_tokens), [
        a.text for a in answers if a.status_code != 200
    ]

    # (4) the log has granian's note of the worker's exit, and no traceback or error of ours.
    assert "Unexpected exit from worker" in log
    assert "Traceback" not in log, log[-3000:]
    assert not re.findall(r'"level": "(?:error|critical)".*', log)
