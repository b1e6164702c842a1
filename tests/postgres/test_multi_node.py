"""Two nodes (issue 7): separate ``idp serve`` processes on different loopback ports sharing PostgreSQL, Redis and
the keys directory, as behind a load balancer. Nothing about correctness changes with the second node.

The nodes are started once for the module. The tests share them and the installation, never a client, a user's
grant or a rate-limit counter: each test registers its own clients, and starts with no counter."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import requests
from flask import Flask

from idp import create_app
from idp.extensions import db
from idp.services.api_keys import revoke_api_key
from idp.services.keys import rotate
from idp.services.keystore import KeyStore
from tests.conftest import REDIS_URL, LiveServer, free_port, isolated_environment, requires_postgres, requires_redis
from tests.oauth_support import CC, basic, service
from tests.oidc_support import TIMEOUT, LiveBrowser, authorize, live_redeem, live_refresh, one_winner
from tests.pages.support import WebApp, user, web_app

pytestmark = [requires_postgres, requires_redis]


class Nodes:
    """Node A and node B; the issuer is A's address (the load balancer's, in production)."""

    def __init__(self, settings: dict[str, str], app: Flask, a: LiveServer, b: LiveServer) -> None:
        self.settings, self.app, self.a, self.b = settings, app, a, b


def clear_rate_limits(settings: dict[str, str]) -> None:
    """Delete the installation's rate-limit counters from Redis."""
    server = redis.Redis.from_url(REDIS_URL or "")
    for key in server.scan_iter(f"*{settings['IDP_RATE_LIMIT_KEY_PREFIX']}*"):
        server.delete(key)
    server.close()


@pytest.fixture(scope="module")
def nodes(module_pg_settings: dict[str, str]) -> Iterator[Nodes]:
    port_a = free_port()
    shared = {
        **module_pg_settings,
        "IDP_ISSUER": f"http://127.0.0.1:{port_a}",
        "IDP_REDIS_URL": REDIS_URL or "",
        "IDP_RATE_LIMIT_KEY_PREFIX": f"idp-test-{uuid.uuid4().hex[:12]}",
        "IDP_RATE_LIMIT_CLIENT_AUTH": "6 per minute",
        "IDP_JWKS_MAX_AGE": "0",  # lets the test rotate at once
    }
    app = create_app(shared)
    started: list[LiveServer] = []
    try:
        with isolated_environment(Path(shared["IDP_INSTANCE_DIR"]).parent), app.app_context():
            user()  # alice, who signs in to each test's own web app
            db.session.remove()
            started.append(LiveServer(shared, port=port_a))
            started.append(LiveServer(shared))
        yield Nodes(shared, app, *started)
    finally:
        for server in started:
            server.stop()
        with app.app_context():
            db.engine.dispose()
        clear_rate_limits(shared)


@pytest.fixture(autouse=True)
def _own_test(nodes: Nodes) -> Iterator[None]:
    """Each test starts with no rate-limit counter, and registers its clients in an app context of its own."""
    clear_rate_limits(nodes.settings)
    with nodes.app.app_context():
        yield
        db.session.remove()


def token_from(node: LiveServer, client_id: str, key: str) -> requests.Response:
    return requests.post(f"{node.url}/token", data=CC, headers=basic(client_id, key), timeout=TIMEOUT)


def test_a_token_issued_on_a_is_introspected_and_revoked_on_b(nodes: Nodes) -> None:
    svc = service()
    token = token_from(nodes.a, svc.client_id, svc.key).json()["access_token"]
    auth = basic(svc.client_id, svc.key)

    def active(node: LiveServer) -> bool:
        answer = requests.post(f"{node.url}/introspect", data={"token": token}, headers=auth, timeout=TIMEOUT)
        return bool(answer.json()["active"])

    assert active(nodes.b)
    assert requests.post(f"{nodes.b.url}/revoke", data={"token": token}, headers=auth, timeout=TIMEOUT).ok
    assert not active(nodes.a) and not active(nodes.b)


def test_an_api_key_revoked_is_refused_by_both_nodes_within_5_s(nodes: Nodes) -> None:
    svc = service()
    for node in (nodes.a, nodes.b):  # both nodes hold the key in their caches now
        assert token_from(node, svc.client_id, svc.key).status_code == 200
    revoke_api_key(svc.key_id)
    start = time.monotonic()
    pending = {nodes.a.url, nodes.b.url}
    while pending:
        for node in (nodes.a, nodes.b):
            if node.url in pending and token_from(node, svc.client_id, svc.key).status_code == 401:
                pending.discard(node.url)
        assert time.monotonic() - start < 5.5, f"still accepted by {pending}"
        time.sleep(0.1)


def race_across(nodes: Nodes, count: int, send: Callable[[str, requests.Session], Any]) -> list[Any]:
    """``count`` requests at the same moment, alternately on A and B, each on an open keep-alive connection."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        base = (nodes.a, nodes.b)[index % 2].url
        http = requests.Session()
        http.get(f"{base}/healthz", timeout=TIMEOUT).raise_for_status()
        barrier.wait(timeout=TIMEOUT)
        return send(base, http)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def webapp() -> WebApp:
    return web_app()


def test_a_code_redeemed_on_both_nodes_at_once_succeeds_once(nodes: Nodes, webapp: WebApp) -> None:
    auth = authorize(LiveBrowser(nodes.a.url), webapp)
    one_winner(race_across(nodes, 8, lambda base, http: live_redeem(base, webapp, auth, http)))


def test_a_refresh_token_raced_on_both_nodes_succeeds_once(nodes: Nodes, webapp: WebApp) -> None:
    auth = authorize(LiveBrowser(nodes.a.url), webapp)
    first = live_redeem(nodes.b.url, webapp, auth)
    assert first.status_code == 200, first.text
    token = first.json()["refresh_token"]
    one_winner(race_across(nodes, 8, lambda base, http: live_refresh(base, webapp, token, http)))


def test_a_key_rotation_is_served_by_both_nodes_within_5_s(nodes: Nodes) -> None:
    svc = service()
    before = token_from(nodes.b, svc.client_id, svc.key).json()["access_token"]
    change = rotate(KeyStore(nodes.settings["IDP_KEYS_DIR"]), 2048, jwks_max_age=0)
    new_kid = change.kids["active"]
    start = time.monotonic()
    pending = {nodes.a.url, nodes.b.url}
    while pending:
        for node in (nodes.a, nodes.b):
            token = token_from(node, svc.client_id, svc.key).json()["access_token"]
            if jwt.get_unverified_header(token)["kid"] == new_kid:
                pending.discard(node.url)
        assert time.monotonic() - start < 5.5, f"{pending} still sign with the old key"
        time.sleep(0.1)
    assert before.split(".")[0] != token.split(".")[0]


def test_the_failed_authentication_limit_is_shared_by_the_nodes(nodes: Nodes) -> None:
    svc = service()
    wrong = "idp_0123456789abcdef_" + "A" * 43
    statuses = [token_from((nodes.a, nodes.b)[i % 2], svc.client_id, wrong).status_code for i in range(7)]
    assert statuses == [401] * 6 + [429]
