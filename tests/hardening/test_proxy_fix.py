"""``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed for exactly ``IDP_TRUSTED_PROXIES`` hops (werkzeug
ProxyFix; RFC 7239 §5.2 explains why only the hops one's own proxies appended can be trusted). The address that
results is the one in audit records and in rate-limit keys (SPEC §10).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient

from idp.services.background import writer
from tests.oauth_support import CC, basic, service
from tests.oidc_support import app_with
from tests.pages.support import Browser, audit_events

CLIENT_AUTH_LIMIT = 3


@pytest.fixture
def settings(settings: dict[str, str]) -> dict[str, str]:
    return {**settings, "IDP_RATE_LIMIT_CLIENT_AUTH": f"{CLIENT_AUTH_LIMIT} per minute"}


@pytest.fixture
def behind(settings: dict[str, str]) -> Iterator[Any]:
    """Builds an app behind ``hops`` trusted proxies, with a route that shows what it believes of a request."""
    with ExitStack() as stack:

        def build(hops: int) -> FlaskClient:
            app, client = stack.enter_context(app_with(settings, IDP_TRUSTED_PROXIES=str(hops)))
            app.add_url_rule(
                "/test-probe", "test_probe", lambda: jsonify(addr=request.remote_addr, scheme=request.scheme)
            )
            return client

        yield build


def probe(client: FlaskClient, forwarded_for: str | None = None, proto: str | None = None) -> dict[str, str]:
    headers = {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    body: dict[str, str] = client.get("/test-probe", headers=headers).get_json()
    return body


def test_the_default_trusts_no_proxy(app: Flask) -> None:
    assert app.config["IDP_TRUSTED_PROXIES"] == 0


def test_without_trusted_proxies_forwarded_headers_are_ignored(behind: Any) -> None:
    client = behind(0)
    assert probe(client, "203.0.113.7", "https") == {"addr": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "expected"),
    [
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client's own (spoofed) entry is not believed
        (2, "6.6.6.6, 203.0.113.7", "6.6.6.6"),
        (2, "203.0.113.7", "127.0.0.1"),  # fewer hops than trusted: nothing is believed
    ],
)
def test_only_the_trusted_hops_of_x_forwarded_for_are_believed(
    behind: Any, hops: int, forwarded_for: str, expected: str
) -> None:
    assert probe(behind(hops), forwarded_for)["addr"] == expected


@pytest.mark.parametrize("forwarded_for", ["not-an-ip", "x" * 200, "203.0.113.7:443", "unknown"])
def test_a_forwarded_value_that_is_not_an_ip_address_is_not_believed(behind: Any, forwarded_for: str) -> None:
    assert probe(behind(1), forwarded_for)["addr"] == "127.0.0.1"


def test_a_forwarded_ipv6_address_is_believed(behind: Any) -> None:
    assert probe(behind(1), "2001:db8::7")["addr"] == "2001:db8::7"


def test_x_forwarded_proto_is_believed_from_a_trusted_proxy(behind: Any) -> None:
    assert probe(behind(1), "203.0.113.7", "https")["scheme"] == "https"


def test_audit_records_the_forwarded_address(behind: Any) -> None:
    client = behind(1)
    browser = Browser(client)
    page = browser.get("/login")
    browser.client.post(
        "/login",
        data={"csrf_token": _csrf(page), "username": "nobody", "password": "x"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert [e.ip for e in audit_events("login.failed")] == ["203.0.113.7"]


def test_tokens_served_without_flask_record_the_forwarded_address_too(behind: Any) -> None:
    client = behind(1)
    svc = service()
    response = client.post(
        "/token", data=CC, headers={**basic(svc.client_id, svc.key), "X-Forwarded-For": "203.0.113.8"}
    )
    assert response.status_code == 200
    writer(client.application).flush()
    assert [e.ip for e in audit_events("token.issued")] == ["203.0.113.8"]


def test_rate_limits_key_on_the_forwarded_address(behind: Any) -> None:
    client = behind(1)

    def fail_from(address: str) -> int:
        svc = service()  # a new client each time: only the per-address count grows
        headers = {**basic(svc.client_id, "idp_wrong_key"), "X-Forwarded-For": address}
        return int(client.post("/token", data=CC, headers=headers).status_code)

    assert [fail_from("203.0.113.7") for _ in range(CLIENT_AUTH_LIMIT)] == [401] * CLIENT_AUTH_LIMIT
    assert fail_from("203.0.113.7") == 429
    assert fail_from("203.0.113.9") == 401  # another client behind the same proxy


def test_without_trusted_proxies_a_spoofed_address_does_not_escape_the_limit(client: FlaskClient) -> None:
    bad = basic("nobody", "x")
    for n in range(CLIENT_AUTH_LIMIT):
        client.post("/token", data=CC, headers={**bad, "X-Forwarded-For": f"198.51.100.{n}"})
    response = client.post("/token", data=CC, headers={**bad, "X-Forwarded-For": "198.51.100.250"})
    assert response.status_code == 429


def _csrf(page: Any) -> str:
    from tests.pages.support import page_form

    return str(page_form(page)["fields"]["csrf_token"])
