"""Rate limits throttle guessing, never legitimate traffic (SPEC §10; RFC 6585 §4 ``429`` + ``Retry-After``).

Failed client authentications at ``/token``, ``/introspect`` and ``/revoke`` are counted per client id and per IP
and answered ``429 temporarily_unavailable`` once over; a client presenting its right key is never refused.
Failed logins are counted per username and per IP, and over either limit even the right password waits.
Every behaviour runs on in-memory storage and, with ``IDP_TEST_REDIS_URL``, on Redis; two live servers sharing
Redis share the counters; an unreachable Redis is never a 500.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.models import AuditEvent, User
from idp.services.background import writer
from tests.conftest import REDIS_URL, IsolatedClient, LiveServer, free_port, requires_redis
from tests.oauth_support import CC, Service, assert_error, assert_no_store, basic, issue, service
from tests.pages.support import PASSWORD, Browser, login_sessions

CLIENT_AUTH_LIMIT = 3
LOGIN_USER_LIMIT = 3
LOGIN_IP_LIMIT = 5
LIMITS = {
    "IDP_RATE_LIMIT_CLIENT_AUTH": f"{CLIENT_AUTH_LIMIT} per minute",
    "IDP_RATE_LIMIT_LOGIN_USER": f"{LOGIN_USER_LIMIT} per minute",
    "IDP_RATE_LIMIT_LOGIN_IP": f"{LOGIN_IP_LIMIT} per minute",
}
CLIENT_AUTH_ENDPOINTS = {
    "/token": CC,
    "/introspect": {"token": "anything"},
    "/revoke": {"token": "anything"},
}


@pytest.fixture
def redis_storage() -> Iterator[dict[str, str]]:
    """Settings that put the limits in Redis under a key prefix of this test's own, deleted afterwards."""
    if not REDIS_URL:
        pytest.skip("IDP_TEST_REDIS_URL not set (no Redis)")
    import redis

    prefix = f"idp-test-{uuid.uuid4().hex[:12]}"
    try:
        yield {"IDP_REDIS_URL": REDIS_URL, "IDP_RATE_LIMIT_KEY_PREFIX": prefix}
    finally:
        server = redis.Redis.from_url(REDIS_URL)
        keys = list(server.scan_iter(f"{prefix}:*"))
        if keys:
            server.delete(*keys)
        server.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=requires_redis)])
def storage(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return dict(request.getfixturevalue("redis_storage"))


@pytest.fixture
def settings(settings: dict[str, str], storage: dict[str, str]) -> dict[str, str]:
    return {**settings, **LIMITS, **storage}


def client_at(app: Flask, ip: str) -> FlaskClient:
    """A test client whose requests come from ``ip``."""
    app.test_client_class = IsolatedClient
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = ip
    return other


def wrong_key(svc: Service) -> dict[str, str]:
    return basic(svc.client_id, svc.key[:-4] + "AAAA")


def assert_throttled(response: Any) -> int:
    """429 ``temporarily_unavailable`` (a registered code meaning "retry later") with ``Retry-After`` seconds."""
    body = assert_error(response, 429, "temporarily_unavailable")
    assert "retry" in body["error_description"]
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


# --- client authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", CLIENT_AUTH_ENDPOINTS)
def test_failed_client_authentications_are_refused_429_once_over_the_limit(client: FlaskClient, endpoint: str) -> None:
    svc = service()
    for _ in range(CLIENT_AUTH_LIMIT):
        assert_error(
            client.post(endpoint, data=CLIENT_AUTH_ENDPOINTS[endpoint], headers=wrong_key(svc)), 401, "invalid_client"
        )
    assert_throttled(client.post(endpoint, data=CLIENT_AUTH_ENDPOINTS[endpoint], headers=wrong_key(svc)))


def audited(event: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)))


def test_failures_over_the_limit_leave_one_throttled_row_a_minute_per_client_and_address(app: Flask) -> None:
    """A flood of wrong keys writes the limit's worth of ``client.auth_failed`` rows, then one
    ``client.auth_throttled`` row per client id and address (the refusals beyond it are counted in ``/metrics``,
    tests/metrics): the trail keeps who tried from where, and grows by a bounded amount."""
    svc = service()
    first, second = client_at(app, "198.51.100.7"), client_at(app, "198.51.100.8")
    statuses = [first.post("/token", data=CC, headers=wrong_key(svc)).status_code for _ in range(CLIENT_AUTH_LIMIT + 5)]
    assert statuses == [401] * CLIENT_AUTH_LIMIT + [429] * 5
    assert [second.post("/token", data=CC, headers=wrong_key(svc)).status_code for _ in range(3)] == [429] * 3
    writer(app).flush()

    failed = audited("client.auth_failed")
    assert len(failed) == CLIENT_AUTH_LIMIT and {row.client_id for row in failed} == {svc.client_id}
    throttled = [(row.client_id, row.ip, row.details) for row in audited("client.auth_throttled")]
    details = {"method": "client_secret_basic", "endpoint": "/token"}
    assert throttled == [(svc.client_id, "198.51.100.7", details), (svc.client_id, "198.51.100.8", details)]


def test_the_three_endpoints_share_one_failure_count(client: FlaskClient) -> None:
    svc = service()
    for endpoint, data in CLIENT_AUTH_ENDPOINTS.items():
        assert_error(client.post(endpoint, data=data, headers=wrong_key(svc)), 401, "invalid_client")
    assert_throttled(client.post("/token", data=CC, headers=wrong_key(svc)))


def test_failures_are_counted_per_client_id_across_addresses(app: Flask) -> None:
    svc = service()
    for n in range(CLIENT_AUTH_LIMIT):
        response = client_at(app, f"198.51.100.{n}").post("/token", data=CC, headers=wrong_key(svc))
        assert_error(response, 401, "invalid_client")
    assert_throttled(client_at(app, "198.51.100.200").post("/token", data=CC, headers=wrong_key(svc)))
    # Another client from one of those addresses is not affected by svc's count.
    other = service()
    assert_error(
        client_at(app, "198.51.100.201").post("/token", data=CC, headers=wrong_key(other)), 401, "invalid_client"
    )


def test_failures_are_counted_per_address_across_client_ids(client: FlaskClient) -> None:
    for _ in range(CLIENT_AUTH_LIMIT):
        assert_error(client.post("/token", data=CC, headers=wrong_key(service())), 401, "invalid_client")
    assert_throttled(client.post("/token", data=CC, headers=wrong_key(service())))


def test_unknown_client_ids_and_malformed_credentials_count_too(client: FlaskClient) -> None:
    for n in range(CLIENT_AUTH_LIMIT - 1):
        assert_error(client.post("/token", data=CC, headers=basic(f"nobody-{n}", "x")), 401, "invalid_client")
    assert_error(client.post("/token", data=CC, headers={"Authorization": "Basic %%%"}), 401, "invalid_client")
    assert_throttled(client.post("/token", data=CC, headers=basic("nobody-else", "x")))


def test_the_right_key_is_never_refused_by_failures_of_others(app: Flask, client: FlaskClient) -> None:
    """Client ids are not secret and services share NAT addresses: failures must not lock a working client out."""
    svc = service()
    for _ in range(CLIENT_AUTH_LIMIT + 2):
        client.post("/token", data=CC, headers=wrong_key(svc))
    assert_throttled(client.post("/token", data=CC, headers=wrong_key(svc)))
    issue(client, svc)  # same client id, same address
    post = client.post("/introspect", data={"token": "x"}, headers=basic(svc.client_id, svc.key))
    assert post.status_code == 200 and post.get_json() == {"active": False}


def test_many_successful_token_requests_from_one_address_all_pass(client: FlaskClient) -> None:
    basic_svc = service()
    post_svc = service(token_endpoint_auth_method="client_secret_post")  # always answered by the Flask view
    for _ in range(60):
        issue(client, basic_svc)
        response = client.post("/token", data={**CC, "client_id": post_svc.client_id, "client_secret": post_svc.key})
        assert response.status_code == 200, response.get_json()


def test_limit_keys_name_the_client_and_never_hold_a_secret(
    client: FlaskClient, settings: dict[str, str], alice: User
) -> None:
    if "IDP_REDIS_URL" not in settings:
        pytest.skip("inspects the keys in Redis")
    import redis

    svc = service()
    pasted_secret = svc.key + "-typo"
    client.post("/token", data=CC, headers=basic(svc.client_id, pasted_secret))
    client.post("/token", data=CC, headers=basic(pasted_secret, "x"))  # an API key pasted as the client id
    browser = Browser(client)
    browser.submit(browser.get("/login"), username=PASSWORD, password=PASSWORD)  # a password typed as username
    server = redis.Redis.from_url(settings["IDP_REDIS_URL"])
    keys = [k.decode() for k in server.scan_iter(settings["IDP_RATE_LIMIT_KEY_PREFIX"] + ":*")]
    server.close()
    assert any(svc.client_id in key for key in keys), keys
    assert len(keys) >= 4
    for key in keys:
        assert svc.key[-20:] not in key and PASSWORD not in key and "horse" not in key


# --- the optional ceiling ------------------------------------------------------------------------------------


def test_client_ceiling_is_off_by_default(app: Flask) -> None:
    assert app.config["IDP_RATE_LIMIT_CLIENT_CEILING"] == ""


def test_client_ceiling_refuses_a_client_over_it_and_no_other(settings: dict[str, str]) -> None:
    from tests.oidc_support import app_with

    with app_with(settings, IDP_RATE_LIMIT_CLIENT_CEILING="4 per minute") as (_, client):
        busy, quiet = service(), service()
        for _ in range(4):
            issue(client, busy)
        assert_throttled(client.post("/token", data=CC, headers=basic(busy.client_id, busy.key)))
        issue(client, quiet)


# --- login ----------------------------------------------------------------------------------------------------


def login_attempt(client: FlaskClient, username: str, password: str) -> Any:
    browser = Browser(client)
    return browser.submit(browser.get("/login"), username=username, password=password)


def assert_login_throttled(response: Any) -> int:
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Too many failed sign-in attempts" in response.get_data(as_text=True)
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


def test_a_username_over_its_limit_waits_even_with_the_right_password(client: FlaskClient, alice: User) -> None:
    for _ in range(LOGIN_USER_LIMIT):
        assert "Incorrect username or password." in login_attempt(client, "alice", "wrong").get_data(as_text=True)
    page = login_attempt(client, "Alice", PASSWORD)  # case-folded: the same username
    assert_login_throttled(page)
    assert 'name="username"' in page.get_data(as_text=True)  # the form, to try again later
    assert login_sessions() == []


def test_the_username_limit_applies_from_every_address(app: Flask, alice: User) -> None:
    for n in range(LOGIN_USER_LIMIT):
        login_attempt(client_at(app, f"198.51.100.{n}"), "alice", "wrong")
    assert_login_throttled(login_attempt(client_at(app, "198.51.100.99"), "alice", PASSWORD))


def test_unknown_usernames_are_throttled_like_real_ones(client: FlaskClient) -> None:
    """The same answer for both, so the lockout reveals nothing about which usernames exist."""
    for _ in range(LOGIN_USER_LIMIT):
        login_attempt(client, "nobody", "wrong")
    assert_login_throttled(login_attempt(client, "nobody", "wrong"))


def test_an_address_over_its_limit_waits_for_every_username(app: Flask, alice: User) -> None:
    """Password spraying: one guess each against many usernames from one address."""
    sprayer = client_at(app, "203.0.113.9")
    for n in range(LOGIN_IP_LIMIT):
        login_attempt(sprayer, f"user{n}", "Winter2024!")
    assert_login_throttled(login_attempt(sprayer, "alice", PASSWORD))
    # alice, from her own address, is not held back by the sprayer.
    assert login_attempt(client_at(app, "192.0.2.10"), "alice", PASSWORD).status_code == 303


def test_successful_logins_are_not_counted(client: FlaskClient, alice: User) -> None:
    for _ in range(LOGIN_IP_LIMIT + LOGIN_USER_LIMIT):
        assert login_attempt(client, "alice", PASSWORD).status_code == 303


@pytest.mark.parametrize("storage", ["memory"], indirect=True)
def test_a_username_lockout_ends_after_its_short_window(settings: dict[str, str], alice: User) -> None:
    from tests.oidc_support import app_with

    with app_with(settings, IDP_RATE_LIMIT_LOGIN_USER="2 per 3 seconds") as (_, client):
        for _ in range(2):
            login_attempt(client, "alice", "wrong")
        seconds = assert_login_throttled(login_attempt(client, "alice", PASSWORD))
        assert seconds <= 3
        time.sleep(seconds + 0.1)
        assert login_attempt(client, "alice", PASSWORD).status_code == 303


# --- Redis: shared between nodes, and never a 500 when it is down ---------------------------------------------


@requires_redis
@pytest.mark.parametrize("storage", ["memory"], indirect=True)  # the servers get Redis; this process needs none
def test_two_servers_sharing_redis_share_the_failure_count(
    settings: dict[str, str], redis_storage: dict[str, str], app: Flask
) -> None:
    svc = service()
    env = {**settings, **redis_storage, "IDP_RATE_LIMIT_CLIENT_AUTH": "4 per minute"}
    first, second = LiveServer(env), LiveServer(env)
    try:
        bad = wrong_key(svc)
        statuses = [
            requests.post(server.url + "/token", data=CC, headers=bad, timeout=10).status_code
            for server in (first, second, first, second)
        ]
        assert statuses == [401, 401, 401, 401]
        for server in (first, second):
            response = requests.post(server.url + "/token", data=CC, headers=bad, timeout=10)
            assert response.status_code == 429 and response.json()["error"] == "temporarily_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        good = requests.post(second.url + "/token", data=CC, headers=basic(svc.client_id, svc.key), timeout=10)
        assert good.status_code == 200
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("storage", ["memory"], indirect=True)
def test_unreachable_redis_is_never_a_500_and_limits_go_on_per_node(settings: dict[str, str], alice: User) -> None:
    from tests.oidc_support import app_with

    closed = f"redis://127.0.0.1:{free_port()}/0"
    with app_with(settings, IDP_REDIS_URL=closed) as (_, client):
        svc = service()
        started = time.monotonic()
        issue(client, svc)
        for _ in range(CLIENT_AUTH_LIMIT):
            assert_error(client.post("/token", data=CC, headers=wrong_key(svc)), 401, "invalid_client")
        assert_throttled(client.post("/token", data=CC, headers=wrong_key(svc)))
        assert login_attempt(client, "alice", "wrong").status_code == 200
        assert login_attempt(client, "alice", PASSWORD).status_code == 303
        issue(client, svc)
        assert time.monotonic() - started < 10


def test_throttled_answers_are_not_cached(client: FlaskClient) -> None:
    svc = service()
    for _ in range(CLIENT_AUTH_LIMIT):
        client.post("/token", data=CC, headers=wrong_key(svc))
    assert_no_store(client.post("/token", data=CC, headers=wrong_key(svc)))
