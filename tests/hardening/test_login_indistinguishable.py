"""Unknown user and wrong password look the same from outside (SPEC §10; OWASP ASVS V2.2; issue 5).

Against a live server: the ``/login`` POST answers for a username that does not exist and for an existing user
with a wrong password are byte-identical once the values that differ on every response are set aside (the CSRF
token, which is signed with a timestamp, the echoed username, the request id and the date), and they take the
same time, because an unknown username is checked against a stand-in argon2 hash (``idp.services.login``).

The timing check is a guard against losing that stand-in hash, not a benchmark: with it gone, an unknown user
would answer in about a millisecond against tens of milliseconds for a wrong password.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from idp import create_app
from idp.extensions import db
from tests.conftest import LiveServer
from tests.hardening.conftest import live_server_for
from tests.pages.support import user

SAMPLES = 15
TIMEOUT = 30
# Same length as "alice", so the echoed username cannot shift anything else on the page.
UNKNOWN = "carol"
VARYING_HEADERS = {"x-request-id", "date"}


@pytest.fixture(scope="module")
def server(module_settings: dict[str, str]) -> Iterator[LiveServer]:
    """One server for the module, with limits high enough for every failed login below (SPEC §10)."""
    app = create_app(module_settings)
    with app.app_context():
        user("alice")
        db.session.remove()
        db.engine.dispose()
    live = live_server_for(module_settings)
    try:
        yield live
    finally:
        live.stop()


class LoginForm:
    """One browser that fetched the login page once and then submits it many times."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/login"
        self.http = requests.Session()
        page = self.http.get(self.url, timeout=TIMEOUT)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        self.csrf = found.group(1)

    def submit(self, username: str, password: str) -> tuple[requests.Response, float]:
        started = time.perf_counter()
        response = self.http.post(
            self.url,
            data={"csrf_token": self.csrf, "username": username, "password": password},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        return response, time.perf_counter() - started


def normalised(response: requests.Response, username: str) -> tuple[int, dict[str, str], str]:
    """Status, headers and body with the per-response values blanked: CSRF token, echoed username, request id,
    date, and cookie values (names and attributes stay)."""
    headers = {name.lower(): value for name, value in response.headers.items() if name.lower() not in VARYING_HEADERS}
    if "set-cookie" in headers:
        headers["set-cookie"] = re.sub(r"=[^;]*", "=<value>", headers["set-cookie"], count=1)
    body = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', response.text)
    body = body.replace(f'value="{username}"', 'value="<username>"')
    assert body.count("<username>") == 1, "the typed username is echoed once, in the form"
    return response.status_code, headers, body


def test_unknown_user_and_wrong_password_get_byte_identical_answers(server: LiveServer) -> None:
    form = LoginForm(server.url)
    wrong_password, _ = form.submit("alice", "not-the-password")
    unknown_user, _ = form.submit(UNKNOWN, "not-the-password")
    assert wrong_password.status_code == 200
    assert "Incorrect username or password." in wrong_password.text
    assert normalised(wrong_password, "alice") == normalised(unknown_user, UNKNOWN)
    assert wrong_password.headers.keys() == unknown_user.headers.keys()


def test_unknown_user_and_wrong_password_take_the_same_time(server: LiveServer) -> None:
    """Interleaved samples after a warm-up: medians within 1.5x of each other and overlapping ranges."""
    form = LoginForm(server.url)
    form.submit("alice", "warm-up")
    form.submit(UNKNOWN, "warm-up")
    timings: dict[str, list[float]] = {"wrong password": [], "unknown user": []}
    for _ in range(SAMPLES):
        for case, username in (("wrong password", "alice"), ("unknown user", UNKNOWN)):
            response, seconds = form.submit(username, "not-the-password")
            assert response.status_code == 200, response.text[:300]
            timings[case].append(seconds)
    wrong, unknown = timings["wrong password"], timings["unknown user"]
    report: dict[str, Any] = {case: sorted(round(t * 1000, 1) for t in values) for case, values in timings.items()}
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 1 / 1.5 <= ratio <= 1.5, report
    assert min(wrong) <= max(unknown) and min(unknown) <= max(wrong), report
