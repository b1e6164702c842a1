"""Redis goes away under load and comes back (issue 7): rate limiting falls back to per-node memory, nothing
answers 5xx, service tokens keep being issued, and limits return to Redis without a restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from tests.conftest import REDIS_URL, LiveServer, requires_redis
from tests.oauth_support import CC, basic, service
from tests.tcp_proxy import CuttableProxy

pytestmark = requires_redis
TIMEOUT = 10


@pytest.fixture
def proxied_redis() -> Iterator[tuple[CuttableProxy, str]]:
    parts = urlsplit(REDIS_URL or "")
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    prefix = f"idp-test-{uuid.uuid4().hex[:12]}"
    yield proxy, prefix
    proxy.close()
    import redis

    server = redis.Redis.from_url(REDIS_URL or "")
    for key in server.scan_iter(f"*{prefix}*"):
        server.delete(key)
    server.close()


def test_redis_outage_under_load_is_never_a_5xx(
    app: Flask, settings: dict[str, str], proxied_redis: tuple[CuttableProxy, str]
) -> None:
    proxy, prefix = proxied_redis
    env = {
        **settings,
        "IDP_REDIS_URL": f"redis://127.0.0.1:{proxy.port}{urlsplit(REDIS_URL or '').path or '/0'}",
        "IDP_RATE_LIMIT_KEY_PREFIX": prefix,
        "IDP_RATE_LIMIT_CLIENT_AUTH": "100000 per minute",  # count every failure, refuse none
    }
    server = LiveServer(env, workers=2)
    svc = service()
    statuses: dict[str, Counter[int]] = {}
    phase = ["before"]
    stop = threading.Event()
    lock = threading.Lock()

    def load(good: bool) -> None:
        key = svc.key if good else "idp_0123456789abcdef_" + "A" * 43
        while not stop.is_set():
            try:
                status = requests.post(
                    f"{server.url}/token", data=CC, headers=basic(svc.client_id, key), timeout=TIMEOUT
                ).status_code
            except requests.RequestException:
                status = -1
            with lock:
                statuses.setdefault(phase[0], Counter())[status] += 1

    threads = [threading.Thread(target=load, args=(i % 2 == 0,), daemon=True) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        phase[0] = "outage"
        proxy.cut()
        time.sleep(4)
        phase[0] = "after"
        proxy.restore()
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT + 5)
        server.stop()
    seen = {name: dict(counts) for name, counts in statuses.items()}
    for name in ("before", "outage", "after"):
        assert set(statuses[name]) == {200, 401}, seen  # tokens issued, failures refused: nothing else
    assert "Traceback" not in server.log()
