"""PostgreSQL goes away under load and comes back (issue 7): the live server answers 503s with ``Retry-After``,
never a 500, keeps serving JWKS and discovery, and recovers without a restart.

The server reaches PostgreSQL through a :class:`CuttableProxy`, so only this test's database connection is cut.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from flask import Flask

from tests.conftest import LiveServer, requires_postgres
from tests.oauth_support import CC, Service, basic, service
from tests.tcp_proxy import CuttableProxy

pytestmark = requires_postgres
TIMEOUT = 10


@pytest.fixture
def proxy(pg_settings: dict[str, str]) -> Iterator[CuttableProxy]:
    parts = urlsplit(pg_settings["IDP_DATABASE_URL"])
    forwarder = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield forwarder
    forwarder.close()


@pytest.fixture
def server(pg_settings: dict[str, str], pg_app: Flask, proxy: CuttableProxy) -> Iterator[LiveServer]:
    parts = urlsplit(pg_settings["IDP_DATABASE_URL"])
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path, "connect_timeout=2", ""))
    live = LiveServer({**pg_settings, "IDP_DATABASE_URL": url}, workers=2)
    yield live
    live.stop()


class Load:
    """Threads posting a mix of token (good key) and introspection requests; statuses counted per phase."""

    def __init__(self, server: LiveServer, svc: Service) -> None:
        self.server, self.svc = server, svc
        self.phase = "before"
        self.statuses: dict[str, Counter[int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(4)]

    def _run(self, index: int) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            headers = basic(self.svc.client_id, self.svc.key)
            try:
                if index % 2:
                    response = session.post(f"{self.server.url}/token", data=CC, headers=headers, timeout=TIMEOUT)
                else:
                    data = {"token": "not-a-token"}
                    response = session.post(
                        f"{self.server.url}/introspect", data=data, headers=headers, timeout=TIMEOUT
                    )
                status = response.status_code
                if status == 503:
                    assert response.headers.get("Retry-After", "").isdigit()
                    assert response.json()["error"] == "temporarily_unavailable"
            except requests.RequestException:
                status = -1
            with self._lock:
                self.statuses.setdefault(self.phase, Counter())[status] += 1

    def wait_for(self, status: int, deadline: float) -> None:
        """Until the current phase has seen an answer with ``status``."""
        while not self.statuses.get(self.phase, Counter())[status]:
            assert time.monotonic() < deadline, f"no {status} in phase {self.phase}: {self.statuses}"
            time.sleep(0.1)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT + 5)


def test_database_outage_under_load_gives_503s_and_service_resumes(server: LiveServer, proxy: CuttableProxy) -> None:
    svc = service()
    with Load(server, svc) as load:
        time.sleep(1.5)
        load.phase = "outage"
        proxy.cut()
        # Past the 5 s client cache, authentication itself needs the database: the first 503s come then.
        load.wait_for(503, time.monotonic() + 15)
        assert requests.get(f"{server.url}/jwks", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{server.url}/.well-known/openid-configuration", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{server.url}/readyz", timeout=TIMEOUT).status_code == 503
        load.phase = "recovering"
        proxy.restore()
        deadline = time.monotonic() + 15
        while requests.get(f"{server.url}/readyz", timeout=TIMEOUT).status_code != 200:
            assert time.monotonic() < deadline, "not ready again 15 s after the database came back"
            time.sleep(0.2)
        load.phase = "after"
        time.sleep(1.5)
    seen = {phase: dict(counts) for phase, counts in load.statuses.items()}
    everything = sum((load.statuses[p] for p in load.statuses), Counter())
    assert not [s for s in everything if s >= 500 and s != 503], seen
    assert -1 not in everything, seen  # no dropped connection
    assert load.statuses["outage"][503] > 0, seen
    assert set(load.statuses["before"]) == {200} and set(load.statuses["after"]) == {200}, seen
